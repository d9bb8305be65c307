"""Per-group results of a run and the comparison of non-private and DP runs.

The file formats are specified in ``docs/results-format.md``. This module holds the pure
parts -- building the ``results.json`` object of a run and aggregating runs over seeds into
``comparison.json`` -- so that they can be tested on hand-made numbers. The training loop
(:mod:`disparate.training`) computes the numbers; the comparison's table is
:mod:`disparate.reporting.comparison_table`; :mod:`disparate.report` renders the files.

Conventions: accuracies are fractions in [0, 1]; the *drop* is non-private accuracy minus
DP accuracy (positive: DP is worse); a group without test examples has accuracy ``None``
and is left out of rank correlations and gaps, never silently counted as 0.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from disparate import fileio
from disparate.config import (
    ExperimentConfig,
    PrivacyConfig,
    config_hash,
    list_presets,
    load_experiment,
    to_dict,
)
from disparate.randomness import NOISE_REPRODUCIBLE, NOISE_SECRET

__all__ = [
    "COMPARISON_FILE",
    "CONFIG_FILE",
    "CHECKPOINT_FILE",
    "METRICS_FILE",
    "NOT_COVERED",
    "POOR_GET_POORER_DESCRIPTION",
    "RESULTS_FILE",
    "SIZE_DEPENDENCE_DESCRIPTION",
    "build_run_results",
    "caveats",
    "environment",
    "compare_runs",
    "gap",
    "load_comparison",
    "load_results",
    "privacy_block",
    "resolved_settings",
    "read_json",
    "read_metrics",
    "size_dependence",
    "spearman",
    "summarize",
    "write_json",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CHECKPOINT_FILE = "checkpoint.pt"
COMPARISON_FILE = "comparison.json"

POOR_GET_POORER_DESCRIPTION = (
    "Spearman rank correlation across groups between non-private accuracy and the DP drop "
    "(negative: the poor get poorer)"
)
SIZE_DEPENDENCE_DESCRIPTION = (
    "Does the DP drop depend on group size alone? Spearman rank correlation across groups "
    "between training size and the DP drop (negative: smaller groups lose more); monotone: no "
    "larger group has a larger drop than a smaller one; small yet well served: groups with "
    "fewer training examples than a balanced split (total / number of groups) whose drop is "
    "below the median drop and below that of some larger group (paper Section 4.3: Reptilia); "
    "size_alone is false when there is such a group"
)

#: What a DP statement does not cover: released alongside the model, computed without noise.
NOT_COVERED = (
    "the per-group gradient norms and clipped fractions, training loss and training accuracy "
    "in metrics.jsonl and results.json (computed on the training data without noise)",
    "vocabularies, embeddings and other preprocessing built from the training split",
    "participant tables (participants.csv) of federated runs",
    "hyperparameters tuned on the training data",
    "several runs (e.g. seeds) on the same data released together (their epsilons add up)",
    "checkpoint.pt, which holds the secret seed and the noise generator's state",
)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON values: infinities become ``None``, NaN the string ``"nan"`` (never ``null``,
    which means "undefined"), tuples lists, mappings dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON text with sorted keys; infinities are written as ``null``, NaN as ``"nan"``."""
    return json.dumps(_jsonable(obj), sort_keys=True, indent=indent, allow_nan=False,
                      ensure_ascii=False)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as UTF-8 JSON with sorted keys, atomically (:func:`fileio.write_text`)."""
    return fileio.write_text(path, dumps(obj, indent=2) + "\n")


def _parse_json(path: Path, text: str | None = None) -> Any:
    """JSON of ``path`` (or of its ``text``); corrupt content raises a ValueError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8") if text is None else text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid UTF-8 JSON ({exc}); the file is corrupt: delete "
                         "it (or its run directory) and run again") from None


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object of a file (``results.json``, ``comparison.json``, ``study.json``, ...);
    ``ValueError`` naming the file when it is corrupt or not an object."""
    path = Path(path)
    data = _parse_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a run directory."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results (has the run finished?)")
    return read_json(path)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch lines of a run's ``metrics.jsonl`` (:func:`disparate.fileio.read_jsonl`:
    empty if the file is missing, a truncated last line skipped)."""
    return fileio.read_jsonl(Path(run_dir) / METRICS_FILE)


