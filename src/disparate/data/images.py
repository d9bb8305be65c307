"""Image datasets stored as uint8 and transformed per batch: centre crop, or augmentation.

:class:`ImageGroupedDataset` keeps images as uint8 tensors (N, C, H, W) -- 80x80 faces take
19 KB each instead of 77 KB as float32 -- and turns a batch into model inputs on the fly:

- evaluation (``ds[idx]``, what :func:`disparate.training.evaluate` reads): the central
  ``crop_size`` x ``crop_size`` window, scaled to [0, 1] and normalised per channel;
- training (``ds.train_transform(ds.inputs[idx], generator)``, applied by the training loop
  to every training batch): a random rotation (uniform in +-``rotation`` degrees), a random
  ``crop_size`` window (uniform position) and a horizontal flip (probability 1/2), drawn per
  example from ``generator``, as one bilinear ``affine_grid``/``grid_sample`` on the batch's
  device (areas rotated in from outside the image are black); then the same normalisation.

The random draws come from a CPU :class:`torch.Generator`, so a seeded run is reproducible on
any device; :func:`augmentation_generator` gives the generator of an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from disparate.data.grouped import GroupedDataset
from disparate.randomness import torch_generator

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augmentation",
    "ImageGroupedDataset",
    "augmentation_generator",
]

#: Per-channel mean and std of ImageNet (RGB, [0, 1] scale): torchvision's pre-trained models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    """Training-time augmentation of :class:`ImageGroupedDataset`.

    Attributes:
        rotation: Maximum rotation in degrees (>= 0); each example is rotated by an angle
            uniform in [-rotation, rotation] about the centre of its crop. 0 disables it.
        crop: Random crop position (uniform over all positions); ``False``: the centre.
        flip: Horizontal flip with probability 1/2.
    """

    rotation: float = 10.0
    crop: bool = True
    flip: bool = True

    def __post_init__(self) -> None:
        r = self.rotation
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 <= r <= 180):
            raise ValueError(f"augment.rotation={r!r}: expected degrees in [0, 180]")
        object.__setattr__(self, "rotation", float(r))
        for name in ("crop", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"augment.{name}={getattr(self, name)!r}: expected true/false")

    @classmethod
    def from_option(cls, value: Any) -> Augmentation | None:
        """``True``: the defaults; ``False``/``None``: no augmentation (centre crop only);
        a mapping with keys ``rotation``, ``crop``, ``flip``: those settings."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, Augmentation):
            return value
        if hasattr(value, "keys"):
            valid = ("rotation", "crop", "flip")
            unknown = sorted(str(k) for k in value if k not in valid)
            if unknown:
                raise ValueError(
                    f"augment: unknown key(s) {unknown}; valid keys are {list(valid)}"
                )
            return cls(**{str(k): v for k, v in value.items()})
        raise ValueError(
            f"augment={value!r}: expected true, false or a mapping with keys "
            "rotation, crop, flip"
        )


