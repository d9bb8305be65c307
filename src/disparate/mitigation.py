"""Clipping policies compared at the same total epsilon: the library of ``disparate mitigate``
and of the study kind ``mitigation``.

For each seed s (``data.seed = training.seed = s``, :func:`~disparate.comparison.seeded`) the
non-private reference and every method train on identical data with the same sampling, as
points of a sweep over the run store (``OUT/runs/<config_hash>/``, :mod:`disparate.sweep`):
a mitigation resumes where it stopped and shares finished runs with comparisons and studies of
the same configs. Every method runs in mode ``dp`` with ``privacy.target_epsilon = E``: the
gradient's noise multiplier is calibrated for the COMPOSED mechanism (gradient and the policy's
auxiliary statistics), so every method spends the same total epsilon
(:mod:`disparate.privacy.plan`). Every method's plan is built before anything trains, so a bad
name, option or target fails first. A method's options come from the experiment's
``mitigation`` section when it names that method; the other methods take their defaults.

Tuning (``tune_trials=N``) gives every method the same N trials (learning rate log-uniform in
[lr/10, 10 lr] and its own parameters, drawn by seeded generators) on a validation split (20%
of every group) of the first seed's training data -- never the test set -- and trains with the
best trial by the objective (:data:`TUNE_OBJECTIVES`). That tuning looks at private data and is
not covered by the stated epsilon (Papernot & Steinke 2022); ``mitigation.json`` and the report
say so.

``mitigation.json`` (schema version 2; version 1, without ``schema_version``, kept its runs in
``seed-<s>/<method>`` and is still read by :func:`read_mitigation`), ``mitigation.md`` and
``mitigation.html`` (one :class:`~disparate.reporting.document.Document`) and
``mitigation.png`` (per-group bars, one per method).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from disparate import fileio
from disparate import results as res
from disparate.comparison import check_run_dirs, seeded, sweep_all
from disparate.config import ExperimentConfig, config_hashes
from disparate.privacy.policies import POLICIES, MitigationConfig, policy_class
from disparate.records import RunResult
from disparate.reporting import format as fmt
from disparate.reporting.comparison_table import comparison_blocks
from disparate.reporting.document import (
    Block,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
    markdown_blocks,
    render_html,
    render_markdown,
)
from disparate.sweep import SweepPoint, make_point

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_TUNE_OBJECTIVE",
    "MITIGATION_FILE",
    "MITIGATION_SCHEMA_VERSION",
    "REFERENCE",
    "TUNE_OBJECTIVES",
    "build_document",
    "check_methods",
    "format_summary_table",
    "method_config",
    "method_summary",
    "mitigation_points",
    "parse_methods",
    "plot_methods",
    "prepare",
    "read_mitigation",
    "run_mitigation",
    "summarize_methods",
    "tune",
    "validation_splits",
    "write_report",
]

#: 2: the runs are points of a run store (``comparisons.<method>.runs`` name them relative to
#: the output directory); 1 (no ``schema_version``): ``seed-<s>/non-private``,
#: ``seed-<s>/<method>``.
MITIGATION_SCHEMA_VERSION = 2
MITIGATION_FILE = "mitigation.json"
REPORT_FILE = "mitigation.md"
REPORT_HTML_FILE = "mitigation.html"
FIGURE_FILE = "mitigation.png"
RUNS_SUBDIR = "runs"
TUNING_SUBDIR = "tuning"
DEFAULT_METHODS = ("dpsgd", "dpsgd-f", "dpsgd-global-adapt", "adaptive-clip")
#: The label of the non-private reference among the methods' runs.
REFERENCE = "non-private"
#: Fraction of the training data held out for tuning, and the seed of the trials' draws.
VALIDATION_FRACTION = 0.2
TUNE_SEED = 0
#: What a tuning trial is scored by, on the validation split.
TUNE_OBJECTIVES: dict[str, str] = {
    "overall": "overall validation accuracy",
    "worst-group": "worst-group validation accuracy",
}
#: Overall accuracy stays the default: it is what every method's defaults were tuned for, and
#: the worst group of a small validation split (2 examples of class 8 on digits) is noisy.
DEFAULT_TUNE_OBJECTIVE = "overall"

ERR_METHODS = "--methods={value!r}: expected a comma-separated list of {choices}"
ERR_DUPLICATE = "--methods={value!r}: {method!r} is given twice"
ERR_TUNE = "--tune={value!r}: expected an integer >= 0"
ERR_TUNE_OBJECTIVE = "--tune-objective={value!r}: expected one of {choices}"
ERR_TARGET = "--target-epsilon={value!r}: expected a finite number > 0"
ERR_NO_GROUPS = (
    "--methods includes {method!r}, which clips by group, but experiment {name!r} has "
    "{groups} group(s); expected a dataset with group labels (at least 2 groups)"
)
ERR_SCHEMA = ("{path}: schema_version={value!r}: this version of disparate reads mitigation "
              f"files of versions 1 to {MITIGATION_SCHEMA_VERSION}; upgrade disparate")
TUNING_NOTE = (
    "Hyperparameters were tuned on a validation split of the private training data; that "
    "tuning is not covered by the stated epsilon (Papernot & Steinke 2022, 'Hyperparameter "
    "tuning with Renyi differential privacy')."
)
NO_TUNING_NOTE = "No tuning: every method ran with the experiment's settings and its defaults."

Log = Callable[[str], None]


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


def check_target(target_epsilon: Any) -> float:
    """``target_epsilon`` as a finite float > 0 (ValueError naming it otherwise)."""
    if isinstance(target_epsilon, bool) or not isinstance(target_epsilon, int | float) or not (
            math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(ERR_TARGET.format(value=target_epsilon))
    return float(target_epsilon)


def check_tuning(trials: Any, objective: Any) -> None:
    """ValueError naming ``--tune`` or ``--tune-objective`` when out of range."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise ValueError(ERR_TUNE.format(value=trials))
    if objective not in TUNE_OBJECTIVES:
        raise ValueError(ERR_TUNE_OBJECTIVE.format(
            value=objective, choices=", ".join(map(repr, TUNE_OBJECTIVES))))


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


