"""What every face source yields: :class:`FaceRecord`, the attribute vocabularies, the
scan report of a source, and the helpers that read its folders and CSV files."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from disparate.data.grouped import DatasetNotFoundError
from disparate.data.image_store import ScanReport

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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


_GENDER_WORDS = {"female": "female", "f": "female", "woman": "female",
                 "male": "male", "m": "male", "man": "male"}


class FaceScanReport(ScanReport):
    """What reading one face source found (faces kept, entries skipped by reason)."""

    unit = "faces"


class MalformedFacesWarning(UserWarning):
    """Some entries of a face dataset were skipped (malformed names or values, missing files)."""


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


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def require_dir(root: Path, fmt: str, source: str) -> None:
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"faces source {source!r} ({fmt}): folder {root} not found. Get the "
            f"{WHERE_TO_GET[fmt]} and put it there, or set the source's path (data.options."
            f"sources[*].path) or --data-dir. Face datasets are never downloaded automatically."
        )


def normalise_race(value: str) -> str:
    return re.sub(r"[\s_]+", "_", value.strip().lower())


def normalise_gender(value: str) -> str | None:
    return _GENDER_WORDS.get(value.strip().lower())


def read_csv(path: Path, required: Iterable[str]) -> tuple[list[str], list[dict[str, str]]]:
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


def float_or_none(value: str | None) -> float | None:
    text = (value or "").strip()
    if not text or text.lower() in ("nan", "none", "null", "na", "n/a"):
        return None
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(text)
    return x
