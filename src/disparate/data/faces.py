"""Face datasets (paper Section 4.1): UTKFace, FairFace and Diversity in Faces, mixed freely.

One registered dataset, ``faces``, reads any combination of *sources* in their published
on-disk formats, gives every face the attributes ``age``, ``gender``, ``skin``, ``race`` and
``source``, and builds an experiment from ``data.options``: which attribute is the label,
which attributes define the groups (their intersection), how skin-colour groups are defined,
and how many training / test examples each group gets. See ``docs/faces.md``.

Formats (``sources[*].format``; default folder under ``data_dir`` in brackets):

- ``utkface`` [``UTKFace``]: the aligned-and-cropped set, files
  ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` anywhere below the folder (gender 0 male,
  1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others). The chip is the face; it is
  used whole (centre square).
- ``utkface-wild`` [``UTKface_inthewild``]: the in-the-wild images ``[age]_[gender]_[race]_
  [datetime].jpg`` (``part1/`` .. ``part3/``) and ``landmark_list_part*.txt`` (per line: the
  file name, then 68 x y pairs); the face box is the landmarks' bounding box.
- ``fairface`` [``fairface``]: ``fairface_label_train.csv`` and ``fairface_label_val.csv``
  (columns ``file, age, gender, race[, service_test]``; the val split becomes test data) and
  the image folders they name. Images are already face crops; used whole.
- ``dif`` [``DiF``]: a metadata CSV with one row per face (image URL or local file, face box,
  optional landmarks, ITA, age, gender; column names configurable, see :data:`DIF_COLUMNS`)
  and the images the researcher holds locally under ``images/``, named as in the URL.

Malformed entries (UTKFace's names with a missing field, a stray space, a missing dot;
unparsable CSV values; images that are not on disk) are skipped, never guessed: each source
counts what it skipped and why, a :class:`MalformedFacesWarning` says how many, and the
counts are kept in ``dataset.info["sources"]``.

Cropping: the face box is made square (side = the larger of its width and height), enlarged by
``margin`` (0.4: 40% more in every dimension, as the paper) about its centre, cut out
(regions outside the image are black) and scaled to ``image_size`` (80) pixels; the model sees
a ``crop_size`` (64) window: random rotation / position / flip in training, the centre at test
time (:class:`~disparate.data.images.ImageGroupedDataset`).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import numpy as np
import torch

from disparate.data.grouped import DatasetNotFoundError, DatasetSplits, default_data_dir
from disparate.data.images import Augmentation, ImageGroupedDataset
from disparate.data.registry import register_dataset
from disparate.randomness import data_generator
from disparate.validation import check_one_of, check_seed

__all__ = [
    "ATTRIBUTES",
    "DIF_COLUMNS",
    "FAIRFACE_AGE_BINS",
    "FAIRFACE_RACES",
    "FORMATS",
    "GENDERS",
    "ITA_SIX",
    "UTKFACE_RACES",
    "FaceRecord",
    "MalformedFacesWarning",
    "ScanReport",
    "SkinRule",
    "age_bin_names",
    "build_faces",
    "crop_box",
    "landmark_box",
    "load_face_image",
    "parse_skin_groups",
    "parse_utkface_name",
    "scan_dif",
    "scan_fairface",
    "scan_source",
    "scan_utkface",
    "scan_utkface_wild",
]

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("utkface", "utkface-wild", "fairface", "dif")
DEFAULT_PATHS: dict[str, str] = {
    "utkface": "UTKFace",
    "utkface-wild": "UTKface_inthewild",
    "fairface": "fairface",
    "dif": "DiF",
}
WHERE_TO_GET: dict[str, str] = {
    "utkface": "UTKFace 'Aligned&Cropped Faces' (UTKFace.tar.gz) from "
               "https://susanqq.github.io/UTKFace/",
    "utkface-wild": "UTKFace 'In-the-wild Faces' (part1-3) and the landmark lists "
                    "(landmark_list_part1-3.txt) from https://susanqq.github.io/UTKFace/",
    "fairface": "FairFace images (Padding=0.25) and fairface_label_train.csv / "
                "fairface_label_val.csv from https://github.com/joojs/fairface",
    "dif": "IBM's Diversity in Faces metadata and the Flickr images it points to (no longer "
           "distributed: only researchers who obtained it can use it)",
}
ATTRIBUTES: tuple[str, ...] = ("age", "gender", "skin", "race", "source")
GENDERS: tuple[str, ...] = ("female", "male")
UTKFACE_GENDERS: tuple[str, ...] = ("male", "female")  # code 0, 1
UTKFACE_RACES: tuple[str, ...] = ("white", "black", "asian", "indian", "others")
FAIRFACE_RACES: tuple[str, ...] = (
    "white", "black", "latino_hispanic", "east_asian", "southeast_asian", "indian",
    "middle_eastern",
)
#: FairFace age bin -> (youngest, oldest) age in years; ``None``: no upper bound.
FAIRFACE_AGE_BINS: dict[str, tuple[int, int | None]] = {
    "0-2": (0, 2), "3-9": (3, 9), "10-19": (10, 19), "20-29": (20, 29), "30-39": (30, 39),
    "40-49": (40, 49), "50-59": (50, 59), "60-69": (60, 69), "more than 70": (70, None),
}
#: The usual six ITA skin-colour categories (Chardon et al.): name -> (lo, hi], None = open.
ITA_SIX: dict[str, tuple[float | None, float | None]] = {
    "very-light": (55.0, None),
    "light": (41.0, 55.0),
    "intermediate": (28.0, 41.0),
    "tan": (10.0, 28.0),
    "brown": (-30.0, 10.0),
    "dark": (None, -30.0),
}
#: DiF metadata: role -> default CSV column name (override with ``sources[*].columns``).
#: ``face_x``/``face_y`` are the top-left corner of the face box; ``landmarks`` holds
#: x y pairs (any separators); ``file`` (optional) a path under ``images/``, else the URL's
#: file name is used.
DIF_COLUMNS: dict[str, str] = {
    "url": "url",
    "file": "file",
    "face_x": "face_x",
    "face_y": "face_y",
    "face_width": "face_width",
    "face_height": "face_height",
    "landmarks": "landmarks",
    "ita": "ita",
    "age": "age",
    "gender": "gender",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_VERSION = 1

_UTK_NAME = re.compile(r"^(\d{1,3})_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_GENDER_WORDS = {"female": "female", "f": "female", "woman": "female",
                 "male": "male", "m": "male", "man": "male"}


class MalformedFacesWarning(UserWarning):
    """Some entries of a face dataset were skipped (malformed names or values, missing files)."""


# --------------------------------------------------------------------------------------------
# Records and scan reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaceRecord:
    """One face: where its image is, its face box and its attributes (None: unknown).

    ``box`` is ``(x0, y0, x1, y1)`` in pixels of the image, or ``None`` when the image is
    already a face crop. ``age`` is ``(youngest, oldest)`` in years (equal for an exact age;
    ``oldest=None``: open-ended bin). ``split`` is ``"train"``/``"test"`` for sources with an
    official split, else ``None``.
    """

    source: str
    key: str
    path: Path
    box: tuple[float, float, float, float] | None
    age: tuple[float, float | None] | None
    gender: str | None
    race: str | None
    ita: float | None = None
    split: str | None = None


@dataclass
class ScanReport:
    """What reading one source found: records kept, entries skipped by reason (with examples)."""

    source: str
    format: str
    root: str
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5
    #: What one record is, in the summary.
    unit: ClassVar[str] = "faces"

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(example)

    @property
    def total_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def _origin(self) -> str:
        return f"{self.format}, {self.root}"

    def summary(self) -> str:
        text = (f"{self.source} ({self._origin()}): {self.records} {self.unit} read, "
                f"{self.total_skipped} entries skipped")
        if self.skipped:
            text += ": " + "; ".join(
                f"{n} {reason} (e.g. {', '.join(repr(e) for e in self.examples[reason])})"
                for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        if self.notes:
            text += ". Notes: " + "; ".join(f"{n} {what}" for what, n in sorted(
                self.notes.items()))
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "root": self.root,
                "records": self.records, "skipped": dict(sorted(self.skipped.items())),
                "skipped_total": self.total_skipped, "examples": self.examples,
                "notes": dict(sorted(self.notes.items()))}


# --------------------------------------------------------------------------------------------
# Parsing the formats
# --------------------------------------------------------------------------------------------


def parse_utkface_name(name: str) -> tuple[int, str, str]:
    """``(age, gender, race)`` of a UTKFace file name; ValueError saying what is wrong.

    Accepts ``[age]_[gender]_[race]_[datetime].jpg`` and ``... .jpg.chip.jpg`` exactly: a
    missing field, a stray space or a missing dot is an error, never a guess.
    """
    m = _UTK_NAME.match(name)
    if m is None:
        raise ValueError("malformed file name (expected [age]_[gender]_[race]_[datetime].jpg"
                         "[.chip.jpg])")
    age, gender, race = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if gender > 1:
        raise ValueError("gender code not 0 or 1")
    if race > 4:
        raise ValueError("race code not in 0-4")
    if age > 120:
        raise ValueError("age above 120")
    return age, UTKFACE_GENDERS[gender], UTKFACE_RACES[race]


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _require_dir(root: Path, fmt: str, source: str) -> None:
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"faces source {source!r} ({fmt}): folder {root} not found. Get the "
            f"{WHERE_TO_GET[fmt]} and put it there, or set the source's path (data.options."
            f"sources[*].path) or --data-dir. Face datasets are never downloaded automatically."
        )


def scan_utkface(root: str | Path, *, source: str = "utkface") -> tuple[list[FaceRecord],
                                                                          ScanReport]:
    """Records of UTKFace's aligned-and-cropped faces below ``root`` (any sub-folders).

    A file name that appears twice (e.g. ``UTKFace/`` and ``crop_part1/`` both unpacked)
    is read once.
    """
    root = Path(root)
    _require_dir(root, "utkface", source)
    report = ScanReport(source, "utkface", str(root))
    records: list[FaceRecord] = []
    seen: set[str] = set()
    for path in _image_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            age, gender, race = parse_utkface_name(path.name)
        except ValueError as exc:
            report.skip(str(exc), rel)
            continue
        if path.name in seen:
            report.skip("duplicate file name", rel)
            continue
        seen.add(path.name)
        records.append(FaceRecord(source, rel, path, None, (age, age), gender, race))
    report.records = len(records)
    return records, report


def _parse_points(values: Sequence[str]) -> np.ndarray:
    pts = np.asarray([float(v) for v in values], dtype=np.float64)
    if pts.size < 4 or pts.size % 2 or not np.isfinite(pts).all():
        raise ValueError("expected an even number (>= 4) of finite coordinates")
    return pts.reshape(-1, 2)


def landmark_box(points: np.ndarray | Sequence[float]) -> tuple[float, float, float, float]:
    """The bounding box ``(x0, y0, x1, y1)`` of landmarks given as (K, 2) or flat x y pairs."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()),
            float(pts[:, 0].max()), float(pts[:, 1].max()))


