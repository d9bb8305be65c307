"""iNaturalist 2017 / 2018: the released layouts and COCO-style JSON (generated miniatures
with malformed entries), super-category labels, class selection, the proportional subset,
torchvision's download layout and download call, and the errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from disparate.data import DatasetNotFoundError, ImageGroupedDataset, dataset_options, load_dataset
from disparate.data.inaturalist import (
    PAPER_CLASSES,
    RELEASES,
    MalformedINaturalistWarning,
    proportional_counts,
    read_annotations,
    release_subset,
    select_classes,
)
from disparate.synthetic.inaturalist import SYNTHETIC_COUNTS, write_synthetic_inaturalist

SMALL = {"image_size": 12, "crop_size": 10, "cache": False, "workers": 1}
SKIPPED = {"image without annotation", "image with several categories", "unknown category",
           "image not found", "annotation of an unknown image"}


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Miniatures: 2017 and 2018 in the released layout, 2018 as torchvision unpacks it."""
    out = {}
    for key, version, layout in (("2017", "2017", "release"), ("2018", "2018", "release"),
                                 ("2018-tv", "2018", "torchvision")):
        root = tmp_path_factory.mktemp(f"inat{key}")
        out[key] = root, write_synthetic_inaturalist(root / "inaturalist", version,
                                                     layout=layout, size=(16, 12))
    return out


def load(root: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedINaturalistWarning)
        return load_dataset("inaturalist", data_dir=root, seed=options.pop("seed", 0),
                            **{**SMALL, **options})


@pytest.mark.parametrize("key", ["2017", "2018"])
def test_released_layout_and_json_are_read_with_malformed_entries_skipped(releases, key):
    root, counts = releases[key]
    rel = RELEASES[key]
    base = root / "inaturalist"
    raw = json.loads((base / rel.train_json).read_text())
    assert {"images", "annotations", "categories"} <= set(raw)
    assert all(im["file_name"].startswith(rel.image_folder + "/") for im in raw["images"])
    assert all("supercategory" in c for c in raw["categories"])
    for split, name in (("train", rel.train_json), ("val", rel.val_json)):
        records, report = read_annotations(base / name, split=split,
                                           image_dir=base / rel.image_folder,
                                           image_folder=rel.image_folder)
        found: dict[str, int] = {}
        for r in records:
            found[r.supercategory] = found.get(r.supercategory, 0) + 1
            assert r.path.is_file() and r.split == split and r.box is None
        assert found == counts[split]
        assert set(report.skipped) == SKIPPED and report.total_skipped == 5
        assert report.records == len(records)
    if key == "2017":  # species folders by name (with spaces), not by id
        assert " " in records[0].key.split("/")[2]
    else:
        assert records[0].key.split("/")[2].isdigit()


@pytest.mark.parametrize("key", ["2017", "2018", "2018-tv"])
def test_all_classes_all_images_labels_are_super_categories(releases, key):
    root, counts = releases[key]
    version = key[:4]
    with pytest.warns(MalformedINaturalistWarning, match=r"5 entries skipped: .*image not found"):
        train, test = load_dataset("inaturalist", data_dir=root, version=version, classes=None,
                                   subset_size=None, **SMALL)
    assert isinstance(train, ImageGroupedDataset)
    assert train.group_names == train.class_names == list(counts["train"])  # largest first
    assert train.group_sizes() == counts["train"] and test.group_sizes() == counts["val"]
    assert torch.equal(train.labels, train.groups)  # the group is the class
    assert train.inputs.dtype == torch.uint8 and train.image_shape == (3, 12, 12)
    assert train.input_shape == (3, 10, 10) and test[0][0].shape == (3, 10, 10)
    info = train.info
    assert info["version"] == version and info["dropped_classes"] == []
    assert Path(info["images"]).name == (version if key.endswith("tv") else
                                         RELEASES[version].image_folder)
    assert [s["skipped_total"] for s in info["sources"]] == [5, 5]


