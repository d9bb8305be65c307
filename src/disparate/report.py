"""Markdown and HTML reports of a run or a comparison directory.

:func:`write_report` reads the files of ``docs/results-format.md`` -- a comparison directory
(``comparison.json`` with ``seed-<s>/non-private`` and ``seed-<s>/dp`` run directories) or a
single run directory (``results.json``, ``metrics.jsonl``, ``config.yaml``) -- and writes,
into that directory, the PNG figures of :mod:`disparate.plots`, ``report.md`` (referring to
the PNGs by relative path) and ``report.html`` (self-contained: the PNGs embedded as base64
data URIs, inline CSS).

A report states the experiment and its description, the mode, the privacy guarantee and how
its epsilon was computed (accountant, conversion, sampling, delta), the per-group table
(sizes, accuracies, the DP drop with 95% intervals over seeds when there are several;
highlighted and small-test groups marked), the overall accuracy, the "poor get poorer"
correlation and the gap between the best- and worst-served groups. Missing optional values
render as ``n/a``; a run that is not private says so instead of showing an epsilon.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from disparate import fileio, plots, records
from disparate.reporting import format as fmt
from disparate.reporting.comparison_table import size_dependence_note
from disparate.reporting.document import (
    Block,
    Bullets,
    Cell,
    Document,
    Facts,
    Heading,
    Image,
    Paragraph,
    Strong,
    Table,
    Text,
    render_html,
    render_markdown,
)
from disparate.results import (
    COMPARISON_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    read_json,
)

__all__ = [
    "COMPARISON_FILE",
    "RESULTS_FILE",
    "METRICS_FILE",
    "CONFIG_FILE",
    "REPORT_MARKDOWN",
    "REPORT_HTML",
    "FIGURES",
    "ReportData",
    "read_json",
    "read_metrics",
    "read_config",
    "load_report_data",
    "build_document",
    "write_report",
    "format_accuracy",
    "format_drop",
    "format_epsilon",
]

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"

#: Figure key -> (file name, caption).
FIGURES: dict[str, tuple[str, str]] = {
    "accuracy_by_group": ("accuracy_by_group.png", "Test accuracy by group"),
    "accuracy_over_epochs": ("accuracy_over_epochs.png",
                             "Test accuracy by group over epochs"),
    "grad_norm_over_epochs": ("grad_norm_over_epochs.png",
                              "Mean per-example gradient norm (before clipping) by group "
                              "over epochs"),
    "group_sizes": ("group_sizes.png", "Training and test examples per group"),
    "poor_get_poorer": ("poor_get_poorer.png",
                        "The poor get poorer: DP accuracy drop vs non-private accuracy"),
    "accuracy_vs_group_size": ("accuracy_vs_group_size.png",
                               "Accuracy vs training examples per group"),
}
#: Draw ``accuracy_vs_group_size`` when there are at least this many groups (e.g. the 72
#: subgroups of the paper's Figure 1(b)); with a few groups the bar chart says it all.
MANY_GROUPS = 12

NA = fmt.NA
HIGHLIGHT_MARK = "\u2605"  # black star
SMALL_TEST_MARK = "\u2020"  # dagger
ERR_NOT_A_DIRECTORY = "{path}: not a directory; expected a run or comparison directory"
ERR_NOTHING_TO_REPORT = (
    "{path}: nothing to report: expected a comparison directory (with {comparison}, written "
    "by 'disparate compare') or a run directory (with {results}, written by 'disparate run'); "
    "found neither"
)


# ----------------------------------------------------------------------------- reading


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a ``metrics.jsonl`` (:func:`disparate.fileio.read_jsonl`)."""
    return fileio.read_jsonl(path)