def scan_utkface_wild(root: str | Path, *, source: str = "utkface-wild"
                      ) -> tuple[list[FaceRecord], ScanReport]:
    """Records of UTKFace's in-the-wild images with the box of their 68 landmarks.

    Reads every ``landmark_list*.txt`` below ``root``; each line names an image (found by
    name anywhere below ``root``) and gives its landmarks. Images without a landmark line
    cannot be cropped and are counted as skipped.
    """
    root = Path(root)
    _require_dir(root, "utkface-wild", source)
    report = ScanReport(source, "utkface-wild", str(root))
    lists = sorted(root.rglob("landmark_list*.txt"))
    if not lists:
        raise DatasetNotFoundError(
            f"faces source {source!r} (utkface-wild): no landmark_list*.txt below {root}; "
            f"expected the {WHERE_TO_GET['utkface-wild']}"
        )
    images: dict[str, Path] = {}
    for path in _image_files(root):
        if path.name in images:
            report.skip("duplicate image file name", path.relative_to(root).as_posix())
        else:
            images[path.name] = path
    records: list[FaceRecord] = []
    used: set[str] = set()
    for lm_file in lists:
        with lm_file.open(encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                where = f"{lm_file.name}:{line_no}"
                name = tokens[0]
                try:
                    points = _parse_points(tokens[1:])
                except ValueError:
                    report.skip("malformed landmark line", where)
                    continue
                try:
                    age, gender, race = parse_utkface_name(name)
                except ValueError as exc:
                    report.skip(str(exc), name)
                    continue
                path = images.get(name)
                if path is None and name.endswith(".chip.jpg"):
                    path = images.get(name[: -len(".chip.jpg")])
                if path is None:
                    report.skip("image not found", name)
                    continue
                if path.name in used:
                    report.skip("duplicate landmark line", where)
                    continue
                used.add(path.name)
                box = landmark_box(points)
                if box[2] <= box[0] or box[3] <= box[1]:
                    report.skip("degenerate landmark box", where)
                    continue
                records.append(FaceRecord(source, path.relative_to(root).as_posix(), path,
                                          box, (age, age), gender, race))
    for name, path in images.items():
        if name not in used:
            report.skip("no landmarks (cannot crop)", path.relative_to(root).as_posix())
    report.records = len(records)
    return records, report


def _normalise_race(value: str) -> str:
    return re.sub(r"[\s_]+", "_", value.strip().lower())


def _normalise_gender(value: str) -> str | None:
    return _GENDER_WORDS.get(value.strip().lower())


def _read_csv(path: Path, required: Iterable[str]) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; found {header}"
            )
        reader.fieldnames = header
        return header, list(reader)


