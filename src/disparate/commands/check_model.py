"""``disparate check-model``: the step-1 self-check of an experiment, without training.

Examples::

    disparate check-model digits-underrep
    disparate check-model mnist-underrep --data-dir ~/data/mnist --device cuda

Builds the experiment's model and its first training batch exactly as ``disparate run``
does, and runs :func:`disparate.privacy.self_check` on them: the static rules, no buffer
written from the data, independent examples, and per-example gradients that sum to the
model's gradient for every trainable parameter. Exit status 2 names what failed and the fix.
"""

from __future__ import annotations

import argparse
from typing import Any

from disparate.commands.run import add_common_arguments, load_config

NAME = "check-model"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``check-model`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="run the step-1 self-check of an experiment's model on its first batch",
        description=(
            "Build EXPERIMENT's model and first training batch and check that DP-SGD's "
            "per-example gradients exist (examples independent, no buffer written from the "
            "data) and are complete (they sum to the model's gradient)."
        ),
    )
    add_common_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check and print what was measured."""
    import torch
    from torch import nn

    from disparate.data import DatasetNotFoundError
    from disparate.data.images import augmentation_generator
    from disparate.privacy import self_check
    from disparate.privacy.sampling import epoch_batches
    from disparate.training import build_model_for, prepare_data

    config = load_config(args)
    tc = config.training
    try:
        train_set = prepare_data(config).train
    except DatasetNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    if len(train_set) == 0:
        raise ValueError("the training set is empty after data.reduce / data.subsample")
    model = build_model_for(config, train_set).to(args.device).train()
    batches = epoch_batches(config.privacy.sampling, len(train_set), tc.batch_size, tc.seed, 0)
    idx = next(b for b in batches if b.numel())
    x, y = train_set.inputs[idx].to(args.device), train_set.labels[idx].to(args.device)
    if train_set.train_transform is not None:
        x = train_set.train_transform(x, augmentation_generator(tc.seed, 0))
    if tc.num_threads is not None:
        torch.set_num_threads(tc.num_threads)
    result = self_check(model, nn.CrossEntropyLoss(reduction="none"), x, y)
    print(f"{config.name}: self-check passed on {result.examples} examples in "
          f"{result.seconds:.2f} s")
    print(f"  per-example gradients sum to the model's gradient: worst relative error "
          f"{result.max_grad_sum_error:.2g} (tolerance {result.grad_sum_rtol:g})")
    print(f"  examples independent: {result.independence}; no buffer written from the data")
    return 0