def read_config(path: str | Path) -> dict[str, Any]:
    """The saved ``config.yaml`` as plain data, or ``{}`` if it is missing or unreadable.

    Only descriptive fields (description, highlight, min_group_test_size) are taken from it,
    so a config that does not parse never prevents a report.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class RunFiles:
    """The parsed files of one run directory."""

    directory: Path
    results: dict[str, Any]
    metrics: list[dict[str, Any]]
    config: dict[str, Any]


def _load_run(directory: Path) -> RunFiles:
    results_path = directory / RESULTS_FILE
    results = read_json(results_path) if results_path.is_file() else {}
    return RunFiles(directory, results, read_metrics(directory / METRICS_FILE),
                    read_config(directory / CONFIG_FILE))


@dataclass
class ReportData:
    """Everything a report shows, gathered from a run or a comparison directory."""

    kind: str  # "comparison" or "run"
    directory: Path
    experiment: str
    description: str
    mode: str
    highlight: list[str]
    groups: list[dict[str, Any]]  # comparison.json or results.json group entries, sorted
    small_test: set[str]
    min_group_test_size: int | None
    privacy: dict[str, Any]
    data: dict[str, Any]  # the parsed comparison.json or results.json
    seeds: list[Any] = field(default_factory=list)
    panels: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    runs: dict[str, list[RunFiles]] = field(default_factory=dict)


_RUN_KEYS = (("non-private", "non_private"), ("dp", "dp"))


def _seed_dirs(directory: Path, comparison: Mapping[str, Any]
               ) -> list[tuple[Any, dict[str, Path]]]:
    """Per seed, the run directory of each kind: the ones its ``runs`` entries name
    (relative to ``directory``; schema 2 keeps them in a run store), else -- schema 1
    without ``runs`` -- ``seed-<s>/non-private`` and ``seed-<s>/dp``."""
    seeds = comparison.get("seeds")
    seeds = list(seeds) if isinstance(seeds, list) and seeds else []
    entries = [e for e in comparison.get("runs") or [] if isinstance(e, Mapping)]
    if entries:
        return [(seeds[i] if len(seeds) == len(entries) else e.get("seed"),
                 {kind: directory / str(e[key]) for kind, key in _RUN_KEYS if e.get(key)})
                for i, e in enumerate(entries)]
    if seeds:
        found = [(s, directory / f"seed-{s}") for s in seeds]
    else:
        found = [(p.name[len("seed-"):], p) for p in sorted(
            (p for p in directory.glob("seed-*") if p.is_dir()),
            key=lambda p: plots.group_sort_key(p.name[len("seed-"):]))]
    return [(s, {kind: seed_dir / kind for kind, _ in _RUN_KEYS}) for s, seed_dir in found]


def _evaluation(config: Mapping[str, Any]) -> Mapping[str, Any]:
    evaluation = config.get("evaluation")
    return evaluation if isinstance(evaluation, Mapping) else {}


def _min_test_size(config: Mapping[str, Any]) -> int | None:
    value = _evaluation(config).get("min_group_test_size")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _highlights(given: Any, groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Highlighted group names: the listed ones, then groups marked ``"highlight": true``."""
    names = [str(h) for h in given or []] if isinstance(given, (list, tuple)) else []
    names += [str(g.get("group")) for g in groups
              if g.get("highlight") and str(g.get("group")) not in names]
    return names


def _sorted_groups(groups: Any) -> list[dict[str, Any]]:
    rows = [dict(g) for g in (groups or []) if isinstance(g, Mapping)]
    return sorted(rows, key=lambda g: plots.group_sort_key(str(g.get("group"))))


def _load_comparison(directory: Path) -> ReportData:
    comparison = read_json(directory / COMPARISON_FILE)
    seed_dirs = _seed_dirs(directory, comparison)
    runs: dict[str, list[RunFiles]] = {"non-private": [], "dp": []}
    for _, dirs in seed_dirs:
        for kind, run_dir in dirs.items():
            if run_dir.is_dir():
                runs[kind].append(_load_run(run_dir))
    config: dict[str, Any] = {}
    for run in runs["dp"] + runs["non-private"]:
        if run.config:
            config = run.config
            break
    small = {str(g.get("group")) for g in comparison.get("groups") or []
             if isinstance(g, Mapping) and g.get("small_test")}
    for run in runs["dp"] + runs["non-private"]:
        small |= {str(g.get("group")) for g in run.results.get("groups") or []
                  if isinstance(g, Mapping) and g.get("small_test")}
    privacy = comparison.get("privacy")
    privacy = dict(privacy) if isinstance(privacy, Mapping) else {}
    dp_mode = _text(privacy.get("mode")) or "dp"
    highlight = comparison.get("highlight")
    if highlight is None:
        highlight = _evaluation(config).get("highlight")
    experiment = _text(comparison.get("experiment")) or _text(config.get("name"))
    return ReportData(
        kind="comparison",
        directory=directory,
        experiment=experiment or directory.name,
        description=_text(config.get("description")),
        mode=f"non-private vs {dp_mode}",
        highlight=_highlights(highlight, _sorted_groups(comparison.get("groups"))),
        groups=_sorted_groups(comparison.get("groups")),
        small_test=small,
        min_group_test_size=_min_test_size(config),
        privacy=privacy,
        data=comparison,
        seeds=[s for s, _ in seed_dirs],
        panels={"non-private": [r.metrics for r in runs["non-private"] if r.metrics],
                "DP": [r.metrics for r in runs["dp"] if r.metrics]},
        runs=runs,
    )


