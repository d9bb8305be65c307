"""The text-lstm model: the paper's size, a plain nn.LSTM, pooling over padding, embedding
initialisation (dataset hand-off, file, random) and DP training on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from disparate.data.glove import EmbeddingInit
from disparate.models import build_model, count_parameters, model_options
from disparate.models.text import TextLSTMClassifier
from disparate.privacy import DPOptimizer

TINY = {"embedding_dim": 6, "hidden_size": 5}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**options) -> nn.Module:
    torch.manual_seed(0)
    opts = {"vocab_size": 30, "embeddings": "random", **TINY, **options}
    return build_model("text-lstm", num_classes=2, input_shape=(7,), **opts)


def batch(b: int = 6, length: int = 7, vocab: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (b, length), generator=g)
    lengths = torch.randint(3, length + 1, (b,), generator=g)
    x[torch.arange(length) >= lengths.unsqueeze(1)] = 0  # right padding
    return x, torch.randint(0, 2, (b,), generator=g)


def test_paper_model_size_and_plain_lstm():
    torch.manual_seed(0)
    model = build_model("text-lstm", num_classes=2, input_shape=(32,), vocab_size=10000,
                        embeddings="random")
    assert count_parameters(model) == 4_767_202  # the paper's "4.7M parameters"
    assert type(model.lstm) is nn.LSTM  # the fused kernel itself, not a re-implementation
    lstm = model.lstm
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (300, 200, 2)
    assert lstm.bidirectional and lstm.batch_first and lstm.dropout == 0
    assert model.embedding.weight.shape == (10000, 300) and model.fc.in_features == 400
    assert model_options("text-lstm")["embeddings"] == "dataset"


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooling_is_over_the_real_positions_only(pooling):
    model = tiny(pooling=pooling).eval()
    x, _ = batch()
    out, _ = model.lstm(model.embedding(x))
    rows = []
    for i in range(x.shape[0]):
        real = out[i, x[i] != 0]
        rows.append(real.amax(0) if pooling == "max" else real.mean(0))
    torch.testing.assert_close(model(x), model.fc(torch.stack(rows)))
    # One direction: trailing padding changes nothing (the backward direction of a
    # bidirectional LSTM reads the padding before the tweet, as in the authors' code).
    uni = tiny(pooling=pooling, bidirectional=False).eval()
    longer = torch.cat([x, torch.zeros(x.shape[0], 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(uni(longer), uni(x))


def test_last_pooling_is_the_final_hidden_states():
    model = tiny(pooling="last").eval()
    x, _ = batch()
    out, (h_n, _) = model.lstm(model.embedding(x))
    expected = model.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))
    torch.testing.assert_close(model(x), expected)
    uni = tiny(pooling="last", bidirectional=False, num_layers=1).eval()
    assert uni.fc.in_features == 5 and uni(x).shape == (6, 2)


def test_padding_row_is_zero_and_frozen_embedding():
    model = tiny()
    assert model.embedding.padding_idx == 0
    assert torch.count_nonzero(model.embedding.weight[0]) == 0
    frozen = tiny(freeze_embedding=True)
    assert not frozen.embedding.weight.requires_grad
    assert count_parameters(frozen) == count_parameters(model) - 30 * 6


def test_embeddings_from_the_dataset_hand_off_and_from_a_file(tmp_path):
    vectors = np.arange(5 * 4, dtype=np.float32).reshape(5, 4) + 1
    handed = {"embedding_init": EmbeddingInit(vocabulary=("<pad>", "<unk>", "a", "b", "c"),
                                              vectors=vectors, padding_idx=0, source="test")}
    model = build_model("text-lstm", num_classes=2, input_shape=(7,), hidden_size=3,
                        dataset_inputs=handed)
    assert model.embedding.weight.shape == (5, 4)
    expected = torch.from_numpy(vectors).clone()
    expected[0] = 0
    torch.testing.assert_close(model.embedding.weight.detach(), expected)
    with pytest.raises(ValueError, match="vocab_size=7 but the dataset's vocabulary"):
        build_model("text-lstm", num_classes=2, input_shape=(7,), vocab_size=7,
                    dataset_inputs=handed)
    with pytest.raises(ValueError, match="embedding_dim=8 but the initial vectors"):
        build_model("text-lstm", num_classes=2, input_shape=(7,), embedding_dim=8,
                    dataset_inputs=handed)
    plain = build_model("text-lstm", num_classes=2, input_shape=(7,), hidden_size=3,
                        dataset_inputs={"embedding_init": EmbeddingInit(
                            vocabulary=("<pad>", "x"), vectors=None, padding_idx=0,
                            source="random")})
    assert plain.embedding.weight.shape == (2, 300)
    # other models ignore what a dataset hands over
    build_model("mlp", num_classes=2, input_shape=(7,), dataset_inputs=handed)
    with pytest.raises(ValueError, match="none was handed over"):
        build_model("text-lstm", num_classes=2, input_shape=(7,))
    np.save(tmp_path / "emb.npy", vectors)
    torch.save(torch.from_numpy(vectors), tmp_path / "emb.pt")
    for name in ("emb.npy", "emb.pt"):
        m = build_model("text-lstm", num_classes=2, input_shape=(7,), hidden_size=3,
                        embeddings=str(tmp_path / name))
        torch.testing.assert_close(m.embedding.weight[1:].detach(),
                                   torch.from_numpy(vectors[1:]))


def test_option_errors():
    for options, match in (({"pooling": "sum"}, "pooling='sum'"),
                           ({"dropout": 1.0}, "dropout=1.0"),
                           ({"hidden_size": 0}, "hidden_size=0"),
                           ({"embeddings": "nope.npy"}, "existing .npy/.pt file")):
        with pytest.raises(ValueError, match=match):
            tiny(**options)
    with pytest.raises(ValueError, match="needs vocab_size"):
        build_model("text-lstm", num_classes=2, input_shape=(7,), embeddings="random")
    with pytest.raises(ValueError, match="max_length"):
        build_model("text-lstm", num_classes=2, input_shape=(1, 7), vocab_size=5,
                    embeddings="random")
    with pytest.raises(ValueError, match="expected \\(B, L\\)"):
        TextLSTMClassifier(num_classes=2, vocab_size=5)(torch.zeros(7, dtype=torch.long))


def test_dp_step_runs_on_the_plain_lstm_with_exact_per_example_norms():
    """DPOptimizer on the model as built (nn.LSTM kept): its per-example gradient norms
    equal those of one backward pass per example, and the clipped update is their mean."""
    model = tiny(dropout=0.0)
    assert type(model.lstm) is nn.LSTM
    x, y = batch()
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    params = [p for p in model.parameters() if p.requires_grad]
    expected_norms, clipped = [], [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]).sum(), params)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        expected_norms.append(norm)
        for acc, g in zip(clipped, grads, strict=True):
            acc += g * min(1.0, 0.5 / float(norm))
    sgd = torch.optim.SGD(params, lr=1.0)
    before = [p.detach().clone() for p in params]
    opt = DPOptimizer(sgd, model, expected_batch_size=x.shape[0], max_grad_norm=0.5,
                      noise_multiplier=0.0)
    try:
        step = opt.step(loss_fn, x, y)
    finally:
        opt.close()
    torch.testing.assert_close(step.norms, torch.stack(expected_norms), rtol=1e-4, atol=1e-6)
    for p, b, acc in zip(params, before, clipped, strict=True):
        torch.testing.assert_close(b - p.detach(), acc / x.shape[0], rtol=1e-4, atol=1e-6)


def test_dp_adam_step_with_dropout_outside_the_lstm():
    model = tiny(dropout=0.1)
    x, y = batch(b=8)
    before = model.lstm.weight_hh_l0.detach().clone()
    opt = DPOptimizer(torch.optim.Adam(model.parameters(), lr=0.01), model,
                      expected_batch_size=8, max_grad_norm=1.0, noise_multiplier=1.0,
                      noise_seed=0)
    try:
        step = opt.step(nn.CrossEntropyLoss(reduction="none"), x, y)
    finally:
        opt.close()
    assert step.norms.shape == (8,) and bool(torch.isfinite(step.norms).all())
    assert not torch.equal(model.lstm.weight_hh_l0.detach(), before)
