"""Classification metrics, from scikit-learn (the field's reference implementations).

`classification_report(y_true, probs, classes)` returns one JSON-ready dict: accuracy, top-k accuracy,
per-class precision/recall/F1/support, macro and weighted averages, the confusion matrix, and ROC-AUC for
two classes.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_report(y_true, probs, classes: list[str], top_k: int = 5) -> dict:
    """>>> r = classification_report([0, 1, 1], np.array([[.9, .1], [.2, .8], [.6, .4]]), ['a', 'b'])
    >>> r['accuracy'], r['confusion_matrix'], round(r['roc_auc'], 3)
    (0.6667, [[1, 0], [1, 1]], 1.0)
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1)
    labels = np.arange(len(classes))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict = {
        "n": int(len(y_true)),
        "accuracy": round(float(skm.accuracy_score(y_true, y_pred)), 4),
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)},
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                            zero_division=0)
        out[avg] = {"precision": round(float(ap), 4), "recall": round(float(ar), 4), "f1": round(float(af), 4)}
    k = min(top_k, len(classes) - 1)
    if k >= 2:
        out[f"top{k}_accuracy"] = round(float(skm.top_k_accuracy_score(y_true, probs, k=k, labels=labels)), 4)
    if len(classes) == 2 and len(np.unique(y_true)) == 2:
        out["roc_auc"] = round(float(skm.roc_auc_score(y_true, probs[:, 1])), 4)
    return out


def format_report(rep: dict, classes: list[str]) -> str:
    """The report as text: per-class table, averages, confusion matrix."""
    width = max(12, max(len(c) for c in classes) + 2)
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for c in classes:
        m = rep["per_class"][c]
        lines.append(f"{c:<{width}} {m['precision']:>9.4f} {m['recall']:>7.4f} {m['f1']:>7.4f} {m['support']:>8}")
    for avg in ("macro", "weighted"):
        m = rep[avg]
        lines.append(f"{avg + ' avg':<{width}} {m['precision']:>9.4f} {m['recall']:>7.4f} {m['f1']:>7.4f} {rep['n']:>8}")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    cm = rep["confusion_matrix"]
    w = max(5, len(str(max(max(r) for r in cm))) + 1)
    short = [c[:w - 1] for c in classes]
    lines.append(" " * width + "".join(f"{s:>{w}}" for s in short))
    for c, row in zip(classes, cm):
        lines.append(f"{c:<{width}}" + "".join(f"{v:>{w}}" for v in row))
    lines.append("")
    extra = [f"accuracy {rep['accuracy']:.4f}"]
    extra += [f"{k} {v:.4f}" for k, v in rep.items() if k.startswith("top") or k == "roc_auc"]
    lines.append("  ".join(extra))
    return "\n".join(lines)


def plot_confusion_matrix(cm, classes: list[str], path, title: str = "") -> None:
    """Confusion matrix as a PNG (row-normalised colours, counts written in the cells), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import atomic_write

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
