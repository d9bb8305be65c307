"""Per-group metrics against hand-made confusion matrices, and fairlearn's numbers."""

import numpy as np
import pytest

from disparate.metrics import GroupMetrics, Predictions, confusion_matrix


def from_confusion(matrices):
    """Labels, predictions, groups realising one confusion matrix per group."""
    labels, preds, groups = [], [], []
    for g, cm in enumerate(matrices):
        for t, row in enumerate(cm):
            for p, count in enumerate(row):
                labels += [t] * count
                preds += [p] * count
                groups += [g] * count
    return np.array(labels), np.array(preds), np.array(groups)


# group "a": TN=4 FP=2 / FN=1 TP=3; group "b": TN=3 FP=0 / FN=1 TP=1
BINARY = [[[4, 2], [1, 3]], [[3, 0], [1, 1]]]


def binary_predictions():
    y, p, g = from_confusion(BINARY)
    losses = np.where(y == p, 0.1, 2.0)
    return Predictions(labels=y, predictions=p, groups=g, losses=losses,
                       group_names=("a", "b"), class_names=("no", "yes"))


def test_binary_rates_by_hand():
    m = binary_predictions().metrics()
    a, b = m.by_group["a"], m.by_group["b"]
    np.testing.assert_array_equal(a.confusion, BINARY[0])
    assert (a.size, a.accuracy, b.size, b.accuracy) == (10, 0.7, 5, 0.8)
    assert a.tpr[1] == 0.75 and a.fpr[1] == pytest.approx(2 / 6) and a.selection_rate[1] == 0.5
    assert b.tpr[1] == 0.5 and b.fpr[1] == 0.0 and b.selection_rate[1] == 0.2
    assert a.loss == pytest.approx((7 * 0.1 + 3 * 2.0) / 10)
    assert m.equalized_odds_difference() == pytest.approx(1 / 3)  # max(0.25, 1/3)
    assert m.demographic_parity_difference() == pytest.approx(0.3)
    assert m.difference("accuracy") == pytest.approx(0.1)
    assert m.overall.size == 15 and m.overall.accuracy == pytest.approx(11 / 15)


def test_multiclass_one_vs_rest_by_hand():
    cm = [[5, 1, 0], [2, 6, 2], [0, 0, 4]]
    y, p, g = from_confusion([cm])
    np.testing.assert_array_equal(confusion_matrix(y, p, 3), cm)
    m = Predictions(labels=y, predictions=p, groups=g, losses=np.zeros(len(y)),
                    group_names=("only",), class_names=("x", "y", "z")).metrics()
    s = m.by_group["only"]
    np.testing.assert_allclose(s.tpr, [5 / 6, 6 / 10, 4 / 4])
    # FP of class c: predicted c but not c; negatives: 20 - positives
    np.testing.assert_allclose(s.fpr, [2 / 14, 1 / 10, 2 / 16])
    assert m.equalized_odds_difference() is None  # one group: no difference


def test_group_without_positives_has_no_tpr_and_is_left_out():
    y, p, g = from_confusion([[[2, 1], [1, 2]], [[3, 1], [0, 0]]])
    m = Predictions(labels=y, predictions=p, groups=g, losses=np.zeros(len(y)),
                    group_names=("a", "b"), class_names=("0", "1")).metrics()
    assert np.isnan(m.by_group["b"].tpr[1])
    assert m.to_dict()["by_group"]["b"]["tpr"]["1"] is None
    # TPR range undefined (one group); FPR range |1/3 - 1/4|
    assert m.equalized_odds_difference() == pytest.approx(1 / 3 - 1 / 4)


def test_save_load_and_tidy_rows(tmp_path):
    pred = binary_predictions()
    back = Predictions.load(pred.save(tmp_path / "predictions.npz"))
    assert back.group_names == ("a", "b") and back.class_names == ("no", "yes")
    np.testing.assert_array_equal(back.labels, pred.labels)
    m: GroupMetrics = back.metrics()
    rows = m.to_rows()
    tpr_a = [r for r in rows if (r["group"], r["metric"], r["class"]) == ("a", "tpr", "yes")]
    assert tpr_a == [{"group": "a", "metric": "tpr", "class": "yes", "value": 0.75, "size": 10}]
    text = m.to_csv(tmp_path / "metrics.csv").read_text().splitlines()
    assert text[0] == "group,metric,class,value,size" and "a,tpr,yes,0.75,10" in text


def test_matches_fairlearn():
    fairlearn = pytest.importorskip("fairlearn.metrics")
    pytest.importorskip("pandas")
    from disparate.metrics import to_metric_frame

    pred = binary_predictions()
    m = pred.metrics()
    frame = to_metric_frame(pred)
    assert frame.by_group.loc["a", "tpr"] == m.by_group["a"].tpr[1]
    assert frame.by_group.loc["b", "count"] == 5
    groups = np.array(pred.group_names)[pred.groups]
    assert m.equalized_odds_difference() == pytest.approx(fairlearn.equalized_odds_difference(
        pred.labels, pred.predictions, sensitive_features=groups))
    assert m.demographic_parity_difference() == pytest.approx(
        fairlearn.demographic_parity_difference(pred.labels, pred.predictions,
                                                sensitive_features=groups))
    df = m.to_dataframe()
    assert set(df.columns) == {"group", "metric", "class", "value", "size"}