def reference_config(config: ExperimentConfig) -> ExperimentConfig:
    """The non-private reference of ``config``: no clipping, no noise, no policy."""
    return dataclasses.replace(config.non_private(), mitigation=None)


def check_methods(configs: Mapping[str, ExperimentConfig], train_set: Any) -> dict[str, Any]:
    """Every method's plan on ``train_set`` (errors before any training): ``{method: plan}``."""
    from disparate.training import resolve_noise

    plans = {}
    for method, cfg in configs.items():
        if policy_class(method).needs_groups and train_set.num_groups < 2:
            raise ValueError(ERR_NO_GROUPS.format(method=method, name=cfg.name,
                                                  groups=train_set.num_groups))
        plans[method] = resolve_noise(cfg, len(train_set), num_groups=train_set.num_groups)
    return plans


def prepare(config: ExperimentConfig, methods: Sequence[str], target_epsilon: float
            ) -> tuple[Any, dict[str, Any]]:
    """(the data of ``config``, every method's plan on it): the checks before any training."""
    from disparate.data import DatasetNotFoundError
    from disparate.training import prepare_data

    try:
        splits = prepare_data(config)
    except DatasetNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    return splits, check_methods({m: method_config(config, m, target_epsilon)
                                  for m in methods}, splits.train)


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


def objective_value(result: Mapping[str, Any], objective: str) -> float | None:
    """A trial's score on the validation split: its overall accuracy, or the accuracy of its
    worst group (``None`` when there is none)."""
    run = RunResult.from_json(result)
    if objective == "overall":
        return run.overall_accuracy
    worst = run.metric("accuracy").group_min()
    return None if worst is None else worst[1]


def _run(cfg: ExperimentConfig, run_dir: Path, splits: Any, *, resume: bool = False,
         log: Log | None = None, **train_kwargs: Any) -> dict[str, Any]:
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


def tune(config: ExperimentConfig, methods: Sequence[str], target_epsilon: float, trials: int,
         splits: Any, out: Path, *, objective: str = DEFAULT_TUNE_OBJECTIVE, **train_kwargs: Any
         ) -> dict[str, Any]:
    """The best of ``trials`` draws per method by ``objective`` on the validation split:
    ``{method: {"lr", "options", "trials"}}``; a trial that diverges counts as failed (score
    ``None``) and is never chosen over one that finished."""
    from disparate.training import TrainingDivergedError

    check_tuning(trials, objective)
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
                result = _run(cfg, out / TUNING_SUBDIR / method / f"trial-{k}", val,
                              **train_kwargs)
                accuracy, score = result["overall_accuracy"], objective_value(result, objective)
            except TrainingDivergedError:
                accuracy = score = None
            tried.append({"lr": lr, "options": options, "validation_accuracy": accuracy,
                          "score": score})
        best = max(tried, key=lambda t: -1.0 if t["score"] is None else t["score"])
        chosen[method] = {"lr": best["lr"], "options": best["options"], "trials": tried}
    return chosen