def test_classes_subset_and_test_size_are_proportional_and_seeded(releases):
    root, counts = releases["2018"]
    train, test = load(root, classes=["Reptilia", "Aves", "Insecta"], subset_size=10,
                       test_size=5)
    assert train.class_names == ["Reptilia", "Aves", "Insecta"]  # the given order
    # floor(10 * n_c / 21) with n = 3 + 12 + 6 training images; val 2 + 4 + 3
    assert train.group_sizes() == {"Reptilia": 1, "Aves": 5, "Insecta": 2}
    assert test.group_sizes() == {"Reptilia": 1, "Aves": 2, "Insecta": 1}
    assert train.info["dropped_classes"] == ["Plantae", "Actinopterygii", "Fungi"]
    assert train.info["available"]["train"] == {"Reptilia": 3, "Aves": 12, "Insecta": 6}
    again, _ = load(root, classes=["Reptilia", "Aves", "Insecta"], subset_size=10,
                    test_size=5)
    other, _ = load(root, classes=["Reptilia", "Aves", "Insecta"], subset_size=10,
                    test_size=5, seed=1)
    assert torch.equal(again.inputs, train.inputs)
    assert not torch.equal(other.inputs, train.inputs)
    top2, _ = load(root, classes=2, subset_size=None)
    assert top2.class_names == ["Aves", "Plantae"] and top2.group_sizes()["Plantae"] == 9


def test_the_papers_classes_and_subset_sizes_from_the_2018_release() -> None:
    rel = RELEASES["2018"]
    assert len(rel.train_images) == 14 and len(RELEASES["2017"].train_images) == 13
    assert sum(rel.train_images.values()) == 437_513 and sum(rel.val_images.values()) == 24_426
    # The paper's 8 of 14 are the largest: the rarest six are dropped.
    assert tuple(select_classes(rel.train_images, 8)) == PAPER_CLASSES
    subset = release_subset("2018")
    assert subset["Aves"] == 20_574 and subset["Actinopterygii"] == 1_119  # Section 4.3
    assert sum(subset.values()) == 59_996
    assert sum(rel.val_images[c] for c in PAPER_CLASSES) == 22_497
    # In 2017 the eight largest differ (Fungi in, Actinopterygii out).
    assert "Actinopterygii" not in select_classes(RELEASES["2017"].train_images, 8)
    assert proportional_counts({"a": 3, "b": 1}, 3) == {"a": 2, "b": 0}
    with pytest.raises(ValueError, match="5 images requested but the classes hold only 4"):
        proportional_counts({"a": 3, "b": 1}, 5)


def test_supercategory_from_the_folder_and_a_replacement_category_list(tmp_path):
    base = tmp_path / "inaturalist"
    write_synthetic_inaturalist(base, "2018", counts={"Aves": (3, 1), "Mammalia": (2, 1)},
                                malformed=False, size=(8, 8))
    categories = json.loads((base / "train2018.json").read_text())["categories"]
    for name in ("train2018.json", "val2018.json"):  # obfuscated: no supercategory
        doc = json.loads((base / name).read_text())
        doc["categories"] = [{"id": c["id"], "name": "x"} for c in doc["categories"]]
        (base / name).write_text(json.dumps(doc))
    train, _ = load(tmp_path, classes=None, subset_size=None)
    assert train.group_sizes() == {"Aves": 3, "Mammalia": 2}
    assert train.info["sources"][0]["notes"] == {
        "supercategory taken from the image folder": 5}
    renamed = [{**c, "supercategory": "Birds" if c["supercategory"] == "Aves" else "Mammals"}
               for c in categories]
    (base / "categories.json").write_text(json.dumps(renamed))
    train, _ = load(tmp_path, classes=None, subset_size=None, categories="categories.json")
    assert train.class_names == ["Birds", "Mammals"]
    assert train.info["sources"][0]["notes"] == {
        "JSON supercategory differs from the image folder (JSON used)": 5}


