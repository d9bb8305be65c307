"""What one use of a parameter contributes to each example's gradient.

A parameter used by several layers (tied weights) or several times (a layer
called twice) gets one contribution per use; its per-example gradient is the
sum of them, and its per-example norm is the norm of that sum. Two forms:

- ``Factored``: G_i = sum_t u_it v_it^T (Linear, Conv, Embedding). Norms come
  from the ghost identity ||G_i||^2 = sum_{t,s} (u_it . u_is)(v_it . v_is)
  without forming G_i.
- ``Materialized``: G_i given as a (B, *shape) tensor (norm layers, vmap, and
  Linear/Conv where forming G_i is cheaper than the ghost norm).

A parameter whose blocks of rows are used apart (the packed q, k, v projection of
cross-attention) gets one ``RowBlocks`` of a contribution per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Above this many elements a per-example tensor is not formed if the ghost form is available.
MATERIALIZE_LIMIT = 1 << 27


@dataclass
class Factored:
    """G_i = sum_t u_it v_it^T, reshaped to ``shape``.

    ``u`` is (B, T, m) dense, or (B, T) long row indices into m rows (a one-hot u,
    as for an embedding); ``v`` is (B, T, n), or ``None`` with ``rows_of_v`` forming it on
    demand and ``v_gram``, v's (B, T, T) inner products between time steps, given (a
    convolution's, from its input pixels without forming the patches). ``summed_by``, if
    given, computes the weighted sum another way, from (weights, keep): a convolution's own
    weight gradient, faster than a product with its input patches, which are then needed only
    for the norms (:meth:`norms_done` lets them go).
    """

    u: Tensor
    v: Tensor | None
    m: int
    shape: torch.Size
    summed_by: Callable[[Tensor, Tensor | None], Tensor] | None = None
    v_gram: Tensor | None = None
    rows_of_v: Callable[[], Tensor] | None = None
    batch: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.batch = self.u.shape[0]

    def rows(self) -> Tensor:
        """``v``, formed now if it was not."""
        if self.v is None:
            self.v = self.rows_of_v()
        return self.v

    def norms_done(self) -> None:
        """Once the norms are formed: drop ``v`` (a convolution's input patches, the large
        factor) and its Gram if the sum does not need them; ``u`` is a view of what
        ``summed_by`` keeps."""
        if self.summed_by is not None:
            self.v = self.v_gram = None

    @property
    def indexed(self) -> bool:
        return self.u.dtype == torch.long

    @property
    def n(self) -> int:
        return self.rows().shape[-1]

    def materialize(self) -> Tensor:
        """Per-example gradients, (B, *shape)."""
        v = self.rows()
        b, _, n = v.shape
        if self.indexed:
            out = v.new_zeros(b, self.m, n)
            out.scatter_add_(1, self.u.unsqueeze(-1).expand_as(v), v)
        else:
            out = torch.bmm(self.u.transpose(1, 2), v)
        return out.reshape(b, *self.shape)

    def weighted_sum(self, weights: Tensor, keep: Tensor | None = None,
                     out: Tensor | None = None) -> Tensor:
        """sum_i w_i G_i over the examples ``keep`` (all if None), shape ``shape``;
        ``out`` (contiguous, of that shape): added into it."""
        if self.summed_by is not None:
            total = self.summed_by(weights, keep)
            return total if out is None else out.add_(total)
        m, n = self.m, self.n
        u, v = self.u, self.rows()
        if keep is not None:
            v = _zero_dropped(v, keep, 0)
            u = u if self.indexed else _zero_dropped(u, keep, 0)
        if self.indexed:
            target = v.new_zeros(m, n) if out is None else out.view(m, n)
            rows = (v * weights.view(-1, 1, 1)).reshape(-1, n)
            return target.index_add_(0, u.reshape(-1), rows).view(self.shape)
        # the weights scale the smaller factor; the (example, step) pairs are taken in the
        # order in which the larger one lies in memory, so that it is not copied
        scaled_u = m < n
        big = v if scaled_u else u
        time_major = not big.is_contiguous() and big.transpose(0, 1).is_contiguous()
        ut = _rows(u, time_major, weights if scaled_u else None).t()  # (m, B*T)
        v = _rows(v, time_major, None if scaled_u else weights)  # (B*T, n)
        if out is None:
            return (ut @ v).reshape(self.shape)
        out.view(m, n).addmm_(ut, v)
        return out


def _rows(t: Tensor, time_major: bool, weights: Tensor | None) -> Tensor:
    """(B, T, k) as (B*T, k) rows, or (T*B, k) if ``time_major``; times each example's
    weight if given, written in that order (one pass: no copy of the product)."""
    if time_major:
        t = t.transpose(0, 1)
    if weights is None:
        return t.reshape(-1, t.shape[-1])
    w = weights.view(1, -1, 1) if time_major else weights.view(-1, 1, 1)
    return torch.mul(t, w, out=t.new_empty(t.shape)).view(-1, t.shape[-1])


@dataclass
class Materialized:
    """Per-example gradients given whole, in the layout their computation produced.

    ``grads`` has the batch at ``batch_dim``; without it, and permuted by ``perm``
    (if given), it has the parameter's shape. Norms and weighted sums read this
    layout directly, so no copy is made to reorder it.
    """

    grads: Tensor
    batch_dim: int = 0
    perm: tuple[int, ...] | None = None

    @property
    def batch(self) -> int:
        return self.grads.shape[self.batch_dim]

    def materialize(self) -> Tensor:
        """(B, *shape), possibly a non-contiguous view."""
        out = self.grads.movedim(self.batch_dim, 0)
        return out if self.perm is None else out.permute(0, *(p + 1 for p in self.perm))

    def sq_norms(self) -> Tensor:
        dims = [d for d in range(self.grads.dim()) if d != self.batch_dim]
        return torch.linalg.vector_norm(self.grads, dim=dims).square()

    @property
    def shape(self) -> torch.Size:
        """The parameter's shape."""
        rest = [s for d, s in enumerate(self.grads.shape) if d != self.batch_dim]
        return torch.Size(rest if self.perm is None else [rest[p] for p in self.perm])

    def weighted_sum(self, weights: Tensor, keep: Tensor | None = None,
                     out: Tensor | None = None) -> Tensor:
        if out is not None:
            return out.add_(self.weighted_sum(weights, keep))
        lead = self.grads.shape[: self.batch_dim]
        rest = self.grads.shape[self.batch_dim + 1 :]
        flat = self.grads.reshape(*lead, weights.shape[0], -1)
        if keep is not None:
            flat = _zero_dropped(flat, keep, self.batch_dim)
        out = torch.matmul(weights, flat).reshape(*lead, *rest)
        return out if self.perm is None else out.permute(*self.perm).contiguous()


