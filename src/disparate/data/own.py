"""Your own data: a folder of images per class, or a table of features, label and group.

``image-folder`` (torchvision's ImageFolder layout)::

    <data_dir>/<class name>/<image>            one folder per class (any image Pillow reads)
    <data_dir>/train/<class>/..., test/<class>/...   or an official split

Images are resized to ``size`` x ``size`` (RGB, or grey with ``channels=1``) and normalised
per channel with ``mean``/``std`` (default ImageNet's). Groups are the classes unless
``groups_csv`` maps each image to a group: a CSV with columns ``file_column`` (the path
relative to ``data_dir``, e.g. ``cat/001.png``, or ``train/cat/001.png`` with a split) and
``group_column``; an image the CSV does not name is an error.

``table``: a CSV (or Parquet, with the optional ``pandas``/``pyarrow``) with a label
column, a group column and numeric feature columns (default: every other column). Labels
and groups may be strings or integers; class and group names are their sorted values.
Features are standardised with the training split's mean and std. ``data_dir`` is the
file itself or the folder holding ``file``; ``test_file`` gives an official test split.

Without an official split, ``test_fraction`` of each class goes to the test set, drawn
with ``seed``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disparate.data.grouped import DatasetNotFoundError, DatasetSplits, GroupedDataset
from disparate.data.images import IMAGENET_MEAN, IMAGENET_STD, ImageGroupedDataset
from disparate.data.registry import register_dataset
from disparate.randomness import data_generator

__all__ = ["IMAGE_EXTENSIONS", "build_image_folder", "build_table"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
ERR_NO_DATA_DIR = "data_dir is required for dataset {name!r}: pass --data-dir DIR"
ERR_MISSING = "{name}: {path} does not exist; expected {what}"


def _root(name: str, data_dir: str | Path | None, what: str) -> Path:
    if data_dir is None:
        raise DatasetNotFoundError(ERR_NO_DATA_DIR.format(name=name))
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(ERR_MISSING.format(name=name, path=root, what=what))
    return root


def _check_fraction(test_fraction: float) -> float:
    if isinstance(test_fraction, bool) or not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction={test_fraction!r}: expected 0 < test_fraction < 1")
    return float(test_fraction)


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test examples: round(test_fraction * n_c) of each class c."""
    rng = data_generator(seed, "data_split")
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[rng.permutation(idx)[: int(round(test_fraction * len(idx)))]] = True
    return test


