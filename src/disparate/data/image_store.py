"""The image store of the image datasets (faces, iNaturalist) and the report of a scan.

A dataset scans its source into records (an image file and, if the image is not already
cropped, a box), counting what it skipped in a :class:`ScanReport`, then asks
:func:`load_images` for the records' squares: each image's :func:`crop_box` (or its centre
square), scaled to ``size`` pixels, as uint8 (N, size, size, 3), decoded by a pool of
threads once and kept as ``<cache_dir>/<name>-<hash>.npy`` (:func:`cache_key`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = [
    "CACHE_VERSION",
    "ImageRecord",
    "ScanReport",
    "cache_key",
    "crop_box",
    "load_image",
    "load_images",
    "round_half_up",
]

logger = logging.getLogger(__name__)

#: Version of the stored squares; part of :func:`cache_key`.
CACHE_VERSION = 1


class ImageRecord(Protocol):
    """What the store needs of a record: its image file and its box (``None``: whole)."""

    @property
    def path(self) -> Path: ...

    @property
    def box(self) -> tuple[float, float, float, float] | None: ...


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
    unit: ClassVar[str] = "records"

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


def round_half_up(x: float) -> int:
    """``x`` rounded to the nearest int, halves up (``round`` rounds halves to even)."""
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
    s = max(1, round_half_up(side))
    left = round_half_up((x0 + x1) / 2.0 - s / 2.0)
    top = round_half_up((y0 + y1) / 2.0 - s / 2.0)
    return left, top, left + s, top + s


def load_image(path: str | Path, box: tuple[float, float, float, float] | None, *,
               size: int, margin: float) -> np.ndarray:
    """The image of ``path`` as uint8 (size, size, 3) RGB: :func:`crop_box` of ``box`` (black
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


def cache_key(records: Sequence[ImageRecord], size: int, margin: float) -> str:
    """Hash of what the stored squares depend on: the files (path, size, time), the boxes,
    ``size`` and ``margin``."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, size, margin]).encode())
    for r in records:
        st = r.path.stat()
        h.update(json.dumps([str(r.path), st.st_size, st.st_mtime_ns, r.box]).encode())
    return h.hexdigest()[:24]


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path)
    except (OSError, ValueError):
        return None
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


def load_images(records: Sequence[ImageRecord], *, size: int, margin: float, workers: int,
                cache_dir: Path | None, name: str, what: str = "image",
                legacy_names: Sequence[str] = ()) -> np.ndarray:
    """The squares of ``records`` as uint8 (N, size, size, 3), decoded by ``workers`` threads
    (:func:`load_image`) or read from ``<cache_dir>/<name>-<cache_key>.npy``.

    A cache written under an earlier name (``<legacy>-<cache_key>.npy``, same key) is taken
    over: renamed to the current name and used. A file that cannot be decoded raises a
    ValueError naming up to five of them (``what``: "face image", "image").
    """
    shape = (len(records), size, size, 3)
    if not records:
        return np.zeros(shape, dtype=np.uint8)
    cache_file = None
    if cache_dir is not None:
        key = cache_key(records, size, margin)
        cache_file = cache_dir / f"{name}-{key}.npy"
        arr = _read_cache(cache_file, shape)
        if arr is not None:
            return arr
        for legacy in legacy_names:
            old = cache_dir / f"{legacy}-{key}.npy"
            arr = _read_cache(old, shape)
            if arr is not None:
                try:
                    os.replace(old, cache_file)
                except OSError as exc:
                    logger.warning("%s: could not rename the image cache %s (%s)", name, old,
                                   exc)
                return arr
    out = np.empty(shape, dtype=np.uint8)
    failures: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load_image(records[i].path, records[i].box, size=size, margin=margin)
        except Exception as exc:  # PIL raises many types for bad files
            failures.append(f"{records[i].path} ({type(exc).__name__}: {exc})")

    if workers > 1 and len(records) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(len(records))))
    else:
        for i in range(len(records)):
            work(i)
    if failures:
        raise ValueError(f"{len(failures)} {what}(s) could not be read, e.g. "
                         f"{sorted(failures)[:5]}; remove or replace them")
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp.npy")
            np.save(tmp, out)
            os.replace(tmp, cache_file)
        except OSError as exc:
            logger.warning("%s: could not write the image cache %s (%s)", name, cache_file, exc)
    return out

