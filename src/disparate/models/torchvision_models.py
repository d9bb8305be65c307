"""torchvision's image classifiers, made trainable with per-example DP.

Registered names: ``resnet18`` (the paper's face model, Section 4.1) and
``torchvision:<name>`` for every classifier of ``torchvision.models.list_models``
(``torchvision:resnet50``, ``torchvision:mobilenet_v3_small``, ...). Options:

- ``pretrained``: ``false`` (random initialisation, the default), ``true`` (the weights'
  ``DEFAULT`` entry, ImageNet for ResNet18) or a weights name (``"IMAGENET1K_V1"``), loaded
  through torchvision's weights API -- it downloads into ``$TORCH_HOME/hub/checkpoints`` on
  first use. The ImageNet head is replaced by a fresh ``num_classes`` layer.
- ``batchnorm``: what replaces BatchNorm, which cannot be trained with per-example DP (its
  batch statistics mix the examples of a batch): ``"frozen"`` keeps the pre-trained statistics
  and affine parameters as constants (torchvision's FrozenBatchNorm2d, eval-mode behaviour, not
  trained); ``"groupnorm"`` puts a trainable GroupNorm (up to ``group_norm_groups`` groups,
  freshly initialised) in its place. Default (``null``): ``"frozen"`` with pre-trained weights,
  ``"groupnorm"`` with random initialisation. ``"frozen"`` without pre-trained weights is
  refused: untrained statistics (mean 0, variance 1) make every normalisation a no-op. Live
  BatchNorm is never returned, and the DP engine refuses it anyway
  (:func:`disparate.privacy.check_model`).

Every run of an experiment (DP or not) uses the same replacement, so the non-private
baseline has the DP model's architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from disparate.models.registry import register_model
from disparate.models.torchvision_names import PREFIX as TORCHVISION_PREFIX
from disparate.privacy.validate import replace_batchnorm

__all__ = ["BATCHNORM_CHOICES", "TORCHVISION_PREFIX", "build_torchvision_classifier"]

BATCHNORM_CHOICES = ("groupnorm", "frozen")

ERR_FROZEN_RANDOM = (
    "batchnorm='frozen' with pretrained=false: the statistics of an untrained BatchNorm are "
    "mean 0 and variance 1, so freezing them removes normalisation altogether; use "
    "batchnorm='groupnorm', or pretrained=true to freeze ImageNet statistics"
)


def _classifier_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _weights(arch: str, pretrained: bool | str) -> Any:
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    if pretrained is True:
        return enum.DEFAULT
    try:
        return enum[str(pretrained)]
    except KeyError:
        raise ValueError(
            f"pretrained={pretrained!r}: unknown weights for {arch}; valid choices are true, "
            f"false or one of {[w.name for w in enum]}"
        ) from None


def _fetch(arch: str, weights: Any) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; hash/corruption errors
        import torch.hub

        raise RuntimeError(
            f"could not load the {weights} weights of {arch} ({type(exc).__name__}: {exc}). "
            f"torchvision downloads them from {weights.url} into "
            f"{torch.hub.get_dir()}/checkpoints/; on an offline machine copy the file there, "
            f"or use pretrained=false"
        ) from exc


def _drop_aux_heads(model: nn.Module) -> None:
    """Inception v3 / GoogLeNet: train on the main logits only (no auxiliary outputs)."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _replace_head(model: nn.Module, old_classes: int, num_classes: int) -> None:
    """Swap the last Linear (or 1x1 Conv2d) producing ``old_classes`` outputs for a fresh one."""
    target = None
    for name, module in model.named_modules():
        if (isinstance(module, nn.Linear) and module.out_features == old_classes) or (
                isinstance(module, nn.Conv2d) and module.out_channels == old_classes):
            target = name
    if target is None:
        raise ValueError(f"{type(model).__name__}: no layer with {old_classes} outputs to "
                         "replace by the new classification head")
    parent_name, _, child = target.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size,
                        stride=old.stride, padding=old.padding, bias=old.bias is not None)
    setattr(parent, child, new)


def build_torchvision_classifier(
    arch: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    pretrained: bool | str = False,
    batchnorm: str | None = None,
    group_norm_groups: int = 32,
) -> nn.Module:
    """torchvision classifier ``arch`` with a ``num_classes`` head and no live BatchNorm."""
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"arch={arch!r}: not a torchvision classifier; valid choices are "
                         f"{_classifier_names()}")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ValueError(f"{arch}: input_shape={tuple(input_shape)}: expected (3, height, "
                         "width) RGB images")
    if not isinstance(pretrained, (bool, str)) or pretrained == "":
        raise ValueError(f"pretrained={pretrained!r}: expected true, false or a weights name")
    if batchnorm is not None and batchnorm not in BATCHNORM_CHOICES:
        raise ValueError(f"batchnorm={batchnorm!r}: expected one of {list(BATCHNORM_CHOICES)} "
                         "or null (frozen with pre-trained weights, else groupnorm)")
    if (isinstance(group_norm_groups, bool) or not isinstance(group_norm_groups, int)
            or group_norm_groups < 1):
        raise ValueError(f"group_norm_groups={group_norm_groups!r}: expected an int >= 1")
    if pretrained is False:
        if batchnorm == "frozen":
            raise ValueError(ERR_FROZEN_RANDOM)
        how = batchnorm or "groupnorm"
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    else:
        how = batchnorm or "frozen"
        weights = _weights(arch, pretrained)
        model = _fetch(arch, weights)
        old_classes = len(weights.meta.get("categories") or [])
        if old_classes != num_classes:
            _replace_head(model, old_classes, num_classes)
    _drop_aux_heads(model)
    replace_batchnorm(model, how, max_groups=group_norm_groups)
    return model


def _make_builder(arch: str) -> Callable[..., nn.Module]:
    def build(
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        pretrained: bool | str = False,
        batchnorm: str | None = None,
        group_norm_groups: int = 32,
    ) -> nn.Module:
        return build_torchvision_classifier(
            arch, num_classes=num_classes, input_shape=input_shape, pretrained=pretrained,
            batchnorm=batchnorm, group_norm_groups=group_norm_groups)

    build.__name__ = build.__qualname__ = f"build_{arch}"
    build.__doc__ = (f"torchvision's {arch}; options pretrained, batchnorm "
                     "(frozen | groupnorm), group_norm_groups.")
    return build


register_model("resnet18")(_make_builder("resnet18"))
for _arch in _classifier_names():
    register_model(TORCHVISION_PREFIX + _arch)(_make_builder(_arch))
