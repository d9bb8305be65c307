"""Next-word accuracy per participant, vocabulary-size buckets and output diversity (Figure 3).

Evaluation reads each participant's test stream in windows of ``seq_len`` tokens (the hidden
state starts at zero in every window; the last window may be shorter) and predicts every next
token; all targets count, ``<unk>`` and ``<eos>`` included, as in the paper's code (accuracy
without ``<unk>`` targets is reported as well). The vocabulary is decoded in slices so that
the (tokens x V) logits never exist at once.

- Per participant: test tokens, correct predictions, accuracy.
- Buckets (Figure 3b): participants grouped by vocabulary size (distinct in-vocabulary words
  in their posts); per bucket the mean of its participants' accuracies (every participant
  counts once; the headline) and the token-weighted accuracy.
- Output diversity (Figure 3a): how often each word is predicted over the whole test set;
  the number of distinct predicted words and the most predicted ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from disparate.federated.reddit import FederatedTextData

__all__ = [
    "ParticipantEvaluation",
    "bucket_index",
    "bucket_summary",
    "evaluate_participants",
    "output_diversity",
]

#: Logit rows decoded at once: about 2**24 floats (64 MiB) whatever the vocabulary size.
LOGIT_BUDGET = 2**24


@dataclass
class ParticipantEvaluation:
    """Raw counts of one evaluation (arrays indexed like ``participants``)."""

    participants: np.ndarray
    tokens: np.ndarray
    correct: np.ndarray
    tokens_no_unk: np.ndarray
    correct_no_unk: np.ndarray
    loss_sum: float
    predicted_counts: np.ndarray  # per vocabulary id
    target_counts: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """Per-participant accuracy (NaN for a participant without test tokens)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tokens > 0, self.correct / np.maximum(self.tokens, 1), np.nan)

    def overall(self) -> dict[str, Any]:
        n = int(self.tokens.sum())
        n_no_unk = int(self.tokens_no_unk.sum())
        acc = self.accuracy
        present = acc[~np.isnan(acc)]
        return {
            "test_tokens": n,
            "test_accuracy": int(self.correct.sum()) / n if n else None,
            "test_loss": self.loss_sum / n if n else None,
            "mean_participant_accuracy": float(present.mean()) if len(present) else None,
            "accuracy_excluding_unk": (int(self.correct_no_unk.sum()) / n_no_unk
                                       if n_no_unk else None),
            "participants_evaluated": int(len(present)),
        }


