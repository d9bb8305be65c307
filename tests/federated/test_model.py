"""The tied-weight word LSTM and the de-duplicated parameter helpers."""

from __future__ import annotations

import pytest
import torch

from disparate.federated.model import (
    WordLSTM,
    build_word_model,
    get_parameters,
    parameter_count,
    parameter_names,
    set_parameters,
    unique_state,
)


def test_paper_model_has_about_10m_parameters() -> None:
    model = WordLSTM(50_002)  # 50k words + <unk> + <eos>
    assert model.decoder.weight is model.encoder.weight
    assert parameter_count(model) == 10_693_602  # "10M parameters"
    # the raw state_dict lists the tied matrix twice
    state = model.state_dict()
    assert {"encoder.weight", "decoder.weight"} <= set(state)
    assert sum(t.numel() for t in state.values()) == 10_693_602 + 50_002 * 200
    assert "decoder.weight" not in parameter_names(model)
    assert list(unique_state(state)) == [n for n in state if n != "decoder.weight"]


def test_forward_shapes_and_features() -> None:
    model = WordLSTM(30, embedding_dim=6, hidden_size=6)
    x = torch.randint(0, 30, (5, 3))
    logits, (h, c) = model(x, model.init_hidden(3))
    assert logits.shape == (5, 3, 30) and h.shape == c.shape == (2, 3, 6)
    model.eval()
    feats, _ = model.features(x)
    assert torch.allclose(model.decoder(feats), model(x)[0])


def test_get_and_set_parameters_respect_tying() -> None:
    a = WordLSTM(20, embedding_dim=4, hidden_size=4)
    b = WordLSTM(20, embedding_dim=4, hidden_size=4)
    params = get_parameters(a)
    set_parameters(b, params)
    assert b.decoder.weight is b.encoder.weight
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(KeyError):
        set_parameters(b, {"encoder.weight": params["encoder.weight"]})


def test_build_word_model_errors() -> None:
    assert isinstance(build_word_model("word-lstm", 10, {"hidden_size": 4,
                                                         "embedding_dim": 4}), WordLSTM)
    with pytest.raises(ValueError, match="word-lstm"):
        build_word_model("mnist-cnn", 10)
    with pytest.raises(ValueError, match="model.options.width"):
        build_word_model("word-lstm", 10, {"width": 3})
    with pytest.raises(ValueError, match="tied weights"):
        WordLSTM(10, embedding_dim=4, hidden_size=5)
    untied = WordLSTM(10, embedding_dim=4, hidden_size=5, tie_weights=False)
    assert "decoder.weight" in parameter_names(untied)
