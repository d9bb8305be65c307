"""Typed result objects: the code form of ``docs/results-format.md``.

Frozen objects for a run's ``results.json`` (:class:`RunResult`, its :class:`GroupResult`
rows and :class:`PrivacyStatement`), a ``metrics.jsonl`` line (:class:`EpochMetrics`) and a
``comparison.json`` (:class:`ComparisonResult`, its :class:`Stat` statistics), each with
``from_json`` / ``to_json``. Keys a reader does not type are kept in ``extra`` and written
back (and typed keys a line or group did not have stay absent), so
``from_json(d).to_json()`` is ``d`` plus ``schema_version`` for every file written so far
(files before ``schema_version`` are version 1). :class:`GroupMetrics` is one
per-group metric with its group sizes, in the spirit of fairlearn's ``MetricFrame``.

One reader and one atomic writer per file: :func:`read_run_result` /
:func:`write_run_result`, :func:`read_comparison_result` / :func:`write_comparison_result`,
:func:`read_epoch_metrics` / :func:`metrics_text` (the lines :class:`disparate.rundir.RunDir`
writes and appends).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from disparate import results as res

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "ComparisonGroup",
    "ComparisonResult",
    "EpochMetrics",
    "GroupMetrics",
    "GroupResult",
    "PrivacyStatement",
    "RoundMetrics",
    "RunResult",
    "Stat",
    "as_number",
    "mean_and_ci",
    "metrics_text",
    "read_comparison_result",
    "read_epoch_metrics",
    "read_run_result",
    "write_comparison_result",
    "write_run_result",
]

#: Version of ``results.json`` this code writes; a reader takes this and every older one.
SCHEMA_VERSION = 1
#: Version of ``comparison.json``: 2 names the runs of a run store in ``runs``; 1 (no
#: ``schema_version``) kept them in ``seed-<s>/non-private`` and ``seed-<s>/dp``.
COMPARISON_SCHEMA_VERSION = 2
SCHEMA_KEY = "schema_version"


def _check_version(where: str, data: Mapping[str, Any], latest: int = SCHEMA_VERSION) -> int:
    """The schema version of ``data`` (1 without the key); a newer one than ``latest``
    raises."""
    version = data.get(SCHEMA_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= (
            latest):
        raise ValueError(f"{where}: schema_version={version!r}: this version of disparate "
                         f"reads schema versions 1 to {latest}; upgrade disparate")
    return version


def _split(cls: type, data: Mapping[str, Any], where: str
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed keys, the rest) of ``data``; a required key that is missing raises."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)} - {"extra", "absent"}
    typed = {k: v for k, v in data.items() if k in names}
    rest = {k: v for k, v in data.items() if k not in names and k != SCHEMA_KEY}
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(n for n in required if n not in typed)
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    return typed, rest


def _to_json(obj: Any, typed: Mapping[str, Any]) -> dict[str, Any]:
    return {**obj.extra, **typed}


_R = TypeVar("_R", bound="_FlatRecord")


class _FlatRecord:
    """``from_json``/``to_json`` of a record whose fields are all plain JSON values; keys it
    does not know travel in ``extra``, typed keys the JSON lacked are in ``absent`` and left
    out again by ``to_json``. ``_where`` names it in errors."""

    _where: ClassVar[str]

    @classmethod
    def from_json(cls: type[_R], data: Mapping[str, Any], where: str | None = None) -> _R:
        typed, rest = _split(cls, data, where or cls._where)
        absent = frozenset(f.name for f in fields(cls)
                           if f.name not in ("extra", "absent") and f.name not in typed)
        return cls(**typed, extra=rest, absent=absent)

    def to_json(self) -> dict[str, Any]:
        absent = getattr(self, "absent", frozenset())
        return _to_json(self, {f.name: getattr(self, f.name) for f in fields(self)
                               if f.name not in ("extra", "absent") and f.name not in absent})


# ---------------------------------------------------------------------------------- stats


@dataclass(frozen=True, kw_only=True)
class Stat:
    """Mean and 95% Student-t interval over seeds (:func:`disparate.results.summarize`)."""

    mean: float | None
    ci95: tuple[float, float] | None = None
    n: int = 0
    values: tuple[float | None, ...] = ()

    def __post_init__(self) -> None:
        if self.ci95 is not None and not self.ci95[0] <= self.ci95[1]:
            raise ValueError(f"ci95={self.ci95!r}: expected low <= high")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | float | None) -> Stat:
        """A statistic, or a plain number (one value, no interval)."""
        if not isinstance(data, Mapping):
            return cls(mean=data, n=0 if data is None else 1,
                       values=() if data is None else (data,))
        ci = data.get("ci95")
        return cls(mean=data.get("mean"), ci95=None if ci is None else (ci[0], ci[1]),
                   n=int(data.get("n", 0)), values=tuple(data.get("values") or ()))

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": None if self.ci95 is None else list(self.ci95),
                "n": self.n, "values": list(self.values)}

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        """The statistic of ``values`` over seeds."""
        return cls.from_json(res.summarize(values))


def as_number(value: Any) -> float:
    """A value of a result file as a finite float: NaN where it is undefined (``None``, the
    string ``"nan"``, an infinity, a boolean or no number)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def mean_and_ci(value: Any) -> tuple[float, tuple[float, float] | None]:
    """(mean, ci95 or None) of a :class:`Stat`, a ``{"mean", "ci95"}`` statistic or a plain
    number, read with :func:`as_number` (an interval with an undefined end is None)."""
    if isinstance(value, Stat):
        value = value.to_json()
    if isinstance(value, Mapping):
        mean = as_number(value.get("mean"))
        ci = value.get("ci95")
        if isinstance(ci, Sequence) and len(ci) == 2:
            lo, hi = as_number(ci[0]), as_number(ci[1])
            if not (math.isnan(lo) or math.isnan(hi)):
                return mean, (lo, hi)
        return mean, None
    return as_number(value), None


