"""The image store: crop geometry, the cache file and its name, failures, the scan report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from disparate.data import image_store
from disparate.data.image_store import ScanReport, crop_box, load_images, round_half_up


@dataclass(frozen=True)
class _Record:
    path: Path
    box: tuple[float, float, float, float] | None = None


def _png(path: Path, value: int, size: tuple[int, int] = (12, 8)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def test_round_half_up_and_crop_box_by_hand() -> None:
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, -0.5, 2.49)] == [1, 2, 3, 0, 2]
    # 100x80 box at (50, 60), margin 0.4: side 140 centred at (100, 100)
    assert crop_box((50, 60, 150, 140), 0.4) == (30, 30, 170, 170)


def test_load_images_decodes_caches_under_the_name_and_reads_the_cache_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [_Record(_png(tmp_path / f"{v}.png", v)) for v in (10, 200)]
    out = load_images(records, size=4, margin=0.0, workers=2, cache_dir=tmp_path / "c",
                      name="birds")
    assert out.shape == (2, 4, 4, 3) and out.dtype == np.uint8
    assert out[0].min() == out[0].max() == 10 and out[1].min() == out[1].max() == 200
    key = image_store.cache_key(records, 4, 0.0)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [f"birds-{key}.npy"]

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_store, "load_image", fail)
    again = load_images(records, size=4, margin=0.0, workers=1, cache_dir=tmp_path / "c",
                        name="birds")
    assert np.array_equal(again, out)
    with pytest.raises(ValueError, match="decoded again"):  # another name: no cache
        load_images(records, size=4, margin=0.0, workers=1, cache_dir=tmp_path / "c",
                    name="fish")


def test_the_cache_key_changes_with_the_size_margin_box_and_files(tmp_path: Path) -> None:
    a = _Record(_png(tmp_path / "a.png", 1))
    key = image_store.cache_key([a], 4, 0.0)
    assert image_store.cache_key([a], 5, 0.0) != key
    assert image_store.cache_key([a], 4, 0.4) != key
    assert image_store.cache_key([_Record(a.path, (0, 0, 2, 2))], 4, 0.0) != key
    _png(a.path, 1, size=(13, 8))
    assert image_store.cache_key([a], 4, 0.0) != key


def test_an_unreadable_image_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"1 leaf image\(s\) could not be read, e.g. \[.*bad.png"):
        load_images([_Record(bad)], size=4, margin=0.0, workers=1, cache_dir=None,
                    name="leaves", what="leaf image")


def test_the_scan_report_counts_skips_with_examples() -> None:
    report = ScanReport("mine", "fmt", "/data")
    for i in range(7):
        report.skip("broken", f"f{i}")
    report.skip("missing", "g")
    report.records = 3
    assert report.total_skipped == 8 and report.examples["broken"] == [f"f{i}" for i in range(5)]
    assert report.summary().startswith(
        "mine (fmt, /data): 3 records read, 8 entries skipped: 7 broken (e.g. 'f0'")
    assert report.to_dict()["skipped"] == {"broken": 7, "missing": 1}
