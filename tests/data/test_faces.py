"""Face datasets: the four on-disk formats (with malformed entries), crop geometry, groups,
sizes and the uint8 image container with its transforms. All data is generated here."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from disparate.data import (
    Augmentation,
    DatasetNotFoundError,
    ImageGroupedDataset,
    dataset_options,
    image_store,
    load_dataset,
    reduce_groups,
)
from disparate.data import faces as faces_module
from disparate.data.faces import (
    FAIRFACE_AGE_BINS,
    MalformedFacesWarning,
    age_bin_names,
    crop_box,
    landmark_box,
    load_face_image,
    parse_utkface_name,
    scan_dif,
    scan_fairface,
    scan_utkface,
    scan_utkface_wild,
)
from disparate.data.images import augmentation_generator
from disparate.synthetic.faces import (
    DIF_AGES,
    MALFORMED_UTKFACE_NAMES,
    UTK_AGES,
    write_synthetic_faces,
)

SMALL = {"image_size": 20, "crop_size": 16, "cache": False, "workers": 1}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("faces")
    return root, write_synthetic_faces(root, n_utkface=40, n_wild=12, n_fairface=28, n_dif=48,
                                       size=24)


def faces(root: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedFacesWarning)
        return load_dataset("faces", data_dir=root, seed=options.pop("seed", 0),
                            **{**SMALL, **options})


# ------------------------------------------------------------------------------ file names


def test_utkface_names_parse_strictly() -> None:
    assert parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg") == (26, "female", "asian")
    assert parse_utkface_name("1_0_4_20161219140623097.jpg") == (1, "male", "others")
    for name in MALFORMED_UTKFACE_NAMES:
        with pytest.raises(ValueError):
            parse_utkface_name(name)
    for bad in ["26_1_5_20170116174525125.jpg.chip.jpg",  # race 5
                "26_1_2_20170116174525125.png", "26_1_2.jpg", "_1_2_2017.jpg",
                "26_1_2_20170116174525125.jpg.chip.jpg ", "300_0_0_2017.jpg"]:
        with pytest.raises(ValueError):
            parse_utkface_name(bad)


@settings(max_examples=40, deadline=None)
@given(age=st.integers(0, 120), gender=st.integers(0, 1), race=st.integers(0, 4),
       stamp=st.integers(0, 10**17), chip=st.booleans())
def test_utkface_names_round_trip(age: int, gender: int, race: int, stamp: int,
                                  chip: bool) -> None:
    name = f"{age}_{gender}_{race}_{stamp}.jpg" + (".chip.jpg" if chip else "")
    a, g, r = parse_utkface_name(name)
    assert a == age and g == ("male", "female")[gender]
    assert r == ("white", "black", "asian", "indian", "others")[race]


# ------------------------------------------------------------------------------ the formats


def test_scan_utkface_counts_and_skips_malformed(tree) -> None:
    root, expected = tree
    records, report = scan_utkface(root / "UTKFace")
    assert len(records) == report.records == expected["utkface"]["valid"] == 40
    assert dict(report.skipped) == expected["utkface"]["skipped"]
    assert report.total_skipped == 4  # README.txt is not an image: not counted
    assert "4 entries skipped" in report.summary()
    by_key = {r.key: r for r in records}
    r = by_key["70_1_2_20170109000000005.jpg.chip.jpg"]  # i = 5
    assert (r.age, r.gender, r.race, r.box) == ((UTK_AGES[5], UTK_AGES[5]), "female", "asian",
                                                None)


def test_scan_utkface_wild_uses_landmark_box(tree) -> None:
    root, expected = tree
    records, report = scan_utkface_wild(root / "UTKface_inthewild")
    assert len(records) == expected["utkface-wild"]["valid"]
    assert dict(report.skipped) == expected["utkface-wild"]["skipped"]
    r = {r.key: r for r in records}["part1/5_0_0_20170109000000000.jpg"]  # i = 0, size 24
    assert r.box == (10.0, 12.0, 22.0, 28.0)


def test_scan_fairface_bins_races_and_split(tree) -> None:
    root, expected = tree
    records, report = scan_fairface(root / "fairface")
    assert len(records) == expected["fairface"]["valid"]
    assert dict(report.skipped) == expected["fairface"]["skipped"]
    splits = [r.split for r in records]
    assert splits.count("train") == expected["fairface"]["train"]
    assert splits.count("test") == expected["fairface"]["test"]
    assert {r.race for r in records} == set(faces_module.FAIRFACE_RACES)
    assert {r.age for r in records} == set(FAIRFACE_AGE_BINS.values())


def test_scan_dif_box_landmarks_and_malformed_rows(tree) -> None:
    root, expected = tree
    records, report = scan_dif(root / "DiF")
    assert len(records) == expected["dif"]["valid"]
    assert dict(report.skipped) == expected["dif"]["skipped"]
    assert report.notes["unrecognised gender value (gender unknown)"] == 1
    first = next(r for r in records if r.key == "1000_0000.jpg")
    assert first.box == (8.0, 10.0, 20.0, 24.0)  # x, y, x + w, y + h
    assert (first.ita, first.age, first.gender) == (85.0, (DIF_AGES[0], DIF_AGES[0]), "female")
    lm = next(r for r in records if r.key == "lm_only.jpg")
    assert lm.box == (10.0, 12.0, 30.0, 40.0) and lm.gender is None


def test_scan_dif_custom_columns(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (30, 30)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "meta.csv").write_text(
        "image_url,bx,by,bw,bh,ITA,age_pred,sex\nhttp://x/a.jpg,1,2,10,12,-40.5,33,M\n",
        encoding="utf-8")
    columns = {"url": "image_url", "face_x": "bx", "face_y": "by", "face_width": "bw",
               "face_height": "bh", "ita": "ITA", "age": "age_pred", "gender": "sex"}
    records, _ = scan_dif(tmp_path, metadata="meta.csv", columns=columns)
    assert [(r.box, r.ita, r.age, r.gender) for r in records] == [
        ((1.0, 2.0, 11.0, 14.0), -40.5, (33.0, 33.0), "male")]
    with pytest.raises(ValueError, match="unknown role"):
        scan_dif(tmp_path, metadata="meta.csv", columns={"skin": "ITA"})


def test_missing_folders_say_where_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="susanqq.github.io/UTKFace"):
        load_dataset("faces", data_dir=tmp_path, sources=["utkface"], skin_groups="ita6")
    (tmp_path / "UTKface_inthewild").mkdir()
    with pytest.raises(DatasetNotFoundError, match="landmark_list"):
        scan_utkface_wild(tmp_path / "UTKface_inthewild")


# ------------------------------------------------------------------------------ crop geometry


def test_crop_box_is_square_with_margin() -> None:
    assert crop_box((50, 60, 150, 140), 0.4) == (30, 30, 170, 170)  # docstring example
    assert crop_box((0, 0, 10, 10), 0.0) == (0, 0, 10, 10)
    left, top, right, bottom = crop_box((10, 20, 30, 80), 0.4)  # tall box: side 60 * 1.4
    assert right - left == bottom - top == 84
    assert (left + right) / 2 == 20 and (top + bottom) / 2 == 50
    assert landmark_box([3, 4, 9, 1, 5, 7]) == (3.0, 1.0, 9.0, 7.0)


def _coordinate_image(path: Path, w: int, h: int) -> None:
    """R = x, G = y, B = 200: every pixel says where it is."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    img = np.stack([xs, ys, np.full_like(xs, 200)], axis=-1).astype(np.uint8)
    Image.fromarray(img).save(path)


