"""training.train and the engine's guarantees: the step-1 self-check runs before the first step
(and refuses a bad model), and examples with a non-finite gradient are dropped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from disparate import results as res
from disparate import training
from disparate.config import load_experiment
from disparate.privacy import SelfCheckError
from disparate.privacy.sampling import epoch_batches
from disparate.randomness import SeedTree

TINY = ["data.subsample=150", "training.batch_size=30", "training.epochs=1",
        "training.num_threads=1"]


def tiny():
    return load_experiment("digits-underrep", TINY)


def test_self_check_is_recorded_next_to_the_first_step(tmp_path: Path) -> None:
    r = training.train(tiny(), tmp_path, progress=False).results
    check = r["self_check"]
    assert check["passed"] and check["independence"] == "checked"
    assert check["max_grad_sum_error"] <= check["grad_sum_rtol"] == 5e-3
    assert check["seconds"] > 0 and check["first_step_seconds"] > 0
    assert all(g["nonfinite"] == 0 for g in r["groups"])
    again = training.train(tiny(), tmp_path, resume=True, progress=False).results
    assert again["self_check"] == check  # a finished run keeps its check


class Centering(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def test_model_that_mixes_examples_is_refused_before_any_step(tmp_path: Path, monkeypatch
                                                              ) -> None:
    build = training.build_model_for
    monkeypatch.setattr(training, "build_model_for",
                        lambda config, dataset: nn.Sequential(Centering(), build(config, dataset)))
    with pytest.raises(SelfCheckError, match=r"^self-check failed: 0 \(Centering\) mixes"):
        training.train(tiny(), tmp_path, progress=False)
    assert res.read_metrics(tmp_path) == [] and not (tmp_path / res.RESULTS_FILE).exists()


class NaNForBright(nn.Module):
    """The wrapped model's output is NaN for the examples brighter than ``threshold``."""

    def __init__(self, model: nn.Module, threshold: float):
        super().__init__()
        self.model, self.threshold = model, threshold

    def forward(self, x):
        bright = x.flatten(1).mean(1) > self.threshold
        return self.model(x) + torch.where(bright, float("nan"), 0.0).unsqueeze(1)


@pytest.mark.parametrize("mode", ["dp", "non-private"])
def test_nonfinite_examples_are_dropped_and_counted_per_group(mode: str, tmp_path: Path,
                                                              monkeypatch) -> None:
    cfg = load_experiment("digits-underrep", [*TINY, "privacy.reproducible_noise=true"]
                          ).with_mode(mode)
    train_set = training.prepare_data(cfg).train
    threshold = float(train_set.inputs.flatten(1).mean(1).quantile(0.8))
    build = training.build_model_for
    models = []

    def build_bad(config, dataset):
        models.append(NaNForBright(build(config, dataset), threshold))
        return models[-1]

    monkeypatch.setattr(training, "build_model_for", build_bad)
    r = training.train(cfg, tmp_path, progress=False).results
    sampling = SeedTree.for_run(cfg.training.seed, private=cfg.privacy.is_private,
                                reproducible=True).root("sampling")
    seen = torch.cat(epoch_batches(cfg.privacy.sampling, len(train_set), 30, sampling, 0))
    bright = train_set.inputs[seen].flatten(1).mean(1) > threshold
    expected = torch.bincount(train_set.groups[seen][bright], minlength=train_set.num_groups)
    assert expected.sum() > 0
    counted = {g["group"]: g["nonfinite"] for g in r["groups"]}
    assert counted == dict(zip(train_set.group_names, expected.tolist(), strict=True))
    assert res.read_metrics(tmp_path)[-1]["group_nonfinite"] == counted
    assert all(torch.isfinite(p).all() for p in models[0].parameters())
    assert all(v is None or v > 0 for v in res.read_metrics(tmp_path)[-1]["group_grad_norm"]
               .values())
