"""Tests of the seed tree: named streams are independent, secret roots are fresh and hidden."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disparate.privacy.data_loader import PoissonBatchSampler
from disparate.privacy.noise import make_generator
from disparate.privacy.optimizer import DPOptimizer
from disparate.privacy.sampling import epoch_batches
from disparate.randomness import (
    DATA_STREAMS,
    SECRET_STREAMS,
    STREAMS,
    SeedTree,
    data_generator,
    generator_from_sequence,
    stream_seed,
    torch_generator,
)


@pytest.mark.parametrize("root", [0, 1, 2, 7, 1_000_003, 2**64 + 5])
def test_every_named_stream_and_key_has_its_own_seed(root: int) -> None:
    seeds = [stream_seed(root, name) for name in STREAMS]
    seeds += [stream_seed(root, name, k) for name in STREAMS for k in range(4)]
    seeds += [stream_seed(root, "fl_local", r, p) for r in range(3) for p in range(3)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**64 for s in seeds)
    assert stream_seed(root, "noise") == stream_seed(root, "noise")  # stable


@pytest.mark.parametrize("seed", range(8))
def test_sampling_and_noise_streams_differ_for_every_seed(seed: int) -> None:
    # The bug this prevents: with seed 0 the epoch-0 sampler and the noise generator were
    # the same Mersenne-Twister stream, so batch membership could be read off the noise.
    noise_uniforms = torch.rand(500, generator=torch_generator(seed, "noise"))
    for epoch in range(3):
        uniforms = torch.rand(500, generator=torch_generator(seed, "sampling", epoch))
        assert not torch.equal(uniforms, noise_uniforms)
        assert abs(float(torch.corrcoef(torch.stack([uniforms, noise_uniforms]))[0, 1])) < 0.2
    # What the training loop draws: batches of the sampling root vs the noise generator.
    tree = SeedTree(seed)
    first = epoch_batches("poisson", 500, 50, tree, 0)[0]
    reference = (torch.rand(500, generator=torch.Generator().manual_seed(
        tree.seed_of("noise"))) < 0.1).nonzero().squeeze(1)
    assert not torch.equal(first, reference)


def test_unknown_stream_and_bad_root_are_errors_that_name_the_value() -> None:
    with pytest.raises(ValueError, match="stream='nosie': expected one of 'model_init'"):
        stream_seed(0, "nosie")
    with pytest.raises(ValueError, match="root=-1: expected an int >= 0"):
        stream_seed(-1, "noise")


def test_secret_tree_roots_only_the_secret_streams_in_the_secret() -> None:
    tree = SeedTree.for_run(0, private=True, reproducible=False)
    assert tree.is_secret and tree.secret is not None and tree.secret.bit_length() > 64
    for name in STREAMS:
        expected = tree.secret if name in SECRET_STREAMS else 0
        assert tree.root(name) == expected, name
    assert {"sampling", "noise", "fl_participants", "fl_noise"} == SECRET_STREAMS
    assert str(tree.secret) not in repr(tree) and "hidden" in repr(tree)
    other = SeedTree.for_run(0, private=True, reproducible=False)
    assert other.secret != tree.secret  # fresh entropy every run
    resumed = SeedTree.for_run(0, private=True, reproducible=False, saved_secret=tree.secret)
    assert resumed.seed_of("noise") == tree.seed_of("noise")


@pytest.mark.parametrize(("private", "reproducible"), [(True, True), (False, False),
                                                       (False, True)])
def test_reproducible_and_non_private_trees_are_rooted_in_the_seed(private: bool,
                                                                   reproducible: bool) -> None:
    tree = SeedTree.for_run(5, private=private, reproducible=reproducible, saved_secret=123)
    assert not tree.is_secret and all(tree.root(name) == 5 for name in STREAMS)


# -- the data streams (rooted in data.seed) -------------------------------------------------


def _first_draws(rng) -> tuple[int, ...]:
    return tuple(int(v) for v in rng.integers(0, 2**63, size=4))


@pytest.mark.parametrize("seed", [0, 3, 2**40 + 1])
def test_data_streams_draw_what_the_presets_drew_before_the_tree(seed: int) -> None:
    # The entropy each dataset module used before the seed tree (so reductions, subsamples
    # and the faces / iNaturalist / tweets / GloVe draws of every preset are unchanged).
    before = {
        ("data_reduce", (8,)): [seed, 8],
        ("data_reduce", (0,)): [seed, 0],
        ("data_subsample", ()): [seed, 0xFFFF_FFFF],
        ("faces_split", ()): [seed, 0xFACE5],
        ("inat_draw", (12345,)): [seed, 0x1A7, 12345],
        ("tweets_sample", (1, 0)): [seed, 0x7EE7, 1, 0],
        ("tweets_cues", (1,)): [seed, 0xC0E, 1],
        ("glove_rows", ()): [seed, 0x61_07E],
    }
    for (stream, key), entropy in before.items():
        assert _first_draws(data_generator(seed, stream, *key)) == _first_draws(
            np.random.default_rng(entropy)), stream


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_data_streams_are_distinct_from_each_other_and_from_the_training_streams(
        seed: int) -> None:
    draws = {("data_reduce", g): _first_draws(data_generator(seed, "data_reduce", g))
             for g in range(0x1A7)}
    for stream in DATA_STREAMS:
        if stream != "data_reduce":
            for key in ((), (0,), (1,), (0, 0), (1, 1)):
                draws[(stream, *key)] = _first_draws(data_generator(seed, stream, *key))
    draws.update({(name,): _first_draws(np.random.default_rng(stream_seed(seed, name)))
                  for name in STREAMS})
    # a stream with a key of 0 is the stream without it (numpy pads entropy with zeros)
    assert len(set(draws.values())) == len(draws) - 2 * (len(DATA_STREAMS) - 1)


def test_two_data_streams_are_uncorrelated() -> None:
    # |r| of 20,000 independent uniform pairs exceeds 5 / sqrt(n) with probability ~6e-7.
    n = 20_000
    a = data_generator(0, "data_reduce", 8).random(n)
    b = data_generator(0, "data_split").random(n)
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 5 / n**0.5


def test_an_unknown_data_stream_or_seed_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="stream='split': expected one of 'data_reduce'"):
        data_generator(0, "split")
    with pytest.raises(ValueError, match="seed=-1: expected an int >= 0"):
        data_generator(-1, "data_split")


def _mt_words(generator: torch.Generator) -> np.ndarray:
    """The 624 Mersenne Twister words of a CPU generator's state."""
    return generator.get_state().numpy()[24:24 + 8 * 624].view("<u8").astype(np.uint64)


