"""Classification metrics, from scikit-learn (the field's reference implementations).

`classification_report(y_true, probs, classes)` returns one JSON-ready dict: accuracy, top-k accuracy,
per-class precision/recall/F1/support, macro and weighted averages, the confusion matrix, and ROC-AUC for
two classes.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_report(y_true, probs, classes: list[str], top_k: int = 5, y_pred=None) -> dict:
    """>>> r = classification_report([0, 1, 1], np.array([[.9, .1], [.2, .8], [.6, .4]]), ['a', 'b'])
    >>> r['accuracy'], r['confusion_matrix'], round(r['roc_auc'], 3)
    (0.6667, [[1, 0], [1, 1]], 1.0)
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred)  # a two-class run: its operating point
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
    extra += [f"{k} {v:.4f}" for k, v in rep.items() if k.startswith("top") or k in ("roc_auc", "pr_auc")
              and v is not None]
    if rep.get("ece") is not None:
        extra.append(f"ECE {rep['ece']:.4f} (uncalibrated {rep['ece_uncalibrated']:.4f}, temperature "
                     f"{rep['temperature']:.3g})")
    lines.append("  ".join(extra))
    if "threshold" in rep:
        lines += ["", f"operating point: {rep['positive']} when p >= {rep['threshold']:.4g} ({rep['rule']}); "
                      f"prevalence {rep['prevalence']:.1%}"]
        for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy"):
            v, ci = rep.get(k), rep["ci95"].get(k)
            shown = "undefined" if v is None else f"{v:.4f}"
            lines.append(f"  {k:<18} {shown:>9}" + (f"   95% CI {ci[0]:.4f}-{ci[1]:.4f}" if ci else ""))
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


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc_pr(y_true, p_pos, positive: str, threshold: float, path, title: str = "") -> None:
    """ROC and precision-recall curves side by side, the operating point marked on both (PNG, atomic)."""
    from ._io import atomic_write

    plt = _figure()
    y = np.asarray(y_true, bool)
    p = np.asarray(p_pos, np.float64)
    fpr, tpr, _ = skm.roc_curve(y, p)
    prec, rec, _ = skm.precision_recall_curve(y, p)
    pred = p >= threshold
    tp, fp, fn, tn = (y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum(), (~y & ~pred).sum()
    sens, spec = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.4))
    a.plot(fpr, tpr, lw=1.5, label=f"ROC (AUC {skm.roc_auc_score(y, p):.3f})")
    a.plot([0, 1], [0, 1], ls=":", c="grey")
    a.scatter([1 - spec], [sens], c="crimson", zorder=3, label=f"p >= {threshold:.3g}: sens {sens:.3f}, spec {spec:.3f}")
    a.set_xlabel("1 - specificity (false positive rate)")
    a.set_ylabel(f"sensitivity ({positive} found)")
    a.legend(loc="lower right", fontsize=8)
    b.plot(rec, prec, lw=1.5, label=f"PR (AP {skm.average_precision_score(y, p):.3f})")
    b.axhline(y.mean(), ls=":", c="grey", label=f"prevalence {y.mean():.3f}")
    b.scatter([sens], [ppv], c="crimson", zorder=3, label=f"operating point: PPV {ppv:.3f}")
    b.set_xlabel("recall (sensitivity)")
    b.set_ylabel("precision (PPV)")
    b.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_reliability(curves: dict, path, title: str = "") -> None:
    """Reliability diagram: observed frequency against predicted probability per bin, one line per entry of
    `curves` ({label: cnnkit.decision.reliability(...)}) with its ECE in the label (PNG, atomic)."""
    from ._io import atomic_write

    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfectly calibrated")
    for label, r in curves.items():
        pts = [(c, f) for c, f in zip(r["confidence"], r["frequency"]) if c is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