# ----------------------------------------------------------------------- per-group metric


@dataclass(frozen=True, kw_only=True)
class GroupMetrics:
    """One metric per group, with the group sizes, in the spirit of fairlearn's MetricFrame.

    ``by_group`` maps every group (in the dataset's order) to its value, ``None`` where
    undefined (no test examples): such a group is left out of :meth:`difference`,
    :meth:`group_min` and :meth:`group_max`, never counted as 0.
    """

    metric: str
    by_group: Mapping[str, float | None]
    overall: float | None
    train_sizes: Mapping[str, int]
    test_sizes: Mapping[str, int]

    def __post_init__(self) -> None:
        for name, sizes in (("train_sizes", self.train_sizes), ("test_sizes", self.test_sizes)):
            if set(sizes) != set(self.by_group):
                raise ValueError(f"{name}: groups {sorted(sizes)} differ from by_group's "
                                 f"{sorted(self.by_group)}; every group needs its size")

    def _present(self) -> dict[str, float]:
        return {g: v for g, v in self.by_group.items() if v is not None and math.isfinite(v)}

    def group_max(self) -> tuple[str, float] | None:
        """(group, value) of the largest value (the first of equals)."""
        present = self._present()
        return None if not present else max(present.items(), key=lambda kv: kv[1])

    def group_min(self) -> tuple[str, float] | None:
        """(group, value) of the smallest value (the first of equals)."""
        present = self._present()
        return None if not present else min(present.items(), key=lambda kv: kv[1])

    def difference(self) -> float | None:
        """Largest minus smallest value over the groups that have one (None without any)."""
        top, bottom = self.group_max(), self.group_min()
        return None if top is None or bottom is None else top[1] - bottom[1]

    def ratio(self) -> float | None:
        """Smallest over largest value (None without values or when the largest is 0)."""
        top, bottom = self.group_max(), self.group_min()
        if top is None or bottom is None or top[1] == 0:
            return None
        return bottom[1] / top[1]


# ------------------------------------------------------------------------------ one run


@dataclass(frozen=True, kw_only=True)
class GroupResult(_FlatRecord):
    """One entry of ``results.json`` ``groups``."""

    _where: ClassVar[str] = "group"

    group: str
    train_size: int
    test_size: int
    accuracy: float | None = None
    grad_norm: float | None = None
    clipped_fraction: float | None = None
    small_test: bool = False
    highlight: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class PrivacyStatement:
    """``results.json`` ``privacy``: the mechanism and, for a private run, its guarantee
    (one ``EpsilonReport`` dict per method in ``epsilon``) and the statement in words."""

    is_private: bool
    mode: str
    statement: str
    accountant: str | None = None
    delta: float | None = None
    epsilon: Mapping[str, Mapping[str, Any]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.is_private and not self.epsilon:
            raise ValueError("privacy: is_private=True needs an epsilon per method")

    @property
    def headline_epsilon(self) -> float | None:
        """The epsilon of the configured accountant (None when not private or infinite)."""
        if not self.is_private or self.epsilon is None:
            return None
        return (self.epsilon.get(self.accountant or "") or {}).get("epsilon")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "privacy") -> PrivacyStatement:
        typed, rest = _split(cls, data, where)
        return cls(**typed, extra=rest)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, {"is_private": self.is_private, "mode": self.mode,
                               "statement": self.statement, "accountant": self.accountant,
                               "delta": self.delta, "epsilon": self.epsilon})