def load_comparison(out_dir: str | Path) -> dict[str, Any]:
    """The ``comparison.json`` of a comparison directory."""
    return read_json(Path(out_dir) / COMPARISON_FILE)


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def caveats(*, secret_noise: bool) -> str:
    """What every DP statement ends with: how the noise was seeded, what is not covered."""
    seeding = NOISE_SECRET if secret_noise else NOISE_REPRODUCIBLE
    return f". Noise: {seeding}. Not covered by this guarantee: {'; '.join(NOT_COVERED)}"


def privacy_block(
    privacy: PrivacyConfig,
    *,
    noise_multiplier: float | None,
    reports: Mapping[str, Any] | None,
    steps: int,
    calibration: Mapping[str, Any] | None = None,
    secret_noise: bool = False,
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``privacy`` object of ``results.json``.

    Args:
        privacy: The run's privacy config.
        noise_multiplier: The z actually used (calibrated if ``target_epsilon`` was set);
            ``None`` when the run is not in mode ``dp``.
        reports: ``{method: EpsilonReport}`` of the finished run (private runs only); the
            headline method is ``privacy.accountant``.
        steps: Number of steps taken.
        calibration: How z was calibrated from ``target_epsilon`` (or ``None``).
        secret_noise: Whether sampling and noise were drawn from the run's secret (else
            from the recorded ``training.seed``); stated in words in ``statement``.
        skipped: ``{method: reason}`` of methods not computed (the PLD beyond its memory
            bound); saved as ``skipped_methods``, and the statement names the fallback.
    """
    mode = privacy.mode
    skipped = dict(skipped or {})
    block: dict[str, Any] = {
        "is_private": privacy.is_private,
        "mode": mode,
        "max_grad_norm": privacy.max_grad_norm if privacy.clipping else None,
        "noise_multiplier": noise_multiplier if mode == "dp" else None,
        "sampling": privacy.sampling,
        "description": privacy.describe(),
        "steps": steps,
    }
    if mode == "dp":
        block["noise_std"] = noise_multiplier * privacy.max_grad_norm if noise_multiplier else None
    elif mode == "noise-only":
        block["noise_std"] = privacy.noise_std
    else:
        block["noise_std"] = 0.0
    if not privacy.is_private:
        block.update(
            delta=None, accountant=None, epsilon=None, shuffle_accounting=None,
            statement=f"not differentially private: {privacy.describe()}",
        )
        return block
    if not reports:
        raise ValueError("reports: a private run needs at least one EpsilonReport")
    dicts = {m: (r.to_dict() if hasattr(r, "to_dict") else dict(r)) for m, r in reports.items()}
    head_method = privacy.accountant if privacy.accountant in dicts else next(iter(dicts))
    head = dicts[head_method]
    eps = head["epsilon"]
    eps_text = f"{eps:.2f}" if eps is not None and math.isfinite(eps) else "inf"
    approx = "approximately " if head.get("approximate") else ""
    statement = (
        f"{approx}({eps_text}, {privacy.delta:g})-DP for {steps} steps of DP-SGD "
        f"(z={noise_multiplier:g}, S={privacy.max_grad_norm:g}) with {head['sampling']}; "
        f"accountant: {head['accountant']}; conversion: {head['conversion']}; "
        f"neighbouring datasets: {head['neighboring_relation']}"
    )
    if head.get("note"):
        statement += f". Note: {head['note']}"
    if privacy.accountant not in dicts and privacy.accountant in skipped:
        statement += (f". The configured accountant {privacy.accountant!r} fell back to "
                      f"{head_method!r}: {skipped[privacy.accountant]}")
    statement += caveats(secret_noise=secret_noise)
    block.update(
        noise_seeding="secret" if secret_noise else "reproducible",
        not_covered=list(NOT_COVERED),
        delta=privacy.delta,
        accountant=head_method,
        shuffle_accounting=privacy.shuffle_accounting,
        epsilon=dicts,
        statement=statement,
        skipped_methods=skipped,
    )
    if calibration is not None:
        block["calibration"] = dict(calibration)
    return block


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and prefix.count(".") < 1:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def overrides_of(config: ExperimentConfig) -> list[str] | None:
    """``KEY=VALUE`` of every setting that differs from the shipped preset ``config.name``
    (``None`` when there is no such preset to compare with)."""
    if config.name not in list_presets():
        return None
    preset = _flatten(to_dict(load_experiment(config.name)))
    return [f"{key}={dumps(value)}" for key, value in sorted(_flatten(to_dict(config)).items())
            if key != "description" and preset.get(key, object()) != value]


def resolved_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The settings a run actually used, from its resolved config -- what reports show."""
    t, p = config.training, config.privacy
    return {
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "optimizer": t.optimizer,
        "momentum": t.momentum,
        "sampling": p.sampling,
        "mechanism": p.describe(),
        "noise_seeding": ("secret" if p.is_private and not p.reproducible_noise
                          else "reproducible"),
        "overrides": overrides_of(config),
    }


