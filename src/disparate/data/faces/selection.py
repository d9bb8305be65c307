"""Which faces go into the training and test sets: eligible faces, sizes per group, draws
from the ``faces_split`` stream of the seed tree."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from disparate.data.faces.records import ATTRIBUTES, FaceRecord
from disparate.data.image_store import round_half_up
from disparate.randomness import data_generator


def parse_sizes(what: str, value: Any, group_names: Sequence[str], *, allow_none: bool
           ) -> int | float | dict[str, int] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, Mapping):
        out: dict[str, int] = {}
        for k, v in value.items():
            if str(k) not in group_names:
                shown = list(group_names) if len(group_names) <= 20 else (
                    list(group_names[:20]) + ["..."])
                raise ValueError(f"{what}.{k}: unknown group; valid groups are {shown}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{what}.{k}={v!r}: expected an int >= 0")
            out[str(k)] = v
        return out
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}={value!r}: expected an int (total), a fraction in (0, 1], "
                         "a mapping group -> int" + (" or null (all)" if allow_none else ""))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}={value}: expected >= 0")
        return value
    if not 0 < value <= 1:
        raise ValueError(f"{what}={value!r}: expected a fraction in (0, 1]")
    return float(value)


def _shares(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class _Draw:
    """Seeded draws without replacement from the eligible faces (in one random order)."""

    def __init__(self, split: Sequence[str | None], group: np.ndarray,
                 attrs: Mapping[str, Sequence[str | None]], seed: int):
        rng = data_generator(seed, "faces_split")
        self.order = [int(i) for i in rng.permutation(len(split))]
        self.split = split
        self.attrs = attrs
        self.taken = np.zeros(len(split), dtype=bool)
        self.by_group: dict[int, list[int]] = {}
        for i in self.order:
            self.by_group.setdefault(int(group[i]), []).append(i)

    def pool(self, split: str, group: int | None = None) -> list[int]:
        members = self.order if group is None else self.by_group.get(group, [])
        return [i for i in members if not self.taken[i] and self.split[i] in (split, None)]

    def take(self, n: int, split: str, what: str, *, group: int | None = None,
             balance: str | None = None, values: Sequence[str] = ()) -> list[int]:
        pool = self.pool(split, group)
        if balance is None:
            if n > len(pool):
                raise ValueError(f"{what}: {n} {split} faces requested but only {len(pool)} "
                                 "eligible faces are left")
            chosen = pool[:n]
        else:
            chosen = []
            for value, share in zip(values, _shares(n, len(values)), strict=True):
                members = [i for i in pool if self.attrs[balance][i] == value]
                if share > len(members):
                    raise ValueError(
                        f"{what}: balancing {n} {split} faces by {balance} needs {share} "
                        f"{value!r} faces but only {len(members)} are left")
                chosen += members[:share]
        self.taken[chosen] = True
        return sorted(chosen)


def select(
    records: Sequence[FaceRecord],
    values: Mapping[str, list[str | None]],
    *,
    label: str,
    group_attrs: Sequence[str],
    group_names: Sequence[str],
    train_sizes: Any,
    test_sizes: Any,
    balance: Mapping[str, str],
    attr_values: Mapping[str, Sequence[str]],
    seed: int,
) -> tuple[list[int], list[int], Counter]:
    """Indices of the training and test faces, and why the others were not eligible."""
    needed = [label, *[a for a in group_attrs if a != label]]
    dropped: Counter = Counter()
    eligible: list[int] = []
    for i in range(len(records)):
        missing = [a for a in needed if values[a][i] is None]
        if missing:
            dropped[f"no {missing[0]}"] += 1
        else:
            eligible.append(i)
    index = {name: k for k, name in enumerate(group_names)}
    group = np.asarray([index["/".join(str(values[a][i]) for a in group_attrs)]
                        for i in eligible], dtype=np.int64)
    split = [records[i].split for i in eligible]
    draw = _Draw(split, group, {a: [values[a][i] for i in eligible] for a in ATTRIBUTES}, seed)

    def run(sizes: Any, which: str) -> list[int]:
        if sizes is None:
            return draw.take(len(draw.pool(which)), which, f"{which}_sizes")
        if isinstance(sizes, Mapping):
            chosen: list[int] = []
            for name, n in sizes.items():
                bal = balance.get(name)
                chosen += draw.take(n, which, f"{which}_sizes.{name}", group=index[name],
                                    balance=bal, values=attr_values[bal] if bal else ())
            return sorted(chosen)
        if isinstance(sizes, float):
            total = sum(1 for s in split if s in (which, None))
            return draw.take(round_half_up(sizes * total), which, f"{which}_sizes={sizes}")
        return draw.take(int(sizes), which, f"{which}_sizes={sizes}")

    test = run(test_sizes, "test")
    train = run(train_sizes, "train")
    return [eligible[i] for i in train], [eligible[i] for i in test], dropped