def _windows(tokens: Tensor, seq_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs, targets and mask (seq_len, W) of a stream cut into windows."""
    n = len(tokens) - 1
    w = -(-n // seq_len)
    pad = w * seq_len - n
    inputs = torch.nn.functional.pad(tokens[:-1], (0, pad)).view(w, seq_len).t()
    targets = torch.nn.functional.pad(tokens[1:], (0, pad)).view(w, seq_len).t()
    mask = torch.nn.functional.pad(torch.ones(n, dtype=torch.bool), (0, pad)).view(
        w, seq_len).t()
    return inputs, targets, mask


@torch.no_grad()
def evaluate_participants(model: nn.Module, data: FederatedTextData,
                          participants: Sequence[int] | np.ndarray, *, seq_len: int,
                          batch_windows: int = 64) -> ParticipantEvaluation:
    """Evaluate ``model`` on the test tokens of ``participants``.

    ``batch_windows`` windows (columns) are evaluated per forward pass.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = np.asarray(list(participants), dtype=np.int64)
    k = len(parts)
    v = data.num_tokens
    tokens = np.zeros(k, dtype=np.int64)
    correct = np.zeros(k, dtype=np.int64)
    tokens_nu = np.zeros(k, dtype=np.int64)
    correct_nu = np.zeros(k, dtype=np.int64)
    pred_counts = torch.zeros(v, dtype=torch.long)
    tgt_counts = torch.zeros(v, dtype=torch.long)
    loss_sum = 0.0
    rows = max(1, LOGIT_BUDGET // v)
    unk = data.unk_id

    buf_in: list[Tensor] = []
    buf_tg: list[Tensor] = []
    buf_mk: list[Tensor] = []
    buf_owner: list[Tensor] = []
    buffered = 0

    def flush() -> None:
        nonlocal loss_sum, buffered
        if not buffered:
            return
        x = torch.cat(buf_in, dim=1).to(device)
        y = torch.cat(buf_tg, dim=1).to(device).reshape(-1)
        m = torch.cat(buf_mk, dim=1).to(device).reshape(-1)
        owner = torch.cat(buf_owner).to(device)  # per window
        owner_tok = owner.unsqueeze(0).expand(x.size(0), -1).reshape(-1)
        feats, _ = model.features(x, None)
        feats = feats.reshape(-1, feats.size(-1))
        sel = torch.nonzero(m).flatten()
        preds = torch.empty(len(sel), dtype=torch.long, device=device)
        for s in range(0, len(sel), rows):
            idx = sel[s:s + rows]
            logits = model.decoder(feats[idx])
            preds[s:s + rows] = logits.argmax(dim=1)
            loss_sum += float(nn.functional.cross_entropy(logits, y[idx], reduction="sum"))
        tgt = y[sel]
        own = owner_tok[sel]
        hit = (preds == tgt).long()
        not_unk = (tgt != unk).long()
        correct_t = torch.bincount(own, weights=hit.double(), minlength=k).round().long()
        total_t = torch.bincount(own, minlength=k)
        nu_t = torch.bincount(own, weights=not_unk.double(), minlength=k).round().long()
        cnu_t = torch.bincount(own, weights=(hit * not_unk).double(), minlength=k).round().long()
        correct[:] += correct_t.cpu().numpy()
        tokens[:] += total_t.cpu().numpy()
        tokens_nu[:] += nu_t.cpu().numpy()
        correct_nu[:] += cnu_t.cpu().numpy()
        pred_counts.add_(torch.bincount(preds.cpu(), minlength=v))
        tgt_counts.add_(torch.bincount(tgt.cpu(), minlength=v))
        for buffer in (buf_in, buf_tg, buf_mk, buf_owner):
            buffer.clear()
        buffered = 0

    for j, pid in enumerate(parts):
        stream = data.test_tokens(int(pid))
        if len(stream) < 2:
            continue
        inputs, targets, mask = _windows(stream, seq_len)
        for s in range(0, inputs.size(1), batch_windows):
            chunk = slice(s, s + batch_windows)
            width = inputs[:, chunk].size(1)
            buf_in.append(inputs[:, chunk])
            buf_tg.append(targets[:, chunk])
            buf_mk.append(mask[:, chunk])
            buf_owner.append(torch.full((width,), j, dtype=torch.long))
            buffered += width
            if buffered >= batch_windows:
                flush()
    flush()
    model.train(was_training)
    return ParticipantEvaluation(
        participants=parts, tokens=tokens, correct=correct, tokens_no_unk=tokens_nu,
        correct_no_unk=correct_nu, loss_sum=loss_sum,
        predicted_counts=pred_counts.numpy(), target_counts=tgt_counts.numpy())


def bucket_index(vocab_sizes: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Bucket of each participant: ``i`` with ``edges[i] <= size < edges[i + 1]``; -1 below
    the first edge."""
    return np.searchsorted(np.asarray(edges), np.asarray(vocab_sizes), side="right") - 1


def bucket_summary(evaluation: ParticipantEvaluation, data: FederatedTextData,
                   edges: Sequence[int], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per vocabulary bucket: participants, tokens, mean participant and token accuracy."""
    parts = evaluation.participants
    buckets = bucket_index(data.vocab_sizes[parts], edges)
    train_sizes = data.train_sizes()[parts]
    acc = evaluation.accuracy
    out = []
    for b, name in enumerate(names):
        sel = buckets == b
        evaluated = sel & (evaluation.tokens > 0)
        n_tok = int(evaluation.tokens[sel].sum())
        out.append({
            "group": name,
            "participants": int(sel.sum()),
            "participants_evaluated": int(evaluated.sum()),
            "train_size": int(train_sizes[sel].sum()),
            "test_size": n_tok,
            "accuracy": float(acc[evaluated].mean()) if evaluated.any() else None,
            "token_accuracy": int(evaluation.correct[sel].sum()) / n_tok if n_tok else None,
            "vocab_size_range": [int(edges[b]),
                                 int(edges[b + 1]) - 1 if b + 1 < len(edges) else None],
        })
    return out


def output_diversity(evaluation: ParticipantEvaluation, vocab: Sequence[str], *,
                     top: int = 25, curve_points: int = 2000) -> dict[str, Any]:
    """Distinct predicted words, the most predicted ones and the rank-frequency curve."""
    counts = evaluation.predicted_counts
    order = np.argsort(-counts, kind="stable")
    nonzero = int(np.count_nonzero(counts))
    total = int(counts.sum())
    curve = [int(c) for c in counts[order[:min(nonzero, curve_points)]]]
    top_words = [[vocab[int(i)], int(counts[i])] for i in order[:min(top, nonzero)]]
    target_distinct = int(np.count_nonzero(evaluation.target_counts))
    share_top10 = (sum(int(counts[i]) for i in order[:10]) / total) if total else None
    return {
        "distinct_predicted": nonzero,
        "distinct_targets": target_distinct,
        "predictions": total,
        "top_predicted": top_words,
        "top10_share": share_top10,
        "rank_counts": curve,
    }


def mean_or_none(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def stats_by_bucket(stats: Sequence[Any], buckets_of: Mapping[int, int], names: Sequence[str]
                    ) -> dict[str, dict[str, float | None]]:
    """Mean update norm and clipped fraction per vocabulary bucket of one round's updates."""
    norms: dict[int, list[float]] = {}
    clipped: dict[int, list[float]] = {}
    for s in stats:
        b = buckets_of.get(s.participant, -1)
        norms.setdefault(b, []).append(s.norm)
        clipped.setdefault(b, []).append(1.0 if s.clipped else 0.0)
    return {
        "update_norm": {n: mean_or_none(norms.get(b, [])) for b, n in enumerate(names)},
        "clipped_fraction": {n: mean_or_none(clipped.get(b, [])) for b, n in enumerate(names)},
    }