def test_load_face_image_crops_the_right_pixels(tmp_path: Path) -> None:
    path = tmp_path / "coords.png"
    _coordinate_image(path, 100, 120)
    face = load_face_image(path, (30, 40, 50, 60), size=28, margin=0.4)  # crop (26, 36, 54, 64)
    assert face.shape == (28, 28, 3) and face.dtype == np.uint8
    assert tuple(face[0, 0]) == (26, 36, 200)
    assert tuple(face[27, 27]) == (53, 63, 200)
    edge = load_face_image(path, (0, 0, 10, 10), size=14, margin=0.4)  # crop (-2, -2, 12, 12)
    assert tuple(edge[0, 0]) == (0, 0, 0) and tuple(edge[2, 2]) == (0, 0, 200)  # black outside
    whole = load_face_image(path, None, size=100, margin=0.4)  # centre square rows 10..109
    assert tuple(whole[0, 0]) == (0, 10, 200)
    small = load_face_image(path, (30, 40, 50, 60), size=14, margin=0.4)
    assert small.shape == (14, 14, 3)


# ------------------------------------------------------------------------------ groups and sizes


def test_paper_gender_setup_dif_light_utk_dark(tree) -> None:
    root, _ = tree
    options = dict(
        sources=[{"format": "dif"}, {"format": "utkface", "name": "utk"}],
        label="gender", groups=["skin"],
        skin_groups={"light": {"sources": ["dif"], "ita": [80, None]},
                     "dark": {"sources": ["utk"], "race": ["black"]}},
        train_sizes={"light": 8, "dark": 4}, test_sizes={"light": 4, "dark": 2},
        balance={"dark": "gender"})
    train, test = faces(root, **options)
    assert isinstance(train, ImageGroupedDataset)
    assert train.group_names == ["light", "dark"] and train.class_names == ["female", "male"]
    assert train.group_sizes() == {"light": 8, "dark": 4}
    assert test.group_sizes() == {"light": 4, "dark": 2}
    dark = train.groups == 1
    assert torch.bincount(train.labels[dark], minlength=2).tolist() == [2, 2]  # balanced
    assert train.inputs.dtype == torch.uint8 and train.image_shape == (3, 20, 20)
    assert train.input_shape == (3, 16, 16)
    info = train.info
    assert [s["skipped_total"] for s in info["sources"]] == [3, 4]
    assert info["not_eligible"]["no skin"] > 0
    # Same seed, same faces; another seed, others.
    again, _ = faces(root, **options)
    assert torch.equal(again.inputs, train.inputs)
    other, _ = faces(root, seed=1, **options)
    assert not torch.equal(other.inputs, train.inputs)
    # The config's data.reduce still applies to the training split.
    assert reduce_groups(train, {"light": 3}, seed=0).group_sizes() == {"light": 3, "dark": 4}


