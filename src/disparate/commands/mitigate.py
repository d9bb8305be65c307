"""``disparate mitigate``: clipping policies compared at the same total epsilon.

Examples::

    disparate mitigate digits-underrep --target-epsilon 5 --seeds 3
    disparate mitigate mnist-underrep --methods dpsgd,dpsgd-f --target-epsilon 5 \\
        --set training.epochs=5 --out runs/mnist-mitigate

For each seed s (``data.seed = training.seed = s``) the data are built once and the
non-private reference (``seed-<s>/non-private``) and every method (``seed-<s>/<method>``) train
on them with the same sampling. Every method runs in mode ``dp`` with
``privacy.target_epsilon = E``: the gradient's noise multiplier is calibrated for the COMPOSED
mechanism (gradient and the policy's auxiliary statistics), so every method spends the same
total epsilon (:mod:`disparate.privacy.plan`). Every method's plan is built before anything
trains, so a bad name, option or target fails first. A method's options come from the
experiment's ``mitigation`` section when it names that method (``--set mitigation.method=
dpsgd-f --set mitigation.options.count_noise_std=4``); the other methods take their defaults.

``--tune N`` gives every method the same N trials (learning rate log-uniform in [lr/10, 10 lr]
and its own parameters, drawn by seeded generators) on a validation split (20% of every group)
of the first seed's training data -- never the test set -- and trains with the best trial by
validation accuracy.
The tuning looks at private data and is not covered by the stated epsilon (Papernot & Steinke
2022); ``mitigation.json`` and the report say so.

Writes ``mitigation.json`` (one ``comparison.json``-shaped object per method against the
non-private reference, and a summary), ``mitigation.md`` and ``mitigation.png`` (per-group
bars, one per method).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from disparate import results as res
from disparate.commands.compare import seed_list, seeded
from disparate.commands.run import ERR_INTERRUPTED, add_common_arguments, console_log, load_config
from disparate.config import ExperimentConfig, config_hash, config_hashes
from disparate.privacy.policies import POLICIES, MitigationConfig
from disparate.reporting import format as fmt

NAME = "mitigate"
MITIGATION_FILE = "mitigation.json"
REPORT_FILE = "mitigation.md"
FIGURE_FILE = "mitigation.png"
DEFAULT_METHODS = ("dpsgd", "dpsgd-f", "dpsgd-global-adapt", "adaptive-clip")
#: Fraction of the training data held out for --tune, and the seed of the trials' draws.
VALIDATION_FRACTION = 0.2
TUNE_SEED = 0

ERR_METHODS = "--methods={value!r}: expected a comma-separated list of {choices}"
ERR_DUPLICATE = "--methods={value!r}: {method!r} is given twice"
ERR_TUNE = "--tune={value!r}: expected an integer >= 0"
ERR_NO_GROUPS = (
    "--methods includes {method!r}, which clips by group, but experiment {name!r} has "
    "{groups} group(s); expected a dataset with group labels (at least 2 groups)"
)
TUNING_NOTE = (
    "Hyperparameters were tuned on a validation split of the private training data; that "
    "tuning is not covered by the stated epsilon (Papernot & Steinke 2022, 'Hyperparameter "
    "tuning with Renyi differential privacy')."
)
NO_TUNING_NOTE = "No tuning: every method ran with the experiment's settings and its defaults."


def parse_methods(text: str) -> list[str]:
    """The method names of ``--methods`` (ValueError naming the bad one and the choices)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    choices = ", ".join(map(repr, POLICIES))
    if not names:
        raise ValueError(ERR_METHODS.format(value=text, choices=choices))
    for i, name in enumerate(names):
        if name not in POLICIES:
            raise ValueError(ERR_METHODS.format(value=name, choices=choices))
        if name in names[:i]:
            raise ValueError(ERR_DUPLICATE.format(value=text, method=name))
    return names


