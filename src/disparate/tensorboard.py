"""Per-epoch metrics of a run as TensorBoard scalars (``disparate run --tensorboard DIR``).

Written with ``torch.utils.tensorboard.SummaryWriter`` (the optional ``tensorboard``
package: ``pip install "disparate[tensorboard]"``), one point per epoch:
``accuracy/test``, ``accuracy/train``, ``loss/test``, ``loss/train``, ``privacy/epsilon``
and, per group, ``group_accuracy/<group>``, ``group_grad_norm/<group>`` (mean per-example
gradient norm before clipping) and ``group_clipped_fraction/<group>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ERR_NO_TENSORBOARD", "TensorBoardLogger"]

ERR_NO_TENSORBOARD = (
    "--tensorboard needs the optional package 'tensorboard': pip install "
    "'disparate[tensorboard]'"
)
_SCALARS = {"accuracy/test": "test_accuracy", "accuracy/train": "train_accuracy",
            "loss/test": "test_loss", "loss/train": "train_loss", "privacy/epsilon": "epsilon"}
_GROUP_SCALARS = ("group_accuracy", "group_grad_norm", "group_clipped_fraction")


class TensorBoardLogger:
    """Call with each ``metrics.jsonl`` line; ``close()`` at the end."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(ERR_NO_TENSORBOARD) from e
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, line: Mapping[str, Any]) -> None:
        step = int(line["epoch"])
        for tag, key in _SCALARS.items():
            if line.get(key) is not None:
                self.writer.add_scalar(tag, line[key], step)
        for key in _GROUP_SCALARS:
            for group, value in (line.get(key) or {}).items():
                if value is not None:
                    self.writer.add_scalar(f"{key}/{group}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