@dataclass
class RowBlocks:
    """G_i cut into blocks of rows, each the contribution of its own use of those rows.

    The blocks are disjoint, so the squared norms of the blocks add up and the sums stack.
    """

    blocks: list[Factored | Materialized]

    @property
    def batch(self) -> int:
        return self.blocks[0].batch

    def materialize(self) -> Tensor:
        """Per-example gradients, (B, *shape)."""
        return torch.cat([b.materialize() for b in self.blocks], 1)

    def sq_norms(self) -> Tensor:
        return sum(b.sq_norms() if isinstance(b, Materialized) else factored_inner(b, b)
                   for b in self.blocks)

    def weighted_sum(self, weights: Tensor, keep: Tensor | None = None,
                     out: Tensor | None = None) -> Tensor:
        if out is None:
            return torch.cat([b.weighted_sum(weights, keep) for b in self.blocks])
        for b, rows in zip(self.blocks, out.split([b.shape[0] for b in self.blocks]),
                           strict=True):
            b.weighted_sum(weights, keep, rows)
        return out


Contribution = Factored | Materialized | RowBlocks


def _zero_dropped(t: Tensor, keep: Tensor, batch_dim: int) -> Tensor:
    """``t`` with the examples not in ``keep`` (B,) set to 0, NaN and inf included."""
    shape = [1] * t.dim()
    shape[batch_dim] = -1
    return torch.where(keep.view(shape), t, t.new_zeros(()))