def build_run_results(
    config: ExperimentConfig,
    *,
    group_names: Sequence[str],
    train_sizes: Mapping[str, int],
    test_sizes: Mapping[str, int],
    final_metrics: Mapping[str, Any],
    privacy: Mapping[str, Any],
    wall_time_s: float,
    device: str = "cpu",
) -> dict[str, Any]:
    """The ``results.json`` object from the last epoch's metrics line and the group sizes."""
    min_test = config.evaluation.min_group_test_size
    acc = final_metrics.get("group_accuracy", {})
    norms = final_metrics.get("group_grad_norm", {})
    clipped = final_metrics.get("group_clipped_fraction", {})
    groups = []
    for name in group_names:
        groups.append({
            "group": name,
            "train_size": int(train_sizes[name]),
            "test_size": int(test_sizes[name]),
            "accuracy": acc.get(name),
            "grad_norm": norms.get(name),
            "clipped_fraction": clipped.get(name),
            "small_test": int(test_sizes[name]) < min_test,
            "highlight": name in config.evaluation.highlight,
        })
    return {
        "experiment": config.name,
        "mode": config.privacy.mode,
        "seed": config.training.seed,
        "data_seed": config.data.seed,
        "config_hash": config_hash(config),
        "overall_accuracy": final_metrics.get("test_accuracy"),
        "test_loss": final_metrics.get("test_loss"),
        "train_loss": final_metrics.get("train_loss"),
        "epochs": final_metrics.get("epoch"),
        "steps": final_metrics.get("steps"),
        "train_size": int(sum(train_sizes.values())),
        "test_size": int(sum(test_sizes.values())),
        "highlight": list(config.evaluation.highlight),
        "groups": groups,
        "privacy": dict(privacy),
        "settings": resolved_settings(config),
        "wall_time_s": float(wall_time_s),
        "environment": environment(device),
    }