@dataclass(frozen=True, kw_only=True)
class EpochMetrics(_FlatRecord):
    """One ``metrics.jsonl`` line: the metrics after an epoch."""

    _where: ClassVar[str] = "metrics line"

    epoch: int
    test_accuracy: float | None = None
    group_accuracy: Mapping[str, float | None] = field(default_factory=dict)
    group_grad_norm: Mapping[str, float | None] = field(default_factory=dict)
    epsilon: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class RoundMetrics(_FlatRecord):
    """One ``metrics.jsonl`` line of a federated run: the metrics after a round (the test
    metrics and epsilon only on evaluated rounds)."""

    _where: ClassVar[str] = "metrics line"

    round: int
    test_accuracy: float | None = None
    group_accuracy: Mapping[str, float | None] = field(default_factory=dict)
    epsilon: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """A run's ``results.json``."""

    experiment: str
    mode: str
    groups: tuple[GroupResult, ...]
    privacy: PrivacyStatement
    overall_accuracy: float | None = None
    seed: int | None = None
    highlight: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [g.group for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"groups: duplicate group names in {names}")

    def metric(self, name: str = "accuracy") -> GroupMetrics:
        """``accuracy``, ``grad_norm`` or ``clipped_fraction`` of every group, with sizes
        (``overall``: the overall accuracy; ``None`` for the others)."""
        valid = ("accuracy", "grad_norm", "clipped_fraction")
        if name not in valid:
            raise ValueError(f"name={name!r}: expected one of {', '.join(valid)}")
        return GroupMetrics(
            metric=name, by_group={g.group: getattr(g, name) for g in self.groups},
            overall=self.overall_accuracy if name == "accuracy" else None,
            train_sizes={g.group: g.train_size for g in self.groups},
            test_sizes={g.group: g.test_size for g in self.groups})

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "results.json") -> RunResult:
        _check_version(where, data)
        typed, rest = _split(cls, data, where)
        typed["groups"] = tuple(GroupResult.from_json(g, f"{where}: groups[{i}]")
                                for i, g in enumerate(typed["groups"]))
        typed["privacy"] = PrivacyStatement.from_json(typed["privacy"], f"{where}: privacy")
        typed["highlight"] = tuple(str(h) for h in typed.get("highlight") or ())
        return cls(**typed, extra=rest)

    def to_json(self) -> dict[str, Any]:
        return {SCHEMA_KEY: SCHEMA_VERSION, **_to_json(self, {
            "experiment": self.experiment, "mode": self.mode,
            "groups": [g.to_json() for g in self.groups], "privacy": self.privacy.to_json(),
            "overall_accuracy": self.overall_accuracy, "seed": self.seed,
            "highlight": list(self.highlight)})}


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True, kw_only=True)
class ComparisonGroup:
    """One entry of ``comparison.json`` ``groups``: sizes and statistics over seeds."""

    group: str
    train_size: int
    test_size: int
    non_private_accuracy: Stat
    dp_accuracy: Stat
    drop: Stat
    small_test: bool = False
    highlight: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    _STATS: ClassVar[tuple[str, ...]] = ("non_private_accuracy", "dp_accuracy", "drop")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "group") -> ComparisonGroup:
        typed, rest = _split(cls, data, where)
        return cls(**{**typed, **{k: Stat.from_json(typed[k]) for k in cls._STATS}},
                   extra=rest)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, {"group": self.group, "train_size": self.train_size,
                               "test_size": self.test_size, "small_test": self.small_test,
                               "highlight": self.highlight,
                               **{k: getattr(self, k).to_json() for k in self._STATS}})


