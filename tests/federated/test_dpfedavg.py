"""DP-FedAvg: tied-weight clipping, streaming aggregation, seeding, noise and accounting."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from disparate.config import load_experiment
from disparate.federated.dpfedavg import (
    DPFedAvgSettings,
    StreamingAggregator,
    initial_parameters,
    local_update,
    participant_epsilon,
    participant_epsilons,
    privacy_statement,
    sample_participants,
    server_step,
    update_norm,
)
from disparate.federated.model import WordLSTM, set_parameters
from disparate.privacy.accounting import compute_epsilon


def settings(**changes) -> DPFedAvgSettings:
    base = DPFedAvgSettings(
        num_participants=50, participants_per_round=5, sampling="poisson", rounds=10,
        server_lr=1.0, clip_norm=1.0, clip_mode="update", noise_multiplier=1.0,
        noise_std=0.2, local_lr=1.0, local_batch_size=4, local_epochs=2,
        local_optimizer="sgd", local_momentum=0.0, local_grad_clip=0.25, seq_len=8, seed=7)
    return dataclasses.replace(base, **changes)


def tiny_model() -> WordLSTM:
    torch.manual_seed(0)
    return WordLSTM(25, embedding_dim=6, hidden_size=6)


def tokens(seed: int, n: int = 90) -> torch.Tensor:
    return torch.randint(0, 25, (n,), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------- tied weights


def test_tied_model_is_clipped_at_s_not_sqrt2_s() -> None:
    """A raw state_dict lists the tied matrix twice. Clipping the flattened state_dict update
    to S and adding it entry by entry to the (shared) tensors -- what state_dict-based DP
    wrappers do -- moves a tied-only update d by 2|d| with sqrt(2)|d| <= S: by sqrt(2) S.
    Here the update is over distinct parameters and the model moves by exactly S."""
    model = tiny_model()
    g = initial_parameters(model)
    assert "decoder.weight" not in g  # one entry for the tied matrix
    delta = {n: torch.zeros_like(t) for n, t in g.items()}
    delta["encoder.weight"] = torch.full_like(g["encoder.weight"], 0.5)
    true_norm = 0.5 * math.sqrt(g["encoder.weight"].numel())
    assert update_norm(delta) == pytest.approx(true_norm)
    bound = true_norm / 3

    # the naive way: flatten the state_dict, clip, add every entry in place
    naive = tiny_model()
    state_delta = {n: torch.zeros_like(t) for n, t in naive.state_dict().items()}
    state_delta["encoder.weight"] = delta["encoder.weight"]
    state_delta["decoder.weight"] = delta["encoder.weight"]
    assert update_norm(state_delta) == pytest.approx(math.sqrt(2) * true_norm)
    factor = min(1.0, bound / update_norm(state_delta))
    before = naive.encoder.weight.detach().clone()
    with torch.no_grad():
        for name, tensor in naive.state_dict().items():
            tensor.add_(state_delta[name] * factor)
    moved = float((naive.encoder.weight.detach() - before).norm())
    assert moved == pytest.approx(math.sqrt(2) * bound, rel=1e-5)

    # this package: distinct parameters, clipped by the server at S, applied once
    agg = StreamingAggregator(g, denominator=1, clip_norm=bound)
    stat = agg.add(0, delta)
    assert stat.norm == pytest.approx(true_norm) and stat.clipped
    assert stat.clip_factor == pytest.approx(1 / 3)
    new = server_step(g, agg.average(), settings(noise_std=0.0), round_index=1)
    model_moved = tiny_model()
    set_parameters(model_moved, new)
    assert model_moved.decoder.weight is model_moved.encoder.weight
    change = math.sqrt(sum(float((p.detach() - g[n]).double().pow(2).sum())
                           for n, p in model_moved.named_parameters()))
    assert change == pytest.approx(bound, rel=1e-5)
    with pytest.raises(KeyError):
        agg.add(1, state_delta)  # a raw state_dict update is refused


def test_local_update_is_over_distinct_parameters() -> None:
    model = tiny_model()
    g = initial_parameters(model)
    upd = local_update(model, g, tokens(1), settings(), round_index=1, participant=3)
    assert set(upd.delta) == set(g)
    # 90 tokens in 4 columns of 22 rows: 21 targets per column in windows of 8 -> 3 steps
    assert (upd.steps, upd.tokens) == (2 * 3, 2 * 21 * 4) and upd.loss is not None
    assert update_norm(upd.delta) > 0


# --------------------------------------------------------------------------------- seeding


def test_local_update_depends_only_on_round_and_participant() -> None:
    model = tiny_model()
    g = initial_parameters(model)
    s = settings()
    a = local_update(model, g, tokens(1), s, round_index=2, participant=4)
    local_update(model, g, tokens(9), s, round_index=5, participant=1)  # anything in between
    b = local_update(model, g, tokens(1), s, round_index=2, participant=4)
    assert all(torch.equal(a.delta[n], b.delta[n]) for n in g)
    c = local_update(model, g, tokens(1), s, round_index=2, participant=5)  # other dropout
    assert not all(torch.equal(a.delta[n], c.delta[n]) for n in g)


def test_aggregation_does_not_depend_on_order() -> None:
    model = tiny_model()
    g = initial_parameters(model)
    s = settings(clip_norm=0.05)
    updates = {p: local_update(model, g, tokens(p), s, round_index=1, participant=p)
               for p in (3, 8, 11, 20)}
    results = []
    for order in ([3, 8, 11, 20], [20, 11, 3, 8]):
        agg = StreamingAggregator(g, denominator=5, clip_norm=s.clip_norm)
        for p in order:
            agg.add(p, updates[p])
        results.append(server_step(g, agg.average(), s, round_index=1))
    for name in g:
        assert torch.allclose(results[0][name], results[1][name], rtol=0, atol=1e-7)


def test_aggregator_memory_is_one_model_and_denominator_is_fixed() -> None:
    g = {"w": torch.zeros(4)}
    agg = StreamingAggregator(g, denominator=10, clip_norm=None)
    for p in range(25):
        agg.add(p, {"w": torch.ones(4)})
    assert list(agg.sum) == ["w"] and agg.sum["w"].dtype == torch.float64
    assert torch.equal(agg.average()["w"], torch.full((4,), 2.5))  # 25 / 10, not the mean
    assert len(agg.stats) == 25 and not any(s.clipped for s in agg.stats)


@pytest.mark.parametrize("clip_norm", [1.0, None])
def test_a_non_finite_update_is_dropped_and_keeps_the_sum_finite(clip_norm) -> None:
    agg = StreamingAggregator({"w": torch.zeros(3)}, denominator=2, clip_norm=clip_norm)
    agg.add(0, {"w": torch.tensor([0.5, 0.0, 0.0])})
    bad = agg.add(1, {"w": torch.tensor([float("nan"), 1.0, float("inf")])})
    assert bad.clip_factor == 0.0
    assert torch.equal(agg.average()["w"], torch.tensor([0.25, 0.0, 0.0]))


def test_local_projection_keeps_every_step_in_the_ball() -> None:
    model = tiny_model()
    g = initial_parameters(model)
    s = settings(clip_mode="local_projection", clip_norm=0.05, local_lr=5.0)
    upd = local_update(model, g, tokens(2), s, round_index=1, participant=0)
    assert upd.projections > 0
    assert update_norm(upd.delta) <= 0.05 * (1 + 1e-5)
    agg = StreamingAggregator(g, denominator=1, clip_norm=0.05)
    assert agg.add(0, upd).clipped  # recorded as clipped although the server did not scale


# --------------------------------------------------------------------------------- server


def test_server_step_noise_and_learning_rate() -> None:
    g = {"w": torch.zeros(200_000)}
    avg = {"w": torch.full((200_000,), 0.01)}
    s = settings(noise_std=0.003, server_lr=2.0)
    new = server_step(g, avg, s, round_index=4)["w"]
    noise = new / 2.0 - 0.01
    assert abs(float(noise.mean())) < 1e-4
    assert float(noise.std()) == pytest.approx(0.003, rel=0.02)
    assert torch.equal(new, server_step(g, avg, s, round_index=4)["w"])  # seeded by round
    assert not torch.equal(new, server_step(g, avg, s, round_index=5)["w"])
    quiet = server_step(g, avg, settings(noise_std=0.0, server_lr=2.0), round_index=4)["w"]
    assert torch.allclose(quiet, torch.full((200_000,), 0.02))


def test_participant_sampling() -> None:
    s = settings(num_participants=2000, participants_per_round=100)
    rounds = [sample_participants(s, r) for r in range(1, 21)]
    assert rounds[0] == sample_participants(s, 1) and rounds[0] != rounds[1]
    mean = sum(len(r) for r in rounds) / len(rounds)
    assert 80 < mean < 120  # Poisson: expected C
    uniform = dataclasses.replace(s, sampling="uniform")
    picked = sample_participants(uniform, 3)
    assert len(picked) == len(set(picked)) == 100 and picked == sorted(picked)


# --------------------------------------------------------------------------------- accounting


def test_participant_level_accounting_is_the_subsampled_gaussian() -> None:
    s = settings(num_participants=10_000, participants_per_round=100, noise_multiplier=1.1,
                 rounds=300)
    reports, skipped = participant_epsilons(s, delta=1e-6)
    assert set(reports) == {"rdp", "rdp_classic", "pld"} and not skipped
    direct = compute_epsilon(dataset_size=10_000, batch_size=100, noise_multiplier=1.1,
                             steps=300, delta=1e-6, method="rdp").epsilon
    assert reports["rdp"].epsilon == pytest.approx(direct)
    assert participant_epsilon(s, delta=1e-6, rounds=300) == (pytest.approx(direct), False)
    rep = reports["rdp"]
    assert "participant" in rep.neighboring_relation and "participants" in rep.sampling
    assert "z = sigma * C / S" in rep.note and not rep.approximate
    uniform, _ = participant_epsilons(dataclasses.replace(s, sampling="uniform"), delta=1e-6,
                                      methods=["rdp"])
    assert uniform["rdp"].approximate and "APPROXIMATION" in uniform["rdp"].note
    # the per-round epsilon of fixed-size rounds carries the mark too (issue #11)
    assert participant_epsilon(dataclasses.replace(s, sampling="uniform"), delta=1e-6,
                               rounds=300) == (pytest.approx(uniform["rdp"].epsilon), True)


def test_paper_settings_give_a_huge_epsilon_and_say_so() -> None:
    cfg = load_experiment("reddit-fl")
    s = DPFedAvgSettings.from_config(cfg, 80_000)
    assert s.noise_multiplier == pytest.approx(0.01)
    reports, skipped = participant_epsilons(s, delta=1e-6)
    assert "pld" in skipped and "rdp" in reports
    assert reports["rdp"].epsilon > 1e6  # about 1.1e7
    text = privacy_statement(s, reports["rdp"], mode="dp", delta=1e-6)
    assert "WARNING" in text and "meaningful" in text and "participant level" in text
    assert privacy_statement(s, None, mode="non-private", delta=None).startswith(
        "not differentially private")
