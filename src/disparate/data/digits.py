"""scikit-learn's bundled handwritten digits (8x8, 1,797 images): the offline default.

Split: stratified by class, 70% train / 30% test (1,257 / 540 images), drawn with
``seed``; the same seed always gives the same split, and each split is kept in the original
dataset order. Inputs are float32 (N, 1, 8, 8): pixel values 0..16 scaled to [0, 1], then
normalised with the fixed whole-dataset mean and std (:data:`DIGITS_MEAN`,
:data:`DIGITS_STD`), so the normalisation does not depend on the split. Groups are the classes,
named ``"0"`` .. ``"9"``. Needs no files; ``data_dir`` and ``download`` are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from disparate.data.grouped import DatasetSplits, GroupedDataset
from disparate.data.registry import register_dataset
from disparate.validation import check_seed

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "DIGITS_TEST_FRACTION", "build_digits"]

DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760
DIGITS_TEST_FRACTION = 0.3


@register_dataset("digits")
def build_digits(
    *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0
) -> DatasetSplits:
    """The 8x8 digits, stratified 70/30 split by ``seed``."""
    del data_dir, download
    # sklearn is imported lazily: it takes about a second to import.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = check_seed(seed)
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    idx = np.arange(labels.shape[0])
    train_idx, test_idx = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=int(seed), shuffle=True
    )
    x = torch.from_numpy((images - DIGITS_MEAN) / DIGITS_STD).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels)
    full = GroupedDataset.from_class_labels(x, y, num_classes=10, name="digits")
    train = full.subset(np.sort(train_idx), name="digits/train")
    test = full.subset(np.sort(test_idx), name="digits/test")
    return DatasetSplits(train, test)
