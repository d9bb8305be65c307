"""Smoke test of benchmarks/dpsgd_speed.py: tiny settings, in-process, JSON output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dpsgd_speed.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("dpsgd_speed_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_benchmark_runs_every_contender_and_reports_positive_times(capsys):
    bench = _load_benchmark()
    threads = torch.get_num_threads()
    argv = (
        "--models mlp --batch-size 8 --rounds 2 --warmup 1 --loop-rounds 1 --threads 1 "
        "--check --json"
    ).split()
    assert bench.main(argv) == 0
    assert torch.get_num_threads() == threads  # restored

    report = json.loads(capsys.readouterr().out)
    expected = list(bench.CONTENDERS)
    if importlib.util.find_spec("opacus") is None:
        expected = [c for c in expected if c not in bench.OPACUS_CONTENDERS]
    assert report["settings"]["rounds"] == 2
    assert report["settings"]["threads"] == 1
    model = report["models"]["mlp"]
    assert model["batch_size"] == 8
    assert list(model["contenders"]) == expected, model["skipped"]
    for name, row in model["contenders"].items():
        assert row["median_ms"] > 0 and row["steps_per_s"] > 0, name
        assert row["ratio_to_non_private"] > 0, name
        assert row["rounds"] == (1 if name == bench.LOOP else 2), name
    assert model["contenders"]["non-private"]["ratio_to_non_private"] == 1.0
    assert model["contenders"]["non-private"]["peak_to_non_private"] == 1.0
    for name, row in model["contenders"].items():
        assert row["ratio_q25"] <= row["ratio_to_non_private"] <= row["ratio_q75"], name
        if name != bench.LOOP:  # the loop's memory is not profiled
            assert row["peak_mb"] > 0 and row["peak_to_non_private"] > 0, name
    assert len(model["load_average_before"]) == 3
    diffs = report["check"]["mlp"]["max_abs_diff"]
    assert set(diffs) == set(expected) - {bench.NON_PRIVATE, bench.NOISE_FLOOR, bench.LOOP}
    assert all(d < 1e-4 for d in diffs.values()), diffs


def test_peak_step_memory_counts_what_a_step_allocates_not_what_existed_before():
    bench = _load_benchmark()
    kept = torch.ones(4 << 20)  # 16 MiB allocated before the step: not counted

    class Allocates(bench.Contender):
        def update(self) -> None:
            a = torch.ones(1 << 20)  # 4 MiB
            b = torch.ones(1 << 20)  # 4 MiB more while a lives: the peak, 8 MiB
            del a, b
            torch.ones(1 << 19)  # 2 MiB after both are freed

        def zero_grad(self) -> None:
            pass

    peak = bench.peak_step_memory(Allocates(nn.Identity(), kept, kept))
    assert 8 << 20 <= peak < 9 << 20


def test_benchmark_runs_the_non_private_contenders_on_request(capsys):
    bench = _load_benchmark()
    argv = ("--models mlp --batch-size 8 --rounds 2 --warmup 1 --threads 1 --no-memory "
            "--contenders disparate-no-dp,disparate-plain --json").split()
    assert bench.main(argv) == 0
    model = json.loads(capsys.readouterr().out)["models"]["mlp"]
    assert list(model["contenders"]) == ["non-private", *bench.NO_DP_CONTENDERS]
    assert all(row["median_ms"] > 0 for row in model["contenders"].values())


# What a step allocates is deterministic on the CPU. The paper's CNN at batch 256: 1.15x since a
# layer's outputs are no longer kept until its rule runs (only their shapes) and input patches
# are formed 2 MB at a time (1.56x before). The Transformer at seq 256 (batch 32): 1.46x, its
# self-attention cut out of the graph, the rule's replay (the call's output) kept from the
# forward to the rule (1.52x before the rule freed its replay first, 1.56x with the cut before
# the module's forward ran without a graph). Issue 16's goal is 1.5x.
@pytest.mark.parametrize("model, limit", [("mnist-cnn", 1.25), ("transformer-256", 1.5)])
def test_the_dp_step_peak_memory_stays_near_the_non_private_step(model: str, limit: float):
    bench = _load_benchmark()
    spec = bench.MODEL_SPECS[model]
    x, y = spec.make_batch(spec.batch_size, torch.Generator().manual_seed(0))
    contenders, skipped, _ = bench.build_contenders(
        ["non-private", "disparate"], spec, x, y, 0, noise_multiplier=1.0, lr=0.05)
    assert not skipped
    for c in contenders.values():
        c.step()  # warm: lazily allocated state is not the step's
    peak = {name: bench.peak_step_memory(c) for name, c in contenders.items()}
    assert peak["disparate"] <= limit * peak["non-private"], peak


def test_the_noise_floor_is_the_plain_gradient_plus_the_dp_steps_noise():
    bench = _load_benchmark()
    spec = bench.MODEL_SPECS["mlp"]
    x, y = spec.make_batch(8, torch.Generator().manual_seed(0))
    contenders, skipped, _ = bench.build_contenders(
        ["non-private", "noise-floor"], spec, x, y, 0, noise_multiplier=0.8, lr=0.0)
    assert not skipped
    for c in contenders.values():
        c.update()
    plain = torch.cat([p.grad.flatten() for p in contenders["non-private"].model.parameters()])
    floor = torch.cat([p.grad.flatten() for p in contenders["noise-floor"].model.parameters()])
    noise = floor - plain
    # std z * S / B = 0.1 over 535,818 coordinates: its estimate's relative standard error is
    # 1 / sqrt(2n) ~ 0.1%, so 1% is 10 standard errors; the mean's is 0.1 / sqrt(n) ~ 1.4e-4
    assert abs(noise.std().item() / (0.8 * bench.MAX_GRAD_NORM / 8) - 1) < 0.01
    assert abs(noise.mean().item()) < 1.5e-3
