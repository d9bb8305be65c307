"""The registered dataset ``faces``: ``data.options`` -> the train and test splits."""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from disparate.data.faces.groups import (
    SkinRule,
    age_bin,
    age_bin_names,
    check_age_bins,
    parse_skin_groups,
    skin_of,
)
from disparate.data.faces.records import (
    ATTRIBUTES,
    GENDERS,
    FaceRecord,
    FaceScanReport,
    MalformedFacesWarning,
)
from disparate.data.faces.selection import parse_sizes, select
from disparate.data.faces.sources import parse_sources, races_of, scan_source
from disparate.data.grouped import DatasetSplits, default_data_dir
from disparate.data.image_store import load_images
from disparate.data.images import Augmentation, ImageGroupedDataset
from disparate.data.registry import register_dataset
from disparate.validation import check_one_of, check_seed

logger = logging.getLogger(__package__)


@register_dataset("faces")
def build_faces(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    sources: Any = ("utkface",),
    label: str = "gender",
    groups: str | Sequence[str] = ("skin",),
    skin_groups: Any = None,
    age_bins: Sequence[int] = (0, 20, 30, 40, 50, 60),
    train_sizes: Any = None,
    test_sizes: Any = 0.2,
    balance: Any = None,
    image_size: int = 80,
    crop_size: int = 64,
    margin: float = 0.4,
    augment: Any = True,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> DatasetSplits:
    """Faces from ``sources``, labelled by ``label``, grouped by the intersection of ``groups``.

    Args:
        sources: Format names or mappings ``{format, name, path, ...}`` (see the module doc);
            ``path`` is relative to ``data_dir`` unless absolute.
        label: The class: one of ``age`` (bins of ``age_bins``), ``gender``, ``skin``,
            ``race``, ``source``.
        groups: Attributes whose intersection is the group, e.g. ``[skin]`` or
            ``[age, gender, skin]``; names join the values with ``/`` (``20-29/female/tan``).
            Every combination is a group, even one without faces.
        skin_groups: ``"ita6"`` or a mapping name -> ``{ita: [lo, hi], race: [...],
            sources: [...]}`` (see :func:`parse_skin_groups`); required when ``skin`` is used.
        age_bins: Lower edges of the age bins in years.
        train_sizes / test_sizes: A mapping group -> count (exact), an int (total, drawn at
            random from all eligible faces), a fraction of the eligible faces, or for
            ``train_sizes`` null: every eligible face not drawn for testing. The test split is
            drawn first; sources with an official split (FairFace) keep it.
        balance: ``{group: attribute}`` (or one attribute for every group of a mapping):
            that group's counts are split equally over the attribute's values, e.g. the
            paper's 500 dark-skinned faces balanced by gender.
        image_size, crop_size, margin: Stored image side, model input side, crop margin.
        augment: Training augmentation (``true``, ``false`` or ``{rotation, crop, flip}``).
        cache / cache_dir: Keep the decoded images (``<cache_dir>/faces-<hash>.npy``;
            default ``<default data dir>/cache/faces``) so later runs skip decoding.
        workers: Threads decoding images (default: up to 8).
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    seed = check_seed(seed)
    specs = parse_sources(sources, root)
    check_one_of("label", label, ATTRIBUTES)
    if isinstance(groups, str):
        groups = [groups]
    groups = list(groups)
    if not groups:
        raise ValueError("groups=[]: expected at least one attribute, e.g. [skin]")
    for i, g in enumerate(groups):
        check_one_of(f"groups[{i}]", g, ATTRIBUTES)
    if len(set(groups)) != len(groups):
        raise ValueError(f"groups={groups}: attributes must be unique")
    edges = check_age_bins(age_bins)
    for what, v, lo in (("image_size", image_size, 8), ("crop_size", crop_size, 8)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{what}={v!r}: expected an int >= {lo}")
    if crop_size > image_size:
        raise ValueError(f"crop_size={crop_size}: expected <= image_size={image_size}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 5:
        raise ValueError(f"margin={margin!r}: expected a number in [0, 5] (0.4: 40%)")
    augmentation = Augmentation.from_option(augment)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: expected an int >= 1")
    used = {label, *groups}
    races = races_of(s.format for s in specs)
    rules: list[SkinRule] = []
    if "skin" in used:
        if skin_groups is None:
            raise ValueError("skin_groups=None: 'skin' is used as label or group, so say how "
                             "skin-colour groups are defined: 'ita6' or a mapping, e.g. "
                             "{light: {ita: [80, null]}, dark: {race: [black]}}")
        rules = parse_skin_groups(skin_groups, source_names=[s.name for s in specs],
                                  races=races)
    attr_values: dict[str, list[str]] = {
        "age": age_bin_names(edges),
        "gender": list(GENDERS),
        "skin": [r.name for r in rules],
        "race": races,
        "source": [s.name for s in specs],
    }
    for attr in used:
        if not attr_values[attr]:
            raise ValueError(f"{attr!r} is used as label or group but no configured source "
                             f"has it (sources: {[s.format for s in specs]})")
    group_names = ["/".join(c) for c in itertools.product(*(attr_values[a] for a in groups))]
    test_sizes = parse_sizes("test_sizes", test_sizes, group_names, allow_none=False)
    train_sizes = parse_sizes("train_sizes", train_sizes, group_names, allow_none=True)
    counted = {name for sizes in (train_sizes, test_sizes) if isinstance(sizes, Mapping)
               for name in sizes}
    if isinstance(balance, str):
        balance = {name: balance for name in counted} if counted else {"*": balance}
    if balance is not None and not isinstance(balance, Mapping):
        raise ValueError(f"balance={balance!r}: expected an attribute name or a mapping "
                         "group -> attribute")
    balance = dict(balance or {})
    for name, attr in balance.items():
        if name not in counted:
            raise ValueError(f"balance.{name}: balancing needs that group's counts in "
                             "train_sizes or test_sizes (a mapping group -> n)")
        check_one_of(f"balance.{name}", attr, [a for a in ATTRIBUTES if attr_values[a]])

    # Read every source.
    records: list[FaceRecord] = []
    reports: list[FaceScanReport] = []
    for spec in specs:
        recs, report = scan_source(spec)
        records += recs
        reports.append(report)
        if report.total_skipped:
            warnings.warn(MalformedFacesWarning("faces: " + report.summary()), stacklevel=2)
        logger.info("faces: %s", report.summary())

    # Attributes of every face.
    values: dict[str, list[str | None]] = {a: [] for a in ATTRIBUTES}
    for r in records:
        b = age_bin(r.age, edges)
        values["age"].append(None if b is None else attr_values["age"][b])
        values["gender"].append(r.gender)
        values["skin"].append(skin_of(r, rules) if rules else None)
        values["race"].append(r.race)
        values["source"].append(r.source)
    train_idx, test_idx, not_eligible = select(
        records, values, label=label, group_attrs=groups, group_names=group_names,
        train_sizes=train_sizes, test_sizes=test_sizes, balance=balance,
        attr_values=attr_values, seed=int(seed))

    classes = attr_values[label]
    gindex = {n: k for k, n in enumerate(group_names)}
    info = {
        "sources": [rep.to_dict() for rep in reports],
        "faces_read": len(records),
        "not_eligible": dict(sorted(not_eligible.items())),
        "label": label,
        "groups": groups,
        "margin": margin,
        "image_size": image_size,
        "crop_size": crop_size,
    }

    def make(indices: list[int], split: str) -> ImageGroupedDataset:
        recs = [records[i] for i in indices]
        images = load_images(
            recs, size=image_size, margin=float(margin), workers=workers,
            cache_dir=None if not cache else (Path(cache_dir).expanduser() if cache_dir
                                              else default_data_dir() / "cache" / "faces"),
            name="faces", what="face image")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([classes.index(values[label][i]) for i in indices], dtype=torch.long)
        g = torch.tensor([gindex["/".join(str(values[a][i]) for a in groups)]
                          for i in indices], dtype=torch.long)
        return ImageGroupedDataset(
            x, y, g, group_names=group_names, num_classes=len(classes), class_names=classes,
            crop_size=crop_size, augmentation=augmentation, name=f"faces/{split}",
            info=info)

    train, test = make(train_idx, "train"), make(test_idx, "test")
    logger.info("faces: %d train / %d test faces; train groups %s", len(train), len(test),
                train.group_sizes())
    return DatasetSplits(train, test)
