"""iNaturalist 2017 / 2018: super-category classification (paper Section 4.3, Figure 2b).

One registered dataset, ``inaturalist``, reads a release in its published layout and builds
the paper's task: predict an image's super-category (``Aves``, ``Plantae``, ...) on a subset
of the kept super-categories whose class sizes are proportional to the release's. The group
of an image is its class, so per-group accuracy is per-class accuracy. See
``docs/inaturalist.md``.

Layout (``data_dir/<path>``, default ``inaturalist/``)::

    train2018.json  val2018.json          (2018: train2018.json.tar.gz, val2018.json.tar.gz)
    train_val2018/<Supercategory>/<category id>/<image>.jpg
    train2017.json  val2017.json          (2017: train_val2017.zip)
    train_val_images/<Supercategory>/<species name>/<image>.jpg

The annotation files are COCO-style JSON: ``images`` (``id``, ``file_name`` relative to the
release root, e.g. ``train_val2018/Aves/3090/abc.jpg``), ``annotations`` (``image_id``,
``category_id``) and ``categories`` (``id``, ``name``, ``supercategory``). Training and
validation images share the image folders; only the JSON says which split an image is in.

torchvision's :class:`~torchvision.datasets.INaturalist` knows these releases, but it reads
the category tree from folder names alone and never opens the annotation files, so it
cannot tell the official train and validation images apart (they share folders). It is used
where it serves: with ``data.download: true`` it downloads and extracts the images (into
``<path>/<version>/``, a layout this reader also accepts); the annotation files, which it
does not fetch, are downloaded with torchvision's ``download_and_extract_archive``. The
split, the labels and the selection come from the thin JSON reader here.

The super-category of an image is its category's ``supercategory`` in the JSON (a
``categories`` file, e.g. 2018's un-obfuscated ``categories.json``, may replace the list);
for a category without one, the image's first folder below the image root (which is what
torchvision reports as ``super``). Malformed entries (an image without annotation or with
several categories, unknown ids, missing files) are skipped, counted by reason and reported
as a :class:`MalformedINaturalistWarning`; the counts stay in ``dataset.info["sources"]``.

Selection: ``classes`` (the paper's eight, a number of largest classes, or all) are the
labels; ``subset_size`` training images are drawn per class in proportion to the class's
training images, ``floor(subset_size * n_c / n)`` each (the paper's 60,000-image subset of
2018: 20,574 Aves ... 1,119 Actinopterygii), uniformly at random within a class (seeded by
``data.seed``). The test set is the official validation split of the kept classes (or a
proportional ``test_size`` subset of it). Images are stored as uint8 squares (the centre
square of the image, scaled to ``image_size``) and the model sees ``crop_size`` windows
(:class:`~disparate.data.images.ImageGroupedDataset`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from disparate.data.grouped import DatasetNotFoundError, DatasetSplits, default_data_dir
from disparate.data.image_store import ScanReport, load_images
from disparate.data.images import Augmentation, ImageGroupedDataset
from disparate.data.registry import register_dataset
from disparate.randomness import data_generator
from disparate.validation import check_integer, check_seed

__all__ = [
    "PAPER_CLASSES",
    "PAPER_SUBSET_SIZE",
    "RELEASES",
    "VERSIONS",
    "INatRecord",
    "INatScanReport",
    "MalformedINaturalistWarning",
    "Release",
    "build_inaturalist",
    "download_release",
    "find_release",
    "proportional_counts",
    "read_annotations",
    "release",
    "release_subset",
    "select_classes",
]

logger = logging.getLogger(__name__)

VERSIONS: tuple[str, ...] = ("2017", "2018")

#: The paper's eight super-categories (Section 4.3), largest first by 2018 training images:
#: the 14 of iNaturalist 2018 less the six rarest (Fungi, Animalia, Arachnida, Chromista,
#: Protozoa, Bacteria).
PAPER_CLASSES: tuple[str, ...] = (
    "Aves", "Plantae", "Insecta", "Reptilia", "Mammalia", "Amphibia", "Mollusca",
    "Actinopterygii",
)
PAPER_SUBSET_SIZE = 60_000

_S3 = "https://ml-inat-competition-datasets.s3.amazonaws.com"


@dataclass(frozen=True)
class Release:
    """What a release looks like on disk and where it comes from.

    ``image_folder`` is the first component of every ``file_name`` (the folder the image
    archive unpacks to); torchvision renames it to ``version``. ``annotation_archives`` are
    ``(url, md5 or None)``. ``train_images`` / ``val_images``: images per super-category in
    the release's README table (documentation and tests; the reader counts what it finds).
    """

    version: str
    train_json: str
    val_json: str
    image_folder: str
    annotation_archives: tuple[tuple[str, str | None], ...]
    train_images: Mapping[str, int]
    val_images: Mapping[str, int]


RELEASES: dict[str, Release] = {
    "2017": Release(
        version="2017",
        train_json="train2017.json",
        val_json="val2017.json",
        image_folder="train_val_images",
        annotation_archives=((f"{_S3}/2017/train_val2017.zip", None),),
        train_images={
            "Plantae": 158_407, "Insecta": 100_479, "Aves": 214_295, "Reptilia": 35_201,
            "Mammalia": 29_333, "Fungi": 5_826, "Amphibia": 15_318, "Mollusca": 7_536,
            "Animalia": 5_228, "Arachnida": 4_873, "Actinopterygii": 1_982, "Chromista": 398,
            "Protozoa": 308,
        },
        val_images={
            "Plantae": 38_206, "Insecta": 18_076, "Aves": 21_226, "Reptilia": 5_680,
            "Mammalia": 3_490, "Fungi": 1_780, "Amphibia": 2_385, "Mollusca": 1_841,
            "Animalia": 1_362, "Arachnida": 1_086, "Actinopterygii": 637, "Chromista": 144,
            "Protozoa": 73,
        },
    ),
    "2018": Release(
        version="2018",
        train_json="train2018.json",
        val_json="val2018.json",
        image_folder="train_val2018",
        annotation_archives=(
            (f"{_S3}/2018/train2018.json.tar.gz", "bfa29d89d629cbf04d826a720c0a68b0"),
            (f"{_S3}/2018/val2018.json.tar.gz", "f2ed8bfe3e9901cdefceb4e53cd3775d"),
        ),
        train_images={
            "Plantae": 118_800, "Insecta": 87_192, "Aves": 143_950, "Actinopterygii": 7_835,
            "Fungi": 6_864, "Reptilia": 22_754, "Mollusca": 8_007, "Mammalia": 20_104,
            "Animalia": 5_966, "Amphibia": 11_156, "Arachnida": 4_037, "Chromista": 621,
            "Protozoa": 211, "Bacteria": 16,
        },
        val_images={
            "Plantae": 8_751, "Insecta": 6_093, "Aves": 3_774, "Actinopterygii": 1_107,
            "Fungi": 963, "Reptilia": 852, "Mollusca": 786, "Mammalia": 702, "Animalia": 534,
            "Amphibia": 432, "Arachnida": 342, "Chromista": 75, "Protozoa": 12, "Bacteria": 3,
        },
    ),
}

WHERE_TO_GET = (
    "https://github.com/visipedia/inat_comp (the {version} release: the training and "
    "validation images and their annotation JSON)"
)
SPLITS = ("train", "val")


class MalformedINaturalistWarning(UserWarning):
    """Some entries of an iNaturalist annotation file were skipped."""


@dataclass(frozen=True, slots=True)
class INatRecord:
    """One annotated image. ``key`` is its ``file_name`` in the JSON; ``box`` is always
    ``None`` (the whole image is used: its centre square)."""

    key: str
    path: Path
    supercategory: str
    category_id: int
    image_id: int
    split: str
    box: None = None


class INatScanReport(ScanReport):
    """What reading one annotation file found (records kept, entries skipped by reason)."""

    unit = "images"

    def _origin(self) -> str:
        return self.root


# --------------------------------------------------------------------------------------------
# Finding and downloading a release
# --------------------------------------------------------------------------------------------


def release(version: Any) -> Release:
    """The :class:`Release` of ``version`` (``"2017"``, ``"2018"`` or the int)."""
    key = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if key not in RELEASES:
        raise ValueError(f"version={version!r}: expected one of {list(VERSIONS)}")
    return RELEASES[key]


def _resolve(root: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _annotation_path(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / Path(name).stem / name,
                      root / "train_val2017" / name):
        if candidate.is_file():
            return candidate
    return None


def find_release(
    root: str | Path,
    version: str = "2018",
    *,
    images: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[Path, dict[str, Path]]:
    """The image folder (standing for the release's top folder) and the annotation files.

    ``images``: that folder (relative to ``root`` unless absolute); default: the release's
    ``train_val2018`` / ``train_val_images`` below ``root``, else torchvision's ``<version>``.
    ``annotations``: ``{train: file, val: file}``; default the release's file names in
    ``root``. A DatasetNotFoundError says what is missing and where to get it.
    """
    root = Path(root)
    rel = release(version)
    where = WHERE_TO_GET.format(version=rel.version)
    if images is not None:
        image_dir = _resolve(root, images)
        candidates = [image_dir]
    else:
        candidates = [root / rel.image_folder, root / rel.version]
        image_dir = next((c for c in candidates if c.is_dir()), candidates[0])
    if not image_dir.is_dir():
        raise DatasetNotFoundError(
            f"inaturalist {rel.version}: image folder not found (looked for "
            f"{' and '.join(str(c) for c in candidates)}). Get {where}, unpack it under "
            f"{root}, or set data.options.images / --data-dir, or data.download=true "
            "(torchvision downloads the images, 120-190 GB)")
    given = dict(annotations or {})
    unknown = sorted(str(k) for k in given if k not in SPLITS)
    if unknown:
        raise ValueError(f"annotations: unknown key(s) {unknown}; valid keys are "
                         f"{list(SPLITS)}")
    files: dict[str, Path] = {}
    for split, default in (("train", rel.train_json), ("val", rel.val_json)):
        if split in given:
            path: Path | None = _resolve(root, str(given[split]))
            if not path.is_file():
                path = None
        else:
            path = _annotation_path(root, default)
        if path is None:
            name = given.get(split, default)
            raise DatasetNotFoundError(
                f"inaturalist {rel.version}: {split} annotations {name!r} not found in "
                f"{root}. Get {where} ({', '.join(u for u, _ in rel.annotation_archives)}) "
                "and unpack it there, set data.options.annotations, or data.download=true")
        files[split] = path
    return image_dir, files


def download_release(root: str | Path, version: str = "2018") -> None:
    """Fetch what is missing of a release into ``root``: the annotation archives (torchvision's
    ``download_and_extract_archive``) and the images (``torchvision.datasets.INaturalist``
    with ``download=True``, which unpacks them into ``root/<version>``)."""
    from torchvision.datasets import INaturalist
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    rel = release(version)
    root.mkdir(parents=True, exist_ok=True)
    if any(_annotation_path(root, n) is None for n in (rel.train_json, rel.val_json)):
        for url, md5 in rel.annotation_archives:
            download_and_extract_archive(url, download_root=str(root), md5=md5)
    if not ((root / rel.image_folder).is_dir() or (root / rel.version).is_dir()):
        INaturalist(str(root), version=rel.version, target_type="super", download=True)


# --------------------------------------------------------------------------------------------
# Reading an annotation file
# --------------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable as JSON ({exc})") from exc


def _load_categories(path: Path) -> list[Any]:
    data = _load_json(path)
    if isinstance(data, Mapping):
        data = data.get("categories")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of categories or a mapping with a "
                         "'categories' list")
    return data


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _listing(directory: Path, cache: dict[Path, frozenset[str]]) -> frozenset[str]:
    if directory not in cache:
        try:
            cache[directory] = frozenset(os.listdir(directory))
        except OSError:
            cache[directory] = frozenset()
    return cache[directory]


def read_annotations(
    path: str | Path,
    *,
    split: str,
    image_dir: str | Path,
    image_folder: str,
    categories: Sequence[Any] | None = None,
    source: str | None = None,
) -> tuple[list[INatRecord], INatScanReport]:
    """Records of one COCO-style iNaturalist annotation file whose images are on disk.

    ``file_name`` is relative to the release root: its first component (``image_folder``,
    e.g. ``train_val2018``) stands for ``image_dir``. ``categories`` replaces the file's
    ``categories`` list. Entries that cannot be used are skipped and counted by reason.
    """
    path, image_dir = Path(path), Path(image_dir)
    report = INatScanReport(source or f"{split} ({path.name})", "inaturalist", str(path))
    data = _load_json(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list) or (
            not isinstance(data.get("annotations"), list)):
        raise ValueError(f"{path}: expected a COCO-style mapping with 'images', "
                         "'annotations' and 'categories' lists")
    cat_list = categories if categories is not None else data.get("categories")
    if not isinstance(cat_list, list):
        raise ValueError(f"{path}: no 'categories' list (give data.options.categories)")
    supers: dict[int, str | None] = {}
    for entry in cat_list:
        if not isinstance(entry, Mapping) or not _is_id(entry.get("id")):
            report.skip("malformed category entry", repr(entry)[:80])
            continue
        sup = entry.get("supercategory")
        supers[int(entry["id"])] = sup.strip() if isinstance(sup, str) and sup.strip() else None

    files: dict[int, str] = {}
    for entry in data["images"]:
        if (not isinstance(entry, Mapping) or not _is_id(entry.get("id"))
                or not isinstance(entry.get("file_name"), str) or not entry["file_name"]):
            report.skip("malformed image entry", repr(entry)[:80])
            continue
        if int(entry["id"]) in files:
            report.skip("duplicate image id", str(entry["id"]))
            continue
        files[int(entry["id"])] = entry["file_name"]
    labels: dict[int, set[int]] = defaultdict(set)
    for entry in data["annotations"]:
        if (not isinstance(entry, Mapping) or not _is_id(entry.get("image_id"))
                or not _is_id(entry.get("category_id"))):
            report.skip("malformed annotation", repr(entry)[:80])
            continue
        if int(entry["image_id"]) not in files:
            report.skip("annotation of an unknown image", str(entry["image_id"]))
            continue
        labels[int(entry["image_id"])].add(int(entry["category_id"]))

    records: list[INatRecord] = []
    listings: dict[Path, frozenset[str]] = {}
    for image_id, file_name in files.items():
        cats = labels.get(image_id)
        if not cats:
            report.skip("image without annotation", file_name)
            continue
        if len(cats) > 1:
            report.skip("image with several categories", file_name)
            continue
        (cat,) = cats
        if cat not in supers:
            report.skip("unknown category", f"{file_name} (category {cat})")
            continue
        parts = Path(file_name).parts
        if len(parts) > 1 and parts[0] == image_folder:
            image_path = image_dir.joinpath(*parts[1:])
            folder_super = parts[1] if len(parts) > 2 else None
        else:
            image_path = image_dir.parent / file_name
            folder_super = None
            report.notes[f"file name not below {image_folder}/ (read relative to the "
                         "release root)"] += 1
        sup = supers[cat]
        if sup is None:
            if folder_super is None:
                report.skip("no supercategory", file_name)
                continue
            sup = folder_super
            report.notes["supercategory taken from the image folder"] += 1
        elif folder_super is not None and folder_super != sup:
            report.notes["JSON supercategory differs from the image folder (JSON used)"] += 1
        if image_path.name not in _listing(image_path.parent, listings):
            report.skip("image not found", file_name)
            continue
        records.append(INatRecord(file_name, image_path, sup, cat, image_id, split))
    report.records = len(records)
    return records, report


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def proportional_counts(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """``floor(total * n_c / n)`` per class: a ``total``-image subset in proportion to the
    class sizes ``n_c`` (``n`` their sum). The counts may sum to up to ``len(sizes) - 1``
    less than ``total``; for the paper's 2018 classes and 60,000 they are its 20,574 Aves
    and 1,119 Actinopterygii (59,996 in all)."""
    n = int(sum(sizes.values()))
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total={total!r}: expected an int >= 0")
    if total > n:
        raise ValueError(f"{total} images requested but the classes hold only {n}")
    if n == 0:
        return {c: 0 for c in sizes}
    return {c: (total * int(k)) // n for c, k in sizes.items()}


def select_classes(train_sizes: Mapping[str, int], classes: Any) -> list[str]:
    """The kept super-categories: a list of names (in that order), an int k (the k largest
    by training images), or None (all with training images), largest first."""
    by_size = sorted((c for c, n in train_sizes.items() if n > 0),
                     key=lambda c: (-train_sizes[c], c))
    available = ", ".join(f"{c} ({train_sizes[c]})" for c in by_size) or "none"
    if classes is None:
        return by_size
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 1 <= classes <= len(by_size):
            raise ValueError(f"classes={classes}: expected 1 to {len(by_size)} (the "
                             f"super-categories with training images: {available})")
        return by_size[:classes]
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise ValueError(f"classes={classes!r}: expected a list of super-category names, a "
                         "number of largest classes, or null (all)")
    names = [str(c) for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"classes={names}: names must be unique")
    unknown = [c for c in names if c not in train_sizes]
    if unknown:
        raise ValueError(f"classes: unknown super-categor{'y' if len(unknown) == 1 else 'ies'}"
                         f" {unknown}; the annotations have (training images): {available}")
    return names


def _draw(records: Sequence[INatRecord], classes: Sequence[str], size: int | None,
          seed: int, split: str) -> tuple[list[INatRecord], dict[str, int]]:
    by_class: dict[str, list[INatRecord]] = {c: [] for c in classes}
    for r in records:
        if r.supercategory in by_class:
            by_class[r.supercategory].append(r)
    available = {c: len(rs) for c, rs in by_class.items()}
    counts = available if size is None else proportional_counts(available, size)
    chosen: list[INatRecord] = []
    for c in classes:
        rng = data_generator(seed, "inat_draw", zlib.crc32(f"{split}/{c}".encode()))
        order = rng.permutation(available[c])[: counts[c]]
        chosen += [by_class[c][i] for i in sorted(int(i) for i in order)]
    return chosen, available


# --------------------------------------------------------------------------------------------
# The registered dataset
# --------------------------------------------------------------------------------------------


@register_dataset("inaturalist")
def build_inaturalist(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    version: str = "2018",
    path: str = "inaturalist",
    images: str | None = None,
    annotations: Mapping[str, str] | None = None,
    categories: str | None = None,
    classes: Any = PAPER_CLASSES,
    subset_size: int | None = PAPER_SUBSET_SIZE,
    test_size: int | None = None,
    image_size: int = 299,
    crop_size: int = 299,
    augment: Any = False,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> DatasetSplits:
    """iNaturalist super-category classification; the group of an image is its class.

    Args:
        version: ``"2018"`` (14 super-categories, the paper's release) or ``"2017"`` (13).
        path: The release folder, relative to ``data_dir`` unless absolute.
        images: The image folder (default: ``train_val2018`` / ``train_val_images`` in
            ``path``, else torchvision's ``<version>``).
        annotations: ``{train: file, val: file}`` (default the release's names in ``path``).
        categories: A JSON file whose category list replaces the annotation files' (e.g.
            2018's un-obfuscated ``categories.json``).
        classes: Super-category names (in this order), an int k (the k largest by training
            images, largest first), or null (all). Default: the paper's eight.
        subset_size: Training images drawn in proportion to the class sizes,
            ``floor(subset_size * n_c / n)`` per class; null: all training images of the
            kept classes.
        test_size: Likewise for the official validation split (the test set); null: all.
        image_size, crop_size: Stored square side (centre square of the image, scaled) and
            model input side.
        augment: Training augmentation (``true``, ``false`` or ``{rotation, crop, flip}``).
        cache / cache_dir: Keep the decoded images (``<cache_dir>/inaturalist-<hash>.npy``,
            :mod:`disparate.data.image_store`; a cache of an earlier version, named
            ``faces-<hash>.npy``, is renamed and used; default
            ``<default data dir>/cache/inaturalist``).
        workers: Threads decoding images (default: up to 8).
    """
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    seed = check_seed(seed)
    rel = release(version)
    root = _resolve(base, path)
    subset_size = check_integer("subset_size", subset_size, 1, optional=True)
    test_size = check_integer("test_size", test_size, 1, optional=True)
    for what, v in (("image_size", image_size), ("crop_size", crop_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 8:
            raise ValueError(f"{what}={v!r}: expected an int >= 8")
    if crop_size > image_size:
        raise ValueError(f"crop_size={crop_size}: expected <= image_size={image_size}")
    augmentation = Augmentation.from_option(augment)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: expected an int >= 1")
    if annotations is not None and not isinstance(annotations, Mapping):
        raise ValueError(f"annotations={annotations!r}: expected a mapping {{train: file, "
                         "val: file}} or null")

    if download:
        download_release(root, rel.version)
    image_dir, files = find_release(root, rel.version, images=images, annotations=annotations)
    cat_list = _load_categories(_resolve(root, categories)) if categories else None
    records: dict[str, list[INatRecord]] = {}
    reports: list[INatScanReport] = []
    for split in SPLITS:
        recs, report = read_annotations(files[split], split=split, image_dir=image_dir,
                                        image_folder=rel.image_folder, categories=cat_list,
                                        source=f"{rel.version} {split}")
        records[split] = recs
        reports.append(report)
        if report.total_skipped:
            warnings.warn(MalformedINaturalistWarning("inaturalist: " + report.summary()),
                          stacklevel=2)
        logger.info("inaturalist: %s", report.summary())

    found = {split: Counter(r.supercategory for r in records[split]) for split in SPLITS}
    train_sizes = {c: found["train"].get(c, 0) for c in
                   sorted(set(found["train"]) | set(found["val"]))}
    kept = select_classes(train_sizes, None if classes is None else (
        list(classes) if isinstance(classes, (list, tuple)) else classes))
    train_recs, train_avail = _draw(records["train"], kept, subset_size, int(seed), "train")
    test_recs, test_avail = _draw(records["val"], kept, test_size, int(seed), "val")

    info = {
        "version": rel.version,
        "root": str(root),
        "images": str(image_dir),
        "annotations": {s: str(p) for s, p in files.items()},
        "sources": [rep.to_dict() for rep in reports],
        "found": {s: dict(sorted(found[s].items(), key=lambda kv: (-kv[1], kv[0])))
                  for s in SPLITS},
        "classes": list(kept),
        "dropped_classes": [c for c in sorted(train_sizes, key=lambda c: (-train_sizes[c], c))
                            if c not in kept],
        "available": {"train": train_avail, "test": test_avail},
        "subset_size": subset_size,
        "test_size": test_size,
        "allocation": "floor(size * n_c / n) per class, uniform at random within a class",
        "image_size": image_size,
        "crop_size": crop_size,
    }
    index = {c: k for k, c in enumerate(kept)}
    store = (None if not cache else (Path(cache_dir).expanduser() if cache_dir
                                     else default_data_dir() / "cache" / "inaturalist"))

    def make(recs: list[INatRecord], split: str) -> ImageGroupedDataset:
        try:
            arr = load_images(recs, size=image_size, margin=0.0, workers=workers,
                              cache_dir=store, name="inaturalist", legacy_names=("faces",))
        except ValueError as exc:
            raise ValueError(f"inaturalist {split}: {exc}") from exc
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        del arr
        y = torch.tensor([index[r.supercategory] for r in recs], dtype=torch.long)
        return ImageGroupedDataset(
            x, y, y.clone(), group_names=kept, num_classes=len(kept), class_names=kept,
            crop_size=crop_size, augmentation=augmentation,
            name=f"inaturalist-{rel.version}/{split}", info=info)

    train, test = make(train_recs, "train"), make(test_recs, "test")
    logger.info("inaturalist %s: %d train / %d test images; train classes %s", rel.version,
                len(train), len(test), train.group_sizes())
    return DatasetSplits(train, test)


def release_subset(version: str = "2018", classes: Sequence[str] = PAPER_CLASSES,
                   total: int = PAPER_SUBSET_SIZE) -> dict[str, int]:
    """The proportional subset of ``classes`` computed from the release README's training
    counts: for 2018, the paper's eight and 60,000 give Aves 20,574 ... Actinopterygii 1,119."""
    rel = release(version)
    return proportional_counts({c: rel.train_images[c] for c in classes}, total)