def _natural(name: str) -> tuple[int, float | str]:
    """Sort key: numbers as numbers, before text."""
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Integer codes and names (the sorted distinct values, numbers as numbers)."""
    text = [str(v) for v in values]
    names = sorted(set(text), key=_natural)
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[t] for t in text], dtype=np.int64), names


# ------------------------------------------------------------------------------ image folder


def _image_files(directory: Path) -> dict[str, list[Path]]:
    classes = sorted(d for d in directory.iterdir() if d.is_dir())
    return {d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            for d in classes}


def _read_groups_csv(path: Path, file_column: str, group_column: str) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (file_column, group_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"groups_csv={str(path)!r}: no column(s) {missing}; its columns "
                             f"are {reader.fieldnames}")
        return {Path(row[file_column]).as_posix(): row[group_column] for row in reader}


@register_dataset("image-folder")
def build_image_folder(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    size: int = 32,
    channels: int = 3,
    groups_csv: str | None = None,
    file_column: str = "file",
    group_column: str = "group",
    test_fraction: float = 0.2,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DatasetSplits:
    """Images in one folder per class (ImageFolder layout), groups from an optional CSV."""
    del download  # nothing to download: the files are the user's
    from PIL import Image

    root = _root("image-folder", data_dir, "a folder with one sub-folder of images per class")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels!r}: expected 1 (grey) or 3 (RGB)")
    split_dirs = {"train": root / "train", "test": root / "test"}
    official = all(d.is_dir() for d in split_dirs.values())
    listing = ({s: _image_files(d) for s, d in split_dirs.items()} if official
               else {"all": _image_files(root)})
    class_names = sorted({c for files in listing.values() for c in files})
    if not class_names or not any(f for files in listing.values() for f in files.values()):
        raise DatasetNotFoundError(
            f"image-folder: no images under {root}; expected {root}/<class>/<image> with "
            f"extensions {', '.join(IMAGE_EXTENSIONS)}")
    mode = "RGB" if channels == 3 else "L"
    group_of = (_read_groups_csv(root / groups_csv, file_column, group_column)
                if groups_csv is not None else None)

    def read(files: dict[str, list[Path]]) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        images, labels, groups = [], [], []
        for c, paths in files.items():
            for p in paths:
                with Image.open(p) as im:
                    pixels = np.asarray(im.convert(mode).resize((size, size)), dtype=np.uint8)
                images.append(pixels.reshape(size, size, channels).transpose(2, 0, 1))
                labels.append(class_names.index(c))
                if group_of is not None:
                    key = p.relative_to(root).as_posix()
                    if key not in group_of:
                        raise ValueError(f"groups_csv={groups_csv!r} has no row for {key!r} "
                                         f"(column {file_column!r}: paths relative to {root})")
                    groups.append(group_of[key])
                else:
                    groups.append(c)
        return torch.from_numpy(np.stack(images)), np.array(labels), groups

    parts = {s: read(files) for s, files in listing.items()}
    all_groups = sorted({g for _, _, gs in parts.values() for g in gs}, key=_natural)
    norm_mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if channels == 3 else (0.5,))
    norm_std = tuple(std) if std is not None else (IMAGENET_STD if channels == 3 else (0.5,))

    def dataset(images: torch.Tensor, labels: np.ndarray, groups: list[str], split: str
                ) -> ImageGroupedDataset:
        return ImageGroupedDataset(
            images, torch.from_numpy(labels), torch.tensor([all_groups.index(g) for g in groups]),
            group_names=all_groups, num_classes=len(class_names), class_names=class_names,
            crop_size=size, mean=norm_mean, std=norm_std, name=f"image-folder/{split}",
            info={"root": str(root)})

    if official:
        return DatasetSplits(*(dataset(*parts[s], s) for s in ("train", "test")))
    images, labels, groups = parts["all"]
    test = _stratified_test_mask(labels, _check_fraction(test_fraction), seed)
    groups_arr = np.array(groups, dtype=object)
    return DatasetSplits(
        dataset(images[torch.from_numpy(~test)], labels[~test], list(groups_arr[~test]), "train"),
        dataset(images[torch.from_numpy(test)], labels[test], list(groups_arr[test]), "test"))


# ------------------------------------------------------------------------------ table


def _read_table(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as e:
            raise ImportError(f"{path}: reading Parquet needs pandas and pyarrow: pip install "
                              "'disparate[tables]'") from e
        return {str(c): frame[c].to_numpy() for c in frame.columns}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    return {c: np.array([row[c] for row in rows]) for c in columns}


def _as_number_or_text(values: np.ndarray) -> np.ndarray:
    """Whole numbers as ints (so 1.0 and "1" name the same class), else as read."""
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return values.astype(str)
    return numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else values


def _features(table: dict[str, np.ndarray], columns: list[str], path: Path) -> np.ndarray:
    out = []
    for c in columns:
        try:
            out.append(np.asarray(table[c], dtype=np.float64))
        except ValueError:
            raise ValueError(f"{path}: feature column {c!r} is not numeric (e.g. "
                             f"{table[c][0]!r}); list the numeric ones in feature_columns or "
                             "encode it") from None
    return np.stack(out, axis=1) if out else np.zeros((len(next(iter(table.values()))), 0))


@register_dataset("table")
def build_table(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    file: str = "data.csv",
    test_file: str | None = None,
    label_column: str = "label",
    group_column: str = "group",
    feature_columns: Sequence[str] | None = None,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """A CSV/Parquet table: numeric features, a label column and a group column."""
    del download
    root = _root("table", data_dir, "a CSV/Parquet file, or the folder holding data.csv")
    path = root if root.is_file() else root / file
    if not path.is_file():
        raise DatasetNotFoundError(ERR_MISSING.format(name="table", path=path,
                                                      what="a CSV or Parquet file"))
    tables = {"train": _read_table(path)}
    if test_file is not None:
        test_path = path.parent / test_file
        if not test_path.is_file():
            raise DatasetNotFoundError(ERR_MISSING.format(name="table", path=test_path,
                                                          what="the test_file"))
        tables["test"] = _read_table(test_path)
    columns = list(tables["train"])
    for c in (label_column, group_column, *(feature_columns or [])):
        if c not in columns:
            raise ValueError(f"{path}: no column {c!r}; its columns are {columns}")
    features = list(feature_columns) if feature_columns is not None else [
        c for c in columns if c not in (label_column, group_column)]
    n_train = len(tables["train"][label_column])
    joined = {c: np.concatenate([np.asarray(t[c]) for t in tables.values()])
              for c in (label_column, group_column, *features)}
    labels, class_names = _codes(_as_number_or_text(joined[label_column]))
    groups, group_names = _codes(_as_number_or_text(joined[group_column]))
    x = _features(joined, features, path)
    if test_file is not None:
        test = np.arange(len(labels)) >= n_train
    else:
        test = _stratified_test_mask(labels, _check_fraction(test_fraction), seed)
    mean, std = x[~test].mean(axis=0), x[~test].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)

    def dataset(mask: np.ndarray, split: str) -> GroupedDataset:
        return GroupedDataset(torch.from_numpy(x[mask]).float(), torch.from_numpy(labels[mask]),
                              torch.from_numpy(groups[mask]), group_names=group_names,
                              num_classes=len(class_names), class_names=class_names,
                              name=f"table/{split}")

    return DatasetSplits(dataset(~test, "train"), dataset(test, "test"))