def test_train_and_test_faces_are_disjoint(tree) -> None:
    root, _ = tree
    train, test = faces(root, sources=["utkface"], label="gender", groups=["race"],
                        train_sizes=None, test_sizes=0.25, augment=False)
    assert len(train) + len(test) == 40 and len(test) == 10
    rows = {bytes(x.numpy()) for x in train.inputs} & {bytes(x.numpy()) for x in test.inputs}
    assert not rows
    assert train.group_names == ["white", "black", "asian", "indian", "others"]


def test_age_subgroups_are_every_intersection(tree) -> None:
    root, _ = tree
    train, test = faces(root, sources=["dif"], label="age", groups=["age", "gender", "skin"],
                        skin_groups="ita6", train_sizes=30, test_sizes=10)
    assert len(train.group_names) == 6 * 2 * 6 == 72
    assert train.group_names[0] == "0-19/female/very-light"
    assert train.class_names == ["0-19", "20-29", "30-39", "40-49", "50-59", "60+"]
    assert len(train) == 30 and len(test) == 10
    sizes = train.group_sizes()
    assert sum(sizes.values()) == 30 and 0 in sizes.values()  # empty groups kept, not hidden
    for g, y in zip(train.groups.tolist(), train.labels.tolist(), strict=True):
        assert train.group_names[g].split("/")[0] == train.class_names[y]


