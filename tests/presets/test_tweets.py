"""The tweets-aae presets (paper Section 4.2, Figure 2a): the paper's settings, the two DP
budgets, the documented Figure 2(a) study, and a few-step smoke run of each preset (and of
the non-DP model) through disparate.training.train on a generated corpus and GloVe file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from disparate.config import load_experiment
from disparate.study import expand, load_study, run_study
from disparate.synthetic.tweets import write_synthetic_corpus
from disparate.training import build_model_for, prepare_data, resolve_noise, train

PRESETS = ("tweets-aae", "tweets-aae-eps8.99")
DOC = Path(__file__).resolve().parents[2] / "docs" / "tweets.md"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_presets_are_the_papers_setting():
    a, b = (load_experiment(name) for name in PRESETS)
    assert a.data.dataset == "tweets" and a.model.name == "text-lstm"
    o = a.data.options
    assert o["train_sizes"] == {"AAE": 1000, "SAE": 60000}
    assert (o["aae_threshold"], o["sae_threshold"], o["emoji_probability"]) == (0.8, 0.8, 0.9)
    assert o["vocab_size"] == 10000 and o["glove_dim"] == 300 and "840B.300d" in o["glove"]
    m = a.model.options
    assert (m["hidden_size"], m["num_layers"], m["bidirectional"]) == (200, 2, True)
    assert (a.training.optimizer, a.training.epochs) == ("adam", 60)
    p = a.privacy
    assert (p.mode, p.target_epsilon, p.noise_multiplier, p.delta) == ("dp", 3.87, None, 1e-6)
    assert (p.accountant, p.sampling) == ("rdp", "poisson")
    assert a.evaluation.highlight == ("AAE", "SAE")
    # The second budget differs in name, description and target epsilon only.
    assert b.privacy.target_epsilon == 8.99
    same = load_experiment("tweets-aae", ["privacy.target_epsilon=8.99"])
    assert dataclasses.replace(same, name=b.name, description=b.description) == b
    for cfg in (a, b):  # the budget is the config's; the description names the key only
        assert "privacy.target_epsilon" in cfg.description
        assert f"{cfg.privacy.target_epsilon:g}" not in cfg.description


def test_shipped_figure_2a_study_expands_to_the_three_models(tmp_path):
    assert "disparate study fig2a" in DOC.read_text(encoding="utf-8")
    for scale, epochs in (("paper", 60), ("quick", 10), ("smoke", 1)):
        points = expand(load_study("fig2a", scale=scale), tmp_path / "runs")
        modes = [(pt.config.privacy.mode, pt.config.privacy.target_epsilon,
                  pt.config.privacy.calibrate_with) for pt in points]
        assert modes == [("non-private", None, None), ("dp", 8.99, "rdp_classic"),
                         ("dp", 3.87, "rdp_classic")]
        assert {pt.config.training.epochs for pt in points} == {epochs}


@pytest.mark.parametrize("target, paper_z, tight_z", [(3.87, 0.732, 0.698),
                                                      (8.99, 0.565, 0.551)])
def test_calibrate_with_rdp_classic_gives_the_papers_noise(target, paper_z, tight_z):
    """At the paper's N = 61,000, b = 64, 60 epochs: z by the paper's conversion and the tight."""
    base = load_experiment("tweets-aae", [f"privacy.target_epsilon={target}"])
    classic = dataclasses.replace(base, privacy=dataclasses.replace(
        base.privacy, calibrate_with="rdp_classic"))
    z_classic = resolve_noise(classic, 61_000)
    z_tight = resolve_noise(base, 61_000)
    assert z_classic.noise_multiplier == pytest.approx(paper_z, abs=5e-4)
    assert z_tight.noise_multiplier == pytest.approx(tight_z, abs=5e-4)
    assert z_classic.calibration["method"] == "rdp_classic"
    assert z_tight.calibration["method"] == "rdp"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tweets-preset")
    write_synthetic_corpus(root / "twitteraae" / "twitteraae_all", {"AAE": 10, "SAE": 24},
                           seed=2)
    rng = np.random.default_rng(0)
    words = ["finna", "lowkey", "ion", "really", "coffee", "love", "hate", "great", "<user>"]
    (root / "glove").mkdir()
    (root / "glove" / "glove.tiny.8d.txt").write_text(
        "".join(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(0, 0.4, 8)) + "\n"
                for w in words), encoding="utf-8")
    return root


def smoke(name: str, data_dir: Path, *extra: str):
    return load_experiment(name, [
        f"data.data_dir={data_dir}",
        "data.options.train_sizes={AAE: 8, SAE: 40}",
        "data.options.test_sizes={AAE: 8, SAE: 8}",
        "data.options.glove=glove/glove.tiny.8d.txt",
        "data.options.glove_dim=8",
        "data.options.vocab_size=60",
        "data.options.max_length=12",
        "model.options.hidden_size=6",
        "training.epochs=1",
        "training.batch_size=8",
        "training.eval_batch_size=64",
        "training.num_threads=1",
        *extra,
    ])


@pytest.mark.parametrize("name, extra, mode", [
    ("tweets-aae", (), "dp"),
    ("tweets-aae-eps8.99", (), "dp"),
    ("tweets-aae", ("privacy.clipping=false", "privacy.noise=false",
                    "privacy.target_epsilon=null"), "non-private"),
])
def test_preset_smoke_run(name, extra, mode, data_dir, tmp_path):
    config = smoke(name, data_dir, *extra)
    splits = prepare_data(config)
    model = build_model_for(config, splits.train)
    assert type(model.lstm) is nn.LSTM and model.lstm.bidirectional
    vocab = list(splits.train.vocabulary)
    assert model.embedding.weight.shape == (len(vocab), 8)  # GloVe's size, the data's words
    glove = {line.split(" ")[0]: [float(v) for v in line.split(" ")[1:]]
             for line in (data_dir / "glove" / "glove.tiny.8d.txt").read_text().splitlines()}
    for word in ("finna", "love", "<user>"):
        torch.testing.assert_close(model.embedding.weight[vocab.index(word)].detach(),
                                   torch.tensor(glove[word]))

    run = train(config, tmp_path / "run", splits=splits, progress=False)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == json.loads(json.dumps(run.results))
    groups = {g["group"]: g for g in results["groups"]}
    assert set(groups) == {"AAE", "SAE"}
    assert (groups["AAE"]["train_size"], groups["SAE"]["train_size"]) == (8, 40)
    assert all(0.0 <= g["accuracy"] <= 1.0 for g in groups.values())
    privacy = results["privacy"]
    assert privacy["mode"] == mode
    if mode == "dp":
        target = config.privacy.target_epsilon
        assert privacy["is_private"] and privacy["noise_multiplier"] > 0
        assert privacy["epsilon"]["rdp"]["epsilon"] <= target * (1 + 1e-6)
        assert privacy["epsilon"]["rdp"]["epsilon"] == pytest.approx(target, rel=0.02)
    else:
        assert privacy["epsilon"] is None
    assert run.metrics[-1]["group_grad_norm"]["AAE"] > 0


def test_figure_2a_study_at_smoke_scale(data_dir, tmp_path):
    study = load_study("fig2a", scale="smoke", overrides=[f"data.data_dir={data_dir}"])
    outcome = run_study(study, tmp_path / "fig2a", jobs=1, threads=1)
    assert outcome["ok"]
    for point in outcome["points"]:
        privacy = json.loads((point.run_dir / "results.json").read_text())["privacy"]
        if point.config.privacy.mode == "non-private":
            assert privacy["epsilon"] is None
            continue
        target = point.config.privacy.target_epsilon
        assert privacy["calibration"]["method"] == "rdp_classic"
        by = privacy["epsilon"]
        # calibrated with the paper's conversion: it reaches the target, the tight one stays below
        assert by["rdp_classic"]["epsilon"] == pytest.approx(target, rel=0.02)
        assert by["rdp_classic"]["epsilon"] <= target * (1 + 1e-6)
        assert by["rdp"]["epsilon"] < by["rdp_classic"]["epsilon"]
    assert (tmp_path / "fig2a" / "report.md").is_file()