# ------------------------------------------------------------------------------- the runs

def mitigation_points(config: ExperimentConfig, methods: Sequence[str], target_epsilon: float,
                      seeds: Sequence[int], runs_dir: str | Path,
                      chosen: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> list[SweepPoint]:
    """Per seed the reference and every method as points of ``runs_dir``, labelled
    ``{"variant": "non-private" | method, "seed": s}``; ``chosen``: tuned lr and options."""
    points = []
    for seed in seeds:
        cfg = seeded(config, seed)
        points.append(make_point(reference_config(cfg), runs_dir,
                                 {"variant": REFERENCE, "seed": seed}))
        for method in methods:
            pick = (chosen or {}).get(method, {})
            run_cfg = method_config(cfg, method, target_epsilon, options=pick.get("options"),
                                    lr=pick.get("lr"))
            points.append(make_point(run_cfg, runs_dir, {"variant": method, "seed": seed}))
    return points


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


def summarize_methods(results: Mapping[str, Sequence[Mapping[str, Any]]], *,
                      seeds: Sequence[int], highlight: Sequence[str] = (),
                      experiment: str | None = None,
                      run_dirs: Mapping[str, Sequence[Mapping[str, str]]] | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(comparisons, summary) per method of ``results`` (``{"non-private": [per seed], method:
    [per seed]}``, the results.json objects in the order of ``seeds``): each method's
    ``comparison.json`` object against the reference and its :func:`method_summary`. Pure."""
    methods = [m for m in results if m != REFERENCE]
    comparisons = {
        m: res.compare_runs(results[REFERENCE], results[m], seeds=seeds, highlight=highlight,
                            experiment=experiment,
                            run_dirs=None if run_dirs is None else run_dirs[m])
        for m in methods}
    return comparisons, {m: method_summary(c) for m, c in comparisons.items()}


def run_mitigation(config: ExperimentConfig, out_dir: str | Path, *, methods: Sequence[str],
                   target_epsilon: float, seeds: Sequence[int], tune_trials: int = 0,
                   tune_objective: str = DEFAULT_TUNE_OBJECTIVE,
                   runs_dir: str | Path | None = None, resume: bool = False,
                   overwrite: bool = False, backend: str = "local", jobs: int = 1,
                   threads: int | None = None, device: str = "cpu",
                   progress: bool | None = None, log: Log | None = None,
                   echo: Log | None = None) -> dict[str, Any]:
    """Train the reference and every method for every seed; write and return mitigation.json.

    A run that already holds files is an error unless ``resume`` (continue it; a finished run
    is reused) or ``overwrite`` (train it again). ``runs_dir``: the run store (default
    ``out_dir/runs``); ``backend``, ``jobs``, ``threads``: as for
    :func:`disparate.sweep.run_sweep`; ``progress``, ``log``: of the tuning trials (trained in
    this process on the validation split, in ``out_dir/tuning``).
    """
    target_epsilon = check_target(target_epsilon)
    check_tuning(tune_trials, tune_objective)
    out = Path(out_dir)
    runs = Path(runs_dir) if runs_dir is not None else out / RUNS_SUBDIR
    first = seeded(config, seeds[0])
    first_splits, plans = prepare(first, methods, target_epsilon)
    # the methods' points are known only after tuning: the reference's are checked first
    check_run_dirs(mitigation_points(config, () if tune_trials else methods, target_epsilon,
                                      seeds, runs), resume=resume, overwrite=overwrite)
    chosen = (tune(first, methods, target_epsilon, tune_trials, first_splits, out,
                   objective=tune_objective, resume=resume, overwrite=overwrite, device=device,
                   progress=progress, log=log) if tune_trials else {})
    points = mitigation_points(config, methods, target_epsilon, seeds, runs, chosen)
    if tune_trials:
        check_run_dirs([p for p in points if p.labels["variant"] != REFERENCE],
                        resume=resume, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    sweep_all(points, backend=backend, jobs=jobs, threads=threads, device=device, log=log,
           echo=echo)
    results: dict[str, list[dict[str, Any]]] = {REFERENCE: [], **{m: [] for m in methods}}
    dirs: dict[str, dict[int, str]] = {REFERENCE: {}, **{m: {} for m in methods}}
    for p in points:
        results[p.labels["variant"]].append(res.load_results(p.run_dir))
        dirs[p.labels["variant"]][p.labels["seed"]] = fileio.relative_path(p.run_dir, out)
    run_dirs = {m: [{"seed": str(s), "non_private": dirs[REFERENCE][s], "dp": dirs[m][s]}
                    for s in seeds] for m in methods}
    comparisons, summary = summarize_methods(
        results, seeds=seeds, highlight=config.evaluation.highlight, experiment=config.name,
        run_dirs=run_dirs)
    mitigation = {
        "schema_version": MITIGATION_SCHEMA_VERSION,
        "experiment": config.name,
        "target_epsilon": target_epsilon,
        "delta": config.privacy.delta,
        "seeds": [int(s) for s in seeds],
        "methods": list(methods),
        "highlight": list(config.evaluation.highlight),
        "calibration": {m: dict(plans[m].calibration or {}) for m in methods},
        "summary": summary,
        "comparisons": comparisons,
        "tuning": ({"trials": tune_trials, "validation_fraction": VALIDATION_FRACTION,
                    "objective": tune_objective, "criterion": TUNE_OBJECTIVES[tune_objective],
                    "chosen": chosen} if tune_trials else None),
        "tuning_note": TUNING_NOTE if tune_trials else NO_TUNING_NOTE,
        "wall_time_s": math.fsum(float(r.get("wall_time_s") or 0.0)
                                 for rs in results.values() for r in rs),
    }
    res.write_json(out / MITIGATION_FILE, mitigation)
    return mitigation


def read_mitigation(out_dir: str | Path) -> dict[str, Any]:
    """The ``mitigation.json`` of ``out_dir``, of schema version 1 or 2 (a version-1 file
    reads as version 2: only where its runs are differs)."""
    path = Path(out_dir) / MITIGATION_FILE
    data = res.read_json(path)
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or version not in range(1, MITIGATION_SCHEMA_VERSION + 1):
        raise ValueError(ERR_SCHEMA.format(path=path, value=version))
    return {**data, "schema_version": MITIGATION_SCHEMA_VERSION}


# ------------------------------------------------------------------------------- report

def _pct(value: Mapping[str, Any] | float | None, *, signed: bool = False) -> str:
    """An accuracy (a drop, ``signed``) in % without the unit, with its clamped interval."""
    return fmt.points(value, suffix="") if signed else fmt.accuracy(value, suffix="")


def _methods(mitigation: Mapping[str, Any]) -> list[str]:
    """The methods in the order given (the JSON's objects have their keys sorted)."""
    return list(mitigation.get("methods") or mitigation["summary"])


def summary_table(mitigation: Mapping[str, Any]) -> Table:
    """Per method epsilon, overall accuracy and drop, each highlighted group's accuracy and
    drop, the worst group and the best-worst gap (points); the reference first."""
    highlight = mitigation.get("highlight") or []
    header = ["method", "epsilon", "overall %", "overall drop"]
    for h in highlight:
        header += [f"{h} %", f"{h} drop"]
    header += ["worst group", "gap (points)"]
    first = next(iter(mitigation["comparisons"].values()))
    np_groups = {g["group"]: g for g in first["groups"]}
    rows = [[REFERENCE, "-", _pct(first["overall"]["non_private_accuracy"]), "-"]
            + [c for h in highlight for c in (_pct(np_groups[h]["non_private_accuracy"]), "-")]
            + ["-", "-"]]
    for method in _methods(mitigation):
        s = mitigation["summary"][method]
        groups = {g["group"]: g for g in mitigation["comparisons"][method]["groups"]}
        rows.append([method, f"{s['epsilon']:.3f}", _pct(s["overall_accuracy"]),
                     _pct(s["overall_drop"], signed=True)]
                    + [c for h in highlight for c in (_pct(groups[h]["dp_accuracy"]),
                                                       _pct(groups[h]["drop"], signed=True))]
                    + [f"{s['worst_group']} ({_pct(s['worst_group_accuracy'])})",
                       _pct(s["gap"])])
    return Table(header=tuple(header), rows=tuple(tuple(r) for r in rows),
                 right=tuple(range(1, len(header))))


def format_summary_table(mitigation: Mapping[str, Any]) -> str:
    """:func:`summary_table` as Markdown (also what the command prints)."""
    return markdown_blocks([summary_table(mitigation)]).rstrip("\n")


def tuning_text(mitigation: Mapping[str, Any]) -> str:
    """What the tuning was (trials, objective, split) and its privacy note."""
    tuning = mitigation.get("tuning")
    if not tuning:
        return mitigation["tuning_note"]
    criterion = tuning.get("criterion") or TUNE_OBJECTIVES[DEFAULT_TUNE_OBJECTIVE]
    return (f"Tuning: {tuning['trials']} trials per method (the same learning rates for "
            f"all), scored by {criterion} on {100 * tuning['validation_fraction']:g}% of every "
            f"group of the training split. {mitigation['tuning_note']}")


def build_document(mitigation: Mapping[str, Any], figure: Path | None) -> Document:
    """The report: the summary, the figure, then per method its statement and group table."""
    seeds = mitigation["seeds"]
    blocks: list[Block] = [
        Paragraph(f"Seeds {', '.join(map(str, seeds))}; every method calibrated to the same "
                  f"total epsilon (delta = {mitigation['delta']:g}), its auxiliary statistics "
                  "included. Accuracies in %, drops in points against the non-private "
                  "reference" + (", mean [95% Student-t interval over seeds, accuracies within "
                                 "0-100]." if len(seeds) > 1 else " (one seed: no interval).")),
        Paragraph(tuning_text(mitigation), cls="note"),
        summary_table(mitigation)]
    if figure is not None:
        blocks.append(Image(figure, "per-group accuracy"))
    for method in _methods(mitigation):
        comparison = mitigation["comparisons"][method]
        blocks += [Heading(method),
                   Paragraph(f"Privacy: {mitigation['summary'][method]['statement']}",
                             cls="statement"),
                   *comparison_blocks(comparison)]
    return Document(title=f"Mitigations on {mitigation['experiment']} at epsilon = "
                          f"{mitigation['target_epsilon']:g}", blocks=tuple(blocks))


def write_report(mitigation: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``mitigation.png``, ``mitigation.md`` and ``mitigation.html`` in ``out_dir``."""
    out = Path(out_dir)
    figure = plot_methods(mitigation, out / FIGURE_FILE)
    document = build_document(mitigation, figure)
    return {"figure": figure,
            "report": fileio.write_text(out / REPORT_FILE, render_markdown(document)),
            "report_html": fileio.write_text(out / REPORT_HTML_FILE, render_html(document))}


def plot_methods(mitigation: Mapping[str, Any], path: str | Path) -> Path:
    """Per-group accuracy bars: the non-private reference and one bar per method (95% CI,
    drawn within [0, 100]%)."""
    from matplotlib.ticker import PercentFormatter

    from disparate.plots import (
        DP_COLOR,
        HIGHLIGHT_COLORS,
        NON_PRIVATE_COLOR,
        accuracy_yerr,
        group_sort_key,
        mean_and_ci,
        new_figure,
        save_figure,
    )

    comparisons = mitigation["comparisons"]
    first = next(iter(comparisons.values()))
    names = sorted((g["group"] for g in first["groups"]), key=group_sort_key)
    sizes = {g["group"]: g["train_size"] for g in first["groups"]}
    series = [(REFERENCE, {g["group"]: g["non_private_accuracy"] for g in first["groups"]})]
    series += [(m, {g["group"]: g["dp_accuracy"] for g in comparisons[m]["groups"]})
               for m in _methods(mitigation)]
    colors = [NON_PRIVATE_COLOR, DP_COLOR, *(c for c in HIGHLIGHT_COLORS
                                             if c != NON_PRIVATE_COLOR)]
    fig, ((ax,),) = new_figure(max(6.0, min(30.0, 0.25 * len(names) * len(series) + 2)), 4.2)
    width = 0.8 / len(series)
    for k, (label, acc) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        stats = [mean_and_ci(acc[n]) for n in names]
        means = [0.0 if math.isnan(m) else m for m, _ in stats]
        ax.bar(xs, means, width=width, color=colors[k % len(colors)], label=label,
               edgecolor="black", linewidth=0.4, zorder=2)
        yerr = accuracy_yerr(means, [ci for _, ci in stats])
        if yerr is not None:
            ax.errorbar(xs, means, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8,
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
