"""Membership-inference attacks and their metrics, overall and per group.

Scores: higher means "more likely a member". Two attacks:

- **loss threshold** (Yeom et al. 2018): ``score = -loss`` of the example under the model.
- **offline LiRA** (Carlini et al. 2022, offline variant): ``phi = log(p_y / (1 - p_y))``, the
  logit-scaled confidence of the true label; reference models trained *without* the example
  give its expected ``phi`` when out, ``mu_out(x)``, and the score is
  ``(phi - mu_out(x)) / sigma_out`` with one global ``sigma_out`` (the fixed-variance form the
  LiRA paper recommends when there are few reference models). The division does not change
  ranks, so the AUC and TPRs are those of ``phi - mu_out(x)``; it makes scores comparable.

Metrics (members are positives): ROC AUC (ties count 1/2), TPR at a fixed FPR (the largest
TPR over thresholds whose FPR is <= the target; with ``n`` non-members the FPR moves in steps
of ``1/n``, so TPR at 0.1% FPR is TPR at FPR 0 unless ``n >= 1000``), and the membership
advantage ``max_t TPR(t) - FPR(t)`` (Yeom et al.). Checked against scikit-learn in
``tests/audit/test_mia.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "FPR_GRID",
    "FPR_TARGETS",
    "attack_metrics",
    "lira_offline_scores",
    "logit_confidence",
    "membership_advantage",
    "per_example_outputs",
    "roc_auc",
    "roc_curve",
    "roc_on_grid",
    "tpr_at_fpr",
]

FPR_TARGETS: Mapping[str, float] = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
FPR_GRID: tuple[float, ...] = (0.0, *np.logspace(-3, 0, 31).tolist())
ERR_EMPTY = "{what} is empty: expected at least one member and one non-member score"
ERR_FPR = "fpr={value!r}: expected 0 <= fpr <= 1"
ERR_REFERENCE = (
    "reference_phi has shape {ref}, out_mask has shape {mask}: expected both (K, N) with "
    "every example out of at least one of the K reference models"
)


def _split(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    neg = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if pos.size == 0:
        raise ValueError(ERR_EMPTY.format(what="member_scores"))
    if neg.size == 0:
        raise ValueError(ERR_EMPTY.format(what="nonmember_scores"))
    return pos, neg


def roc_curve(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); "member" iff score >= t."""
    pos, neg = _split(member_scores, nonmember_scores)
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return np.r_[0.0, fp / neg.size], np.r_[0.0, tp / pos.size]


def roc_auc(member_scores: Any, nonmember_scores: Any) -> float:
    """P[member score > non-member score] + P[tie] / 2 (the Mann-Whitney statistic)."""
    pos, neg = _split(member_scores, nonmember_scores)
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    return float((ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def tpr_at_fpr(member_scores: Any, nonmember_scores: Any, fpr: float) -> float:
    """The largest TPR of a threshold whose FPR is <= ``fpr``."""
    if not (isinstance(fpr, (int, float)) and 0 <= fpr <= 1):
        raise ValueError(ERR_FPR.format(value=fpr))
    f, t = roc_curve(member_scores, nonmember_scores)
    return float(t[f <= fpr + 1e-12].max())


def roc_on_grid(member_scores: Any, nonmember_scores: Any,
                grid: Sequence[float] = FPR_GRID) -> list[float]:
    """TPR at FPR <= each grid point (a step curve for the figures)."""
    f, t = roc_curve(member_scores, nonmember_scores)
    return [float(t[f <= g + 1e-12].max()) for g in grid]


def membership_advantage(member_scores: Any, nonmember_scores: Any) -> float:
    """max over thresholds of TPR - FPR (0 for a useless attack)."""
    f, t = roc_curve(member_scores, nonmember_scores)
    return float(np.max(t - f))


def attack_metrics(member_scores: Any, nonmember_scores: Any) -> dict[str, float | int]:
    """AUC, TPR at 1% and 0.1% FPR, advantage and the two counts."""
    pos, neg = _split(member_scores, nonmember_scores)
    out: dict[str, float | int] = {"auc": roc_auc(pos, neg)}
    for key, target in FPR_TARGETS.items():
        out[key] = tpr_at_fpr(pos, neg, target)
    out["advantage"] = membership_advantage(pos, neg)
    out["members"] = int(pos.size)
    out["nonmembers"] = int(neg.size)
    return out


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log(p_y / (1 - p_y))`` from logits (N, C), computed without cancellation."""
    true = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return true - torch.logsumexp(others, dim=1)


@torch.no_grad()
def per_example_outputs(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(loss, phi) of every example under ``model`` in eval mode; both float64 arrays (N,)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, phis = [], []
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device)
        out = model(x).double()
        losses.append(nn.functional.cross_entropy(out, y, reduction="none").cpu())
        phis.append(logit_confidence(out, y).cpu())
    model.train(was_training)
    if not losses:
        return np.zeros(0), np.zeros(0)
    return torch.cat(losses).numpy(), torch.cat(phis).numpy()


def lira_offline_scores(phi: np.ndarray, reference_phi: np.ndarray, out_mask: np.ndarray
                        ) -> np.ndarray:
    """Offline LiRA score of N examples from the target's ``phi`` (N,) and K reference models.

    ``reference_phi`` (K, N) is each reference model's phi of each example and ``out_mask``
    (K, N) says which reference models did not train on it; only those are used.
    """
    ref = np.asarray(reference_phi, dtype=np.float64)
    mask = np.asarray(out_mask, dtype=bool)
    phi = np.asarray(phi, dtype=np.float64).reshape(-1)
    if ref.ndim != 2 or ref.shape != mask.shape or ref.shape[1] != phi.size \
            or not mask.any(axis=0).all():
        raise ValueError(ERR_REFERENCE.format(ref=ref.shape, mask=mask.shape))
    n_out = mask.sum(axis=0)
    mu = np.where(mask, ref, 0.0).sum(axis=0) / n_out  # (N,)
    dev = (ref - mu)[mask]
    sigma = float(np.sqrt(np.mean(dev ** 2))) if dev.size > mask.shape[1] else 0.0
    if not sigma > 0:  # one out-model per example: the spread of phi_out over examples
        sigma = float(np.std(ref[mask])) or 1.0
    return (phi - mu) / sigma
