"""Per-group classification metrics computed from saved test-set predictions.

For every group and overall: size, accuracy, mean loss, the confusion matrix (rows:
true class, columns: predicted class) and, per class one-vs-rest, the true positive
rate TPR = TP / (TP + FN), false positive rate FPR = FP / (FP + TN) and selection rate
P(prediction = class). Across groups, as fairlearn defines them (``between_groups``):

    demographic-parity difference = max_g selection_rate_g - min_g selection_rate_g
    equalized-odds difference     = max(max_g TPR_g - min_g TPR_g, max_g FPR_g - min_g FPR_g)

For two classes they are those of the positive class (index 1, fairlearn's ``pos_label=1``);
for more, the largest over the classes (one-vs-rest). A group with no example of a class
(or none of the others) has no TPR (or FPR) for it and is left out of that difference.
Renderings: :meth:`GroupMetrics.to_dict` (``results.json``), tidy rows / CSV / pandas,
and :func:`to_metric_frame` for fairlearn (an optional extra).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PREDICTIONS_FILE",
    "GroupMetrics",
    "Predictions",
    "SliceMetrics",
    "confusion_matrix",
    "to_metric_frame",
    "write_rows",
]

PREDICTIONS_FILE = "predictions.npz"
#: Tidy per-group metrics of every run of a comparison (``disparate compare``).
GROUP_METRICS_CSV = "group_metrics.csv"
TIDY_COLUMNS = ("group", "metric", "class", "value", "size")
ERR_EXTRA = "{what} needs the optional package {package!r}: pip install 'disparate[{extra}]'"


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """(num_classes, num_classes) counts; entry [t, p] = examples of class t predicted p."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


