"""Tiny synthetic face folders in the real on-disk formats, for tests and smoke runs.

:func:`write_synthetic_faces` writes, under one root, what ``faces`` reads from the real
datasets -- ``UTKFace/`` (aligned chips), ``UTKface_inthewild/`` (images and
``landmark_list_part1.txt``), ``fairface/`` (label CSVs and image folders) and ``DiF/``
(metadata CSV and ``images/``) -- with generated images and, on purpose, the kinds of
malformed entries the real releases contain. The images are random colour fields with a
brighter square where the face box is; nothing about them resembles a face.

    counts = write_synthetic_faces(tmp_path)          # then
    load_dataset("faces", data_dir=tmp_path, sources=["utkface"], ...)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DIF_AGES",
    "MALFORMED_UTKFACE_NAMES",
    "UTK_AGES",
    "write_synthetic_faces",
]

#: Names like those that break naive parsers in the public UTKFace release.
MALFORMED_UTKFACE_NAMES: tuple[str, ...] = (
    "61_1_20170109142408075.jpg.chip.jpg",        # race field missing
    "24_0_1_20170116220224657 .jpg.chip.jpg",     # stray space before the extension
    "55_0_0_20170116232725357jpg.chip.jpg",       # dot missing before "jpg"
    "39_3_1_20170116174525125.jpg.chip.jpg",      # gender code not 0/1
)
UTK_AGES = (5, 25, 35, 45, 55, 70)
DIF_AGES = (15.0, 24.5, 33.0, 47.0, 52.0, 66.0)
#: ITA values cycling over all six ITA categories, and over the paper's > 80 "light" group.
DIF_ITAS = (85.0, 60.0, 50.0, 30.0, 20.0, -10.0, -45.0, 90.0)


def _image(rng: np.random.Generator, h: int, w: int,
           box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    img = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        img[y0:y1, x0:x1] = np.clip(img[y0:y1, x0:x1].astype(int) + 120, 0, 255)
    return img


def _save(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="JPEG", quality=90)


def _utk_name(i: int, gender: int, race: int, chip: bool) -> str:
    age = UTK_AGES[i % len(UTK_AGES)]
    stamp = 20170109000000000 + i
    return f"{age}_{gender}_{race}_{stamp}.jpg" + (".chip.jpg" if chip else "")


def write_synthetic_faces(
    root: str | Path,
    *,
    n_utkface: int = 40,
    n_wild: int = 12,
    n_fairface: int = 28,
    n_dif: int = 48,
    size: int = 48,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the four formats under ``root``; return what a reader should find.

    Valid UTKFace face ``i`` has age ``UTK_AGES[i % 6]``, gender ``i % 2`` (0 male, 1
    female) and race ``(i // 2) % 5``, so every race has both genders. DiF face ``i``
    has ITA ``DIF_ITAS[i % 8]``, age ``DIF_AGES[i % 6]`` and gender female for even ``i``.
    Returned keys: ``utkface``, ``utkface-wild``, ``fairface``, ``dif``, each a dict with
    ``valid`` (faces a reader keeps) and ``skipped`` (reason -> count).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}

    # UTKFace, aligned and cropped: <root>/UTKFace/*.jpg.chip.jpg, plus malformed names.
    utk = root / "UTKFace"
    for i in range(n_utkface):
        _save(utk / _utk_name(i, i % 2, (i // 2) % 5, chip=True), _image(rng, size, size))
    for name in MALFORMED_UTKFACE_NAMES:
        _save(utk / name, _image(rng, size, size))
    (utk / "README.txt").write_text("not an image\n", encoding="utf-8")
    out["utkface"] = {"valid": n_utkface,
                      "skipped": {"malformed file name (expected [age]_[gender]_[race]_"
                                  "[datetime].jpg[.chip.jpg])": 3, "gender code not 0 or 1": 1}}

    # UTKFace in the wild: <root>/UTKface_inthewild/part1/*.jpg and landmark_list_part1.txt.
    wild = root / "UTKface_inthewild"
    lines = []
    big = 2 * size
    for i in range(n_wild):
        name = _utk_name(i, i % 2, (i // 2) % 5, chip=False)
        x0, y0 = 10 + (i % 5) * 3, 12 + (i % 3) * 4
        box = (x0, y0, x0 + size // 2, y0 + size // 2 + 4)
        _save(wild / "part1" / name, _image(rng, big, big, box))
        xs = np.linspace(box[0], box[2], 68)
        ys = np.concatenate([np.linspace(box[1], box[3], 34), np.linspace(box[3], box[1], 34)])
        coords = " ".join(f"{int(round(x))} {int(round(y))}" for x, y in zip(xs, ys,
                                                                                strict=True))
        lines.append(f"{name} {coords} ")
    lines.append("63_0_0_20170109999999999.jpg 1 2 3 4 5 six")          # malformed numbers
    lines.append("63_0_20170109999999998.jpg 1 2 3 4 5 6")              # race field missing
    lines.append("20_1_0_20170109999999997.jpg 1 2 30 40 5 6")          # image not on disk
    _save(wild / "part1" / "21_1_1_20170109999999996.jpg", _image(rng, big, big))  # no lms
    (wild / "landmark_list_part1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out["utkface-wild"] = {"valid": n_wild, "skipped": {
        "malformed landmark line": 1,
        "malformed file name (expected [age]_[gender]_[race]_[datetime].jpg[.chip.jpg])": 1,
        "image not found": 1, "no landmarks (cannot crop)": 1}}

    # FairFace: label CSVs and train/ val/ folders of face crops.
    ff = root / "fairface"
    races = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
             "Middle Eastern"]
    bins = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
    valid = {"train": 0, "test": 0}
    for split, csv_name, n in (("train", "fairface_label_train.csv", n_fairface),
                               ("val", "fairface_label_val.csv", max(1, n_fairface // 2))):
        rows = []
        for i in range(n):
            file = f"{split}/{i + 1}.jpg"
            _save(ff / file, _image(rng, size, size))
            rows.append([file, bins[i % len(bins)], "Female" if i % 2 else "Male",
                         races[i % len(races)], "True"])
        valid["train" if split == "train" else "test"] = n
        rows.append([f"{split}/{n + 1}.jpg", "20-29", "Male", "White", "True"])  # no image
        _save(ff / f"{split}/{n + 2}.jpg", _image(rng, size, size))
        rows.append([f"{split}/{n + 2}.jpg", "unknown", "Male", "White", "False"])  # bad bin
        with (ff / csv_name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "age", "gender", "race", "service_test"])
            writer.writerows(rows)
    out["fairface"] = {"valid": valid["train"] + valid["test"], "train": valid["train"],
                       "test": valid["test"],
                       "skipped": {"image not found": 2, "unknown age bin": 2}}

    # Diversity in Faces: metadata CSV (URL, box, landmarks, ITA, age, gender) + images/.
    dif = root / "DiF"
    rows = []
    for i in range(n_dif):
        fname = f"{1000 + i}_{i:04x}.jpg"
        x, y, w, h = 8 + i % 7, 10 + i % 5, size // 2, size // 2 + 2
        _save(dif / "images" / fname, _image(rng, big, big, (x, y, x + w, y + h)))
        ita = DIF_ITAS[i % len(DIF_ITAS)]
        rows.append({"url": f"http://farm{i % 9}.staticflickr.com/{i}/{fname}",
                     "face_x": x, "face_y": y, "face_width": w, "face_height": h,
                     "landmarks": "", "ita": ita, "skin_hue": 20.0,
                     "age": DIF_AGES[i % len(DIF_AGES)],
                     "gender": "Female" if i % 2 == 0 else "Male"})
    # Landmarks instead of a box (kept), then the malformed rows (skipped).
    fname = "lm_only.jpg"
    _save(dif / "images" / fname, _image(rng, big, big))
    rows.append({"url": f"http://example.org/{fname}", "landmarks": "[[10, 12], [30, 40]]",
                 "ita": 85.0, "age": 30, "gender": "unknown"})
    rows.append({"url": "http://example.org/missing.jpg", "face_x": 1, "face_y": 1,
                 "face_width": 5, "face_height": 5, "ita": 10, "age": 30, "gender": "Male"})
    _save(dif / "images" / "nobox.jpg", _image(rng, big, big))
    rows.append({"url": "http://example.org/nobox.jpg", "ita": 10, "age": 30, "gender": "Male"})
    _save(dif / "images" / "badita.jpg", _image(rng, big, big))
    rows.append({"url": "http://example.org/badita.jpg", "face_x": 1, "face_y": 1,
                 "face_width": 5, "face_height": 5, "ita": "n.a.", "age": 30,
                 "gender": "Male"})
    columns = ["url", "face_x", "face_y", "face_width", "face_height", "landmarks", "ita",
               "skin_hue", "age", "gender"]
    with (dif / "DiF_metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    out["dif"] = {"valid": n_dif + 1, "skipped": {
        "image not found": 1, "no face box or landmarks": 1, "malformed ita or age value": 1}}
    return out
