"""Text classifier: embedding -> (bidirectional, multi-layer) ``nn.LSTM`` -> pooling -> Linear.

The paper's tweet model (Section 4.2): a bidirectional two-layer LSTM with 200 hidden units
over a 300-d embedding initialised from GloVe, about 4.7M parameters with a 10,000-word
vocabulary (10,000 x 300 embedding + 1,766,400 LSTM + 802 classifier = 4,767,202).

The recurrent layer **is** ``torch.nn.LSTM`` (the fused kernel), in DP training too: the
per-example gradient engine has a rule for it (``disparate.privacy.grad_sample.recurrent``),
so no re-implemented cell changes what is computed. ``nn.LSTM``'s own inter-layer dropout
draws its masks inside the kernel, where they cannot be replayed per example, so it is
always 0 here; ``dropout`` applies ``nn.Dropout`` to the embeddings and to the pooled
features instead (the authors' code also used dropout between the LSTM layers).

Inputs are int64 token ids (B, L), right-padded with ``padding_idx`` (0), whose embedding
row is 0 and never trained. Pooling (``pooling``) of the LSTM's outputs (B, L, 2H):

- ``"max"`` (default): element-wise max over the non-padding positions;
- ``"mean"``: mean over the non-padding positions;
- ``"last"``: the final hidden states of the last layer, forward and backward concatenated
  (the authors' code). The forward direction then also runs over the padding at the end.

The fused kernel runs over the whole padded length (the per-example gradient engine takes no
``PackedSequence``), so the backward direction of a bidirectional LSTM reads a tweet's
trailing padding (zero vectors) before its last token, as in the authors' code: its start
state depends on the padding length only, the same for a tweet in training and at test time.
A unidirectional LSTM's pooled output does not depend on the padding at all.

Embedding initialisation (``embeddings``):

- ``"dataset"`` (default): the vocabulary of the text dataset the model is built on (it
  hands over a ``disparate.data.glove.EmbeddingInit`` through
  ``GroupedDataset.model_inputs()``) sets the number of rows, and its GloVe vectors, if it
  was built with ``data.options.glove``, the initial values (else ``nn.Embedding``'s
  N(0, 1) init). ``disparate.training.train`` passes it on, so a config needs nothing more.
- ``"random"``: ``nn.Embedding``'s init; ``vocab_size`` is required.
- a path to a ``.npy`` or ``.pt`` (V, d) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from disparate.data.glove import EmbeddingInit
from disparate.models.registry import register_model

__all__ = ["POOLINGS", "TextLSTMClassifier", "build_text_lstm", "resolve_embeddings"]

POOLINGS: tuple[str, ...] = ("max", "mean", "last")

ERR_NO_DATASET = (
    "model text-lstm: embeddings='dataset' takes the vocabulary (and GloVe vectors) of the "
    "text dataset it is built on, but none was handed over; build it with "
    "build_model(..., dataset_inputs=train_set.model_inputs()) (disparate.training.train "
    "does), or set embeddings='random' with vocab_size, or a path to a (V, d) .npy/.pt matrix"
)


class TextLSTMClassifier(nn.Module):
    """``nn.Embedding`` -> ``nn.Dropout`` -> ``nn.LSTM`` -> pooling -> ``nn.Dropout`` ->
    ``nn.Linear``; see the module docstring."""

    def __init__(
        self,
        *,
        num_classes: int,
        vocab_size: int,
        embedding_dim: int = 300,
        hidden_size: int = 200,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.0,
        pooling: str = "max",
        padding_idx: int = 0,
        embeddings: Tensor | np.ndarray | None = None,
        freeze_embedding: bool = False,
    ) -> None:
        super().__init__()
        for name, value, low in (("num_classes", num_classes, 1), ("vocab_size", vocab_size, 2),
                                 ("embedding_dim", embedding_dim, 1),
                                 ("hidden_size", hidden_size, 1), ("num_layers", num_layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}: expected an int >= {low}")
        if not isinstance(bidirectional, bool):
            raise ValueError(f"bidirectional={bidirectional!r}: expected true or false")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (
                0.0 <= dropout < 1.0):
            raise ValueError(f"dropout={dropout!r}: expected a number in [0, 1)")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {list(POOLINGS)}")
        if isinstance(padding_idx, bool) or not isinstance(padding_idx, int) or not (
                0 <= padding_idx < vocab_size):
            raise ValueError(f"padding_idx={padding_idx!r}: expected an int in [0, {vocab_size})")
        self.pooling = pooling
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        if embeddings is not None:
            weight = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
            if tuple(weight.shape) != (vocab_size, embedding_dim):
                raise ValueError(f"embeddings have shape {tuple(weight.shape)}: expected "
                                 f"({vocab_size}, {embedding_dim})")
            with torch.no_grad():
                self.embedding.weight.copy_(weight)
                self.embedding.weight[padding_idx].zero_()
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.embedding_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers,
                            bidirectional=bidirectional, batch_first=True)
        self.feature_dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (B, num_classes) of int64 token ids (B, L)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)}: expected (B, L) ids")
        x = self.embedding_dropout(self.embedding(tokens))
        out, (h_n, _) = self.lstm(x)
        if self.pooling == "last":
            pooled = (torch.cat([h_n[-2], h_n[-1]], dim=1) if self.lstm.bidirectional
                      else h_n[-1])
        else:
            mask = (tokens != self.padding_idx).unsqueeze(-1)  # (B, L, 1)
            if self.pooling == "max":
                pooled = out.masked_fill(~mask, float("-inf")).amax(dim=1)
                pooled = torch.where(mask.any(dim=1), pooled, torch.zeros_like(pooled))
            else:
                pooled = (out * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
        return self.fc(self.feature_dropout(pooled))


def resolve_embeddings(embeddings: str, vocab_size: int | None,
                       embedding_init: EmbeddingInit | None = None
                       ) -> tuple[int, np.ndarray | None, str]:
    """(vocab_size, initial vectors or None, description) for the ``embeddings`` option;
    ``embedding_init`` is what the dataset handed over (``GroupedDataset.model_inputs``)."""
    if not isinstance(embeddings, str) or not embeddings:
        raise ValueError(f"embeddings={embeddings!r}: expected 'dataset', 'random' or a path "
                         "to a (V, d) .npy/.pt matrix")
    if embeddings == "random":
        if vocab_size is None:
            raise ValueError("model text-lstm: embeddings='random' needs vocab_size")
        return vocab_size, None, "random"
    if embeddings == "dataset":
        init = embedding_init
        if init is None:
            raise ValueError(ERR_NO_DATASET)
        if vocab_size is not None and vocab_size != len(init.vocabulary):
            raise ValueError(
                f"model text-lstm: vocab_size={vocab_size} but the dataset's vocabulary has "
                f"{len(init.vocabulary)} entries ({init.source}); leave vocab_size null")
        return len(init.vocabulary), init.vectors, init.source
    path = Path(embeddings).expanduser()
    if not path.is_file():
        raise ValueError(f"embeddings={embeddings!r}: expected 'dataset', 'random' or an "
                         "existing .npy/.pt file")
    if path.suffix == ".npy":
        matrix = np.load(path, allow_pickle=False)
    else:
        matrix = torch.load(path, map_location="cpu", weights_only=True)
        matrix = matrix.numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"{path}: shape {matrix.shape}: expected a (V, d) matrix")
    if vocab_size is not None and vocab_size != matrix.shape[0]:
        raise ValueError(f"vocab_size={vocab_size} but {path} has {matrix.shape[0]} rows")
    return int(matrix.shape[0]), matrix, str(path)


@register_model("text-lstm")
def build_text_lstm(
    *,
    num_classes: int,
    input_shape: Sequence[int],
    vocab_size: int | None = None,
    embedding_dim: int | None = None,
    hidden_size: int = 200,
    num_layers: int = 2,
    bidirectional: bool = True,
    dropout: float = 0.0,
    pooling: str = "max",
    embeddings: str = "dataset",
    freeze_embedding: bool = False,
    embedding_init: EmbeddingInit | None = None,
) -> nn.Module:
    """The paper's tweet model by default (see the module docstring).

    ``input_shape`` is ``(max_length,)``; ``embedding_dim`` ``None`` takes the initial
    vectors' size, else 300.
    """
    if len(tuple(input_shape)) != 1:
        raise ValueError(f"input_shape={tuple(input_shape)}: expected (max_length,) token ids")
    v, vectors, _ = resolve_embeddings(embeddings, vocab_size, embedding_init)
    if vectors is not None:
        dim = int(vectors.shape[1])
        if embedding_dim is not None and embedding_dim != dim:
            raise ValueError(f"embedding_dim={embedding_dim} but the initial vectors have "
                             f"{dim} values")
    else:
        dim = 300 if embedding_dim is None else embedding_dim
    kwargs: dict[str, Any] = dict(num_classes=num_classes, vocab_size=v, embedding_dim=dim,
                                  hidden_size=hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional, dropout=dropout,
                                  pooling=pooling, embeddings=vectors,
                                  freeze_embedding=freeze_embedding)
    return TextLSTMClassifier(**kwargs)