def scan_fairface(root: str | Path, *, source: str = "fairface"
                  ) -> tuple[list[FaceRecord], ScanReport]:
    """Records of FairFace from its label CSVs (train -> train split, val -> test split)."""
    root = Path(root)
    _require_dir(root, "fairface", source)
    report = ScanReport(source, "fairface", str(root))
    found = {split: next(iter(sorted(root.rglob(f"fairface_label_{name}*.csv"))), None)
             for split, name in (("train", "train"), ("test", "val"))}
    if not any(found.values()):
        raise DatasetNotFoundError(
            f"faces source {source!r} (fairface): no fairface_label_train.csv or "
            f"fairface_label_val.csv below {root}; expected the {WHERE_TO_GET['fairface']}"
        )
    records: list[FaceRecord] = []
    races = set(FAIRFACE_RACES)
    for split, csv_path in found.items():
        if csv_path is None:
            report.notes[f"no {split} label file"] += 1
            continue
        _, rows = _read_csv(csv_path, ("file", "age", "gender", "race"))
        base = csv_path.parent
        for row_no, row in enumerate(rows, start=2):
            where = f"{csv_path.name}:{row_no}"
            file = (row.get("file") or "").strip()
            age = FAIRFACE_AGE_BINS.get((row.get("age") or "").strip())
            gender = _normalise_gender(row.get("gender") or "")
            race = _normalise_race(row.get("race") or "")
            if not file:
                report.skip("empty file name", where)
                continue
            if age is None:
                report.skip("unknown age bin", where)
                continue
            if gender is None:
                report.skip("unknown gender", where)
                continue
            if race not in races:
                report.skip("unknown race", where)
                continue
            path = base / file
            if not path.is_file():
                report.skip("image not found", file)
                continue
            records.append(FaceRecord(source, file, path, None, age, gender, race,
                                      split=split))
    report.records = len(records)
    return records, report


def _float_or_none(value: str | None) -> float | None:
    text = (value or "").strip()
    if not text or text.lower() in ("nan", "none", "null", "na", "n/a"):
        return None
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(text)
    return x


