"""White-box canary scores: by hand on a linear model, against an autograd loop on a CNN."""

import numpy as np
import pytest
import torch
from torch import nn

from disparate.audit.whitebox import gradient_alignment_scores
from disparate.models import build_model


def _linear_pair(seed: int) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(seed)
    initial, final = nn.Linear(3, 4).double(), nn.Linear(3, 4).double()
    return initial, final


def test_linear_model_by_hand():
    # Cross-entropy of z = W x + b: dL/dW = (p - e_y) x^T, dL/db = p - e_y.
    initial, final = _linear_pair(0)
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([2, 0])
    w, b = final.weight.detach().numpy(), final.bias.detach().numpy()
    dw = initial.weight.detach().numpy() - w
    db = initial.bias.detach().numpy() - b
    expected = []
    for xi, yi in zip(x.numpy(), y.numpy(), strict=True):
        z = w @ xi + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        r = p - np.eye(4)[yi]
        gw, gb = np.outer(r, xi), r
        norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
        expected.append(((gw * dw).sum() + (gb * db).sum()) / norm)
    scores = gradient_alignment_scores(initial, final, x, y)
    np.testing.assert_allclose(scores, expected, rtol=1e-10)


def test_cnn_matches_an_autograd_loop():
    torch.manual_seed(1)
    kwargs = {"num_classes": 10, "input_shape": (1, 8, 8)}
    initial, final = build_model("digits-cnn", **kwargs), build_model("digits-cnn", **kwargs)
    x, y = torch.randn(70, 1, 8, 8), torch.randint(0, 10, (70,))
    change = [(p0 - p1).detach() for p0, p1 in zip(initial.parameters(), final.parameters(),
                                                    strict=True)]
    expected = []
    final.eval()
    for i in range(x.shape[0]):
        loss = nn.functional.cross_entropy(final(x[i:i + 1]), y[i:i + 1])
        g = torch.autograd.grad(loss, list(final.parameters()))
        dot = sum((gi.double() * c.double()).sum() for gi, c in zip(g, change, strict=True))
        norm = torch.sqrt(sum(gi.double().pow(2).sum() for gi in g))
        expected.append(float(dot / norm))
    final.train()
    scores = gradient_alignment_scores(initial, final, x, y, batch_size=32)  # 3 batches
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)
    assert final.training  # mode restored


def test_included_example_scores_higher_after_sgd_on_it():
    # One SGD step on example 0 moves theta along -g_0: its score is lr * |g_0| > 0 (to first
    # order), while the example not trained on scores near 0 relative to it.
    initial, _ = _linear_pair(2)
    final = nn.Linear(3, 4).double()
    final.load_state_dict(initial.state_dict())
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1, 3])
    opt = torch.optim.SGD(final.parameters(), lr=1e-4)
    nn.functional.cross_entropy(final(x[:1]), y[:1]).backward()
    g0 = torch.sqrt(sum(p.grad.pow(2).sum() for p in final.parameters()))
    opt.step()
    scores = gradient_alignment_scores(initial, final, x, y)
    assert scores[0] == pytest.approx(1e-4 * float(g0), rel=1e-3)
    assert abs(scores[1]) < scores[0]


def test_models_must_match():
    with pytest.raises(ValueError, match="initial and final models have different parameters"):
        gradient_alignment_scores(nn.Linear(3, 4), nn.Sequential(nn.Linear(3, 4)),
                                  torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
