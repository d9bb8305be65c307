"""Miniature iNaturalist releases in the real layout and JSON, for tests and demos."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from disparate.data.inaturalist import SPLITS, release

__all__ = ["SYNTHETIC_COUNTS", "write_synthetic_inaturalist"]


#: Default miniature: super-category -> (train images, val images), unequal on purpose.
SYNTHETIC_COUNTS: dict[str, tuple[int, int]] = {
    "Aves": (12, 4), "Plantae": (9, 3), "Insecta": (6, 3), "Reptilia": (3, 2),
    "Actinopterygii": (2, 2), "Fungi": (1, 1),
}


def write_synthetic_inaturalist(
    root: str | Path,
    version: str = "2018",
    *,
    counts: Mapping[str, tuple[int, int]] | None = None,
    species_per_class: int = 2,
    size: tuple[int, int] = (24, 18),
    layout: str = "release",
    malformed: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a miniature release in the real layout and JSON under ``root``; return counts.

    ``layout="release"``: images under the release's folder (``train_val2018/<Super>/<id>/``
    or ``train_val_images/<Super>/<species>/``); ``"torchvision"``: under ``<version>/``
    as torchvision's download leaves them. ``counts``: super-category -> (train, val)
    images. With ``malformed``, each file also holds the entries the reader must skip: an
    image without annotation, one with two categories, an annotation of an unknown image,
    an image of an unknown category and one whose file is missing. Images are JPEGs of
    ``size`` (width, height): noise tinted per super-category.
    """
    from PIL import Image

    rel = release(version)
    root = Path(root)
    counts = dict(counts or SYNTHETIC_COUNTS)
    if layout not in ("release", "torchvision"):
        raise ValueError(f"layout={layout!r}: expected 'release' or 'torchvision'")
    if malformed and len(counts) * species_per_class < 2:
        raise ValueError("malformed=True needs at least two categories")
    rng = np.random.default_rng(seed)
    top = rel.image_folder if layout == "release" else rel.version
    categories: list[dict[str, Any]] = []
    species: dict[str, list[tuple[int, str]]] = {}
    for sup in counts:
        species[sup] = []
        for k in range(species_per_class):
            cid = len(categories)
            name = f"{sup[:4].lower()}us species{k}" if rel.version == "2017" else str(cid)
            categories.append({"id": cid, "name": name, "supercategory": sup})
            species[sup].append((cid, name))
    tint = {sup: rng.integers(40, 215, size=3) for sup in counts}
    docs: dict[str, dict[str, Any]] = {}
    image_id = 0
    w, h = size
    for split in SPLITS:
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for sup, (n_train, n_val) in counts.items():
            for i in range(n_train if split == "train" else n_val):
                cid, folder = species[sup][i % len(species[sup])]
                image_id += 1
                rel_name = f"{rel.image_folder}/{sup}/{folder}/{split}{image_id:05d}.jpg"
                pixels = np.clip(rng.normal(0, 30, size=(h, w, 3)) + tint[sup], 0, 255)
                target = root / top / sup / folder / f"{split}{image_id:05d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(target, format="JPEG")
                images.append({"id": image_id, "file_name": rel_name, "width": w,
                               "height": h, "license": 1})
                annotations.append({"id": len(annotations), "image_id": image_id,
                                    "category_id": cid})
        if malformed:
            sup0 = next(iter(counts))
            cid0, folder0 = species[sup0][0]
            extra = []
            for what in ("no annotation", "two categories", "unknown category", "missing"):
                image_id += 1
                name = f"{rel.image_folder}/{sup0}/{folder0}/{split}{image_id:05d}.jpg"
                images.append({"id": image_id, "file_name": name, "width": w, "height": h})
                if what != "missing":
                    target = root / top / sup0 / folder0 / f"{split}{image_id:05d}.jpg"
                    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(target, "JPEG")
                extra.append((what, image_id))
            for what, iid in extra:
                if what in ("two categories", "missing"):
                    annotations.append({"id": len(annotations), "image_id": iid,
                                        "category_id": cid0})
                if what == "two categories":
                    annotations.append({"id": len(annotations), "image_id": iid,
                                        "category_id": categories[-1]["id"]})
                if what == "unknown category":
                    annotations.append({"id": len(annotations), "image_id": iid,
                                        "category_id": 10_000})
            annotations.append({"id": len(annotations), "image_id": 99_999,
                                "category_id": cid0})
        docs[split] = {
            "info": {"year": int(rel.version), "version": rel.version,
                     "description": "synthetic miniature"},
            "images": images, "annotations": annotations, "categories": categories,
            "licenses": [{"id": 1, "name": "none", "url": ""}],
        }
    for split, name in (("train", rel.train_json), ("val", rel.val_json)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(docs[split]), encoding="utf-8")
    return {
        "train": {sup: n for sup, (n, _) in counts.items()},
        "val": {sup: n for sup, (_, n) in counts.items()},
        "image_folder": top,
        "malformed_per_split": 5 if malformed else 0,
    }