def _dif_record(row: Mapping[str, str], row_no: int, csv_name: str, source: str,
                image_dir: Path, listing: set[str], has_box: bool,
                report: ScanReport) -> FaceRecord | None:
    """One DiF metadata row (role -> text) as a record, or None (counted in ``report``)."""
    where = f"{csv_name}:{row_no}"
    file = row.get("file", "")
    if not file:
        url = row.get("url", "")
        file = unquote(Path(urlparse(url).path).name) if url else ""
    if not file:
        report.skip("no file or url", where)
        return None
    path = image_dir / file
    if not (file in listing if "/" not in file else path.is_file()):
        report.skip("image not found", file)
        return None
    box = None
    box_text = [row.get(r, "") for r in ("face_x", "face_y", "face_width", "face_height")]
    try:
        if has_box and all(box_text):
            x, y, w, h = (float(t) for t in box_text)
            if not (w > 0 and h > 0 and all(map(math.isfinite, (x, y, w, h)))):
                raise ValueError("box")
            box = (x, y, x + w, y + h)
        elif row.get("landmarks"):
            box = landmark_box(_parse_points(_NUMBER.findall(row["landmarks"])))
    except ValueError:
        report.skip("malformed face box or landmarks", where)
        return None
    if box is None:
        report.skip("no face box or landmarks", where)
        return None
    try:
        ita = _float_or_none(row.get("ita"))
        age_years = _float_or_none(row.get("age"))
    except ValueError:
        report.skip("malformed ita or age value", where)
        return None
    if age_years is not None and not 0 <= age_years <= 120:
        report.skip("age outside 0-120", where)
        return None
    gender_text = row.get("gender", "")
    gender = _normalise_gender(gender_text) if gender_text else None
    if gender_text and gender is None:
        report.notes["unrecognised gender value (gender unknown)"] += 1
    return FaceRecord(source, file, path, box,
                      None if age_years is None else (age_years, age_years), gender, None, ita)


