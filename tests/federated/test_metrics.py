"""Per-participant next-word accuracy, vocabulary buckets and output diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from disparate.federated.metrics import (
    bucket_index,
    bucket_summary,
    evaluate_participants,
    output_diversity,
)
from disparate.federated.reddit import FederatedTextData

VOCAB = ["<unk>", "<eos>", "a", "b", "c"]


class EchoModel(nn.Module):
    """Predicts the current input token as the next one (or always ``constant``)."""

    def __init__(self, constant: int | None = None) -> None:
        super().__init__()
        v = len(VOCAB)
        self.decoder = nn.Linear(v, v)
        with torch.no_grad():
            self.decoder.weight.copy_(torch.eye(v) * 10)
            self.decoder.bias.zero_()
            if constant is not None:
                self.decoder.weight.zero_()
                self.decoder.bias[constant] = 10.0

    def features(self, x: torch.Tensor, hidden=None):
        return nn.functional.one_hot(x, len(VOCAB)).float(), hidden


def make_data() -> FederatedTextData:
    streams_train = [[2, 3, 1], [2, 2, 1], [4, 4, 1]]
    streams_test = [[2, 2, 2, 3, 3, 1, 0, 0, 1],  # echo hits: 2->2, 2->2, 3->3, 0->0 = 4 of 8
                    [4, 1],  # 0 of 1
                    [4]]  # no target at all
    tokens, starts, splits, ends = [], [], [], []
    for tr, te in zip(streams_train, streams_test, strict=True):
        starts.append(len(tokens))
        tokens += tr
        splits.append(len(tokens))
        tokens += te
        ends.append(len(tokens))
    return FederatedTextData(tokens=np.array(tokens, dtype=np.uint16), starts=starts,
                             splits=splits, ends=ends, vocab=VOCAB,
                             vocab_sizes=np.array([2, 5, 40]))


@pytest.mark.parametrize("seq_len,batch_windows", [(3, 1), (4, 2), (64, 64)])
def test_accuracy_per_participant_with_any_window(seq_len: int, batch_windows: int) -> None:
    data = make_data()
    ev = evaluate_participants(EchoModel(), data, [0, 1, 2], seq_len=seq_len,
                               batch_windows=batch_windows)
    assert ev.tokens.tolist() == [8, 1, 0]
    assert ev.correct.tolist() == [4, 0, 0]
    acc = ev.accuracy
    assert acc[0] == 0.5 and acc[1] == 0.0 and np.isnan(acc[2])
    overall = ev.overall()
    assert overall["test_accuracy"] == pytest.approx(4 / 9)
    assert overall["mean_participant_accuracy"] == pytest.approx(0.25)
    assert overall["participants_evaluated"] == 2
    # without <unk> targets: participant 0 has two (one hit): 3 of 6, participant 1: 0 of 1
    assert overall["accuracy_excluding_unk"] == pytest.approx(3 / 7)
    assert ev.predicted_counts.sum() == 9 and ev.target_counts.sum() == 9


def test_constant_model_predicts_one_word() -> None:
    data = make_data()
    ev = evaluate_participants(EchoModel(constant=2), data, [0, 1], seq_len=4)
    assert ev.correct.tolist() == [2, 0]  # two "a" targets in participant 0
    div = output_diversity(ev, VOCAB)
    assert div["distinct_predicted"] == 1 and div["top_predicted"] == [["a", 9]]
    assert div["rank_counts"] == [9] and div["top10_share"] == 1.0
    assert div["distinct_targets"] == 4  # <unk>, <eos>, a, b
    assert ev.overall()["test_loss"] > 0


def test_buckets() -> None:
    assert bucket_index(np.array([0, 2, 3, 9, 10, 500]), [0, 3, 10]).tolist() == [
        0, 0, 1, 1, 2, 2]
    assert bucket_index(np.array([1]), [5, 10]).tolist() == [-1]
    data = make_data()
    ev = evaluate_participants(EchoModel(), data, [0, 1, 2], seq_len=4)
    groups = bucket_summary(ev, data, [0, 3, 10], ["0-2", "3-9", "10+"])
    assert [g["group"] for g in groups] == ["0-2", "3-9", "10+"]
    assert [g["participants"] for g in groups] == [1, 1, 1]
    assert [g["participants_evaluated"] for g in groups] == [1, 1, 0]
    assert groups[0]["accuracy"] == 0.5 and groups[1]["accuracy"] == 0.0
    assert groups[2]["accuracy"] is None and groups[2]["token_accuracy"] is None
    assert [g["train_size"] for g in groups] == [3, 3, 3]
    assert groups[0]["vocab_size_range"] == [0, 2] and groups[2]["vocab_size_range"] == [10,
                                                                                         None]