def environment(device: str = "cpu") -> dict[str, Any]:
    """Software versions, platform and device of this process (``results.json`` key)."""
    import platform
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    import torch

    gpu = torch.cuda.get_device_name(device) if str(device).startswith("cuda") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": gpu or platform.processor() or platform.machine(),
        "torch_cuda": torch.version.cuda,
        "packages": {p: version(p) for p in (
            "disparate", "torch", "torchvision", "numpy", "dp-accounting", "scikit-learn")},
    }


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t interval of the mean over seeds.

    ``None`` entries (e.g. a group without test examples in one seed) are kept in ``values``
    but left out of the statistics. ``ci95`` is ``None`` with fewer than two values.
    """
    from scipy import stats

    vals = [None if v is None else float(v) for v in values]
    present = [v for v in vals if v is not None]
    n = len(present)
    out: dict[str, Any] = {"values": vals, "n": n, "mean": None, "ci95": None}
    if n == 0:
        return out
    mean = math.fsum(present) / n
    out["mean"] = mean
    if n >= 2:
        var = math.fsum((v - mean) ** 2 for v in present) / (n - 1)
        half = float(stats.t.ppf(0.975, n - 1)) * math.sqrt(var / n)
        out["ci95"] = [mean - half, mean + half]
    return out


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> dict[str, Any]:
    """Spearman rank correlation of the pairs where both values are present.

    Returns ``{"spearman": rho or None, "p_value": p or None, "n_groups": n}``; ``rho`` is
    ``None`` with fewer than three pairs or when either side is constant.
    """
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    out: dict[str, Any] = {"spearman": None, "p_value": None, "n_groups": len(pairs)}
    if len(pairs) < 3:
        return out
    xs, ys = zip(*pairs, strict=True)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return out
    res = stats.spearmanr(xs, ys)
    rho, p = float(res.statistic), float(res.pvalue)
    out["spearman"] = rho if math.isfinite(rho) else None
    out["p_value"] = p if math.isfinite(p) else None
    return out


def gap(accuracy: Mapping[str, float | None]) -> dict[str, Any]:
    """Best- and worst-served group and the difference of their accuracies."""
    present = {g: a for g, a in accuracy.items() if a is not None}
    if not present:
        return {"best_group": None, "best_accuracy": None, "worst_group": None,
                "worst_accuracy": None, "difference": None}
    best = max(present, key=lambda g: present[g])
    worst = min(present, key=lambda g: present[g])
    return {"best_group": best, "best_accuracy": present[best], "worst_group": worst,
            "worst_accuracy": present[worst], "difference": present[best] - present[worst]}


def size_dependence(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the DP drop is explained by group size alone (the paper's Section 4.3 check).

    ``groups`` are the ``groups`` of a comparison (``train_size`` and the seed-mean
    ``drop``). Returns ``spearman`` / ``p_value`` / ``n_groups`` (training size vs drop),
    ``pairs`` (pairs of groups with a drop and different sizes) and ``discordant_pairs``
    (the larger group has the larger drop), ``monotone`` (no discordant pair; ``None``
    without pairs), ``balanced_size`` (training examples of all groups / number of groups),
    ``median_drop``, ``small_yet_well_served`` (groups below ``balanced_size`` whose drop is
    below ``median_drop`` and below the drop of some larger group: served better than their
    size predicts; smallest first) and ``size_alone`` (``False`` when there is such a group:
    the drop does not depend on size alone; ``True`` otherwise; ``None`` without pairs).
    """
    sizes = {str(g["group"]): float(g.get("train_size") or 0) for g in groups}
    drops: dict[str, float] = {}
    for g in groups:
        drop = g.get("drop")
        value = drop.get("mean") if isinstance(drop, Mapping) else drop
        if value is not None:
            drops[str(g["group"])] = float(value)
    names = list(drops)
    rank = spearman([sizes[n] for n in names], [drops[n] for n in names])
    pairs = discordant = 0
    beats_larger: set[str] = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if sizes[a] == sizes[b]:
                continue
            small, large = (a, b) if sizes[a] < sizes[b] else (b, a)
            pairs += 1
            if drops[large] > drops[small]:
                discordant += 1
                beats_larger.add(small)
    balanced = math.fsum(sizes.values()) / len(sizes) if sizes else None
    median = float(statistics.median(drops.values())) if drops else None
    served = sorted((n for n in beats_larger if balanced is not None and sizes[n] < balanced
                     and median is not None and drops[n] < median),
                    key=lambda n: (sizes[n], n))
    monotone = None if pairs == 0 else discordant == 0
    size_alone = None if monotone is None else not served
    return {
        "spearman": rank["spearman"], "p_value": rank["p_value"],
        "n_groups": rank["n_groups"], "pairs": pairs, "discordant_pairs": discordant,
        "monotone": monotone, "balanced_size": balanced, "median_drop": median,
        "small_yet_well_served": served, "size_alone": size_alone,
        "description": SIZE_DEPENDENCE_DESCRIPTION,
    }


# --------------------------------------------------------------------------------------------
# Comparison of non-private and DP runs
# --------------------------------------------------------------------------------------------


