"""The paper's word-level language model and parameter helpers that respect tied weights.

:class:`WordLSTM` is the PyTorch word-language-model example's ``RNNModel`` (the paper's
"two-layer, 10M-parameter LSTM ... 200 hidden units, 200-dimensional embedding tied to decoder
weights, and dropout 0.2"): embedding -> dropout -> LSTM -> dropout -> linear decoder whose
weight IS the embedding matrix. With 50,002 tokens it has 10,694,602 distinct parameters.

Tied weights: ``model.state_dict()`` lists the shared matrix twice (``encoder.weight`` and
``decoder.weight``), ``model.named_parameters()`` once. Any update vector built from a raw
state_dict counts the shared matrix twice, so its norm is off (up to sqrt(2) times the true
norm for an update dominated by that matrix) and clipping to S actually clips at up to
sqrt(2) * S -- the mistake of Flower's built-in DP wrappers, which flatten the state_dict.
Everything in this package goes through :func:`parameter_names` / :func:`get_parameters`
(named_parameters, de-duplicated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "WordLSTM",
    "build_word_model",
    "get_parameters",
    "parameter_count",
    "parameter_names",
    "set_parameters",
    "unique_state",
]


class WordLSTM(nn.Module):
    """Embedding, multi-layer LSTM and decoder tied to the embedding (time-major input).

    ``forward(tokens (T, B), hidden) -> (logits (T, B, V), hidden)``; :meth:`features` stops
    before the decoder (to decode in slices when V is large).
    """

    def __init__(self, num_tokens: int, *, embedding_dim: int = 200, hidden_size: int = 200,
                 num_layers: int = 2, dropout: float = 0.2, tie_weights: bool = True) -> None:
        super().__init__()
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"model.options.hidden_size={hidden_size!r}: tied weights need "
                             f"hidden_size == embedding_dim ({embedding_dim})")
        self.num_tokens = num_tokens
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(num_tokens, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, num_layers,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, num_tokens)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.tied = tie_weights
        init = 0.1
        nn.init.uniform_(self.encoder.weight, -init, init)
        nn.init.zeros_(self.decoder.bias)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -init, init)

    def init_hidden(self, batch_size: int) -> tuple[Tensor, Tensor]:
        w = self.encoder.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        return (w.new_zeros(shape), w.new_zeros(shape))

    def features(self, tokens: Tensor, hidden: tuple[Tensor, Tensor] | None = None
                 ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        emb = self.drop(self.encoder(tokens))
        out, hidden = self.rnn(emb, hidden)
        return self.drop(out), hidden

    def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, hidden = self.features(tokens, hidden)
        return self.decoder(out), hidden


def build_word_model(name: str, num_tokens: int, options: Mapping[str, Any] | None = None
                     ) -> nn.Module:
    """The model ``name`` (``"word-lstm"``) for ``num_tokens`` tokens, with ``model.options``."""
    if name != "word-lstm":
        raise ValueError(f"model.name={name!r}: federated runs support 'word-lstm'")
    opts = dict(options or {})
    valid = ("embedding_dim", "hidden_size", "num_layers", "dropout", "tie_weights")
    for key in opts:
        if key not in valid:
            raise ValueError(f"model.options.{key}: unknown option for 'word-lstm'; valid "
                             f"options: {', '.join(valid)}")
    return WordLSTM(num_tokens, **opts)


def parameter_names(model: nn.Module) -> list[str]:
    """Names of the model's distinct trainable parameters (a tied matrix once)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def parameter_count(model: nn.Module) -> int:
    """Number of distinct trainable scalars (a tied matrix counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the distinct trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def set_parameters(model: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Copy ``params`` (from :func:`get_parameters`) into the model, in place."""
    named = dict(model.named_parameters())
    missing = [n for n in parameter_names(model) if n not in params]
    if missing:
        raise KeyError(f"parameters missing: {missing}")
    for name, value in params.items():
        named[name].copy_(value)


def unique_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state_dict without the duplicates of tied tensors (first name kept).

    Two entries are the same parameter when they share storage, offset, shape and strides.
    """
    seen: dict[tuple[Any, ...], str] = {}
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
               t.stride(), t.dtype)
        if key in seen:
            continue
        seen[key] = name
        out[name] = t
    return out