def method_config(config: ExperimentConfig, method: str, target_epsilon: float, *,
                  options: Mapping[str, Any] | None = None, lr: float | None = None
                  ) -> ExperimentConfig:
    """``config`` in mode ``dp`` at ``target_epsilon`` with clipping policy ``method``: its
    options are those of the config's ``mitigation`` section if that names ``method``, updated
    with ``options`` (a tuning trial's)."""
    cfg = config.with_mode("dp", target_epsilon=target_epsilon, noise_multiplier=None)
    if lr is not None:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, lr=lr))
    own = config.mitigation
    merged = {**(dict(own.options) if own is not None and own.method == method else {}),
              **(options or {})}
    return dataclasses.replace(cfg, mitigation=MitigationConfig(method=method, options=merged))


def check_methods(configs: Mapping[str, ExperimentConfig], train_set: Any) -> dict[str, Any]:
    """Every method's plan on ``train_set`` (errors before any training): ``{method: plan}``."""
    from disparate.privacy.policies import policy_class
    from disparate.training import resolve_noise

    plans = {}
    for method, cfg in configs.items():
        if policy_class(method).needs_groups and train_set.num_groups < 2:
            raise ValueError(ERR_NO_GROUPS.format(method=method, name=cfg.name,
                                                  groups=train_set.num_groups))
        plans[method] = resolve_noise(cfg, len(train_set), num_groups=train_set.num_groups)
    return plans


# ------------------------------------------------------------------------------- tuning

def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


#: Each method's own parameters drawn in a trial (the learning rate is drawn for all).
TUNE_SPACES: dict[str, Callable[[np.random.Generator, float], dict[str, float]]] = {
    "dpsgd": lambda rng, s: {},
    "dpsgd-f": lambda rng, s: {},
    "dpsgd-global": lambda rng, s: {"upper_bound": _log_uniform(rng, 2 * s, 20 * s)},
    "dpsgd-global-adapt": lambda rng, s: {"upper_bound": _log_uniform(rng, 2 * s, 20 * s),
                                          "target_fraction": float(rng.uniform(0.0, 0.1))},
    "adaptive-clip": lambda rng, s: {"target_quantile": float(rng.uniform(0.3, 0.9))},
}


def validation_splits(splits: Any, seed: int) -> Any:
    """(training minus the held-out part, the held-out part): round(20%) of every group of
    the training split, drawn by a generator of ``seed`` (a group of one stays in training)."""
    from disparate.data import DatasetSplits

    train = splits.train
    rng = np.random.default_rng(seed)
    groups = train.groups.numpy()
    held = np.concatenate([rng.permutation(np.flatnonzero(groups == g))[
        :round(VALIDATION_FRACTION * int((groups == g).sum()))] for g in range(train.num_groups)])
    keep = np.setdiff1d(np.arange(len(train)), held)
    return DatasetSplits(train.subset(keep), train.subset(np.sort(held)))


def tune(config: ExperimentConfig, methods: Sequence[str], target_epsilon: float, trials: int,
         splits: Any, out: Path, **train_kwargs: Any) -> dict[str, Any]:
    """The best of ``trials`` draws per method by validation accuracy: ``{method: {...}}``; a
    trial that diverges counts as failed (validation accuracy ``None``)."""
    from disparate.training import TrainingDivergedError

    val = validation_splits(splits, config.data.seed)
    base_lr, s = config.training.lr, config.privacy.max_grad_norm
    chosen: dict[str, Any] = {}
    for method in methods:
        lr_rng = np.random.default_rng(TUNE_SEED)  # the same learning rates for every method
        option_rng = np.random.default_rng(TUNE_SEED + 1)
        tried = []
        for k in range(trials):
            lr = _log_uniform(lr_rng, base_lr / 10, base_lr * 10)
            options = TUNE_SPACES[method](option_rng, s)
            cfg = method_config(config, method, target_epsilon, options=options, lr=lr)
            try:
                accuracy = _run(cfg, out / "tuning" / method / f"trial-{k}", val,
                                **train_kwargs)["overall_accuracy"]
            except TrainingDivergedError:
                accuracy = None
            tried.append({"lr": lr, "options": options, "validation_accuracy": accuracy})
        best = max(tried, key=lambda t: -1.0 if t["validation_accuracy"] is None
                   else t["validation_accuracy"])  # a diverged trial is never chosen over one
        chosen[method] = {"lr": best["lr"], "options": best["options"], "trials": tried}
    return chosen


# ------------------------------------------------------------------------------- the runs