def prefer_materialized(batch: int, steps: int, m: int, n: int) -> bool:
    """Whether forming (B, m, n) per-example gradients beats the ghost norm over T steps.

    Ghost costs B*T^2*(m+n) and B*T^2 memory; forming costs B*T*m*n and B*m*n memory.
    """
    if not within_limit(batch * m * n):
        return False
    return m * n <= steps * (m + n) or not within_limit(batch * steps * steps)


def within_limit(elements: int) -> bool:
    """Whether a tensor of this many elements may be formed (``MATERIALIZE_LIMIT``)."""
    return elements <= MATERIALIZE_LIMIT


def _row_inner(a: Factored, b: Factored) -> Tensor:
    """(B, T_a, T_b) inner products between the u factors of a and b."""
    if a.indexed and b.indexed:
        return (a.u.unsqueeze(2) == b.u.unsqueeze(1)).to(a.rows().dtype)
    if a.indexed:
        return _row_inner(b, a).transpose(1, 2)
    if b.indexed:
        # u_a (B, Ta, m) picked at b's rows: (B, Ta, Tb)
        idx = b.u.unsqueeze(1).expand(-1, a.u.shape[1], -1)
        return a.u.gather(2, idx)
    return torch.bmm(a.u, b.u.transpose(1, 2))


def factored_inner(a: Factored, b: Factored) -> Tensor:
    """Per-example <G_i^a, G_i^b>, shape (B,), without forming either."""
    if a is b and a.v_gram is not None:
        return (_row_inner(a, a) * a.v_gram).sum((1, 2))
    if not (a.indexed or b.indexed) and a.u.shape[1] == 1 and b.u.shape[1] == 1:
        if a is b:  # ||u v^T|| = ||u|| ||v||
            return (
                torch.linalg.vector_norm(a.u, dim=(1, 2))
                * torch.linalg.vector_norm(a.rows(), dim=(1, 2))
            ).square()
        return (a.u * b.u).sum((1, 2)) * (a.rows() * b.rows()).sum((1, 2))
    vv = torch.bmm(a.rows(), b.rows().transpose(1, 2))
    return (_row_inner(a, b) * vv).sum((1, 2))


class ParamGrads:
    """All contributions to one parameter; per-example squared norm and weighted sum."""

    def __init__(self, contributions: list[Contribution]):
        self._factored: list[Factored] = []
        self._dense: Materialized | RowBlocks | None = None
        if all(isinstance(c, Factored) for c in contributions):
            self._factored = contributions
        elif len(contributions) == 1:
            self._dense = contributions[0]
        else:
            self._dense = Materialized(sum(c.materialize() for c in contributions))

    def sq_norms(self) -> Tensor:
        """||G_i||^2 for each example, (B,)."""
        if self._dense is not None:
            return self._dense.sq_norms()
        fs = self._factored
        total = sum(factored_inner(f, f) for f in fs)
        for i in range(len(fs)):
            for j in range(i + 1, len(fs)):
                total = total + 2 * factored_inner(fs[i], fs[j])
        for f in fs:
            f.norms_done()
        return total

    def weighted_sum(self, weights: Tensor, keep: Tensor | None = None,
                     out: Tensor | None = None) -> Tensor:
        """sum_i weights_i G_i over the examples ``keep`` (all if None), the parameter's shape;
        ``out`` (contiguous, of that shape): added into it, so the sum needs no buffer of
        its own."""
        if self._dense is not None:
            return self._dense.weighted_sum(weights, keep, out)
        first, *rest = self._factored
        total = first.weighted_sum(weights, keep, out)  # the others added in place
        for f in rest:
            f.weighted_sum(weights, keep, total)
        return total
