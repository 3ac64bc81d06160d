"""Classification figures beyond accuracy: confusion matrix, per-class precision, recall and F1, top-k accuracy.

What ``torchmetrics`` or scikit-learn's ``classification_report`` give, from the
class scores of a labelled set. ``volnet eval`` prints them and ``volnet report``
shows the same figures on its page.

Definitions (C classes, ``confusion[t, p]`` = images of true class t predicted as p):

* precision of class c = ``confusion[c, c] / sum_t confusion[t, c]`` (0 when nothing was predicted as c);
* recall of class c = ``confusion[c, c] / sum_p confusion[c, p]`` (the class's accuracy; 0 without images);
* F1 = ``2 * precision * recall / (precision + recall)`` (0 when both are 0);
* top-k accuracy: the share of images whose label is among the k highest scores (ties broken by
  class index, as ``np.argsort(-scores, kind="stable")`` orders them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The widest terminal table eval prints; a wider confusion matrix is left to --json.
TABLE_WIDTH = 80


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """``(C, C)`` integer counts: row = true class, column = predicted class."""
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), np.asarray(predictions)), 1)
    return confusion


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


@dataclass(frozen=True)
class Classification:
    """The figures of one labelled set.

    Attributes:
        classes: names, one per class (C).
        confusion: ``(C, C)`` counts, row = true class, column = predicted.
        precision, recall, f1: ``(C,)`` floats; support: ``(C,)`` images per true class.
        top_k: ``{k: accuracy}`` for each k asked.
        loss: the mean loss, when the caller gives it (None otherwise).
    """

    classes: tuple[str, ...]
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    top_k: dict
    loss: float | None = None

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.confusion.sum(), 1))

    def to_dict(self) -> dict:
        """JSON-able: every figure, per class by name, and the macro averages."""
        return {
            "images": int(self.confusion.sum()), "accuracy": self.accuracy, "loss": self.loss,
            "top_k": {str(k): v for k, v in self.top_k.items()},
            "classes": list(self.classes),
            "confusion": self.confusion.tolist(),
            "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                          for name, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1,
                                                      self.support)},
            "macro": {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                      "f1": float(self.f1.mean())},
        }

    def table(self, width: int = TABLE_WIDTH) -> str:
        """The confusion matrix with each true class's precision, recall and F1 on its row, then top-k.

        Columns are the predicted classes by index; a row starts with the true class's index and name
        (cut to fit). When the matrix does not fit ``width`` columns (more than about 10 classes), the
        rows hold the per-class figures only and a note says where the matrix is.
        """
        C = len(self.classes)
        cell = max(len(str(int(self.confusion.max(initial=0)))), len(str(C - 1))) + 1
        labels = [c if c == str(i) else f"{i} {c}" for i, c in enumerate(self.classes)]
        name = max(6, min(12, max(map(len, labels)) + 1))
        figures = "  prec   rec    F1"
        matrix = name + C * cell + len(figures) <= width
        head = (f"{'true':<{name}}" + ("".join(f"{p:>{cell}}" for p in range(C)) if matrix else "")
                + figures + ("" if matrix else "  images"))
        lines = [("predicted ->".rjust(name + C * cell) if matrix else ""), head]
        for t, label in enumerate(labels):
            counts = "".join(f"{n:>{cell}}" for n in self.confusion[t]) if matrix else ""
            lines.append(f"{label[:name - 1]:<{name}}{counts}{self.precision[t]:6.3f}{self.recall[t]:6.3f}"
                         f"{self.f1[t]:6.3f}" + ("" if matrix else f"{self.support[t]:8d}"))
        pad = name + (C * cell if matrix else 0)
        lines.append(f"{'macro':<{pad}}{self.precision.mean():6.3f}{self.recall.mean():6.3f}{self.f1.mean():6.3f}")
        if not matrix:
            lines.append(f"(the {C}x{C} confusion matrix does not fit {width} columns: --json holds it)")
        lines.append("  ".join(f"top-{k} {v:.2%}" for k, v in self.top_k.items()))
        return "\n".join(line for line in lines if line)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows of ``scores`` ``(N, C)`` whose label is among their k highest scores."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((order == np.asarray(labels)[:, None]).any(axis=1).mean()) if len(scores) else 0.0


def classification(scores: np.ndarray, labels: np.ndarray, classes, top_k=(1, 3, 5),
                   loss: float | None = None) -> Classification:
    """The :class:`Classification` of class scores ``(N, C)`` against labels ``(N,)``.

    ``top_k``: the k to report, those above C left out. ``loss``: stored as given.
    """
    scores = np.asarray(scores).reshape(len(scores), -1)
    classes = tuple(str(c) for c in classes)
    if scores.shape[1] != len(classes):
        raise ValueError(f"{scores.shape[1]} scores per image but {len(classes)} class names")
    confusion = confusion_matrix(labels, np.argsort(-scores, axis=1, kind="stable")[:, 0], len(classes))
    hits, predicted, support = confusion.diagonal(), confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    ks = sorted({k for k in top_k if k <= len(classes)})
    return Classification(classes, confusion, precision, recall, f1, support,
                          {k: top_k_accuracy(scores, labels, k) for k in ks}, loss)