def _run(cfg: ExperimentConfig, run_dir: Path, splits: Any, *, resume: bool = False,
         log: Callable[[str], None] | None = None, **train_kwargs: Any) -> dict[str, Any]:
    """``results.json`` of ``cfg`` trained in ``run_dir`` (reused if finished and resuming)."""
    from disparate.training import train

    if resume:
        try:
            result = res.load_results(run_dir)
        except (FileNotFoundError, ValueError):
            result = None
        if result is not None and result.get("config_hash") in config_hashes(cfg):
            if log is not None:
                log(f"reusing finished run {run_dir}")
            return result
    return train(cfg, run_dir, resume=resume, splits=splits, log=log, **train_kwargs).results


def method_summary(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """Per method: epsilon, overall accuracy and drop, worst group, best-worst gap."""
    privacy = comparison["privacy"]
    head = privacy["epsilon"][privacy["accountant"]]
    gap = comparison["gap"]["dp"]
    return {
        "epsilon": head["epsilon"],
        "accountant": privacy["accountant"],
        "noise_multiplier": privacy["noise_multiplier"],
        "aux_noise_multipliers": head.get("aux_noise_multipliers", []),
        "overall_accuracy": comparison["overall"]["dp_accuracy"],
        "overall_drop": comparison["overall"]["drop"],
        "worst_group": gap["worst_group"],
        "worst_group_accuracy": gap["worst_accuracy"],
        "gap": gap["difference"],
        "gap_per_seed": gap["per_seed"],
        "statement": privacy["statement"],
    }


def run_mitigation(config: ExperimentConfig, out_dir: str | Path, *, methods: Sequence[str],
                   target_epsilon: float, seeds: Sequence[int], tune_trials: int = 0,
                   resume: bool = False, overwrite: bool = False, device: str = "cpu",
                   progress: bool | None = None, log: Callable[[str], None] | None = None
                   ) -> dict[str, Any]:
    """Train the reference and every method for every seed; write and return mitigation.json."""
    from disparate.data import DatasetNotFoundError
    from disparate.training import check_run_dir, prepare_data

    if isinstance(tune_trials, bool) or not isinstance(tune_trials, int) or tune_trials < 0:
        raise ValueError(ERR_TUNE.format(value=tune_trials))
    out = Path(out_dir)
    if not resume and not overwrite and (out / MITIGATION_FILE).exists():
        check_run_dir(out / f"seed-{seeds[0]}" / "non-private", resume=False, overwrite=False)
    first = seeded(config, seeds[0])
    try:
        first_splits = prepare_data(first)
    except DatasetNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    plans = check_methods({m: method_config(first, m, target_epsilon) for m in methods},
                          first_splits.train)
    train_kwargs = {"resume": resume, "overwrite": overwrite, "device": device,
                    "progress": progress, "log": log}
    chosen = (tune(first, methods, target_epsilon, tune_trials, first_splits, out,
                   **train_kwargs) if tune_trials else {})
    results: dict[str, list[dict[str, Any]]] = {"non-private": [], **{m: [] for m in methods}}
    run_dirs: dict[str, list[dict[str, str]]] = {m: [] for m in methods}
    for seed in seeds:
        cfg = seeded(config, seed)
        splits = first_splits if seed == seeds[0] else prepare_data(cfg)
        reference = dataclasses.replace(cfg.non_private(), mitigation=None)
        results["non-private"].append(_run(reference, out / f"seed-{seed}" / "non-private",
                                           splits, **train_kwargs))
        for method in methods:
            pick = chosen.get(method, {})
            run_cfg = method_config(cfg, method, target_epsilon, options=pick.get("options"),
                                    lr=pick.get("lr"))
            results[method].append(_run(run_cfg, out / f"seed-{seed}" / method, splits,
                                        **train_kwargs))
            run_dirs[method].append({"seed": str(seed), "non_private": f"seed-{seed}/non-private",
                                     "dp": f"seed-{seed}/{method}"})
    comparisons = {
        m: res.compare_runs(results["non-private"], results[m], seeds=seeds,
                            highlight=config.evaluation.highlight, experiment=config.name,
                            run_dirs=run_dirs[m])
        for m in methods}
    mitigation = {
        "experiment": config.name,
        "target_epsilon": target_epsilon,
        "delta": config.privacy.delta,
        "seeds": [int(s) for s in seeds],
        "methods": list(methods),
        "highlight": list(config.evaluation.highlight),
        "calibration": {m: dict(plans[m].calibration or {}) for m in methods},
        "summary": {m: method_summary(c) for m, c in comparisons.items()},
        "comparisons": comparisons,
        "tuning": ({"trials": tune_trials, "validation_fraction": VALIDATION_FRACTION,
                    "criterion": "overall validation accuracy", "chosen": chosen}
                   if tune_trials else None),
        "tuning_note": TUNING_NOTE if tune_trials else NO_TUNING_NOTE,
        "wall_time_s": math.fsum(float(r.get("wall_time_s") or 0.0)
                                 for rs in results.values() for r in rs),
    }
    res.write_json(out / MITIGATION_FILE, mitigation)
    return mitigation


# ------------------------------------------------------------------------------- report

def _pct(value: Mapping[str, Any] | float | None, *, signed: bool = False) -> str:
    """An accuracy (a drop, ``signed``) in % without the unit, with its clamped interval."""
    if signed:
        return fmt.points(value, suffix="")
    return fmt.accuracy(value, suffix="")


def format_summary_table(mitigation: Mapping[str, Any]) -> str:
    """Markdown: per method epsilon, overall accuracy and drop, each highlighted group's
    accuracy and drop, the worst group and the best-worst gap (points)."""
    highlight = mitigation.get("highlight") or []
    header = ["method", "epsilon", "overall %", "overall drop"]
    for h in highlight:
        header += [f"{h} %", f"{h} drop"]
    header += ["worst group", "gap (points)"]
    first = next(iter(mitigation["comparisons"].values()))
    np_groups = {g["group"]: g for g in first["groups"]}
    rows = [["non-private", "-", _pct(first["overall"]["non_private_accuracy"]), "-"]
            + [c for h in highlight for c in (_pct(np_groups[h]["non_private_accuracy"]), "-")]
            + ["-", "-"]]
    for method, s in mitigation["summary"].items():
        groups = {g["group"]: g for g in mitigation["comparisons"][method]["groups"]}
        rows.append([method, f"{s['epsilon']:.3f}", _pct(s["overall_accuracy"]),
                     _pct(s["overall_drop"], signed=True)]
                    + [c for h in highlight for c in (_pct(groups[h]["dp_accuracy"]),
                                                       _pct(groups[h]["drop"], signed=True))]
                    + [f"{s['worst_group']} ({_pct(s['worst_group_accuracy'])})",
                       _pct(s["gap"])])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_report(mitigation: Mapping[str, Any], out_dir: str | Path) -> Path:
    """``mitigation.md``: the summary, then per method its statement and per-group table."""
    out = Path(out_dir)
    seeds = mitigation["seeds"]
    lines = [f"# Mitigations on {mitigation['experiment']} at epsilon = "
             f"{mitigation['target_epsilon']:g}", "",
             f"Seeds {', '.join(map(str, seeds))}; every method calibrated to the same total "
             f"epsilon (delta = {mitigation['delta']:g}), its auxiliary statistics included. "
             "Accuracies in %, drops in points against the non-private reference"
             + (", mean [95% Student-t interval over seeds, accuracies within 0-100]."
                if len(seeds) > 1 else " (one seed: no interval)."), "",
             mitigation["tuning_note"], "", format_summary_table(mitigation), "",
             f"![per-group accuracy]({FIGURE_FILE})", ""]
    for method, comparison in mitigation["comparisons"].items():
        s = mitigation["summary"][method]
        lines += [f"## {method}", "", f"Privacy: {s['statement']}", "",
                  res.format_comparison_table(comparison, markdown=True), ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def plot_methods(mitigation: Mapping[str, Any], path: str | Path) -> Path:
    """Per-group accuracy bars: the non-private reference and one bar per method (95% CI)."""
    from matplotlib.ticker import PercentFormatter

    from disparate.plots import DP_COLOR, NON_PRIVATE_COLOR, group_sort_key, new_figure, save_figure

    comparisons = mitigation["comparisons"]
    first = next(iter(comparisons.values()))
    names = sorted((g["group"] for g in first["groups"]), key=group_sort_key)
    sizes = {g["group"]: g["train_size"] for g in first["groups"]}
    series = [("non-private", {g["group"]: g["non_private_accuracy"] for g in first["groups"]})]
    series += [(m, {g["group"]: g["dp_accuracy"] for g in c["groups"]})
               for m, c in comparisons.items()]
    colors = [NON_PRIVATE_COLOR, DP_COLOR, "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
    fig, ((ax,),) = new_figure(max(6.0, min(30.0, 0.25 * len(names) * len(series) + 2)), 4.2)
    width = 0.8 / len(series)
    for k, (label, acc) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        means = [acc[n]["mean"] if acc[n]["mean"] is not None else 0.0 for n in names]
        errs = [[m - acc[n]["ci95"][0] if acc[n]["ci95"] else 0.0 for m, n in zip(means, names,
                                                                                    strict=True)],
                [acc[n]["ci95"][1] - m if acc[n]["ci95"] else 0.0 for m, n in zip(means, names,
                                                                                    strict=True)]]
        ax.bar(xs, means, width=width, color=colors[k % len(colors)], label=label,
               edgecolor="black", linewidth=0.4, zorder=2)
        if any(acc[n]["ci95"] for n in names):
            ax.errorbar(xs, means, yerr=errs, fmt="none", ecolor="black", elinewidth=0.8,
                        capsize=2, zorder=3)
    ax.set_xticks(range(len(names)), [f"{n}\nn={sizes[n]}" for n in names], fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("group (n = training examples)")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(loc="upper right", ncol=min(len(series), 4), fontsize=7, framealpha=0.9)
    ax.set_title(f"Test accuracy by group at epsilon = {mitigation['target_epsilon']:g}",
                 fontsize=10)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------- CLI

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``mitigate`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME, help="compare clipping policies (DPSGD-F, DPSGD-Global-Adapt, ...) at one epsilon",
        description=("Train the non-private reference and each clipping policy of EXPERIMENT "
                     "at the same total epsilon on identical data and seeds; write "
                     "mitigation.json, mitigation.md and mitigation.png."))
    add_common_arguments(parser)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated methods, of " + ", ".join(POLICIES)
                        + " (default: %(default)s)")
    parser.add_argument("--target-epsilon", type=float, required=True, metavar="E",
                        help="the total epsilon every method is calibrated to")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="number of seeds, starting at training.seed (default: 1)")
    parser.add_argument("--tune", type=int, default=0, metavar="N",
                        help="N tuning trials per method on a validation split (default: 0)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default: runs/<experiment>-mitigate-<hash>)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="continue unfinished runs from their checkpoints; reuse finished")
    what.add_argument("--overwrite", action="store_true",
                      help="train again even if --out already holds runs")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check everything, train, write mitigation.json, the report and the figure."""
    start = time.perf_counter()
    methods = parse_methods(args.methods)
    if not (math.isfinite(args.target_epsilon) and args.target_epsilon > 0):
        raise ValueError(f"--target-epsilon={args.target_epsilon!r}: expected a finite number > 0")
    if args.tune < 0:
        raise ValueError(ERR_TUNE.format(value=args.tune))
    config = load_config(args)
    seeds = seed_list(config, args.seeds)
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-mitigate-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: non-private vs {', '.join(methods)} at epsilon "
            f"{args.target_epsilon:g}; seeds {seeds} -> {out}")
    try:
        mitigation = run_mitigation(config, out, methods=methods,
                                    target_epsilon=args.target_epsilon, seeds=seeds,
                                    tune_trials=args.tune, resume=args.resume,
                                    overwrite=args.overwrite, device=args.device,
                                    progress=False if args.quiet else None, log=log)
    except KeyboardInterrupt:
        print(f"disparate: {ERR_INTERRUPTED.format(out=out)}", file=sys.stderr)
        return 130
    report = write_report(mitigation, out)
    plot_methods(mitigation, out / FIGURE_FILE)
    print()
    print(format_summary_table(mitigation))
    print()
    print(mitigation["tuning_note"])
    print(f"mitigation: {out / MITIGATION_FILE}; report: {report}; figure: {out / FIGURE_FILE}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0
