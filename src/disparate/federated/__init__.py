"""Federated learning with DP-FedAvg (paper Sections 3.3 and 4.4, Figure 3).

Modules (see ``docs/federated.md``):

- :mod:`~disparate.federated.settings`: the ``federated`` section of an experiment config
  (imported by :mod:`disparate.config`, so it imports neither torch nor the rest of this
  package);
- :mod:`~disparate.federated.reddit`: streamed reader of pushshift Reddit comment dumps and the
  cached per-participant preprocessing;
- :mod:`~disparate.federated.model`: the tied-weight two-layer word LSTM;
- :mod:`~disparate.federated.dpfedavg`: local training, update clipping, streaming aggregation,
  server noise and the participant-level privacy accounting;
- :mod:`~disparate.federated.metrics`: next-word accuracy per participant, vocabulary-size
  buckets and output diversity;
- :mod:`~disparate.federated.simulation`: the in-process engine and its run directory, the
  variants of a comparison;
- :mod:`~disparate.federated.comparison`: variants x seeds as a sweep over the run store,
  ``comparison-<variant>.json`` and ``figure3.json``;
- :mod:`~disparate.federated.flower_app`: the same rounds run by Flower (optional extra);
- :mod:`~disparate.federated.plots` / :mod:`~disparate.federated.report`: Figure 3 and the
  report of a comparison.

Small dumps in the real format, for tests and demos, are written by
:mod:`disparate.synthetic.reddit`.

This package's ``__init__`` stays import-light on purpose: ``disparate.config`` imports the
settings module at start-up.
"""
