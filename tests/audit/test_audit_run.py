"""The audit end to end on tiny digits: a broken mechanism is caught, the real one is not.

Statistics: under a correct (eps, delta)-DP mechanism each one-run bound exceeds the claim
with probability <= 5% (the theorem's guarantee at beta = 0.05), so
``test_real_mechanism_stays_below_its_claim`` (3 seeds) could fail spuriously with
probability <= 1 - 0.95^3 = 14% in the worst case. In practice the loss-based black-box
guesser is far from tight: on these settings the bound was 0.00 in each of seeds 0-5 (claims
2.2-2.3), so the observed flake rate is ~0. The same holds for the white-box tests
(``test_real_mechanism_stays_below_its_claim_white_box``, 3 seeds, worst case 14%): with 40
epochs the white-box and the loss bound were 0.00 in each of seeds 0-5 (claims 4.58-4.89,
at most 7 of 10 guesses right), while the broken run of seed 0 reached 1.85 with either score
(49 of 50 right) against its forged claim of 0.2.
"""

import dataclasses
import json

import pytest

from disparate import cli
from disparate.audit import runner
from disparate.audit.canaries import build_audit_data
from disparate.audit.one_run import audit_scores
from disparate.audit.report import format_stat
from disparate.audit.runner import (
    AuditOptions,
    canary_bounds,
    canary_scores,
    headline,
    train_and_load,
)
from disparate.config import load_experiment
from disparate.data import load_dataset

OVERRIDES = ["training.epochs=10", "training.batch_size=64", "data.subsample=0.5"]
SETTINGS = [arg for o in OVERRIDES for arg in ("--set", o)]
FORGED_EPSILON = 0.2


def _config():
    return load_experiment("digits-underrep", OVERRIDES)


def _forge_claim(results: dict, train_size: int) -> dict:
    """The DP statement a broken run would still print: a small epsilon."""
    return {**results, "train_size": train_size, "privacy": {
        "is_private": True, "accountant": "rdp", "delta": 1e-5,
        "epsilon": {"rdp": {"epsilon": FORGED_EPSILON}},
        "statement": f"({FORGED_EPSILON}, 1e-05)-DP (forged by the test)"}}


def test_broken_mechanism_is_caught(tmp_path, monkeypatch, one_thread, capsys):
    """Test-only hook: the 'DP' run trains without noise (and clipping) but claims eps 0.5."""
    real = runner.train_and_load

    def broken(config, train_set, test_set, run_dir, **kwargs):
        if config.privacy.mode != "dp":
            return real(config, train_set, test_set, run_dir, **kwargs)
        out = real(config.non_private(), train_set, test_set, run_dir, **kwargs)
        return runner.TrainedModel(out.model, _forge_claim(out.results, len(train_set)))

    monkeypatch.setattr(runner, "train_and_load", broken)
    out = tmp_path / "audit"
    code = cli.main(["audit", "digits-underrep", *SETTINGS, "--canaries", "100",
                     "--out", str(out), "--quiet"])
    assert code == 0
    audit = json.loads((out / "audit.json").read_text())
    bound = audit["per_seed"][0]["dp"]["groups"]["all"]["one_run"]
    assert bound["epsilon_lower_bound"] > FORGED_EPSILON
    assert audit["claim_exceeded"] == [True]
    assert audit["headline"].startswith(f"claimed ({FORGED_EPSILON:.2f}, 1e-05)-DP; "
                                        "empirical lower bound ")
    report = (out / "audit.md").read_text()
    assert "exceeds the claimed epsilon in 1 of 1 seed(s): the claim is refuted" in report
    assert (out / "audit.html").exists() and (out / "audit_roc.png").stat().st_size > 0
    # group sizes are in the table: class 8 keeps 5 of 10 (subsample 0.5); 2 held out
    assert "| **8 ★** | 3 | " in report
    assert audit["headline"] in capsys.readouterr().out


