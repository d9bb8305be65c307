"""The names of the batch sampling schemes and of the ways to account shuffled batches,
importable without dp_accounting, scipy or torch (configs and ``disparate list`` check them)."""

from __future__ import annotations

__all__ = ["SAMPLINGS", "SHUFFLE_ACCOUNTINGS"]

#: ``poisson``: each example joins a batch independently; ``shuffle``: fixed-size batches of
#: a shuffled epoch (:mod:`disparate.privacy.sampling`).
SAMPLINGS: tuple[str, ...] = ("poisson", "shuffle")
#: How epsilon is accounted with ``shuffle`` sampling: as if Poisson-sampled (an
#: approximation) or as fixed-size sampling without replacement.
SHUFFLE_ACCOUNTINGS: tuple[str, ...] = ("poisson", "without_replacement")