def _groups_by_name(result: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {g["group"]: g for g in result["groups"]}


def _drop(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare_runs(
    non_private: Sequence[Mapping[str, Any]],
    dp: Sequence[Mapping[str, Any]],
    *,
    seeds: Sequence[int],
    highlight: Sequence[str] = (),
    experiment: str | None = None,
    run_dirs: Sequence[Mapping[str, str]] | None = None,
    configs: Mapping[str, ExperimentConfig] | None = None,
) -> dict[str, Any]:
    """The ``comparison.json`` object of paired runs (one non-private and one DP per seed).

    ``configs``: the resolved ``{"non_private": ..., "dp": ...}`` configs of the first seed,
    written as ``config``; ``settings`` are those the runs' ``results.json`` record.

    ``non_private[i]`` and ``dp[i]`` are the ``results.json`` objects of seed ``seeds[i]``;
    they must have the same groups and group sizes (identical data). Group statistics are
    over seeds; the rank correlation and the gaps are computed on the seed means (and,
    per seed, summarised in ``per_seed``).
    """
    if not (len(non_private) == len(dp) == len(seeds)) or not seeds:
        raise ValueError(
            f"compare_runs: got {len(non_private)} non-private and {len(dp)} DP results for "
            f"{len(seeds)} seeds; expected one of each per seed (at least one seed)"
        )
    names = [g["group"] for g in non_private[0]["groups"]]
    for i, (a, b) in enumerate(zip(non_private, dp, strict=True)):
        ga, gb = _groups_by_name(a), _groups_by_name(b)
        if list(ga) != names or list(gb) != names:
            raise ValueError(
                f"seed {seeds[i]}: the runs have groups {list(ga)} and {list(gb)}; expected "
                f"{names} in both"
            )
        for name in names:
            sizes_a = (ga[name]["train_size"], ga[name]["test_size"])
            sizes_b = (gb[name]["train_size"], gb[name]["test_size"])
            if sizes_a != sizes_b:
                raise ValueError(
                    f"seed {seeds[i]}, group {name!r}: non-private (train, test) sizes {sizes_a} "
                    f"differ from DP sizes {sizes_b}; the runs must use identical data"
                )

    groups = []
    mean_np: dict[str, float | None] = {}
    mean_dp: dict[str, float | None] = {}
    mean_drop: dict[str, float | None] = {}
    for name in names:
        np_vals = [_groups_by_name(r)[name]["accuracy"] for r in non_private]
        dp_vals = [_groups_by_name(r)[name]["accuracy"] for r in dp]
        drops = [_drop(a, b) for a, b in zip(np_vals, dp_vals, strict=True)]
        first = _groups_by_name(non_private[0])[name]
        entry = {
            "group": name,
            "train_size": first["train_size"],
            "test_size": first["test_size"],
            "train_sizes": [_groups_by_name(r)[name]["train_size"] for r in non_private],
            "test_sizes": [_groups_by_name(r)[name]["test_size"] for r in non_private],
            "small_test": bool(first.get("small_test", False)),
            "highlight": name in highlight,
            "non_private_accuracy": summarize(np_vals),
            "dp_accuracy": summarize(dp_vals),
            "drop": summarize(drops),
            "non_private_grad_norm": summarize(
                [_groups_by_name(r)[name].get("grad_norm") for r in non_private]),
            "dp_grad_norm": summarize([_groups_by_name(r)[name].get("grad_norm") for r in dp]),
        }
        groups.append(entry)
        mean_np[name] = entry["non_private_accuracy"]["mean"]
        mean_dp[name] = entry["dp_accuracy"]["mean"]
        mean_drop[name] = entry["drop"]["mean"]

    overall_np = [r["overall_accuracy"] for r in non_private]
    overall_dp = [r["overall_accuracy"] for r in dp]

    per_seed_rho = []
    per_seed_gap_np = []
    per_seed_gap_dp = []
    for a, b in zip(non_private, dp, strict=True):
        acc_a = {g["group"]: g["accuracy"] for g in a["groups"]}
        acc_b = {g["group"]: g["accuracy"] for g in b["groups"]}
        per_seed_rho.append(spearman(
            [acc_a[n] for n in names], [_drop(acc_a[n], acc_b[n]) for n in names])["spearman"])
        per_seed_gap_np.append(gap(acc_a)["difference"])
        per_seed_gap_dp.append(gap(acc_b)["difference"])

    rank = spearman([mean_np[n] for n in names], [mean_drop[n] for n in names])
    gap_np = gap(mean_np)
    gap_np["per_seed"] = summarize(per_seed_gap_np)
    gap_dp = gap(mean_dp)
    gap_dp["per_seed"] = summarize(per_seed_gap_dp)

    out: dict[str, Any] = {
        "experiment": experiment if experiment is not None else dp[0].get("experiment"),
        "seeds": [int(s) for s in seeds],
        "highlight": [h for h in highlight],
        "groups": groups,
        "overall": {
            "non_private_accuracy": summarize(overall_np),
            "dp_accuracy": summarize(overall_dp),
            "drop": summarize([_drop(a, b) for a, b in zip(overall_np, overall_dp, strict=True)]),
        },
        "poor_get_poorer": {
            "spearman": rank["spearman"],
            "p_value": rank["p_value"],
            "n_groups": rank["n_groups"],
            "per_seed": summarize(per_seed_rho),
            "description": POOR_GET_POORER_DESCRIPTION,
        },
        "gap": {"non_private": gap_np, "dp": gap_dp},
        "size_dependence": size_dependence(groups),
        "privacy": dp[0]["privacy"],
        "config_hash": {"non_private": non_private[0].get("config_hash"),
                        "dp": dp[0].get("config_hash")},
        "settings": {"non_private": non_private[0].get("settings"),
                     "dp": dp[0].get("settings")},
        "wall_time_s": math.fsum(float(r.get("wall_time_s") or 0.0)
                                 for r in [*non_private, *dp]),
    }
    if run_dirs is not None:
        out["runs"] = [dict(r) for r in run_dirs]
    if configs is not None:
        out["config"] = {key: to_dict(cfg) for key, cfg in configs.items()}
    return out
