"""The study kind ``mitigation``: the spec's checks, the pure aggregation on hand-made records
(worst group, best-worst gap, drop against non-private, interval order) and the shipped study
at its smoke scale end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import mitigation as mit
from disparate.config import ConfigError, load_experiment
from disparate.study import aggregate as agg
from disparate.study import expand, load_study, run_study
from disparate.study.layout import TUNING_JSON
from disparate.study.spec import MitigationStudy, Study, Variant

NAME = "mitigation-digits"


def study_of(methods=("dpsgd-f",), seeds=(0, 1, 2)) -> Study:
    return Study(name="m", title="m", description="", base="digits-underrep", scale="quick",
                 set=(), seeds=seeds,
                 variants=tuple(Variant(v, v) for v in ("non-private", *methods)), grid=(),
                 figure={"kind": "mitigation"},
                 mitigation=MitigationStudy(methods=methods, target_epsilon=5.0))


def record(variant, seed, accs, overall):
    groups = [{"group": g, "train_size": n, "test_size": 20, "accuracy": a}
              for (g, n), a in zip((("2", 100), ("5", 90), ("8", 10)), accs, strict=True)]
    privacy = ({"is_private": False, "mode": "non-private", "statement": "not private"}
               if variant == "non-private" else
               {"is_private": True, "mode": "dp", "accountant": "rdp", "delta": 1e-5,
                "noise_multiplier": 2.9, "statement": f"{variant} at 5",
                "epsilon": {"rdp": {"epsilon": 4.999, "aux_noise_multipliers": [6.4]}}})
    return agg.RunRecord(key=f"{variant}-{seed}", labels={"variant": variant, "seed": seed},
                         results={"experiment": "digits-underrep", "overall_accuracy": overall,
                                  "groups": groups, "privacy": privacy, "highlight": ["8"],
                                  "seed": seed})


RECORDS = [
    record("non-private", 0, (1.0, 0.95, 0.6), 0.95),
    record("non-private", 1, (1.0, 0.90, 0.4), 0.90),
    record("non-private", 2, (0.9, 0.95, 0.5), 0.85),
    record("dpsgd-f", 0, (0.9, 0.80, 0.1), 0.80),
    record("dpsgd-f", 1, (0.8, 0.85, 0.0), 0.75),
    record("dpsgd-f", 2, (0.9, 0.75, 0.2), 0.70),
]


def test_aggregation_by_hand() -> None:
    m = agg.mitigation_summary(study_of(), RECORDS)
    s = m["summary"]["dpsgd-f"]
    assert m["seeds"] == [0, 1, 2] and m["methods"] == ["dpsgd-f"]
    # worst group: class 8, mean of 0.1, 0.0, 0.2; best: class 2 (0.8667) -> gap 0.7667
    assert s["worst_group"] == "8" and s["worst_group_accuracy"] == pytest.approx(0.1)
    assert s["gap"] == pytest.approx(2.6 / 3 - 0.1)
    groups = {g["group"]: g for g in m["comparisons"]["dpsgd-f"]["groups"]}
    assert groups["8"]["drop"]["values"] == pytest.approx([0.5, 0.4, 0.3])
    assert groups["8"]["drop"]["mean"] == pytest.approx(0.4)
    assert s["overall_drop"]["mean"] == pytest.approx(0.15)
    for g in groups.values():
        for key in ("non_private_accuracy", "dp_accuracy", "drop"):
            lo, hi = g[key]["ci95"]
            assert lo <= g[key]["mean"] <= hi
    # Student-t, 2 degrees of freedom: 0.4 +- 4.303 * 0.1 / sqrt(3)
    assert groups["8"]["drop"]["ci95"] == pytest.approx([0.4 - 0.24844, 0.4 + 0.24844],
                                                        abs=1e-4)
    line = mit.format_summary_table(m).splitlines()[3]
    assert line.startswith("| dpsgd-f | 4.999 | 75.0 [62.6, 87.4] | +15.0 ")
    # class 8: 10.0 +- 24.8, its accuracy interval cut at 0%; the drop's is not cut
    assert line.endswith("| 10.0 [0.0, 34.8] | +40.0 [+15.2, +64.8] | 8 (10.0) | 76.7 |")


def test_only_seeds_where_every_variant_finished_are_aggregated() -> None:
    runs = [r for r in RECORDS if r.key != "dpsgd-f-1"]
    assert agg.mitigation_summary(study_of(), runs)["seeds"] == [0, 2]
    assert agg.mitigation_summary(study_of(), RECORDS[:3]) is None


def test_shipped_study_expands_to_the_mitigate_points(tmp_path: Path) -> None:
    study = load_study(NAME, scale="paper")
    points = expand(study, tmp_path)
    assert [(p.labels["variant"], p.labels["seed"]) for p in points[:5]] == [
        ("non-private", 0), ("dpsgd", 0), ("dpsgd-f", 0), ("dpsgd-global-adapt", 0),
        ("adaptive-clip", 0)]
    assert len(points) == 3 * 5
    want = mit.mitigation_points(load_experiment("digits-underrep"), study.mitigation.methods,
                                 5.0, [0, 1, 2], tmp_path)
    assert [p.key for p in points] == [p.key for p in want]  # the runs of disparate mitigate
    tuned = load_study(NAME, scale="tuned").mitigation
    assert (tuned.tune, tuned.tune_objective, tuned.target_epsilon) == (6, "worst-group", 5.0)


@pytest.mark.parametrize(("text", "message"), [
    ("mitigation: {methods: [dpsgd, fair], target_epsilon: 5}",
     "mitigation.methods='fair': expected a comma-separated list of 'dpsgd'"),
    ("mitigation: {methods: [dpsgd]}", "mitigation.target_epsilon is missing"),
    ("mitigation: {methods: [dpsgd], target_epsilon: -1}",
     "mitigation.target_epsilon=-1: expected a finite number > 0"),
    ("mitigation: {methods: [dpsgd], target_epsilon: 5, tune_objective: best}",
     "mitigation.tune_objective='best': expected one of 'overall', 'worst-group'"),
    ("mitigation: {methods: [dpsgd], target_epsilon: 5, tunes: 2}",
     "unknown key 'tunes' (did you mean 'tune'?)"),
    ("mitigation: {methods: [dpsgd], target_epsilon: 5}\nvariants: [{name: a}]",
     "variants with a mitigation section"),
    ("mitigation: {methods: [dpsgd], target_epsilon: 5}\nfigure: {kind: sweep, x: a.b}",
     "figure.kind='sweep': the kind 'mitigation' goes with a mitigation section"),
    ("figure: {kind: mitigation}", "figure.kind='mitigation': the kind 'mitigation' goes"),
])
def test_spec_errors_name_the_key(text, message, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"base: digits-underrep\nscales: {{quick: {{}}}}\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_study(str(path))
    assert message in str(e.value)


@pytest.mark.usefixtures("one_thread")
def test_shipped_study_at_smoke_scale(tmp_path: Path) -> None:
    study = load_study(NAME, scale="smoke")
    out = tmp_path / NAME
    outcome = run_study(study, out, jobs=1, threads=1)
    assert outcome["ok"] and len(outcome["points"]) == 3
    tuning = json.loads((out / TUNING_JSON).read_text())
    assert tuning["objective"] == "worst-group" and set(tuning["chosen"]) == {"dpsgd",
                                                                              "dpsgd-global"}
    lrs = {p.labels["variant"]: p.config.training.lr for p in outcome["points"]}
    assert lrs["dpsgd"] == tuning["chosen"]["dpsgd"]["lr"] == lrs["dpsgd-global"]  # one trial
    report = (out / "report.md").read_text()
    assert "| method | epsilon | overall % | overall drop | 8 % | 8 drop | 2 % | 2 drop |" in report
    assert "scored by worst-group validation accuracy" in report
    assert (out / f"{NAME}.png").read_bytes()[:4] == b"\x89PNG"
    again = run_study(study, out, jobs=1, threads=1)  # trains nothing, tunes nothing
    assert again["sweep"].count("skipped") == 3
