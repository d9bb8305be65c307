"""disparate: differentially private training and its disparate impact on groups.

The library in a few names (imported on first use; see ``docs/library.md``):

- ``make_private(model, optimizer, data_loader, ...)``: DP-SGD for your own training loop
  (:mod:`disparate.privacy` has the pieces);
- ``load_experiment(name_or_yaml, overrides)``, ``train(config, out_dir)`` and
  ``run_comparison(config, out_dir, seeds=...)``: the experiments of the command line;
- ``Predictions`` and ``GroupMetrics``: per-group metrics (:mod:`disparate.metrics`).
"""

from __future__ import annotations

from disparate.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "make_private": "disparate.privacy.private",
    "load_experiment": "disparate.config",
    "train": "disparate.training",
    "run_comparison": "disparate.comparison",
    "Predictions": "disparate.metrics",
    "GroupMetrics": "disparate.metrics",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
