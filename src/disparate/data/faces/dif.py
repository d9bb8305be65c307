"""IBM's Diversity in Faces (``dif``): a metadata CSV, one row per face, and the images
the researcher holds locally."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from disparate.data.faces.records import (
    NUMBER,
    FaceRecord,
    FaceScanReport,
    float_or_none,
    normalise_gender,
    require_dir,
)
from disparate.data.faces.utkface import landmark_box, parse_points
from disparate.data.grouped import DatasetNotFoundError

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


def _dif_record(row: Mapping[str, str], row_no: int, csv_name: str, source: str,
                image_dir: Path, listing: set[str], has_box: bool,
                report: FaceScanReport) -> FaceRecord | None:
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
            box = landmark_box(parse_points(NUMBER.findall(row["landmarks"])))
    except ValueError:
        report.skip("malformed face box or landmarks", where)
        return None
    if box is None:
        report.skip("no face box or landmarks", where)
        return None
    try:
        ita = float_or_none(row.get("ita"))
        age_years = float_or_none(row.get("age"))
    except ValueError:
        report.skip("malformed ita or age value", where)
        return None
    if age_years is not None and not 0 <= age_years <= 120:
        report.skip("age outside 0-120", where)
        return None
    gender_text = row.get("gender", "")
    gender = normalise_gender(gender_text) if gender_text else None
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
) -> tuple[list[FaceRecord], FaceScanReport]:
    """Records of Diversity in Faces from a metadata CSV and locally held images.

    ``metadata``: the CSV (relative to ``root``; default: the only ``*.csv`` in ``root``).
    ``images``: the image folder (relative to ``root``). ``columns``: role -> column name,
    overriding :data:`DIF_COLUMNS`. The face box is ``face_x, face_y, face_width,
    face_height`` or, where those are empty, the landmarks' bounding box.
    """
    root = Path(root)
    require_dir(root, "dif", source)
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
    report = FaceScanReport(source, "dif", str(root))
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