@dataclass(frozen=True)
class SliceMetrics:
    """Metrics of one slice (a group, or everyone); rates are per class, NaN if undefined."""

    size: int
    accuracy: float | None
    loss: float | None
    confusion: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    selection_rate: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, predictions: np.ndarray, losses: np.ndarray,
           num_classes: int) -> SliceMetrics:
        cm = confusion_matrix(labels, predictions, num_classes)
        n = int(cm.sum())
        tp = np.diag(cm)
        positives = cm.sum(axis=1)  # TP + FN per class
        predicted = cm.sum(axis=0)  # TP + FP per class
        fp = predicted - tp
        return cls(
            size=n,
            accuracy=float(tp.sum() / n) if n else None,
            loss=float(np.mean(losses, dtype=np.float64)) if n else None,
            confusion=cm,
            tpr=_ratio(tp, positives),
            fpr=_ratio(fp, n - positives),
            selection_rate=_ratio(predicted, np.full(num_classes, n)),
        )

    def to_dict(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        def by_class(values: np.ndarray) -> dict[str, float | None]:
            return {c: (None if np.isnan(v) else float(v))
                    for c, v in zip(class_names, values, strict=True)}

        return {"size": self.size, "accuracy": self.accuracy, "loss": self.loss,
                "tpr": by_class(self.tpr), "fpr": by_class(self.fpr),
                "selection_rate": by_class(self.selection_rate),
                "confusion_matrix": self.confusion.tolist()}


def _range(values: np.ndarray) -> np.ndarray:
    """max - min over groups (axis 0) per class, ignoring NaN; NaN where < 2 groups."""
    defined = (~np.isnan(values)).sum(axis=0)
    with warnings.catch_warnings():  # all-NaN columns: "All-NaN slice encountered"
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
    return np.where(defined >= 2, spread, np.nan)


def _max_over_classes(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.max()) if values.size else None


@dataclass(frozen=True)
class GroupMetrics:
    """``overall`` and ``by_group`` metrics, and differences between the groups."""

    overall: SliceMetrics
    by_group: dict[str, SliceMetrics]
    class_names: tuple[str, ...]

    def _classes(self, per_class: np.ndarray) -> np.ndarray:
        return per_class[1:2] if len(self.class_names) == 2 else per_class

    def _stack(self, attr: str) -> np.ndarray:
        return np.stack([getattr(m, attr) for m in self.by_group.values() if m.size])

    def difference(self, metric: str) -> float | None:
        """max - min over the non-empty groups of 'accuracy' or 'loss'."""
        if metric not in ("accuracy", "loss"):
            raise ValueError(f"metric={metric!r}: expected one of 'accuracy', 'loss'")
        values = [getattr(m, metric) for m in self.by_group.values() if m.size]
        return max(values) - min(values) if len(values) >= 2 else None

    def demographic_parity_difference(self) -> float | None:
        return _max_over_classes(self._classes(_range(self._stack("selection_rate"))))

    def equalized_odds_difference(self) -> float | None:
        tpr = self._classes(_range(self._stack("tpr")))
        fpr = self._classes(_range(self._stack("fpr")))
        return _max_over_classes(np.fmax(tpr, fpr))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: overall, by group, and the differences."""
        return {
            "class_names": list(self.class_names),
            "overall": self.overall.to_dict(self.class_names),
            "by_group": {g: m.to_dict(self.class_names) for g, m in self.by_group.items()},
            "accuracy_difference": self.difference("accuracy"),
            "loss_difference": self.difference("loss"),
            "demographic_parity_difference": self.demographic_parity_difference(),
            "equalized_odds_difference": self.equalized_odds_difference(),
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """Tidy rows ``{group, metric, class, value, size}``; group '(overall)' for everyone."""
        rows: list[dict[str, Any]] = []
        for group, m in [("(overall)", self.overall), *self.by_group.items()]:
            for metric in ("accuracy", "loss"):
                rows.append({"group": group, "metric": metric, "class": "",
                             "value": getattr(m, metric), "size": m.size})
            for metric in ("tpr", "fpr", "selection_rate"):
                for c, v in zip(self.class_names, getattr(m, metric), strict=True):
                    rows.append({"group": group, "metric": metric, "class": c,
                                 "value": None if np.isnan(v) else float(v), "size": m.size})
        return rows

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_rows` as CSV (no pandas needed)."""
        return write_rows(path, self.to_rows())

    def to_dataframe(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (pandas is an optional extra)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(ERR_EXTRA.format(what="to_dataframe()", package="pandas",
                                               extra="fairness")) from e
        return pd.DataFrame(self.to_rows())


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Tidy rows as CSV; columns in the order of the first row."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(TIDY_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Predictions:
    """Test-set predictions of a run: one row per example (label, prediction, group, loss)."""

    labels: np.ndarray
    predictions: np.ndarray
    groups: np.ndarray
    losses: np.ndarray
    group_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("predictions", "groups", "losses"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows: expected {n}, "
                                 "one per label")

    def save(self, path: str | Path) -> Path:
        """Compressed ``.npz`` (int16/int32 codes, float32 losses, the names)."""
        path = Path(path)
        np.savez_compressed(
            path, labels=self.labels.astype(np.int32), predictions=self.predictions.astype(
                np.int32), groups=self.groups.astype(np.int32),
            losses=self.losses.astype(np.float32), group_names=np.array(self.group_names),
            class_names=np.array(self.class_names))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        """Read :meth:`save`'s file, or ``predictions.npz`` of a run directory."""
        path = Path(path)
        if path.is_dir():
            path = path / PREDICTIONS_FILE
        with np.load(path) as z:
            return cls(labels=z["labels"], predictions=z["predictions"], groups=z["groups"],
                       losses=z["losses"], group_names=tuple(z["group_names"].tolist()),
                       class_names=tuple(z["class_names"].tolist()))

    def metrics(self) -> GroupMetrics:
        k = len(self.class_names)
        by_group = {}
        for i, name in enumerate(self.group_names):
            sel = self.groups == i
            by_group[name] = SliceMetrics.of(self.labels[sel], self.predictions[sel],
                                             self.losses[sel], k)
        return GroupMetrics(
            overall=SliceMetrics.of(self.labels, self.predictions, self.losses, k),
            by_group=by_group, class_names=self.class_names)


def to_metric_frame(predictions: Predictions) -> Any:
    """A fairlearn ``MetricFrame`` of accuracy, count and (two classes) TPR, FPR, selection
    rate, with the group names as sensitive feature (fairlearn is an optional extra)."""
    try:
        from fairlearn.metrics import (
            MetricFrame,
            count,
            false_positive_rate,
            selection_rate,
            true_positive_rate,
        )
    except ImportError as e:
        raise ImportError(ERR_EXTRA.format(what="to_metric_frame()", package="fairlearn",
                                           extra="fairness")) from e
    from sklearn.metrics import accuracy_score

    metrics: dict[str, Any] = {"count": count, "accuracy": accuracy_score}
    if len(predictions.class_names) == 2:
        metrics |= {"tpr": true_positive_rate, "fpr": false_positive_rate,
                    "selection_rate": selection_rate}
    groups = np.array(predictions.group_names, dtype=object)[predictions.groups]
    return MetricFrame(metrics=metrics, y_true=predictions.labels, y_pred=predictions.predictions,
                       sensitive_features=groups)