def test_ita_bins_and_paper_threshold(tree) -> None:
    root, _ = tree
    # DIF_ITAS cycle: 85, 60, 50, 30, 20, -10, -45, 90 -> very-light x3, light, intermediate,
    # tan, brown, dark per cycle of 8.
    train, _ = faces(root, sources=["dif"], label="skin", groups=["skin"], skin_groups="ita6",
                     train_sizes=None, test_sizes={})
    sizes = train.group_sizes()
    assert sizes == {"very-light": 6 * 3 + 1, "light": 6, "intermediate": 6, "tan": 6,
                     "brown": 6, "dark": 6}
    edge, _ = faces(root, sources=["dif"], label="gender", groups=["skin"],
                    skin_groups={"above-85": {"ita": [85, None]}, "up-to-85": {"ita": [None, 85]}},
                    train_sizes=None, test_sizes={})
    # 85 belongs to (lo, hi]: "up-to-85"; the unrecognised-gender face is not eligible.
    assert edge.group_sizes() == {"above-85": 6, "up-to-85": 42}


def test_fairface_keeps_its_split_and_bins(tree) -> None:
    root, expected = tree
    train, test = faces(root, sources=["fairface"], label="age", groups=["age", "race"],
                        age_bins=[0, 20, 40], train_sizes=None, test_sizes=1.0)
    assert train.class_names == ["0-19", "20-39", "40+"]
    assert len(test) == expected["fairface"]["test"] and len(train) == expected["fairface"][
        "train"]
    assert age_bin_names([0, 3, 10]) == ["0-2", "3-9", "10+"]
    # "3-9" fits [0, 10); with an edge at 5 it spans two bins and is not eligible.
    spanning, _ = faces(root, sources=["fairface"], label="age", groups=["age"],
                        age_bins=[0, 5, 10], train_sizes=None, test_sizes=1.0)
    assert spanning.info["not_eligible"]["no age"] > 0


def test_too_many_faces_requested_names_group_and_counts(tree) -> None:
    root, _ = tree
    with pytest.raises(ValueError, match=r"train_sizes.black: 500 train faces requested but "
                                         r"only 8 eligible"):
        faces(root, sources=["utkface"], label="gender", groups=["race"],
              train_sizes={"black": 500}, test_sizes={})
    with pytest.raises(ValueError, match="balancing 7 train faces by gender needs 4 'female'"):
        faces(root, sources=["utkface"], label="gender", groups=["race"],
              train_sizes={"black": 7}, test_sizes={"black": 2}, balance="gender")


@pytest.mark.parametrize("options, match", [
    ({"label": "colour"}, r"label='colour': expected one of \['age'"),
    ({"skin_groups": None}, "skin_groups=None: 'skin' is used"),
    ({"skin_groups": {"dark": {"race": ["purple"]}}}, r"unknown race\(s\) \['purple'\]"),
    ({"skin_groups": {"dark": {"colour": 1}}}, r"unknown key\(s\) \['colour'\]"),
    ({"skin_groups": {"a": {"race": ["black"]}, "b": {"race": ["black", "white"]}}},
     "skin_groups overlap"),
    ({"train_sizes": {"purple": 3}}, "train_sizes.purple: unknown group"),
    ({"sources": [{"format": "utkface", "colour": 1}]}, r"unknown key\(s\) \['colour'\]"),
    ({"sources": ["flickr"]}, r"sources\[0\].format='flickr'"),
    ({"crop_size": 32}, "crop_size=32: expected <= image_size=20"),
    ({"augment": {"rotate": 5}}, r"augment: unknown key\(s\) \['rotate'\]"),
    ({"balance": "gender"}, r"balance.\*: balancing needs that group's counts"),
    ({"train_sizes": {"dark": 2}, "balance": {"dark": "colour"}},
     r"balance.dark='colour': expected one of"),
])
def test_option_errors_name_the_option(tree, options: dict, match: str) -> None:
    root, _ = tree
    base = dict(sources=["utkface"], label="gender", groups=["skin"],
                skin_groups={"dark": {"race": ["black"]}})
    with pytest.raises(ValueError, match=match):
        faces(root, **{**base, **options})