def scan_dif(
    root: str | Path,
    *,
    source: str = "dif",
    metadata: str | None = None,
    images: str = "images",
    columns: Mapping[str, str] | None = None,
) -> tuple[list[FaceRecord], ScanReport]:
    """Records of Diversity in Faces from a metadata CSV and locally held images.

    ``metadata``: the CSV (relative to ``root``; default: the only ``*.csv`` in ``root``).
    ``images``: the image folder (relative to ``root``). ``columns``: role -> column name,
    overriding :data:`DIF_COLUMNS`. The face box is ``face_x, face_y, face_width,
    face_height`` or, where those are empty, the landmarks' bounding box.
    """
    root = Path(root)
    _require_dir(root, "dif", source)
    cols = dict(DIF_COLUMNS)
    for role, name in (columns or {}).items():
        if role not in DIF_COLUMNS:
            raise ValueError(f"faces source {source!r}: columns.{role}: unknown role; valid "
                             f"roles are {sorted(DIF_COLUMNS)}")
        cols[role] = str(name)
    if metadata is None:
        candidates = sorted(root.glob("*.csv"))
        if len(candidates) != 1:
            raise DatasetNotFoundError(
                f"faces source {source!r} (dif): expected exactly one metadata *.csv in "
                f"{root}, found {[c.name for c in candidates]}; name it with "
                f"sources[*].metadata"
            )
        csv_path = candidates[0]
    else:
        csv_path = root / metadata
        if not csv_path.is_file():
            raise DatasetNotFoundError(f"faces source {source!r} (dif): metadata {csv_path} "
                                       "not found")
    image_dir = root / images
    report = ScanReport(source, "dif", str(root))
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)  # streamed: the full DiF metadata has a million wide rows
        header = [h.strip() for h in next(reader, [])]
        index = {role: header.index(name) for role, name in cols.items() if name in header}
        box_roles = ("face_x", "face_y", "face_width", "face_height")
        has_box = all(r in index for r in box_roles)
        has_landmarks = "landmarks" in index
        if "url" not in index and "file" not in index:
            raise ValueError(f"{csv_path}: needs a {cols['url']!r} or a {cols['file']!r} "
                             f"column (found {header})")
        if not has_box and not has_landmarks:
            raise ValueError(f"{csv_path}: needs face box columns "
                             f"{[cols[r] for r in box_roles]} or a {cols['landmarks']!r} "
                             f"column (found {header})")
        for role in ("ita", "age", "gender"):
            if role not in index:
                report.notes[f"no {cols[role]!r} column: {role} unknown"] += 1
        listing = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        records: list[FaceRecord] = []
        for row_no, values in enumerate(reader, start=2):
            if not values:
                continue
            row = {role: (values[i].strip() if i < len(values) else "")
                   for role, i in index.items()}
            record = _dif_record(row, row_no, csv_path.name, source, image_dir, listing,
                                 has_box, report)
            if record is not None:
                records.append(record)
    report.records = len(records)
    return records, report


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One configured source: its name (used in groups), format, folder and format options."""

    name: str
    format: str
    path: Path
    options: Mapping[str, Any] = field(default_factory=dict)


_SOURCE_KEYS = {"utkface": (), "utkface-wild": (), "fairface": (),
                "dif": ("metadata", "images", "columns")}


def _parse_sources(value: Any, root: Path) -> list[SourceSpec]:
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise ValueError(f"sources={value!r}: expected a non-empty list of formats "
                         f"({', '.join(FORMATS)}) or mappings with a 'format' key")
    specs: list[SourceSpec] = []
    for i, item in enumerate(value):
        what = f"sources[{i}]"
        if isinstance(item, str):
            item = {"format": item}
        if not isinstance(item, Mapping):
            raise ValueError(f"{what}={item!r}: expected a format name or a mapping")
        fmt = item.get("format")
        if fmt not in FORMATS:
            raise ValueError(f"{what}.format={fmt!r}: expected one of {list(FORMATS)}")
        valid = ("format", "name", "path", *_SOURCE_KEYS[fmt])
        unknown = sorted(str(k) for k in item if k not in valid)
        if unknown:
            raise ValueError(f"{what}: unknown key(s) {unknown} for format {fmt!r}; valid "
                             f"keys are {list(valid)}")
        name = str(item.get("name") or fmt)
        if name in (s.name for s in specs):
            raise ValueError(f"{what}.name={name!r}: source names must be unique")
        path = Path(str(item.get("path") or DEFAULT_PATHS[fmt])).expanduser()
        options = {k: v for k, v in item.items() if k in _SOURCE_KEYS[fmt]}
        specs.append(SourceSpec(name, fmt, path if path.is_absolute() else root / path,
                                options))
    return specs


def scan_source(spec: SourceSpec) -> tuple[list[FaceRecord], ScanReport]:
    """Read one configured source (dispatch on its format)."""
    if spec.format == "utkface":
        return scan_utkface(spec.path, source=spec.name)
    if spec.format == "utkface-wild":
        return scan_utkface_wild(spec.path, source=spec.name)
    if spec.format == "fairface":
        return scan_fairface(spec.path, source=spec.name)
    opts = dict(spec.options)
    columns = opts.get("columns")
    if columns is not None and not isinstance(columns, Mapping):
        raise ValueError(f"source {spec.name!r}: columns={columns!r}: expected a mapping "
                         "role -> column name")
    return scan_dif(spec.path, source=spec.name, metadata=opts.get("metadata"),
                    images=str(opts.get("images") or "images"), columns=columns)


def _races_of(formats: Iterable[str]) -> list[str]:
    out: list[str] = []
    for fmt in formats:
        vocab = {"utkface": UTKFACE_RACES, "utkface-wild": UTKFACE_RACES,
                 "fairface": FAIRFACE_RACES}.get(fmt, ())
        out += [r for r in vocab if r not in out]
    return out


# --------------------------------------------------------------------------------------------
# Attributes: age bins and skin-colour groups
# --------------------------------------------------------------------------------------------


def age_bin_names(edges: Sequence[int]) -> list[str]:
    """Names of the age bins with lower edges ``edges``: ``[0, 20, 60]`` -> 0-19, 20-59, 60+."""
    e = list(edges)
    return [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(e)] + [f"{e[-1]}+"]


def _check_age_bins(value: Any) -> list[int]:
    if (isinstance(value, str) or not isinstance(value, Sequence) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value)
            or any(b <= a for a, b in itertools.pairwise(value))):
        raise ValueError(f"age_bins={value!r}: expected increasing ints >= 0 (lower edges "
                         "of the bins, e.g. [0, 20, 30, 40, 50, 60])")
    return [int(v) for v in value]


def _age_bin(age: tuple[float, float | None] | None, edges: Sequence[int]) -> int | None:
    """Index of the bin holding the whole age range, or None (unknown / spans bins)."""
    if age is None:
        return None
    lo, hi = age
    for i, start in enumerate(edges):
        end = edges[i + 1] if i + 1 < len(edges) else None
        if lo >= start and (end is None or (hi is not None and hi < end)):
            return i
    return None


@dataclass(frozen=True)
class SkinRule:
    """A skin-colour group: faces matching every given condition.

    ``ita``: ``(lo, hi)`` meaning lo < ITA <= hi (None: open); ``races``: allowed race
    names (a proxy where no ITA exists, e.g. UTKFace's 'black'); ``sources``: source names.
    """

    name: str
    ita: tuple[float | None, float | None] | None = None
    races: frozenset[str] | None = None
    sources: frozenset[str] | None = None

    def matches(self, r: FaceRecord) -> bool:
        if self.sources is not None and r.source not in self.sources:
            return False
        if self.races is not None and r.race not in self.races:
            return False
        if self.ita is not None:
            if r.ita is None:
                return False
            lo, hi = self.ita
            if (lo is not None and not r.ita > lo) or (hi is not None and not r.ita <= hi):
                return False
        return True


def _opt_number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise ValueError(f"{what}={value!r}: expected a number or null")
    return float(value)


def parse_skin_groups(value: Any, *, source_names: Sequence[str], races: Sequence[str]
                      ) -> list[SkinRule]:
    """Skin-colour groups from ``"ita6"`` (the six ITA categories) or a mapping
    ``name -> {ita: [lo, hi], race: [...], sources: [...]}`` (conditions optional, ANDed).
    """
    if value == "ita6":
        return [SkinRule(name, ita) for name, ita in ITA_SIX.items()]
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"skin_groups={value!r}: expected 'ita6' or a mapping name -> "
                         "{ita: [lo, hi], race: [...], sources: [...]}")
    rules = []
    for name, rule in value.items():
        what = f"skin_groups.{name}"
        if rule is None:
            rule = {}
        if not isinstance(rule, Mapping):
            raise ValueError(f"{what}={rule!r}: expected a mapping with keys ita, race, "
                             "sources")
        unknown = sorted(str(k) for k in rule if k not in ("ita", "race", "sources"))
        if unknown:
            raise ValueError(f"{what}: unknown key(s) {unknown}; valid keys are "
                             "['ita', 'race', 'sources']")
        ita = rule.get("ita")
        if ita is not None:
            if isinstance(ita, str) or not isinstance(ita, Sequence) or len(ita) != 2:
                raise ValueError(f"{what}.ita={ita!r}: expected [lo, hi] (lo < ITA <= hi; "
                                 "null for open), e.g. [80, null]")
            ita = (_opt_number(ita[0], f"{what}.ita[0]"), _opt_number(ita[1], f"{what}.ita[1]"))
        race_set = None
        if rule.get("race") is not None:
            race_list = [rule["race"]] if isinstance(rule["race"], str) else list(rule["race"])
            bad = [r for r in race_list if _normalise_race(str(r)) not in races]
            if bad:
                raise ValueError(f"{what}.race: unknown race(s) {bad}; the configured sources "
                                 f"know {list(races)}")
            race_set = frozenset(_normalise_race(str(r)) for r in race_list)
        src_set = None
        if rule.get("sources") is not None:
            src_list = ([rule["sources"]] if isinstance(rule["sources"], str)
                        else [str(s) for s in rule["sources"]])
            bad = [s for s in src_list if s not in source_names]
            if bad:
                raise ValueError(f"{what}.sources: unknown source(s) {bad}; configured "
                                 f"sources are {list(source_names)}")
            src_set = frozenset(src_list)
        rules.append(SkinRule(str(name), ita, race_set, src_set))
    return rules


def _skin_of(r: FaceRecord, rules: Sequence[SkinRule]) -> str | None:
    hits = [rule.name for rule in rules if rule.matches(r)]
    if len(hits) > 1:
        raise ValueError(f"skin_groups overlap: face {r.source}:{r.key} matches {hits}; "
                         "make the groups' conditions disjoint")
    return hits[0] if hits else None


# --------------------------------------------------------------------------------------------
# Crop geometry and image loading
# --------------------------------------------------------------------------------------------


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def crop_box(box: tuple[float, float, float, float], margin: float
             ) -> tuple[int, int, int, int]:
    """The square crop ``(left, top, right, bottom)`` of a face box with ``margin``.

    Side = max(width, height) * (1 + margin), centred on the box (pixel coordinates, right
    and bottom exclusive). E.g. a 100x80 box at (50, 60) with margin 0.4 gives a 140x140
    crop centred at (100, 100): (30, 30, 170, 170).
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    s = max(1, _round(side))
    left = _round((x0 + x1) / 2.0 - s / 2.0)
    top = _round((y0 + y1) / 2.0 - s / 2.0)
    return left, top, left + s, top + s


def load_face_image(path: str | Path, box: tuple[float, float, float, float] | None, *,
                    size: int, margin: float) -> np.ndarray:
    """The face of ``path`` as uint8 (size, size, 3) RGB: :func:`crop_box` of ``box`` (black
    outside the image), or the centre square of the whole image when ``box`` is None."""
    from PIL import Image  # lazy: only needed when images are read

    with Image.open(path) as im:
        img = im.convert("RGB")
    if box is None:
        w, h = img.size
        side = min(w, h)
        region = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                  (h - side) // 2 + side)
    else:
        region = crop_box(box, margin)
    face = img.crop(region)
    if face.size != (size, size):
        face = face.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(face, dtype=np.uint8)


def _cache_key(records: Sequence[FaceRecord], size: int, margin: float) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, size, margin]).encode())
    for r in records:
        st = r.path.stat()
        h.update(json.dumps([str(r.path), st.st_size, st.st_mtime_ns, r.box]).encode())
    return h.hexdigest()[:24]


