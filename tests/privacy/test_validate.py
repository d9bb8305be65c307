"""The static validator: each layer that mixes examples or writes private data outside the
mechanism is refused by name, with the fix."""

from __future__ import annotations

import pytest
from torch import nn

from disparate.privacy import check_model
from disparate.privacy.validate import (
    BATCHNORM_ERROR,
    EMBEDDING_FREQ_ERROR,
    EMBEDDING_MAX_NORM_ERROR,
    RUNNING_STATS_ERROR,
)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.BatchNorm1d(3), BATCHNORM_ERROR.format(name="1", kind="BatchNorm1d")),
        (nn.InstanceNorm1d(3, track_running_stats=True),
         RUNNING_STATS_ERROR.format(name="1", kind="InstanceNorm1d")),
        (nn.Embedding(4, 3, scale_grad_by_freq=True), EMBEDDING_FREQ_ERROR.format(name="1")),
        (nn.Embedding(4, 3, max_norm=2.0),
         EMBEDDING_MAX_NORM_ERROR.format(name="1", kind="Embedding", max_norm=2.0)),
        (nn.EmbeddingBag(4, 3, max_norm=1.0),
         EMBEDDING_MAX_NORM_ERROR.format(name="1", kind="EmbeddingBag", max_norm=1.0)),
    ],
)
def test_refused_with_the_name_and_the_fix(layer, message):
    with pytest.raises(ValueError) as error:
        check_model(nn.Sequential(nn.Identity(), layer))
    assert str(error.value) == message


def test_batchnorm_in_eval_mode_and_plain_embedding_pass():
    check_model(nn.Sequential(nn.BatchNorm1d(3).eval(), nn.Embedding(4, 3)))