def _from_manual_seed(generator: torch.Generator) -> bool:
    """True when the state is MT19937's initialisation from a 32-bit seed (its first word),
    the only states ``manual_seed`` reaches; a state drawn at random satisfies this recurrence
    with probability 2**-(32 * 623)."""
    mt = _mt_words(generator)
    expected = [int(mt[0])]
    for i in range(1, 624):
        prev = expected[-1]
        expected.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFF_FFFF)
    return [int(w) for w in mt] == expected


def test_manual_seed_keeps_32_bits_which_the_recurrence_check_detects() -> None:
    # The premise of the fix: seeds s and s + 2**32 give the same generator on the CPU.
    a, b = torch.Generator().manual_seed(12345), torch.Generator().manual_seed(12345 + 2**32)
    assert torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))
    assert _from_manual_seed(torch.Generator().manual_seed(2**40 + 3))


def test_secret_streams_keep_the_secrets_entropy_and_public_ones_stay_reproducible() -> None:
    secret = SeedTree.for_run(3, private=True, reproducible=False)
    public = SeedTree(3)
    for stream in ("noise", "sampling", "fl_participants", "fl_noise"):
        g = secret.generator(stream, 0)
        assert not _from_manual_seed(g), stream
        again = SeedTree(3, secret.secret).generator(stream, 0)  # resume: same secret
        assert torch.equal(torch.rand(16, generator=g), torch.rand(16, generator=again))
        reproducible = public.generator(stream, 0)
        assert _from_manual_seed(reproducible)
        assert torch.equal(reproducible.get_state(), torch_generator(3, stream, 0).get_state())
    # a public stream of a secret tree (model init) keeps its reproducible seeding
    assert _from_manual_seed(secret.generator("augmentation", 0))


def test_two_secrets_equal_in_the_low_bits_of_every_stream_seed_draw_differently() -> None:
    # The generators of two secret roots whose 64-bit stream seeds agree in their low 32 bits
    # would be identical under manual_seed; with the whole state drawn they are not.
    seq_a = np.random.SeedSequence(2**100 + 1, spawn_key=(3,))
    seq_b = np.random.SeedSequence(2**100 + 2, spawn_key=(3,))
    a, b = generator_from_sequence(seq_a), generator_from_sequence(seq_b)
    assert not torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))
    assert not _from_manual_seed(a) and not _from_manual_seed(b)


def test_library_defaults_draw_noise_and_batches_from_a_fresh_full_state_secret() -> None:
    model = torch.nn.Linear(3, 2)
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model,
                      expected_batch_size=4.0, max_grad_norm=1.0, noise_multiplier=1.0)
    assert not _from_manual_seed(opt.noise_generator)
    assert not _from_manual_seed(make_generator(None))
    assert _from_manual_seed(make_generator(5))
    torch.manual_seed(0)  # a user's global seed must not fix the batches
    first = list(PoissonBatchSampler(200, 20, steps=2))
    torch.manual_seed(0)
    second = list(PoissonBatchSampler(200, 20, steps=2))
    assert first != second
    seeded = [list(PoissonBatchSampler(200, 20, steps=2,
                                       generator=torch.Generator().manual_seed(1)))
              for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_the_optimizer_takes_a_seed_or_a_generator_not_both() -> None:
    model = torch.nn.Linear(3, 2)
    g = torch.Generator().manual_seed(1)
    with pytest.raises(ValueError, match="noise_seed=7 and noise_generator: give at most one"):
        DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model,
                    expected_batch_size=4.0, max_grad_norm=1.0, noise_seed=7,
                    noise_generator=g)
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model,
                      expected_batch_size=4.0, max_grad_norm=1.0, noise_generator=g)
    assert opt.noise_generator is g
