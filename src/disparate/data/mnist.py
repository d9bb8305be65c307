"""MNIST and Fashion-MNIST from the standard IDX files.

The files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``; the ``name.idx3-ubyte`` spelling is
accepted too) are looked for, in order, in

1. ``<data_dir>`` itself (a plain folder of IDX files),
2. ``<data_dir>/MNIST/raw`` (``FashionMNIST/raw``): torchvision's layout,
3. ``<data_dir>/mnist`` (``fashion-mnist``),

where ``data_dir`` defaults to :func:`default_data_dir`. With ``download=True`` and no files
found, torchvision's dataset class downloads them into ``<data_dir>/MNIST/raw``.

Inputs are float32 (N, 1, 28, 28): pixels scaled to [0, 1], then normalised with the dataset's
mean and std (MNIST: 0.1307, 0.3081 as in the PyTorch example the paper used). Groups are the
classes, named by the class names: ``"0"`` .. ``"9"`` for MNIST, ``"T-shirt/top"`` ..
``"Ankle boot"`` for Fashion-MNIST (so ``data.reduce: {"Bag": 500}`` can be written). The
train/test split is the official one (``seed`` unused).

Files of the full size (60,000 training / 10,000 test examples) are checked against the MD5
of the official MNIST files (uncompressed content, so ``.gz`` or not does not matter): MNIST
refuses other files of that size (e.g. Fashion-MNIST's, whose labels are exactly 6,000 per
class) instead of training on them under MNIST's name and normalisation, and Fashion-MNIST
refuses the MNIST files. Smaller files (subsets, test fixtures) are read as given.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from disparate.data.grouped import (
    DatasetNotFoundError,
    DatasetSplits,
    GroupedDataset,
    default_data_dir,
)
from disparate.data.idx import IdxFormatError, read_idx
from disparate.data.registry import register_dataset

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "find_mnist_files",
    "load_mnist_like",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

#: MD5 of the uncompressed official MNIST files (header included), by role.
MNIST_MD5: dict[str, str] = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}
FULL_SIZE: dict[str, int] = {"train": 60000, "test": 10000}
ERR_NOT_MNIST = (
    "{path}: not the MNIST file ({count} examples, MD5 {got} of the uncompressed content; "
    "MNIST's is {want}){hint}. Point --data-dir at the MNIST files, or choose the dataset "
    "these files are"
)
HINT_BALANCED = (
    "; its labels are exactly {per_class} per class, as in Fashion-MNIST (use "
    "data.dataset=fashion-mnist)"
)
ERR_IS_MNIST = (
    "{path}: this is the MNIST file (MD5 {got}), not {name}'s; use data.dataset=mnist or "
    "point --data-dir at the {name} files"
)

# role -> file stem; each stem is tried as "<stem>-idx?-ubyte" and "<stem>.idx?-ubyte", raw or gz.
_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images", "idx3-ubyte"),
    "train_labels": ("train-labels", "idx1-ubyte"),
    "test_images": ("t10k-images", "idx3-ubyte"),
    "test_labels": ("t10k-labels", "idx1-ubyte"),
}


@dataclass(frozen=True)
class _Spec:
    name: str
    torchvision_class: str
    mean: float
    std: float
    class_names: tuple[str, ...]


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", "MNIST", MNIST_MEAN, MNIST_STD, tuple(str(i) for i in range(10))),
    "fashion-mnist": _Spec(
        "fashion-mnist",
        "FashionMNIST",
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def _candidate_dirs(spec: _Spec, root: Path) -> list[Path]:
    dirs = [root, root / spec.torchvision_class / "raw", root / spec.name]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def _file_names(role: str) -> list[str]:
    stem, kind = _FILES[role]
    names = []
    for base in (f"{stem}-{kind}", f"{stem}.{kind}"):
        names += [base, base + ".gz"]
    return names


def _files_in(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for role in _FILES:
        for fname in _file_names(role):
            p = directory / fname
            if p.is_file():
                found[role] = p
                break
    return found


def find_mnist_files(name: str = "mnist", data_dir: str | Path | None = None) -> dict[str, Path]:
    """Paths of the four IDX files of ``name`` ("mnist" or "fashion-mnist") under ``data_dir``.

    Keys: ``train_images``, ``train_labels``, ``test_images``, ``test_labels``. Raises
    DatasetNotFoundError saying where it looked and how to get the files.
    """
    spec = _spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    partial: list[str] = []
    for d in _candidate_dirs(spec, root):
        found = _files_in(d)
        if len(found) == len(_FILES):
            return found
        if found:
            missing = [_file_names(r)[0] + "[.gz]" for r in _FILES if r not in found]
            partial.append(f"{d} has {len(found)} of 4 files, missing {', '.join(missing)}")
    looked = ", ".join(str(d) for d in _candidate_dirs(spec, root))
    detail = f" ({'; '.join(partial)})" if partial else ""
    raise DatasetNotFoundError(
        f"{spec.name}: IDX files not found; looked in {looked}{detail}. Expected "
        f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        f"t10k-labels-idx1-ubyte (optionally .gz). Pass --download to fetch them with "
        f"torchvision, or --data-dir DIR pointing at a folder that holds them."
    )


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"name={name!r}: expected one of {sorted(_SPECS)}")
    return _SPECS[name]


def _download(spec: _Spec, root: Path) -> None:
    import torchvision.datasets  # lazy: torchvision is slow to import

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    root.mkdir(parents=True, exist_ok=True)
    try:
        cls(root=str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DatasetNotFoundError(
            f"{spec.name}: download into {root / spec.torchvision_class / 'raw'} failed ({exc}). "
            f"If you are offline, pass --data-dir DIR pointing at a folder with the IDX files."
        ) from exc


def _read_split(spec: _Spec, images_path: Path, labels_path: Path, split: str) -> GroupedDataset:
    images = read_idx(images_path, expected_ndim=3, expected_dtype=np.uint8)
    labels = read_idx(labels_path, expected_ndim=1, expected_dtype=np.uint8)
    if images.shape[1:] != (28, 28):
        raise IdxFormatError(
            f"{images_path}: images have shape {images.shape[1:]}; expected (28, 28)"
        )
    if images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; expected the same number"
        )
    if labels.size and int(labels.max()) > 9:
        raise IdxFormatError(f"{labels_path}: label {int(labels.max())} found; expected 0..9")
    if labels.shape[0] == FULL_SIZE[split]:
        _check_identity(spec, f"{split}_labels", labels_path, labels)
        _check_identity(spec, f"{split}_images", images_path, images)
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    x = x.sub_(spec.mean).div_(spec.std).unsqueeze(1).contiguous()
    return GroupedDataset.from_class_labels(
        x,
        torch.from_numpy(labels.astype(np.int64)),
        num_classes=10,
        class_names=spec.class_names,
        name=f"{spec.name}/{split}",
    )


def _content_md5(array: np.ndarray) -> str:
    """MD5 of the uncompressed IDX file holding the uint8 ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return hashlib.md5(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def _check_identity(spec: _Spec, role: str, path: Path, array: np.ndarray) -> None:
    """MNIST must be MNIST's files; Fashion-MNIST must not be (full-size files only)."""
    got, want = _content_md5(array), MNIST_MD5[role]
    if spec.name == "mnist" and got != want:
        hint = ""
        if role.endswith("labels"):
            counts = np.bincount(array, minlength=10)
            if counts.min() == counts.max():
                hint = HINT_BALANCED.format(per_class=int(counts[0]))
        raise IdxFormatError(ERR_NOT_MNIST.format(path=path, count=array.shape[0], got=got,
                                                  want=want, hint=hint))
    if spec.name != "mnist" and got == want:
        raise IdxFormatError(ERR_IS_MNIST.format(path=path, got=got, name=spec.name))


def load_mnist_like(
    name: str, *, data_dir: str | Path | None = None, download: bool = False
) -> DatasetSplits:
    """Load ``"mnist"`` or ``"fashion-mnist"`` as normalised (N, 1, 28, 28) float32 splits."""
    spec = _spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    try:
        files = find_mnist_files(name, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(spec, root)
        files = find_mnist_files(name, root)
    train = _read_split(spec, files["train_images"], files["train_labels"], "train")
    test = _read_split(spec, files["test_images"], files["test_labels"], "test")
    return DatasetSplits(train, test)


@register_dataset("mnist")
def build_mnist(
    *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0
) -> DatasetSplits:
    """MNIST, official 60,000/10,000 split (``seed`` unused)."""
    del seed
    return load_mnist_like("mnist", data_dir=data_dir, download=download)


@register_dataset("fashion-mnist")
def build_fashion_mnist(
    *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0
) -> DatasetSplits:
    """Fashion-MNIST, official 60,000/10,000 split (``seed`` unused)."""
    del seed
    return load_mnist_like("fashion-mnist", data_dir=data_dir, download=download)
