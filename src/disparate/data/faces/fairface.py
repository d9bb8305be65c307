"""FairFace (``fairface``): the label CSVs of the train and val splits and their face crops."""

from __future__ import annotations

from pathlib import Path

from disparate.data.faces.records import (
    FAIRFACE_AGE_BINS,
    FAIRFACE_RACES,
    WHERE_TO_GET,
    FaceRecord,
    FaceScanReport,
    normalise_gender,
    normalise_race,
    read_csv,
    require_dir,
)
from disparate.data.grouped import DatasetNotFoundError


def scan_fairface(root: str | Path, *, source: str = "fairface"
                  ) -> tuple[list[FaceRecord], FaceScanReport]:
    """Records of FairFace from its label CSVs (train -> train split, val -> test split)."""
    root = Path(root)
    require_dir(root, "fairface", source)
    report = FaceScanReport(source, "fairface", str(root))
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
        _, rows = read_csv(csv_path, ("file", "age", "gender", "race"))
        base = csv_path.parent
        for row_no, row in enumerate(rows, start=2):
            where = f"{csv_path.name}:{row_no}"
            file = (row.get("file") or "").strip()
            age = FAIRFACE_AGE_BINS.get((row.get("age") or "").strip())
            gender = normalise_gender(row.get("gender") or "")
            race = normalise_race(row.get("race") or "")
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