def test_errors_name_the_problem(releases, tmp_path):
    root, _ = releases["2018"]
    with pytest.raises(DatasetNotFoundError, match=r"image folder not found .*train_val2018"):
        load(tmp_path)
    (tmp_path / "inaturalist" / "train_val2018").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"train annotations 'train2018.json' not "
                                                   r"found.*train2018.json.tar.gz"):
        load(tmp_path)
    with pytest.raises(ValueError, match=r"unknown super-category \['Fish'\]; the annotations "
                                         r"have \(training images\): Aves \(12\), Plantae"):
        load(root, classes=["Aves", "Fish"])
    with pytest.raises(ValueError, match="30 images requested but the classes hold only 21"):
        load(root, classes=["Reptilia", "Aves", "Insecta"], subset_size=30)
    with pytest.raises(ValueError, match=r"version='2019': expected one of \['2017', '2018'\]"):
        load(root, version="2019")
    with pytest.raises(ValueError, match="crop_size=20: expected <= image_size=12"):
        load(root, crop_size=20)
    with pytest.raises(ValueError, match=r"classes=9: expected 1 to 6"):
        load(root, classes=9)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sources'\]"):
        load_dataset("inaturalist", data_dir=root, sources=["x"])
    assert dataset_options("inaturalist")["classes"] == PAPER_CLASSES
    assert dataset_options("inaturalist")["subset_size"] == 60_000


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets
    import torchvision.datasets.utils

    calls: list[tuple] = []
    base = tmp_path / "inaturalist"

    def fetch_annotations(url, download_root, md5=None, **kwargs):
        calls.append(("annotations", url, md5))
        if url.endswith("val2018.json.tar.gz"):  # the miniature stands for what arrives
            write_synthetic_inaturalist(Path(download_root), "2018", layout="torchvision",
                                        malformed=False, size=(8, 8))
            import shutil
            shutil.rmtree(Path(download_root) / "2018")

    class FakeINaturalist:
        def __init__(self, root, version, target_type="full", download=False, **kwargs):
            calls.append(("images", Path(root), version, target_type, download))
            write_synthetic_inaturalist(Path(root) / "unused", version, layout="torchvision",
                                        malformed=False, size=(8, 8))
            (Path(root) / "unused" / version).rename(Path(root) / version)

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive",
                        fetch_annotations)
    monkeypatch.setattr(torchvision.datasets, "INaturalist", FakeINaturalist)
    with pytest.raises(DatasetNotFoundError, match="data.download=true"):
        load(tmp_path)
    train, _ = load(tmp_path, download=True, classes=None, subset_size=None)
    urls = [c[1] for c in calls if c[0] == "annotations"]
    assert urls == [u for u, _ in RELEASES["2018"].annotation_archives]
    assert [c[2] for c in calls if c[0] == "annotations"][0] == "bfa29d89d629cbf04d826a720c0a68b0"
    assert ("images", base, "2018", "super", True) in calls
    assert train.group_sizes() == {k: n for k, (n, _) in SYNTHETIC_COUNTS.items()}
    calls.clear()
    load(tmp_path, download=True, classes=None, subset_size=None)  # all there: no fetch
    assert calls == []


def test_images_are_cached_under_their_own_name_and_an_old_faces_cache_is_taken_over(
        releases, tmp_path, monkeypatch):
    from disparate.data import image_store

    root, _ = releases["2018"]
    options = {"classes": 3, "subset_size": 12, "cache": True, "cache_dir": str(tmp_path)}
    first, _ = load(root, **options)
    caches = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(caches) == 2 and all(n.startswith("inaturalist-") for n in caches)
    for name in caches:  # as an earlier version named them
        (tmp_path / name).rename(tmp_path / name.replace("inaturalist-", "faces-"))

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_store, "load_image", fail)
    second, _ = load(root, **options)
    assert torch.equal(first.inputs, second.inputs)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == caches
