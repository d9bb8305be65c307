"""Tests of the seed tree: named streams are independent, secret roots are fresh and hidden."""

from __future__ import annotations

import pytest
import torch

from disparate.privacy.sampling import epoch_batches
from disparate.randomness import (
    SECRET_STREAMS,
    STREAMS,
    SeedTree,
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
    first = epoch_batches("poisson", 500, 50, tree.root("sampling"), 0)[0]
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
