"""Refuse models whose layers mix the examples of a batch, and offer the fixes.

Per-example gradients, hence per-example clipping and the DP guarantee, exist only
if each example's loss depends on that example alone. BatchNorm in training mode
normalises with batch statistics (and records them, unprivatised, in its running
buffers); an embedding with ``scale_grad_by_freq`` scales by counts over the batch, and
one with ``max_norm`` rewrites, in place, the rows of the batch's tokens. What no static
look can see (functional batch norm, a layer fed the wrong layout, a buffer written from
the data) the step-1 self-check finds: :func:`disparate.privacy.selfcheck.self_check`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from torch import nn

if TYPE_CHECKING:  # torchvision only when freezing: the privacy core does not need it
    from torchvision.ops.misc import FrozenBatchNorm2d

BATCHNORM_ERROR = (
    "{name} ({kind}) in training mode mixes the examples of a batch: per-example "
    "gradients, and so the DP guarantee, do not exist with it. Fix: replace it with "
    "GroupNorm (disparate.privacy.replace_batchnorm(model, 'groupnorm')) or keep its "
    "pre-trained statistics frozen (disparate.privacy.replace_batchnorm(model, 'frozen'))."
)
RUNNING_STATS_ERROR = (
    "{name} ({kind}) in training mode updates running statistics from the private "
    "batch, which DP-SGD does not protect. Fix: construct it with track_running_stats=False."
)
EMBEDDING_FREQ_ERROR = (
    "{name} (Embedding) has scale_grad_by_freq=True, which scales each gradient by "
    "counts over the whole batch. Fix: construct it with scale_grad_by_freq=False."
)

EMBEDDING_MAX_NORM_ERROR = (
    "{name} ({kind}) has max_norm={max_norm}: its forward renormalises, in place and outside "
    "the DP mechanism, the rows of the tokens in the batch, so the weights depend on the "
    "private data without clipping or noise. Fix: construct it with max_norm=None."
)


def check_model(model: nn.Module) -> None:
    """Raise ValueError naming the first submodule that mixes examples, with the fix."""
    for name, module in model.named_modules():
        name = name or type(model).__name__
        kind = type(module).__name__
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(BATCHNORM_ERROR.format(name=name, kind=kind))
        if (
            isinstance(module, nn.modules.instancenorm._InstanceNorm)
            and module.training
            and module.track_running_stats
        ):
            raise ValueError(RUNNING_STATS_ERROR.format(name=name, kind=kind))
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and module.scale_grad_by_freq:
            raise ValueError(EMBEDDING_FREQ_ERROR.format(name=name))
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and module.max_norm is not None:
            raise ValueError(
                EMBEDDING_MAX_NORM_ERROR.format(name=name, kind=kind, max_norm=module.max_norm)
            )


def _group_norm_for(bn: nn.modules.batchnorm._BatchNorm, max_groups: int) -> nn.GroupNorm:
    channels = bn.num_features
    groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=bn.eps, affine=bn.affine)


def _frozen_for(bn: nn.modules.batchnorm._BatchNorm) -> FrozenBatchNorm2d:
    if not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(
            f"cannot freeze {type(bn).__name__}: only BatchNorm2d has a frozen form; "
            "use replace_batchnorm(model, 'groupnorm')"
        )
    from torchvision.ops.misc import FrozenBatchNorm2d

    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    if bn.affine:
        frozen.weight.copy_(bn.weight.detach())
        frozen.bias.copy_(bn.bias.detach())
    if bn.running_mean is not None:
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    return frozen


def replace_batchnorm(
    model: nn.Module, how: Literal["groupnorm", "frozen"], *, max_groups: int = 32
) -> nn.Module:
    """Replace every BatchNorm in place and return the model.

    ``groupnorm``: a trainable GroupNorm with the largest divisor of the channel count
    up to ``max_groups`` groups (its statistics are per example). ``frozen``: the
    BatchNorm's current statistics and affine parameters become constants
    (torchvision's FrozenBatchNorm2d), e.g. those learned in public pre-training.
    """
    if how not in ("groupnorm", "frozen"):
        raise ValueError(f"how={how!r}: expected one of 'groupnorm', 'frozen'")
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                new = (
                    _group_norm_for(child, max_groups) if how == "groupnorm" else _frozen_for(child)
                )
                tensors = [*child.parameters(), *child.buffers()]
                setattr(parent, child_name, new.to(tensors[0].device) if tensors else new)
    return model
