"""The tweets-aae presets (paper Section 4.2, Figure 2a): the paper's settings, the two DP
budgets, the documented Figure 2(a) study, and a few-step smoke run of each preset (and of
the non-DP model) through disparate.training.train on a generated corpus and GloVe file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from disparate.config import load_experiment
from disparate.data.tweets import write_synthetic_corpus
from disparate.studies import expand, load_study
from disparate.training import build_model_for, prepare_data, train

PRESETS = ("tweets-aae", "tweets-aae-eps8.99")
DOC = Path(__file__).resolve().parents[1] / "docs" / "tweets.md"


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


def test_documented_figure_2a_study_expands_to_the_three_models(tmp_path):
    block = re.search(r"```yaml\n(name: fig2a\n.*?)```", DOC.read_text(encoding="utf-8"),
                      re.DOTALL)
    assert block is not None, "docs/tweets.md lost its fig2a study"
    (tmp_path / "fig2a.yaml").write_text(block.group(1), encoding="utf-8")
    for scale, epochs in (("paper", 60), ("quick", 10)):
        study = load_study(str(tmp_path / "fig2a.yaml"), scale=scale)
        points = expand(study, tmp_path / "runs")
        modes = [(pt.config.privacy.mode, pt.config.privacy.target_epsilon) for pt in points]
        assert modes == [("non-private", None), ("dp", 8.99), ("dp", 3.87)]
        assert {pt.config.training.epochs for pt in points} == {epochs}


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