def test_real_mechanism_stays_below_its_claim(tmp_path, one_thread):
    config = _config()
    options = AuditOptions(canaries=100)
    for seed in (0, 1, 2):
        cfg = dataclasses.replace(
            config, data=dataclasses.replace(config.data, seed=seed),
            training=dataclasses.replace(config.training, seed=seed))
        splits = load_dataset("digits", seed=seed)
        data = build_audit_data(cfg, splits.train, seed=seed, canaries=100)
        trained = train_and_load(cfg, data.training_set(), splits.test,
                                 tmp_path / f"s{seed}", device="cpu", progress=False, log=None)
        claim = runner.claimed_privacy(trained.results)
        # N accounted = members + included canaries
        assert claim["train_size"] == data.members.size + int(data.included.sum())
        bounds = canary_bounds(trained.model, data, delta=claim["delta"], options=options)
        assert bounds["all"]["canaries"] == 100
        assert bounds["all"]["epsilon_lower_bound"] < claim["epsilon"], seed


WHITE_BOX = ["training.epochs=40", "training.batch_size=64", "data.subsample=0.5"]


def _seeded(overrides: list[str], seed: int, *, private: bool = True):
    config = load_experiment("digits-underrep", overrides)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, seed=seed),
        training=dataclasses.replace(config.training, seed=seed))
    return config if private else config.non_private()


def test_broken_mechanism_is_caught_white_box(tmp_path, one_thread):
    """Test-only hook as above: trained without noise and clipping, the run claims (0.2,
    1e-5)-DP; the white-box gradient score alone refutes the claim, and with both scores each
    bound is the one of its own score at beta / 2 (Bonferroni)."""
    seed = 0
    splits = load_dataset("digits", seed=seed)
    data = build_audit_data(_seeded(WHITE_BOX, seed), splits.train, seed=seed, canaries=100)
    trained = train_and_load(_seeded(WHITE_BOX, seed, private=False), data.training_set(),
                             splits.test, tmp_path / "broken", device="cpu", progress=False,
                             log=None)
    claim = runner.claimed_privacy(_forge_claim(trained.results, len(data.training_set())))
    white = canary_bounds(trained.model, data, delta=claim["delta"], initial=trained.initial,
                          options=AuditOptions(canaries=100, canary_scores=("gradient",)))
    assert white["all"]["score"] == "gradient"
    assert white["all"]["epsilon_lower_bound"] > claim["epsilon"]
    both = AuditOptions(canaries=100, canary_scores=("loss", "gradient"))
    bounds = canary_bounds(trained.model, data, delta=claim["delta"], options=both,
                           initial=trained.initial)["all"]
    scores = canary_scores(trained.model, data, both, trained.initial)
    alone = {k: audit_scores(s, data.included, delta=claim["delta"], beta=0.025).epsilon
             for k, s in scores.items()}
    assert bounds["by_score"] == alone
    assert bounds["epsilon_lower_bound"] == max(alone.values()) > claim["epsilon"]
    assert bounds["confidence"] == 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_mechanism_stays_below_its_claim_white_box(tmp_path, one_thread, seed):
    config = _seeded(WHITE_BOX, seed)
    splits = load_dataset("digits", seed=seed)
    data = build_audit_data(config, splits.train, seed=seed, canaries=100)
    trained = train_and_load(config, data.training_set(), splits.test, tmp_path / "dp",
                             device="cpu", progress=False, log=None)
    claim = runner.claimed_privacy(trained.results)
    bounds = canary_bounds(trained.model, data, delta=claim["delta"], initial=trained.initial,
                           options=AuditOptions(canaries=100, canary_scores=("gradient",)))
    assert bounds["all"]["epsilon_lower_bound"] < claim["epsilon"]


