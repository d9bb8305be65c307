"""The training loop with a clipping policy: flat DP-SGD bit for bit as before, stateful
policies resume exactly, and results.json states the composed mechanism."""

from pathlib import Path

import pytest
import torch

from disparate import randomness, training
from disparate import results as res
from disparate.config import load_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.subsample=150", "training.batch_size=30", "training.epochs=2",
        "training.num_threads=1", "evaluation.min_group_test_size=20",
        "privacy.reproducible_noise=true"]


def tiny(*extra: str):
    return load_experiment("digits-underrep", [*TINY, *extra])


def test_flat_policy_reproduces_dp_sgd_bit_for_bit(tmp_path: Path) -> None:
    # DP-SGD without a policy and with the flat one are the same mechanism, drawing the same
    # noise: the two runs agree bit for bit.
    plain = training.train(tiny(), tmp_path / "plain", progress=False)
    flat = training.train(tiny("mitigation.method=dpsgd"), tmp_path / "flat", progress=False)
    losses = [(run.metrics[-1]["train_loss"], run.metrics[-1]["test_loss"])
              for run in (plain, flat)]
    assert losses[0] == losses[1]
    a = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "flat" / "checkpoint.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert "policy" not in b["optimizer"]  # flat clipping has no state: checkpoints unchanged
    assert "mechanism" not in plain.results["privacy"]
    assert flat.results["privacy"]["statement"] == plain.results["privacy"]["statement"]


class _Interrupt(Exception):
    pass


def _stop_after_epoch_1(line: str) -> None:
    if "epoch 1/" in line:
        raise _Interrupt


@pytest.mark.parametrize("method", ["adaptive-clip", "dpsgd-f"])
def test_policy_runs_resume_exactly_and_state_the_composed_mechanism(
        method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny(f"mitigation.method={method}", "privacy.noise_multiplier=null",
               "privacy.target_epsilon=4", "privacy.reproducible_noise=false")
    secrets = iter([5 << 90, 5 << 90])
    monkeypatch.setattr(randomness, "new_secret", lambda: next(secrets))
    full = training.train(cfg, tmp_path / "full", progress=False)
    with pytest.raises(_Interrupt):
        training.train(cfg, tmp_path / "cut", progress=False, log=_stop_after_epoch_1)
    resumed = training.train(cfg, tmp_path / "cut", resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    if method == "adaptive-clip":  # the adapted bound is in the checkpoint
        assert a["optimizer"]["policy"] == b["optimizer"]["policy"]
        assert a["optimizer"]["policy"]["bound"] != 1.0
    privacy = full.results["privacy"]
    assert resumed.results["privacy"]["statement"] == privacy["statement"]
    head = privacy["epsilon"]["rdp"]
    assert 4 * 0.99 <= head["epsilon"] <= 4
    stat_z = 2 * 30 / 20 if method == "adaptive-clip" else 30 / 20  # b/20; centred count: x2
    assert head["aux_noise_multipliers"] == [pytest.approx(stat_z)]
    components = privacy["mechanism"]["components"]
    assert [c["noise_multiplier"] for c in components] == [privacy["noise_multiplier"],
                                                           pytest.approx(stat_z)]
    assert "ComposedDpEvent" in privacy["statement"]
    assert ("treated as private" in privacy["statement"]) == (method == "dpsgd-f")
    assert res.load_results(tmp_path / "cut")["privacy"]["mechanism"] == privacy["mechanism"]