def _load_images(records: Sequence[FaceRecord], *, size: int, margin: float, workers: int,
                 cache_dir: Path | None) -> np.ndarray:
    if not records:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"faces-{_cache_key(records, size, margin)}.npy"
        if cache_file.is_file():
            try:
                arr = np.load(cache_file)
                if arr.shape == (len(records), size, size, 3) and arr.dtype == np.uint8:
                    return arr
            except (OSError, ValueError):
                pass
    out = np.empty((len(records), size, size, 3), dtype=np.uint8)
    failures: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load_face_image(records[i].path, records[i].box, size=size, margin=margin)
        except Exception as exc:  # PIL raises many types for bad files
            failures.append(f"{records[i].path} ({type(exc).__name__}: {exc})")

    if workers > 1 and len(records) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(len(records))))
    else:
        for i in range(len(records)):
            work(i)
    if failures:
        raise ValueError(f"{len(failures)} face image(s) could not be read, e.g. "
                         f"{sorted(failures)[:5]}; remove or replace them")
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp.npy")
            np.save(tmp, out)
            os.replace(tmp, cache_file)
        except OSError as exc:
            logger.warning("faces: could not write the image cache %s (%s)", cache_file, exc)
    return out


# --------------------------------------------------------------------------------------------
# Selection: eligible faces, groups, train/test draws
# --------------------------------------------------------------------------------------------


def _sizes(what: str, value: Any, group_names: Sequence[str], *, allow_none: bool
           ) -> int | float | dict[str, int] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, Mapping):
        out: dict[str, int] = {}
        for k, v in value.items():
            if str(k) not in group_names:
                shown = list(group_names) if len(group_names) <= 20 else (
                    list(group_names[:20]) + ["..."])
                raise ValueError(f"{what}.{k}: unknown group; valid groups are {shown}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{what}.{k}={v!r}: expected an int >= 0")
            out[str(k)] = v
        return out
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}={value!r}: expected an int (total), a fraction in (0, 1], "
                         "a mapping group -> int" + (" or null (all)" if allow_none else ""))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}={value}: expected >= 0")
        return value
    if not 0 < value <= 1:
        raise ValueError(f"{what}={value!r}: expected a fraction in (0, 1]")
    return float(value)


