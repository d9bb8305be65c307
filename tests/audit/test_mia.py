"""Attack metrics against scikit-learn on fixed scores; LiRA and phi by hand."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from disparate.audit import mia

RNG = np.random.default_rng(7)
MEMBERS = np.r_[RNG.normal(0.5, 1.0, 300), [1.0, 1.0, 2.0]]
NONMEMBERS = np.r_[RNG.normal(0.0, 1.0, 2000), [1.0, 2.0, 2.0]]  # ties with members


def _sk():
    y = np.r_[np.ones(MEMBERS.size), np.zeros(NONMEMBERS.size)]
    s = np.r_[MEMBERS, NONMEMBERS]
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    return y, s, fpr, tpr


def test_auc_matches_sklearn():
    y, s, _, _ = _sk()
    assert mia.roc_auc(MEMBERS, NONMEMBERS) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_matches_sklearn():
    _, _, fpr, tpr = _sk()
    f, t = mia.roc_curve(MEMBERS, NONMEMBERS)
    np.testing.assert_allclose(f, fpr, atol=1e-12)
    np.testing.assert_allclose(t, tpr, atol=1e-12)


@pytest.mark.parametrize("target", [0.01, 0.001, 0.1])
def test_tpr_at_fpr_matches_sklearn(target):
    _, _, fpr, tpr = _sk()
    assert mia.tpr_at_fpr(MEMBERS, NONMEMBERS, target) == pytest.approx(tpr[fpr <= target].max())


def test_advantage_and_metrics():
    _, _, fpr, tpr = _sk()
    m = mia.attack_metrics(MEMBERS, NONMEMBERS)
    assert m["advantage"] == pytest.approx(np.max(tpr - fpr))
    assert (m["members"], m["nonmembers"]) == (303, 2003)
    assert 0.6 < m["auc"] < 0.7  # a N(0.5, 1) vs N(0, 1) shift: AUC = Phi(0.5 / sqrt 2) = 0.64


def test_hand_made_curve():
    # members 3, 2; non-members 2, 1: AUC = (1 + 1 + 0.5 + 1) / 4
    assert mia.roc_auc([3, 2], [2, 1]) == pytest.approx(0.875)
    assert mia.tpr_at_fpr([3, 2], [2, 1], 0.0) == pytest.approx(0.5)
    assert mia.membership_advantage([3, 2], [2, 1]) == pytest.approx(0.5)


def test_logit_confidence_is_log_odds_of_the_label():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 5.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    p = torch.softmax(logits, dim=1)[torch.arange(2), labels]
    expected = torch.log(p / (1 - p))
    torch.testing.assert_close(mia.logit_confidence(logits, labels), expected)


def test_lira_offline_uses_only_out_models():
    # two references; example 0 is out of model 0 only, example 1 out of both
    ref = np.array([[1.0, 2.0], [9.0, 4.0]])
    out = np.array([[True, True], [False, True]])
    scores = mia.lira_offline_scores(np.array([3.0, 3.0]), ref, out)
    mu = np.array([1.0, 3.0])
    sigma = np.sqrt(np.mean(np.array([0.0, -1.0, 1.0]) ** 2))
    np.testing.assert_allclose(scores, (np.array([3.0, 3.0]) - mu) / sigma)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="member_scores is empty"):
        mia.roc_auc([], [1.0])
    with pytest.raises(ValueError, match="fpr=2: expected 0 <= fpr <= 1"):
        mia.tpr_at_fpr([1.0], [0.0], 2)
    with pytest.raises(ValueError, match="every example out of at least one"):
        mia.lira_offline_scores(np.zeros(1), np.zeros((1, 1)), np.zeros((1, 1), bool))
