"""The plain step of runs without clipping (training.plain_step) against DPOptimizer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from disparate.privacy import DPOptimizer
from disparate.privacy.noise import make_generator
from disparate.training import plain_step


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(),
        nn.Linear(5, 3),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("noise_std", [0.0, 0.7])  # non-private, noise-only
def test_plain_step_gives_the_numbers_of_dp_optimizer_without_clipping(
        dtype: torch.dtype, noise_std: float) -> None:
    torch.manual_seed(0)
    engine_model = _model().to(dtype)
    plain_model = copy.deepcopy(engine_model)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    dp = DPOptimizer(torch.optim.SGD(engine_model.parameters(), lr=0.3, momentum=0.9), engine_model,
                     expected_batch_size=6.0, max_grad_norm=None, noise_std=noise_std,
                     noise_seed=11)
    sgd = torch.optim.SGD(plain_model.parameters(), lr=0.3, momentum=0.9)
    generator = make_generator(11)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for step in range(4):
        x = torch.randn(5 + step, 1, 6, 6, dtype=dtype)  # batch size differs from expected
        y = torch.randint(3, (5 + step,))
        result = dp.step(loss_fn, x, y)
        losses, outputs = plain_step(plain_model, sgd, loss_fn, x, y, expected_batch_size=6.0,
                                     noise_std=noise_std, generator=generator)
        torch.testing.assert_close(losses, result.losses, rtol=tol, atol=tol)
        torch.testing.assert_close(outputs, result.outputs, rtol=tol, atol=tol)
        for (name, p), q in zip(engine_model.named_parameters(), plain_model.parameters(),
                                strict=True):
            torch.testing.assert_close(q, p, rtol=tol, atol=tol, msg=f"step {step} {name}")
    # the same draws: both generators are at the same place
    assert torch.equal(generator.get_state(), dp.noise_generator.get_state())
    dp.close()


def test_plain_step_noise_has_the_configured_distribution() -> None:
    # Two plain SGD steps (lr 1, no momentum) on one batch from one start, with and without
    # noise: the parameters differ by exactly the noise / b. KS test at p > 1e-4 (flake rate
    # 1e-4); the std within 3% (n = 20,100 coordinates: 6 standard errors, flake < 1e-8).
    from scipy import stats

    torch.manual_seed(1)
    x, y = torch.randn(8, 200, dtype=torch.float64), torch.randint(100, (8,))
    std, b = 0.7, 8.0
    after = []
    for noise_std in (0.0, std):
        model = nn.Linear(200, 100).to(torch.float64)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        plain_step(model, torch.optim.SGD(model.parameters(), lr=1.0),
                   nn.CrossEntropyLoss(reduction="none"), x, y, expected_batch_size=b,
                   noise_std=noise_std, generator=make_generator(3))
        after.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    noise = (after[0] - after[1]) * b  # params move by -noise / b
    assert noise.numel() == 20_100
    assert abs(noise.std().item() / std - 1) < 0.03
    assert stats.kstest(noise.numpy() / std, "norm").pvalue > 1e-4


@pytest.mark.parametrize("mode", ["non-private", "noise-only"])
def test_training_without_per_example_stats_trains_the_same_model(mode: str, tmp_path) -> None:
    from disparate import report, training
    from disparate.config import load_experiment

    tiny = ["data.subsample=150", "training.batch_size=30", "training.epochs=1",
            "training.num_threads=1", "evaluation.min_group_test_size=20"]
    runs = {}
    for stats in (True, False):
        cfg = load_experiment("digits-underrep", [*tiny, f"training.per_example_stats={stats}"]
                              ).with_mode(mode)
        runs[stats] = training.train(cfg, tmp_path / str(stats), progress=False)
    engine, plain = (torch.load(runs[s].run_dir / "checkpoint.pt", weights_only=True)
                     for s in (True, False))
    # float32, 5 steps: the two paths sum the batch in another order (max diff seen 3e-8)
    for name, p in engine["model"].items():
        torch.testing.assert_close(plain["model"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    # the same noise draws: the generators end at the same place
    assert torch.equal(engine["optimizer"]["noise_generator"],
                       plain["optimizer"]["noise_generator"])
    last = runs[False].metrics[-1]
    assert set(last["group_grad_norm"].values()) == {None}
    assert last["group_clipped_fraction"] == runs[True].metrics[-1]["group_clipped_fraction"]
    assert set(last["group_clipped_fraction"].values()) <= {0.0, None}  # None: no example
    assert any(v for v in runs[True].metrics[-1]["group_grad_norm"].values())
    assert runs[False].results["per_example_stats"] is False
    assert "per_example_stats" not in runs[True].results
    assert [g["grad_norm"] for g in runs[False].results["groups"]] == [None] * 10
    assert runs[False].results["config_hash"] != runs[True].results["config_hash"]
    report.write_report(runs[False].run_dir)
    md = (runs[False].run_dir / "report.md").read_text(encoding="utf-8")
    assert "mean gradient norm n/a: not recorded" in md