@dataclass(frozen=True, kw_only=True)
class ComparisonResult:
    """A ``comparison.json``: per-group statistics over seeds of paired runs.

    ``groups`` keep their JSON form (``non_private_accuracy``, ``dp_accuracy``, ``drop``
    ... as statistics); :meth:`stat` reads one as a :class:`Stat`.
    """

    experiment: str | None
    seeds: tuple[int, ...]
    groups: tuple[Mapping[str, Any], ...]
    overall: Mapping[str, Any]
    privacy: PrivacyStatement
    highlight: tuple[str, ...] = ()
    schema_version: int = COMPARISON_SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds=(): a comparison needs at least one seed")

    def stat(self, group: str, key: str) -> Stat:
        """``key`` (e.g. ``"drop"``) of ``group`` (``"all"``: the overall block)."""
        if group == "all":
            return Stat.from_json(self.overall[key])
        for g in self.groups:
            if g["group"] == group:
                return Stat.from_json(g[key])
        raise KeyError(f"group={group!r}: not one of {[g['group'] for g in self.groups]}")

    def accuracy(self, key: str = "dp_accuracy") -> GroupMetrics:
        """The seed-mean accuracies (``non_private_accuracy``, ``dp_accuracy`` or ``drop``)
        of every group, with sizes."""
        return GroupMetrics(
            metric=key, by_group={g["group"]: self.stat(g["group"], key).mean
                                  for g in self.groups},
            overall=Stat.from_json(self.overall[key]).mean,
            train_sizes={g["group"]: g["train_size"] for g in self.groups},
            test_sizes={g["group"]: g["test_size"] for g in self.groups})

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "comparison.json"
                  ) -> ComparisonResult:
        version = _check_version(where, data, COMPARISON_SCHEMA_VERSION)
        typed, rest = _split(cls, data, where)
        typed["schema_version"] = version
        typed["seeds"] = tuple(typed["seeds"])
        typed["groups"] = tuple(typed["groups"])
        typed["privacy"] = PrivacyStatement.from_json(typed["privacy"], f"{where}: privacy")
        typed["highlight"] = tuple(str(h) for h in typed.get("highlight") or ())
        return cls(**typed, extra=rest)

    def to_json(self) -> dict[str, Any]:
        return {SCHEMA_KEY: self.schema_version, **_to_json(self, {
            "experiment": self.experiment, "seeds": list(self.seeds),
            "groups": [dict(g) for g in self.groups], "overall": dict(self.overall),
            "privacy": self.privacy.to_json(), "highlight": list(self.highlight)})}


# ------------------------------------------------------------------------ readers, writers


def read_run_result(run_dir: str | Path) -> RunResult:
    """The ``results.json`` of a run directory as a :class:`RunResult`."""
    path = Path(run_dir) / res.RESULTS_FILE
    return RunResult.from_json(res.load_results(run_dir), str(path))


def write_run_result(run_dir: str | Path, result: RunResult) -> Path:
    """Write ``results.json`` atomically (sorted keys, infinities as ``null``)."""
    return res.write_json(Path(run_dir) / res.RESULTS_FILE, result.to_json())


def read_comparison_result(out_dir: str | Path) -> ComparisonResult:
    """The ``comparison.json`` of a comparison directory as a :class:`ComparisonResult`."""
    path = Path(out_dir) / res.COMPARISON_FILE
    return ComparisonResult.from_json(res.load_comparison(out_dir), str(path))


def write_comparison_result(out_dir: str | Path, comparison: ComparisonResult) -> Path:
    """Write ``comparison.json`` atomically."""
    return res.write_json(Path(out_dir) / res.COMPARISON_FILE, comparison.to_json())


def read_epoch_metrics(run_dir: str | Path) -> list[EpochMetrics]:
    """The lines of a run's ``metrics.jsonl`` (:func:`disparate.results.read_metrics`: empty
    if missing, a truncated last line skipped) as :class:`EpochMetrics`."""
    path = Path(run_dir) / res.METRICS_FILE
    return [EpochMetrics.from_json(line, f"{path}: line {i}")
            for i, line in enumerate(res.read_metrics(run_dir), start=1)]


def metrics_text(lines: Sequence[EpochMetrics | RoundMetrics]) -> str:
    """``metrics.jsonl`` text of ``lines``: one JSON object per line, sorted keys."""
    return "".join(res.dumps(line.to_json()) + "\n" for line in lines)