def _load_single_run(directory: Path) -> ReportData:
    run = _load_run(directory)
    results = run.results
    privacy = results.get("privacy")
    privacy = dict(privacy) if isinstance(privacy, Mapping) else {}
    mode = _text(results.get("mode")) or _text(privacy.get("mode")) or NA
    seed = results.get("seed")
    experiment = _text(results.get("experiment")) or _text(run.config.get("name"))
    return ReportData(
        kind="run",
        directory=directory,
        experiment=experiment or directory.name,
        description=_text(run.config.get("description")),
        mode=mode,
        highlight=_highlights(results.get("highlight") if results.get("highlight") is not None
                              else _evaluation(run.config).get("highlight"),
                              _sorted_groups(results.get("groups"))),
        groups=_sorted_groups(results.get("groups")),
        small_test={str(g.get("group")) for g in results.get("groups") or []
                    if isinstance(g, Mapping) and g.get("small_test")},
        min_group_test_size=_min_test_size(run.config),
        privacy=privacy,
        data=results,
        seeds=[] if seed is None else [seed],
        panels={mode: [run.metrics] if run.metrics else []},
        runs={mode: [run]},
    )


def load_report_data(directory: str | Path) -> ReportData:
    """Gather a report's content from a comparison or run directory.

    Raises ``ValueError`` naming the path when it is not a directory or holds neither
    ``comparison.json`` nor ``results.json``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(ERR_NOT_A_DIRECTORY.format(path=directory))
    if (directory / COMPARISON_FILE).is_file():
        return _load_comparison(directory)
    if (directory / RESULTS_FILE).is_file():
        return _load_single_run(directory)
    raise ValueError(ERR_NOTHING_TO_REPORT.format(path=directory, comparison=COMPARISON_FILE,
                                                  results=RESULTS_FILE))


# ----------------------------------------------------------------------------- formatting

format_accuracy = fmt.accuracy
format_drop = fmt.points
format_epsilon = fmt.epsilon


def _format_count(value: Any) -> str:
    x = fmt.number(value)
    return NA if x is None else f"{int(x)}"


# ----------------------------------------------------------------------------- content


@dataclass(frozen=True)
class Row:
    """One row of the per-group table (cells as text) and its marks."""

    group: str
    cells: list[str]
    highlighted: bool
    small_test: bool


def _group_rows(data: ReportData) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    if data.kind == "comparison":
        header = ["group", "train size", "test size", "non-private accuracy", "DP accuracy",
                  "drop (non-private - DP)"]
        for g in data.groups:
            name = str(g.get("group"))
            rows.append(Row(name, [name, _format_count(g.get("train_size")),
                                   _format_count(g.get("test_size")),
                                   format_accuracy(g.get("non_private_accuracy")),
                                   format_accuracy(g.get("dp_accuracy")),
                                   format_drop(g.get("drop"))],
                            name in data.highlight, name in data.small_test))
    else:
        header = ["group", "train size", "test size", f"accuracy ({data.mode})",
                  "mean gradient norm", "clipped fraction"]
        for g in data.groups:
            name = str(g.get("group"))
            norm = fmt.number(g.get("grad_norm"))
            clipped = fmt.number(g.get("clipped_fraction"))
            rows.append(Row(name, [name, _format_count(g.get("train_size")),
                                   _format_count(g.get("test_size")),
                                   format_accuracy(g.get("accuracy")),
                                   NA if norm is None else f"{norm:.3g}",
                                   NA if clipped is None else f"{100 * clipped:.0f}%"],
                            name in data.highlight, name in data.small_test))
    return header, rows


def _overall(data: ReportData) -> list[str]:
    """Lines (plain text) about overall accuracy."""
    if data.kind == "comparison":
        overall = data.data.get("overall")
        overall = overall if isinstance(overall, Mapping) else {}
        return [f"non-private {format_accuracy(overall.get('non_private_accuracy'))}, "
                f"DP {format_accuracy(overall.get('dp_accuracy'))}, "
                f"drop {format_drop(overall.get('drop'))}"]
    loss = fmt.number(data.data.get("test_loss"))
    text = f"{format_accuracy(data.data.get('overall_accuracy'))} ({data.mode})"
    if loss is not None:
        text += f", test loss {loss:.4g}"
    return [text]


def _gap_text(best: str, best_acc: float, worst: str, worst_acc: float,
              difference: float) -> str:
    return (f"best served {best} ({100 * best_acc:.1f}%), worst served {worst} "
            f"({100 * worst_acc:.1f}%), gap {100 * difference:.1f} pp")


def _gap(values: Iterable[tuple[str, float | None]], stored: Any = None) -> str:
    """The best/worst-served gap: the stored ``comparison.json`` block when it is complete,
    else computed from the per-group accuracies (groups without accuracy left out)."""
    if isinstance(stored, Mapping):
        best, worst = stored.get("best_group"), stored.get("worst_group")
        best_acc, worst_acc = fmt.number(stored.get("best_accuracy")), fmt.number(
            stored.get("worst_accuracy"))
        difference = fmt.number(stored.get("difference"))
        if None not in (best, worst, best_acc, worst_acc, difference):
            text = _gap_text(str(best), best_acc, str(worst), worst_acc, difference)
            mean, ci = fmt.stat(stored.get("per_seed"))
            if mean is not None and ci is not None:
                lo, hi = fmt.clamp_interval(ci)  # best minus worst accuracy: within [0, 1]
                text += f"; gap per seed {100 * mean:.1f} pp [{100 * lo:.1f}, {100 * hi:.1f}]"
            return text
    known = [(name, v) for name, v in values if v is not None]
    if len(known) < 2:
        return NA
    best_item = max(known, key=lambda item: item[1])
    worst_item = min(known, key=lambda item: item[1])
    return _gap_text(best_item[0], best_item[1], worst_item[0], worst_item[1],
                     best_item[1] - worst_item[1])


def _impact(data: ReportData) -> list[tuple[str, str]]:
    """(label, text) pairs about disparate impact."""
    items = []
    if data.kind == "comparison":
        pgp = data.data.get("poor_get_poorer")
        pgp = pgp if isinstance(pgp, Mapping) else {}
        text = f"Spearman \u03c1 = {plots.format_spearman(pgp.get('spearman'))}"
        extras = []
        p_value = fmt.number(pgp.get("p_value"))
        if p_value is not None:
            extras.append(f"p = {p_value:.3g}")
        n_groups = pgp.get("n_groups")
        if isinstance(n_groups, int) and not isinstance(n_groups, bool):
            extras.append(f"{n_groups} groups")
        per_seed = pgp.get("per_seed")
        if isinstance(per_seed, Mapping) and fmt.stat(per_seed)[1] is not None:
            mean, ci = fmt.stat(per_seed)
            extras.append(f"per seed {mean:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]")
        if extras:
            text += " (" + ", ".join(extras) + ")"
        description = _text(pgp.get("description"))
        if description:
            text += f": {description}"
        items.append(("Poor get poorer", text))
        size_note = size_dependence_note(data.data.get("size_dependence"))
        if size_note:
            items.append(("Group size", size_note))
        stored = data.data.get("gap")
        stored = stored if isinstance(stored, Mapping) else {}
        for label, key, gap_key in [("Gap, non-private", "non_private_accuracy", "non_private"),
                                    ("Gap, DP", "dp_accuracy", "dp")]:
            items.append((label, _gap(((str(g.get("group")), fmt.stat(g.get(key))[0])
                                       for g in data.groups), stored.get(gap_key))))
    else:
        items.append((f"Gap, {data.mode}",
                       _gap((str(g.get("group")), fmt.number(g.get("accuracy")))
                            for g in data.groups)))
    return items


def _epsilon_methods(privacy: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(method, headline, details) for each accounting method; the reported one first.

    ``headline`` is ``"epsilon = 3.15 at delta = 1e-05"`` (``" (reported)"`` appended for the
    configured accountant); ``details`` says how it was computed.
    """
    epsilons = privacy.get("epsilon")
    if not isinstance(epsilons, Mapping):
        return []
    reported = privacy.get("accountant")
    methods = sorted(epsilons, key=lambda m: (m != reported, str(m)))
    out = []
    for method in methods:
        entry = epsilons[method]
        if not isinstance(entry, Mapping):
            out.append((str(method), f"\u03b5 = {format_epsilon(entry)}", ""))
            continue
        head = (f"\u03b5 = {format_epsilon(entry.get('epsilon'))} at "
                f"\u03b4 = {fmt.plain(entry.get('delta'))}")
        if entry.get("approximate"):
            head += " (approximate)"
        if method == reported:
            head += " (reported)"
        parts = [f"{label}: {fmt.plain(entry.get(key))}" for key, label in [
            ("accountant", "accountant"), ("conversion", "conversion"),
            ("sampling", "sampling"), ("neighboring_relation", "neighbouring datasets")]
            if entry.get(key) is not None]
        q = fmt.number(entry.get("sampling_probability"))
        numbers = [f"{label} = {fmt.plain(entry.get(key))}" for key, label in [
            ("dataset_size", "N"), ("batch_size", "b"), ("noise_multiplier", "z"),
            ("steps", "steps")] if entry.get(key) is not None]
        if q is not None:
            numbers.insert(2, f"q = {q:.4g}")
        if numbers:
            parts.append(", ".join(numbers))
        note = _text(entry.get("note"))
        if note:
            parts.append(f"note: {note}")
        out.append((str(entry.get("method") or method), head, "; ".join(parts)))
    return out