def _shares(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class _Draw:
    """Seeded draws without replacement from the eligible faces (in one random order)."""

    def __init__(self, split: Sequence[str | None], group: np.ndarray,
                 attrs: Mapping[str, Sequence[str | None]], seed: int):
        rng = data_generator(seed, "faces_split")
        self.order = [int(i) for i in rng.permutation(len(split))]
        self.split = split
        self.attrs = attrs
        self.taken = np.zeros(len(split), dtype=bool)
        self.by_group: dict[int, list[int]] = {}
        for i in self.order:
            self.by_group.setdefault(int(group[i]), []).append(i)

    def pool(self, split: str, group: int | None = None) -> list[int]:
        members = self.order if group is None else self.by_group.get(group, [])
        return [i for i in members if not self.taken[i] and self.split[i] in (split, None)]

    def take(self, n: int, split: str, what: str, *, group: int | None = None,
             balance: str | None = None, values: Sequence[str] = ()) -> list[int]:
        pool = self.pool(split, group)
        if balance is None:
            if n > len(pool):
                raise ValueError(f"{what}: {n} {split} faces requested but only {len(pool)} "
                                 "eligible faces are left")
            chosen = pool[:n]
        else:
            chosen = []
            for value, share in zip(values, _shares(n, len(values)), strict=True):
                members = [i for i in pool if self.attrs[balance][i] == value]
                if share > len(members):
                    raise ValueError(
                        f"{what}: balancing {n} {split} faces by {balance} needs {share} "
                        f"{value!r} faces but only {len(members)} are left")
                chosen += members[:share]
        self.taken[chosen] = True
        return sorted(chosen)


def _select(
    records: Sequence[FaceRecord],
    values: Mapping[str, list[str | None]],
    *,
    label: str,
    group_attrs: Sequence[str],
    group_names: Sequence[str],
    train_sizes: Any,
    test_sizes: Any,
    balance: Mapping[str, str],
    attr_values: Mapping[str, Sequence[str]],
    seed: int,
) -> tuple[list[int], list[int], Counter]:
    """Indices of the training and test faces, and why the others were not eligible."""
    needed = [label, *[a for a in group_attrs if a != label]]
    dropped: Counter = Counter()
    eligible: list[int] = []
    for i in range(len(records)):
        missing = [a for a in needed if values[a][i] is None]
        if missing:
            dropped[f"no {missing[0]}"] += 1
        else:
            eligible.append(i)
    index = {name: k for k, name in enumerate(group_names)}
    group = np.asarray([index["/".join(str(values[a][i]) for a in group_attrs)]
                        for i in eligible], dtype=np.int64)
    split = [records[i].split for i in eligible]
    draw = _Draw(split, group, {a: [values[a][i] for i in eligible] for a in ATTRIBUTES}, seed)

    def run(sizes: Any, which: str) -> list[int]:
        if sizes is None:
            return draw.take(len(draw.pool(which)), which, f"{which}_sizes")
        if isinstance(sizes, Mapping):
            chosen: list[int] = []
            for name, n in sizes.items():
                bal = balance.get(name)
                chosen += draw.take(n, which, f"{which}_sizes.{name}", group=index[name],
                                    balance=bal, values=attr_values[bal] if bal else ())
            return sorted(chosen)
        if isinstance(sizes, float):
            total = sum(1 for s in split if s in (which, None))
            return draw.take(_round(sizes * total), which, f"{which}_sizes={sizes}")
        return draw.take(int(sizes), which, f"{which}_sizes={sizes}")

    test = run(test_sizes, "test")
    train = run(train_sizes, "train")
    return [eligible[i] for i in train], [eligible[i] for i in test], dropped


# --------------------------------------------------------------------------------------------
# The registered dataset
# --------------------------------------------------------------------------------------------


@register_dataset("faces")
def build_faces(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    sources: Any = ("utkface",),
    label: str = "gender",
    groups: Sequence[str] = ("skin",),
    skin_groups: Any = None,
    age_bins: Sequence[int] = (0, 20, 30, 40, 50, 60),
    train_sizes: Any = None,
    test_sizes: Any = 0.2,
    balance: Any = None,
    image_size: int = 80,
    crop_size: int = 64,
    margin: float = 0.4,
    augment: Any = True,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> DatasetSplits:
    """Faces from ``sources``, labelled by ``label``, grouped by the intersection of ``groups``.

    Args:
        sources: Format names or mappings ``{format, name, path, ...}`` (see the module doc);
            ``path`` is relative to ``data_dir`` unless absolute.
        label: The class: one of ``age`` (bins of ``age_bins``), ``gender``, ``skin``,
            ``race``, ``source``.
        groups: Attributes whose intersection is the group, e.g. ``[skin]`` or
            ``[age, gender, skin]``; names join the values with ``/`` (``20-29/female/tan``).
            Every combination is a group, even one without faces.
        skin_groups: ``"ita6"`` or a mapping name -> ``{ita: [lo, hi], race: [...],
            sources: [...]}`` (see :func:`parse_skin_groups`); required when ``skin`` is used.
        age_bins: Lower edges of the age bins in years.
        train_sizes / test_sizes: A mapping group -> count (exact), an int (total, drawn at
            random from all eligible faces), a fraction of the eligible faces, or for
            ``train_sizes`` null: every eligible face not drawn for testing. The test split is
            drawn first; sources with an official split (FairFace) keep it.
        balance: ``{group: attribute}`` (or one attribute for every group of a mapping):
            that group's counts are split equally over the attribute's values, e.g. the
            paper's 500 dark-skinned faces balanced by gender.
        image_size, crop_size, margin: Stored image side, model input side, crop margin.
        augment: Training augmentation (``true``, ``false`` or ``{rotation, crop, flip}``).
        cache / cache_dir: Keep the decoded images (``<cache_dir>/faces-<hash>.npy``;
            default ``<default data dir>/cache/faces``) so later runs skip decoding.
        workers: Threads decoding images (default: up to 8).
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    seed = check_seed(seed)
    specs = _parse_sources(sources, root)
    check_one_of("label", label, ATTRIBUTES)
    if isinstance(groups, str):
        groups = [groups]
    groups = list(groups)
    if not groups:
        raise ValueError("groups=[]: expected at least one attribute, e.g. [skin]")
    for i, g in enumerate(groups):
        check_one_of(f"groups[{i}]", g, ATTRIBUTES)
    if len(set(groups)) != len(groups):
        raise ValueError(f"groups={groups}: attributes must be unique")
    edges = _check_age_bins(age_bins)
    for what, v, lo in (("image_size", image_size, 8), ("crop_size", crop_size, 8)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{what}={v!r}: expected an int >= {lo}")
    if crop_size > image_size:
        raise ValueError(f"crop_size={crop_size}: expected <= image_size={image_size}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 5:
        raise ValueError(f"margin={margin!r}: expected a number in [0, 5] (0.4: 40%)")
    augmentation = Augmentation.from_option(augment)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: expected an int >= 1")
    used = {label, *groups}
    races = _races_of(s.format for s in specs)
    rules: list[SkinRule] = []
    if "skin" in used:
        if skin_groups is None:
            raise ValueError("skin_groups=None: 'skin' is used as label or group, so say how "
                             "skin-colour groups are defined: 'ita6' or a mapping, e.g. "
                             "{light: {ita: [80, null]}, dark: {race: [black]}}")
        rules = parse_skin_groups(skin_groups, source_names=[s.name for s in specs],
                                  races=races)
    attr_values: dict[str, list[str]] = {
        "age": age_bin_names(edges),
        "gender": list(GENDERS),
        "skin": [r.name for r in rules],
        "race": races,
        "source": [s.name for s in specs],
    }
    for attr in used:
        if not attr_values[attr]:
            raise ValueError(f"{attr!r} is used as label or group but no configured source "
                             f"has it (sources: {[s.format for s in specs]})")
    group_names = ["/".join(c) for c in itertools.product(*(attr_values[a] for a in groups))]
    test_sizes = _sizes("test_sizes", test_sizes, group_names, allow_none=False)
    train_sizes = _sizes("train_sizes", train_sizes, group_names, allow_none=True)
    counted = {name for sizes in (train_sizes, test_sizes) if isinstance(sizes, Mapping)
               for name in sizes}
    if isinstance(balance, str):
        balance = {name: balance for name in counted} if counted else {"*": balance}
    if balance is not None and not isinstance(balance, Mapping):
        raise ValueError(f"balance={balance!r}: expected an attribute name or a mapping "
                         "group -> attribute")
    balance = dict(balance or {})
    for name, attr in balance.items():
        if name not in counted:
            raise ValueError(f"balance.{name}: balancing needs that group's counts in "
                             "train_sizes or test_sizes (a mapping group -> n)")
        check_one_of(f"balance.{name}", attr, [a for a in ATTRIBUTES if attr_values[a]])

    # Read every source.
    records: list[FaceRecord] = []
    reports: list[ScanReport] = []
    for spec in specs:
        recs, report = scan_source(spec)
        records += recs
        reports.append(report)
        if report.total_skipped:
            warnings.warn(MalformedFacesWarning("faces: " + report.summary()), stacklevel=2)
        logger.info("faces: %s", report.summary())

    # Attributes of every face.
    values: dict[str, list[str | None]] = {a: [] for a in ATTRIBUTES}
    for r in records:
        b = _age_bin(r.age, edges)
        values["age"].append(None if b is None else attr_values["age"][b])
        values["gender"].append(r.gender)
        values["skin"].append(_skin_of(r, rules) if rules else None)
        values["race"].append(r.race)
        values["source"].append(r.source)
    train_idx, test_idx, not_eligible = _select(
        records, values, label=label, group_attrs=groups, group_names=group_names,
        train_sizes=train_sizes, test_sizes=test_sizes, balance=balance,
        attr_values=attr_values, seed=int(seed))

    classes = attr_values[label]
    gindex = {n: k for k, n in enumerate(group_names)}
    info = {
        "sources": [rep.to_dict() for rep in reports],
        "faces_read": len(records),
        "not_eligible": dict(sorted(not_eligible.items())),
        "label": label,
        "groups": groups,
        "margin": margin,
        "image_size": image_size,
        "crop_size": crop_size,
    }

    def make(indices: list[int], split: str) -> ImageGroupedDataset:
        recs = [records[i] for i in indices]
        images = _load_images(
            recs, size=image_size, margin=float(margin), workers=workers,
            cache_dir=None if not cache else (Path(cache_dir).expanduser() if cache_dir
                                              else default_data_dir() / "cache" / "faces"))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([classes.index(values[label][i]) for i in indices], dtype=torch.long)
        g = torch.tensor([gindex["/".join(str(values[a][i]) for a in groups)]
                          for i in indices], dtype=torch.long)
        return ImageGroupedDataset(
            x, y, g, group_names=group_names, num_classes=len(classes), class_names=classes,
            crop_size=crop_size, augmentation=augmentation, name=f"faces/{split}",
            info=info)

    train, test = make(train_idx, "train"), make(test_idx, "test")
    logger.info("faces: %d train / %d test faces; train groups %s", len(train), len(test),
                train.group_sizes())
    return DatasetSplits(train, test)