def test_unknown_dataset_options_are_refused_with_valid_names() -> None:
    with pytest.raises(ValueError, match=r"dataset 'digits': unknown option\(s\) \['x'\]; "
                                         "valid options are none"):
        load_dataset("digits", x=1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\].*'skin_groups'"):
        load_dataset("faces", colour=1)
    assert dataset_options("faces")["margin"] == 0.4


def test_malformed_entries_warn_with_counts(tree) -> None:
    root, _ = tree
    with pytest.warns(MalformedFacesWarning, match="40 faces read, 4 entries skipped"):
        load_dataset("faces", data_dir=root, sources=["utkface"], groups=["race"],
                     **SMALL)


def test_image_cache_is_reused(tree, tmp_path: Path, monkeypatch) -> None:
    root, _ = tree
    options = dict(sources=["utkface"], groups=["race"], train_sizes=6, test_sizes=2,
                   cache=True, cache_dir=str(tmp_path))
    first, _ = faces(root, **options)
    assert len(list(tmp_path.glob("faces-*.npy"))) == 2

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_store, "load_image", fail)
    second, _ = faces(root, **options)
    assert torch.equal(first.inputs, second.inputs)


# ------------------------------------------------------------------------------ the container


def _images(n: int = 3, size: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_eval_transform_is_centre_crop_normalised() -> None:
    images = _images()
    ds = ImageGroupedDataset(images, torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]),
                             group_names=["a", "b"], num_classes=2, crop_size=6,
                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x, y, g = ds[torch.tensor([0, 2])]
    expected = (images[[0, 2], :, 2:8, 2:8].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected) and y.tolist() == [0, 0] and g.tolist() == [0, 1]
    x1, _, _ = ds[1]
    assert x1.shape == (3, 6, 6) and ds.input_shape == (3, 6, 6)
    sub = ds.subset([2])
    assert isinstance(sub, ImageGroupedDataset) and sub.crop_size == 6 and len(sub) == 1


def test_train_transform_crops_flips_and_is_seeded() -> None:
    images = _images()
    plain = ImageGroupedDataset(images, torch.zeros(3, dtype=torch.long),
                                torch.zeros(3, dtype=torch.long), group_names=["a"],
                                num_classes=1, crop_size=6, mean=(0, 0, 0), std=(1, 1, 1),
                                augmentation=Augmentation(rotation=0, crop=False, flip=False))
    centre = plain.train_transform(images, torch.Generator().manual_seed(0))
    assert torch.allclose(centre, images[:, :, 2:8, 2:8].float() / 255, atol=1e-5)
    flipped = ImageGroupedDataset(images, plain.labels, plain.groups, group_names=["a"],
                                  num_classes=1, crop_size=6, mean=(0, 0, 0), std=(1, 1, 1),
                                  augmentation=Augmentation(rotation=0, crop=True, flip=True))
    out = flipped.train_transform(images, torch.Generator().manual_seed(3))
    windows = [images[i, :, t:t + 6, s:s + 6].float() / 255 for i in range(3)
               for t in range(5) for s in range(5)]
    for i in range(3):  # every output is some window of its own image, maybe mirrored
        assert any(torch.allclose(out[i], w, atol=1e-5) or torch.allclose(
            out[i], w.flip(-1), atol=1e-5) for w in windows[i * 25:(i + 1) * 25])
    rotated = ImageGroupedDataset(images, plain.labels, plain.groups, group_names=["a"],
                                  num_classes=1, crop_size=6, augmentation=Augmentation())
    a = rotated.train_transform(images, augmentation_generator(0, 1))
    b = rotated.train_transform(images, augmentation_generator(0, 1))
    c = rotated.train_transform(images, augmentation_generator(0, 2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (3, 3, 6, 6)
