"""UTKFace: the aligned-and-cropped chips (``utkface``) and the in-the-wild images with
their 68 landmarks (``utkface-wild``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from disparate.data.faces.records import (
    UTKFACE_GENDERS,
    UTKFACE_RACES,
    WHERE_TO_GET,
    FaceRecord,
    FaceScanReport,
    image_files,
    require_dir,
)
from disparate.data.grouped import DatasetNotFoundError

_UTK_NAME = re.compile(r"^(\d{1,3})_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?$")


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


def scan_utkface(root: str | Path, *, source: str = "utkface") -> tuple[list[FaceRecord],
                                                                          FaceScanReport]:
    """Records of UTKFace's aligned-and-cropped faces below ``root`` (any sub-folders).

    A file name that appears twice (e.g. ``UTKFace/`` and ``crop_part1/`` both unpacked)
    is read once.
    """
    root = Path(root)
    require_dir(root, "utkface", source)
    report = FaceScanReport(source, "utkface", str(root))
    records: list[FaceRecord] = []
    seen: set[str] = set()
    for path in image_files(root):
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


def parse_points(values: Sequence[str]) -> np.ndarray:
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
                      ) -> tuple[list[FaceRecord], FaceScanReport]:
    """Records of UTKFace's in-the-wild images with the box of their 68 landmarks.

    Reads every ``landmark_list*.txt`` below ``root``; each line names an image (found by
    name anywhere below ``root``) and gives its landmarks. Images without a landmark line
    cannot be cropped and are counted as skipped.
    """
    root = Path(root)
    require_dir(root, "utkface-wild", source)
    report = FaceScanReport(source, "utkface-wild", str(root))
    lists = sorted(root.rglob("landmark_list*.txt"))
    if not lists:
        raise DatasetNotFoundError(
            f"faces source {source!r} (utkface-wild): no landmark_list*.txt below {root}; "
            f"expected the {WHERE_TO_GET['utkface-wild']}"
        )
    images: dict[str, Path] = {}
    for path in image_files(root):
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
                    points = parse_points(tokens[1:])
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