def _mechanism(privacy: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = [("mode", "mode"), ("max_grad_norm", "clipping norm S"),
            ("noise_multiplier", "noise multiplier z"), ("noise_std", "noise std"),
            ("sampling", "batch sampling"), ("delta", "delta")]
    if _text(privacy.get("description")):
        items = [("", _text(privacy.get("description")))]
    else:
        items = [(label, fmt.plain(privacy.get(key))) for key, label in keys
                 if privacy.get(key) is not None]
    calibration = privacy.get("calibration")
    if isinstance(calibration, Mapping) and calibration:
        items.append(("noise calibration", ", ".join(
            f"{k} {fmt.plain(v)}" for k, v in sorted(calibration.items()))))
    return items


def _is_private(privacy: Mapping[str, Any]) -> bool:
    return bool(privacy.get("is_private"))


def _privacy_lines(data: ReportData) -> tuple[str, str]:
    """(headline, statement) of the privacy section."""
    privacy = data.privacy
    statement = _text(privacy.get("statement"))
    if not privacy:
        return "Privacy: n/a", "The result files hold no privacy block."
    if not _is_private(privacy):
        return "Not private", statement or "not differentially private"
    eps = privacy.get("epsilon")
    headline = "Differentially private"
    if isinstance(eps, Mapping) and eps:
        accountant = privacy.get("accountant")
        first = eps.get(accountant) if accountant in eps else next(iter(eps.values()))
        if isinstance(first, Mapping):
            headline += (f": (\u03b5 = {format_epsilon(first.get('epsilon'))}, "
                         f"\u03b4 = {fmt.plain(first.get('delta'))})")
    return headline, statement or NA


def _baseline_note(data: ReportData) -> str | None:
    if data.kind != "comparison":
        return None
    for run in data.runs.get("non-private", []):
        privacy = run.results.get("privacy")
        if isinstance(privacy, Mapping):
            return ("Non-private baseline: "
                    + (_text(privacy.get("statement")) or "not differentially private"))
    return "Non-private baseline: not differentially private."


PRESET_NOTE = "About the preset (its defaults; the settings this run used are under Settings)"


def _settings_text(settings: Any) -> str | None:
    """The settings a run used (``results.json`` ``settings``) in one line."""
    if not isinstance(settings, Mapping):
        return None
    overrides = settings.get("overrides")
    parts = [f"{fmt.plain(settings.get('epochs'))} epochs",
             f"batch size {fmt.plain(settings.get('batch_size'))}",
             f"learning rate {fmt.plain(settings.get('lr'))}",
             f"optimizer {fmt.plain(settings.get('optimizer'))} "
             f"(momentum {fmt.plain(settings.get('momentum'))})",
             f"{fmt.plain(settings.get('sampling'))} sampling",
             _text(settings.get("mechanism")),
             f"noise seeding {fmt.plain(settings.get('noise_seeding'))}",
             "overrides of the preset: " + (", ".join(map(str, overrides)) if overrides
                                            else "none" if overrides is not None else NA)]
    return "; ".join(p for p in parts if p)


def _facts(data: ReportData) -> list[tuple[str, str]]:
    facts = [("Experiment", data.experiment), ("Mode", data.mode)]
    if data.kind == "comparison":
        facts.append(("Kind", "comparison of non-private and DP training on identical data "
                              "and seeds"))
        facts.append(("Seeds", ", ".join(str(s) for s in data.seeds) or NA))
        both = data.data.get("settings")
        for key, label in (("dp", "Settings (DP)"), ("non_private", "Settings (non-private)")):
            text = _settings_text(both.get(key)) if isinstance(both, Mapping) else None
            if text:
                facts.append((label, text))
    else:
        facts.append(("Kind", "single run"))
        facts.append(("Seed", ", ".join(str(s) for s in data.seeds) or NA))
        for key, label in [("epochs", "Epochs"), ("steps", "Steps"),
                           ("config_hash", "Config hash")]:
            if data.data.get(key) is not None:
                facts.append((label, fmt.plain(data.data.get(key))))
        text = _settings_text(data.data.get("settings"))
        if text:
            facts.append(("Settings", text))
        wall = fmt.number(data.data.get("wall_time_s"))
        if wall is not None:
            facts.append(("Wall time", f"{wall:.1f} s"))
    facts.append(("Highlighted groups", ", ".join(data.highlight) or "none"))
    return facts


def _legend(data: ReportData) -> list[str]:
    notes = []
    if data.highlight:
        notes.append(f"{HIGHLIGHT_MARK} highlighted group")
    if data.small_test:
        limit = (f"fewer than {data.min_group_test_size} test examples"
                 if data.min_group_test_size is not None else "few test examples")
        notes.append(f"{SMALL_TEST_MARK} small test set ({limit}): accuracy unreliable")
    if data.kind == "run" and data.data.get("per_example_stats") is False:
        notes.append("mean gradient norm n/a: not recorded, the run took no per-example "
                     "gradients (training.per_example_stats: false)")
    if data.kind == "comparison" and any(fmt.stat(g.get("dp_accuracy"))[1] is not None
                                         for g in data.groups):
        notes.append(fmt.INTERVAL_LABEL)
    elif data.kind == "comparison":
        notes.append("one seed: no confidence intervals (n/a)")
    return notes


# ----------------------------------------------------------------------------- figures


def write_figures(data: ReportData, directory: str | Path | None = None) -> dict[str, Path]:
    """Write the report's PNGs (into ``directory``, default the data's); key -> path."""
    out = Path(directory) if directory is not None else data.directory
    written: dict[str, Path] = {}

    def target(key: str) -> Path:
        return out / FIGURES[key][0]

    title = data.experiment
    comparison = data.kind == "comparison"
    groups = [(records.ComparisonGroup if comparison else records.GroupResult).from_json(
        g, f"groups[{i}]") for i, g in enumerate(data.groups)]
    # epoch lines only: a federated run's metrics.jsonl holds rounds (its report draws them)
    epoch_runs = {label: [[line for line in run if "epoch" in line] for run in runs]
                  for label, runs in data.panels.items()}
    panels = {label: [[records.EpochMetrics.from_json(line) for line in run] for run in runs
                      if run] for label, runs in epoch_runs.items()}
    if groups:
        written["accuracy_by_group"] = plots.plot_accuracy_by_group(
            groups, target("accuracy_by_group"), mode=_text(data.data.get("mode")) or "run",
            highlight=data.highlight,
            title=None if not title else f"{title}: test accuracy by group"
            + (" (non-private vs DP)" if comparison else ""))
    if any(panels.values()):
        written["accuracy_over_epochs"] = plots.plot_accuracy_over_epochs(
            panels, target("accuracy_over_epochs"), highlight=data.highlight,
            title=f"{title}: test accuracy by group over epochs")
        written["grad_norm_over_epochs"] = plots.plot_grad_norm_over_epochs(
            panels, target("grad_norm_over_epochs"), highlight=data.highlight,
            title=f"{title}: mean per-example gradient norm (before clipping) by group")
    if groups:
        written["group_sizes"] = plots.plot_group_sizes(
            groups, target("group_sizes"), highlight=data.highlight,
            small_test=data.small_test, title=f"{title}: examples per group")
    if comparison and groups:
        pgp = data.data.get("poor_get_poorer")
        written["poor_get_poorer"] = plots.plot_poor_get_poorer(
            groups, target("poor_get_poorer"), highlight=data.highlight,
            spearman=fmt.number(pgp.get("spearman")) if isinstance(pgp, Mapping) else None)
    if len(groups) >= MANY_GROUPS:
        written["accuracy_vs_group_size"] = plots.plot_accuracy_vs_group_size(
            groups, target("accuracy_vs_group_size"), highlight=data.highlight,
            small_test=data.small_test,
            title=f"{title}: " + ("DP accuracy" if comparison else "accuracy")
            + " vs training examples per group")
    return written


# ----------------------------------------------------------------------------- document


def _group_table(data: ReportData) -> Table:
    header, rows = _group_rows(data)
    cells = []
    for row in rows:
        group: Text = (Strong(row.group), f" {HIGHLIGHT_MARK}") if row.highlighted else row.group
        test: Text | Cell = (Cell(f"{row.cells[2]} {SMALL_TEST_MARK} small", cls="small",
                                  title="small test set") if row.small_test else row.cells[2])
        cells.append((group, row.cells[1], test, *row.cells[3:]))
    return Table(header=tuple(header), rows=tuple(cells), cls="groups",
                 row_classes=tuple("highlight" if r.highlighted else "" for r in rows))


def build_document(data: ReportData, figures: Mapping[str, Path]) -> Document:
    """The report of a run or a comparison; ``figures`` are the written PNGs (key -> path)."""
    blocks: list[Block] = []
    if data.description:
        blocks.append(Paragraph(f"{PRESET_NOTE}: {data.description}", cls="description"))
    blocks.append(Facts(tuple(_facts(data))))

    headline, statement = _privacy_lines(data)
    private = _is_private(data.privacy)
    blocks += [Heading("Privacy"),
               Paragraph((Strong(f"{headline}."), f" {statement}"),
                         cls="statement" if private else "statement not-private")]
    baseline = _baseline_note(data)
    if baseline:
        blocks.append(Paragraph(baseline))
    mechanism = _mechanism(data.privacy)
    if mechanism:
        blocks.append(Paragraph("Mechanism: " + "; ".join(f"{label} = {v}" if label else v
                                                          for label, v in mechanism) + "."))
    if private:
        methods = _epsilon_methods(data.privacy)
        if methods:
            blocks += [Paragraph("How epsilon was computed:"),
                       Bullets(tuple((Strong(method), f": {head}" + (f"; {details}" if details
                                                                      else ""))
                                     for method, head, details in methods), cls="epsilon")]
        else:
            blocks.append(Paragraph("Epsilon: n/a (no accounting in the result files)."))

    blocks.append(Heading("Accuracy by group"))
    blocks += [Paragraph(f"Overall accuracy: {text}.") for text in _overall(data)]
    blocks.append(_group_table(data) if data.groups else Paragraph("No per-group results."))
    legend = _legend(data)
    if legend:
        blocks.append(Bullets(tuple(legend), cls="note"))

    blocks += [Heading("Disparate impact"), Facts(tuple(_impact(data))), Heading("Figures")]
    if not figures:
        blocks.append(Paragraph("No figures (no per-group results)."))
    blocks += [Image(Path(path), FIGURES.get(key, (Path(path).name, key))[1])
               for key, path in figures.items()]
    if "accuracy_over_epochs" not in figures:
        blocks.append(Paragraph("No per-epoch metrics (metrics.jsonl) found: no curves over "
                                "epochs."))
    return Document(title=f"Report: {data.experiment}", blocks=tuple(blocks))


# ----------------------------------------------------------------------------- entry point


def write_report(directory: str | Path) -> dict[str, Path]:
    """Render ``report.md``, ``report.html`` and the PNGs into a run or comparison directory.

    Returns the written files: ``"markdown"``, ``"html"`` and one key per figure
    (``"accuracy_by_group"``, ``"accuracy_over_epochs"``, ``"grad_norm_over_epochs"``,
    ``"group_sizes"`` and, for a comparison, ``"poor_get_poorer"``; curves over epochs only
    when there are per-epoch metrics). Raises ``ValueError`` naming the path if the
    directory holds neither ``comparison.json`` nor ``results.json``.
    """
    data = load_report_data(directory)
    figures = write_figures(data)
    markdown_path = data.directory / REPORT_MARKDOWN
    html_path = data.directory / REPORT_HTML
    document = build_document(data, figures)
    fileio.write_text(markdown_path, render_markdown(document))
    fileio.write_text(html_path, render_html(document))
    return {"markdown": markdown_path, "html": html_path, **figures}
