"""Contributions summed into a given buffer, and row blocks, against their formed gradients."""

from __future__ import annotations

import pytest
import torch

from disparate.privacy.grad_sample.contributions import (
    Factored,
    Materialized,
    ParamGrads,
    RowBlocks,
)

RTOL, ATOL = 1e-12, 1e-12


def _factored(b: int, t: int, m: int, n: int, seed: int, v: torch.Tensor | None = None
              ) -> Factored:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, t, m, generator=g, dtype=torch.float64)
    v = torch.randn(b, t, n, generator=g, dtype=torch.float64) if v is None else v
    return Factored(u=u, v=v, m=m, shape=torch.Size((m, n)))


def _by_hand(per_example: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i G_i by a loop over the examples."""
    total = torch.zeros_like(per_example[0])
    for w, g in zip(weights, per_example, strict=True):
        total += w * g
    return total


@pytest.mark.parametrize(("m", "n"), [(2, 5), (5, 2), (3, 3)])  # scales u; scales v
@pytest.mark.parametrize("steps", [1, 3])
def test_factored_sum_added_into_a_buffer(m: int, n: int, steps: int):
    f = _factored(4, steps, m, n, seed=m * 10 + n)
    weights = torch.tensor([0.5, -2.0, 0.0, 1.25], dtype=torch.float64)
    expected = _by_hand(f.materialize(), weights)
    torch.testing.assert_close(f.weighted_sum(weights), expected, rtol=RTOL, atol=ATOL)
    start = torch.arange(m * n, dtype=torch.float64).view(m, n)
    out = start.clone()
    assert f.weighted_sum(weights, out=out) is out
    torch.testing.assert_close(out, start + expected, rtol=RTOL, atol=ATOL)


def test_a_dropped_nonfinite_example_adds_nothing_to_the_buffer():
    f = _factored(3, 2, 2, 4, seed=1)
    f.u[1, 0, 0] = float("nan")
    f.v[1, 1, 2] = float("inf")
    weights = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    out = torch.ones(2, 4, dtype=torch.float64)
    f.weighted_sum(weights, weights != 0, out)
    clean = f.materialize()[[0, 2]]
    torch.testing.assert_close(out, 1 + clean[0] + 3 * clean[1], rtol=RTOL, atol=ATOL)


def test_indexed_and_materialized_sums_added_into_a_buffer():
    idx = torch.tensor([[0, 2, 0], [1, 1, 3]])
    v = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    emb = Factored(u=idx, v=v, m=5, shape=torch.Size((5, 4)))
    dense = Materialized(emb.materialize().transpose(0, 1), batch_dim=1)  # (5, B, 4)
    weights = torch.tensor([2.0, -1.0], dtype=torch.float64)
    expected = _by_hand(emb.materialize(), weights)
    assert dense.shape == (5, 4)
    for c in (emb, dense):
        out = torch.full((5, 4), 0.5, dtype=torch.float64)
        c.weighted_sum(weights, out=out)
        torch.testing.assert_close(out, 0.5 + expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shared_input", [True, False])
def test_row_blocks_are_the_stacked_gradient(shared_input: bool):
    # three blocks of rows (3, 2 and 3 rows of 4 columns), as q, k, v of attention
    first = _factored(3, 2, 3, 4, seed=5)
    second = _factored(3, 2, 2, 4, seed=6, v=first.v if shared_input else None)
    third = _factored(3, 2, 3, 4, seed=7, v=first.v if shared_input else None)
    blocks = [first, second, third]
    whole = torch.cat([c.materialize() for c in blocks], 1)  # (B, 8, 4)
    for mixed in (False, True):  # a block given formed
        if mixed:
            blocks[1] = Materialized(second.materialize())
        rows = RowBlocks(list(blocks))
        assert rows.batch == 3
        torch.testing.assert_close(rows.materialize(), whole, rtol=RTOL, atol=ATOL)
        grads = ParamGrads([rows])
        torch.testing.assert_close(grads.sq_norms(), whole.square().sum((1, 2)),
                                   rtol=RTOL, atol=ATOL)
        weights = torch.tensor([1.0, 0.25, -3.0], dtype=torch.float64)
        expected = _by_hand(whole, weights)
        torch.testing.assert_close(grads.weighted_sum(weights), expected, rtol=RTOL, atol=ATOL)
        out = torch.ones(8, 4, dtype=torch.float64)
        grads.weighted_sum(weights, out=out)
        torch.testing.assert_close(out, 1 + expected, rtol=RTOL, atol=ATOL)