def augmentation_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of the augmentation draws of ``epoch`` of a run seeded ``seed``.

    The ``augmentation`` stream of :mod:`disparate.randomness`, independent of the
    batch-sampling and noise streams; a run resumed at an epoch boundary draws exactly what
    the uninterrupted run drew.
    """
    return torch_generator(seed, "augmentation", epoch)


def _centre_offset(size: int, crop: int) -> int:
    return int(round((size - crop) / 2.0))


class ImageGroupedDataset(GroupedDataset):
    """A :class:`GroupedDataset` whose ``inputs`` are uint8 images (N, C, H, W).

    Args:
        images: uint8 tensor (N, C, H, W), H and W >= ``crop_size``.
        labels, groups, group_names, num_classes, class_names, name: as GroupedDataset.
        crop_size: Side of the square window the model sees (``input_shape`` is
            ``(C, crop_size, crop_size)``).
        mean, std: Per-channel normalisation on the [0, 1] scale (default ImageNet's).
        augmentation: Training augmentation, or ``None`` for the centre crop in training too.
        info: Free-form provenance (what was read, skipped and sampled), kept by ``subset``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        groups: torch.Tensor,
        *,
        group_names: Sequence[str],
        num_classes: int,
        crop_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augmentation: Augmentation | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images: dtype {images.dtype}, shape {tuple(images.shape)}: expected uint8 "
                "(N, C, H, W)"
            )
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size={crop_size!r}: expected an int >= 1")
        c, h, w = images.shape[1:]
        if crop_size > min(h, w):
            raise ValueError(
                f"crop_size={crop_size}: expected <= the image size {h}x{w}"
            )
        mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.tensor([float(s) for s in std], dtype=torch.float32)
        if mean_t.numel() != c or std_t.numel() != c or bool((std_t <= 0).any()):
            raise ValueError(
                f"mean={tuple(mean)}, std={tuple(std)}: expected {c} values each, std > 0"
            )
        super().__init__(images, labels, groups, group_names=group_names,
                         num_classes=num_classes, class_names=class_names, name=name)
        self.crop_size = crop_size
        self.mean = tuple(float(m) for m in mean_t)
        self.std = tuple(float(s) for s in std_t)
        self.augmentation = augmentation
        self.info: dict[str, Any] = dict(info or {})

    # -- shapes and transforms ----------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input, ``(C, crop_size, crop_size)``."""
        return (int(self.inputs.shape[1]), self.crop_size, self.crop_size)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one stored image, ``(C, H, W)``."""
        return tuple(self.inputs.shape[1:])

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, C, crop, crop): centre crop, normalise."""
        h, w = images.shape[-2:]
        top, left = _centre_offset(h, self.crop_size), _centre_offset(w, self.crop_size)
        x = images[..., top:top + self.crop_size, left:left + self.crop_size]
        return self._normalise(x.float().div_(255.0))

    def train_transform(  # type: ignore[override]
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, C, crop, crop), augmented (see module doc)."""
        aug = self.augmentation
        if aug is None or images.shape[0] == 0:
            return self.eval_transform(images)
        b = images.shape[0]
        h, w = images.shape[-2:]
        crop = self.crop_size
        angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * (
            aug.rotation * math.pi / 180.0)
        if aug.crop:
            top = torch.randint(0, h - crop + 1, (b,), generator=generator).double()
            left = torch.randint(0, w - crop + 1, (b,), generator=generator).double()
        else:
            top = torch.full((b,), float(_centre_offset(h, crop)), dtype=torch.float64)
            left = torch.full((b,), float(_centre_offset(w, crop)), dtype=torch.float64)
        flip = (torch.rand(b, generator=generator) < 0.5) if aug.flip else torch.zeros(
            b, dtype=torch.bool)
        theta = _affine(angle, top, left, flip, h=h, w=w, crop=crop)
        x = images.float().div_(255.0)
        grid = F.affine_grid(theta.to(x.device, torch.float32), [b, x.shape[1], crop, crop],
                             align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return self._normalise(out)

    # -- torch Dataset protocol -------------------------------------------------------------
    def __getitem__(
        self, idx: int | slice | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input, label, group)`` with evaluation-ready (centre-cropped) float inputs."""
        images = self.inputs[idx]
        if images.dim() == 3:
            return self.eval_transform(images.unsqueeze(0))[0], self.labels[idx], self.groups[idx]
        return self.eval_transform(images), self.labels[idx], self.groups[idx]

    def __repr__(self) -> str:
        return (
            f"ImageGroupedDataset(name={self.name!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, groups={self.group_sizes()})"
        )


def _affine(angle: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
            *, h: int, w: int, crop: int) -> torch.Tensor:
    """``affine_grid`` matrices (B, 2, 3) mapping output (crop x crop) to input coordinates.

    In normalised coordinates (align_corners=False), output point u (in [-1, 1]^2) is first
    flipped, then rotated about the crop centre, then placed in the input:
    ``x = diag(crop/w, crop/h) @ R(angle) @ diag(+-1, 1) @ u + t`` with
    ``t = ((2 left + crop - w) / w, (2 top + crop - h) / h)``; with angle 0, no flip and
    integer offsets this samples exactly the pixels of ``image[top:top+crop, left:left+crop]``.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    f = torch.where(flip, -1.0, 1.0).double()
    sx, sy = crop / w, crop / h
    theta = torch.zeros(angle.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = sx * cos * f
    theta[:, 0, 1] = -sx * sin
    theta[:, 1, 0] = sy * sin * f
    theta[:, 1, 1] = sy * cos
    theta[:, 0, 2] = (2 * left + crop - w) / w
    theta[:, 1, 2] = (2 * top + crop - h) / h
    return theta
