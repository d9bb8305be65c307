"""The attributes that define groups: age bins and skin-colour rules."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from disparate.data.faces.records import ITA_SIX, FaceRecord, normalise_race


def age_bin_names(edges: Sequence[int]) -> list[str]:
    """Names of the age bins with lower edges ``edges``: ``[0, 20, 60]`` -> 0-19, 20-59, 60+."""
    e = list(edges)
    return [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(e)] + [f"{e[-1]}+"]


def check_age_bins(value: Any) -> list[int]:
    if (isinstance(value, str) or not isinstance(value, Sequence) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value)
            or any(b <= a for a, b in itertools.pairwise(value))):
        raise ValueError(f"age_bins={value!r}: expected increasing ints >= 0 (lower edges "
                         "of the bins, e.g. [0, 20, 30, 40, 50, 60])")
    return [int(v) for v in value]


def age_bin(age: tuple[float, float | None] | None, edges: Sequence[int]) -> int | None:
    """Index of the bin holding the whole age range, or None (unknown / spans bins)."""
    if age is None:
        return None
    lo, hi = age
    for i, start in enumerate(edges):
        end = edges[i + 1] if i + 1 < len(edges) else None
        if lo >= start and (end is None or (hi is not None and hi < end)):
            return i
    return None


@dataclass(frozen=True)
class SkinRule:
    """A skin-colour group: faces matching every given condition.

    ``ita``: ``(lo, hi)`` meaning lo < ITA <= hi (None: open); ``races``: allowed race
    names (a proxy where no ITA exists, e.g. UTKFace's 'black'); ``sources``: source names.
    """

    name: str
    ita: tuple[float | None, float | None] | None = None
    races: frozenset[str] | None = None
    sources: frozenset[str] | None = None

    def matches(self, r: FaceRecord) -> bool:
        if self.sources is not None and r.source not in self.sources:
            return False
        if self.races is not None and r.race not in self.races:
            return False
        if self.ita is not None:
            if r.ita is None:
                return False
            lo, hi = self.ita
            if (lo is not None and not r.ita > lo) or (hi is not None and not r.ita <= hi):
                return False
        return True


def _opt_number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise ValueError(f"{what}={value!r}: expected a number or null")
    return float(value)


def parse_skin_groups(value: Any, *, source_names: Sequence[str], races: Sequence[str]
                      ) -> list[SkinRule]:
    """Skin-colour groups from ``"ita6"`` (the six ITA categories) or a mapping
    ``name -> {ita: [lo, hi], race: [...], sources: [...]}`` (conditions optional, ANDed).
    """
    if value == "ita6":
        return [SkinRule(name, ita) for name, ita in ITA_SIX.items()]
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"skin_groups={value!r}: expected 'ita6' or a mapping name -> "
                         "{ita: [lo, hi], race: [...], sources: [...]}")
    rules = []
    for name, rule in value.items():
        what = f"skin_groups.{name}"
        if rule is None:
            rule = {}
        if not isinstance(rule, Mapping):
            raise ValueError(f"{what}={rule!r}: expected a mapping with keys ita, race, "
                             "sources")
        unknown = sorted(str(k) for k in rule if k not in ("ita", "race", "sources"))
        if unknown:
            raise ValueError(f"{what}: unknown key(s) {unknown}; valid keys are "
                             "['ita', 'race', 'sources']")
        ita = rule.get("ita")
        if ita is not None:
            if isinstance(ita, str) or not isinstance(ita, Sequence) or len(ita) != 2:
                raise ValueError(f"{what}.ita={ita!r}: expected [lo, hi] (lo < ITA <= hi; "
                                 "null for open), e.g. [80, null]")
            ita = (_opt_number(ita[0], f"{what}.ita[0]"), _opt_number(ita[1], f"{what}.ita[1]"))
        race_set = None
        if rule.get("race") is not None:
            race_list = [rule["race"]] if isinstance(rule["race"], str) else list(rule["race"])
            bad = [r for r in race_list if normalise_race(str(r)) not in races]
            if bad:
                raise ValueError(f"{what}.race: unknown race(s) {bad}; the configured sources "
                                 f"know {list(races)}")
            race_set = frozenset(normalise_race(str(r)) for r in race_list)
        src_set = None
        if rule.get("sources") is not None:
            src_list = ([rule["sources"]] if isinstance(rule["sources"], str)
                        else [str(s) for s in rule["sources"]])
            bad = [s for s in src_list if s not in source_names]
            if bad:
                raise ValueError(f"{what}.sources: unknown source(s) {bad}; configured "
                                 f"sources are {list(source_names)}")
            src_set = frozenset(src_list)
        rules.append(SkinRule(str(name), ita, race_set, src_set))
    return rules


def skin_of(r: FaceRecord, rules: Sequence[SkinRule]) -> str | None:
    hits = [rule.name for rule in rules if rule.matches(r)]
    if len(hits) > 1:
        raise ValueError(f"skin_groups overlap: face {r.source}:{r.key} matches {hits}; "
                         "make the groups' conditions disjoint")
    return hits[0] if hits else None