def test_headline_and_format():
    claims = [{"epsilon": 4.961, "delta": 1e-5}, {"epsilon": 4.958, "delta": 1e-5}]
    groups = [{"all": {"one_run": {"epsilon_lower_bound": 0.4}},
               "8": {"one_run": {"epsilon_lower_bound": 0.0}}},
              {"all": {"one_run": {"epsilon_lower_bound": 0.1234}},
               "8": {"one_run": None}}]
    text = headline(claims, groups, AuditOptions(canaries=1000), ["8", "2"])
    assert text == ("claimed (4.96, 1e-05)-DP; empirical lower bound 0.40, 0.12 (one per seed, "
                    "95%, one-run audit, 1,000 canaries); per group: 8: 0.00")
    white = headline(claims[:1], groups[:1], AuditOptions(canaries=1000,
                                                          canary_scores=("loss", "gradient")), [])
    assert white == ("claimed (4.96, 1e-05)-DP; empirical lower bound 0.40 (95%, one-run "
                     "audit, 1,000 canaries, loss and gradient scores)")
    assert format_stat({"mean": 0.6612, "ci95": [0.6, 0.72]}) == "0.66 [0.60, 0.72]"
    assert format_stat({"mean": 0.7, "ci95": [0.13, 1.27]}) == "0.70 [0.13, 1.00]"
    assert format_stat({"mean": None}) == "n/a"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"beta": 0.0}, "beta=0.0: expected 0 < beta < 1"),
    ({"canaries": 2.5}, "canaries=2.5: expected an integer >= 0"),
    ({"guess_fractions": ()}, r"guess_fractions=\(\): expected a non-empty sequence"),
    ({"canary_scores": ("loss", "loss")}, r"canary_scores=\('loss', 'loss'\): expected a "
     "non-empty tuple of distinct names from loss, gradient"),
    ({"canary_scores": "loss"}, "canary_scores='loss': expected"),
    ({"canary_scores": ("grad",)}, r"canary_scores=\('grad',\)"),
])
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AuditOptions(**kwargs)


def test_refuses_a_non_dp_experiment(tmp_path):
    with pytest.raises(ValueError, match="expected mode 'dp'"):
        runner.run_audit(_config().non_private(), tmp_path, seeds=[0])


def test_registered_with_the_cli(capsys):
    from disparate.cli import COMMANDS
    from disparate.commands import audit as audit_command

    assert audit_command in COMMANDS
    assert cli.main(["audit", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--canaries M" in text and "--reference-models K" in text
    assert "--canary-scores S[,S]" in text and "--resume" in text


def test_bad_option_is_a_usage_error(capsys):
    assert cli.main(["audit", "digits-underrep", "--canaries", "-3"]) == 2
    assert "canaries=-3: expected an integer >= 0" in capsys.readouterr().err


def test_resume_reuses_the_runs_of_the_same_audit_data(tmp_path, one_thread, capsys):
    out = tmp_path / "audit"
    args = ["audit", "digits-underrep", "--set", "training.epochs=2", "--set",
            "data.subsample=0.5", "--canaries", "50", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    first = (out / "audit.json").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("checkpoint.pt")}
    assert len(stamps) == 6  # per seed: 2 targets, 2 x 2 reference models
    assert cli.main([*args, "--resume"]) == 0
    assert (out / "audit.json").read_text() == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("checkpoint.pt")} == stamps
    capsys.readouterr()
    assert cli.main([*args, "--resume", "--canaries", "60"]) == 2
    assert "its runs were trained on other audit data" in capsys.readouterr().err
    (out / "seed-0" / runner.DATA_FILE).unlink()
    assert cli.main([*args, "--resume"]) == 2
    assert f"holds runs but no {runner.DATA_FILE}" in capsys.readouterr().err


def test_gradient_score_needs_the_initial_model():
    from disparate.training import build_model_for

    config = _config()
    data = build_audit_data(config, load_dataset("digits", seed=0).train, seed=0, canaries=20)
    model = build_model_for(config, data.training_set())
    options = AuditOptions(canaries=20, canary_scores=("gradient",))
    with pytest.raises(ValueError, match="canary score 'gradient' needs the initial model"):
        canary_scores(model, data, options)
    scores = canary_scores(model, data, options, initial=model)
    assert scores["gradient"].shape == (20,) and not scores["gradient"].any()  # no change
