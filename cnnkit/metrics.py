"""Classification metrics: accuracy, top-k accuracy, per-class precision/recall/F1/support, macro and weighted
averages, the confusion matrix, and ROC-AUC for two classes, in one JSON-ready dict (`classification_report`).

The counting metrics come from the confusion matrix in NumPy: importing scikit-learn costs about a second at the
end of every training run, and these are a few divisions (tests/test_metrics.py checks them against
scikit-learn's, the reference). ROC-AUC and the curves are scikit-learn's, imported when a two-class run needs
them. The pictures are matplotlib Figures drawn by the Agg canvas, without pyplot (no global state).
"""
from __future__ import annotations

import numpy as np


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts, rows the true class and columns the predicted one (labels 0 … n_classes-1; others ignored)."""
    y_true, y_pred = np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()
    keep = (y_true >= 0) & (y_true < n_classes) & (y_pred >= 0) & (y_pred < n_classes)
    return np.bincount(y_true[keep] * n_classes + y_pred[keep], minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def top_k_accuracy(y_true, probs, k: int) -> float:
    """The share of rows whose true class is among the k highest scores (ties as scikit-learn breaks them)."""
    order = np.argsort(np.asarray(probs), axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float((order == np.asarray(y_true)[:, None]).any(1).mean()) if len(order) else 0.0


def classification_report(y_true, probs, classes: list[str], top_k: int = 5, y_pred=None) -> dict:
    """>>> r = classification_report([0, 1, 1], np.array([[.9, .1], [.2, .8], [.6, .4]]), ['a', 'b'])
    >>> r['accuracy'], r['confusion_matrix'], round(r['roc_auc'], 3)
    (0.6667, [[1, 0], [1, 1]], 1.0)
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred)  # a two-class run: its operating point
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp, s, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    p, r, f = _ratio(tp, predicted), _ratio(tp, s), _ratio(2 * tp, s + predicted)
    n = int(len(y_true))
    out: dict = {
        "n": n,
        "accuracy": round(float(tp.sum() / n) if n else 0.0, 4),
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }
    weights = {"macro": np.ones(len(classes)), "weighted": s.astype(np.float64)}
    for avg, w in weights.items():
        total = w.sum()
        ap, ar, af = ((float((v * w).sum() / total) if total else 0.0) for v in (p, r, f))
        out[avg] = {"precision": round(ap, 4), "recall": round(ar, 4), "f1": round(af, 4)}
    k = min(top_k, len(classes) - 1)
    if k >= 2:
        out[f"top{k}_accuracy"] = round(top_k_accuracy(y_true, probs, k), 4)
    if len(classes) == 2 and len(np.unique(y_true)) == 2:
        from sklearn.metrics import roc_auc_score

        out["roc_auc"] = round(float(roc_auc_score(y_true, probs[:, 1])), 4)
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
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig = _figure(figsize=(size + 1, size))
    ax = fig.subplots()
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
    _save(fig, path, dpi=110)


def _figure(**kw):
    """A matplotlib Figure on the Agg canvas: no pyplot, so no global figure list and no GUI backend."""
    from matplotlib.figure import Figure

    return Figure(layout="tight", **kw)


def _save(fig, path, dpi: int = 100) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ._io import atomic_write

    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def plot_roc_pr(y_true, p_pos, positive: str, threshold: float, path, title: str = "") -> None:
    """ROC and precision-recall curves side by side, the operating point marked on both (PNG, atomic)."""
    from sklearn import metrics as skm

    y = np.asarray(y_true, bool)
    p = np.asarray(p_pos, np.float64)
    fpr, tpr, _ = skm.roc_curve(y, p)
    prec, rec, _ = skm.precision_recall_curve(y, p)
    pred = p >= threshold
    tp, fp, fn, tn = (y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum(), (~y & ~pred).sum()
    sens, spec = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    fig = _figure(figsize=(10, 4.4))
    a, b = fig.subplots(1, 2)
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
    _save(fig, path)


def plot_reliability(curves: dict, path, title: str = "") -> None:
    """Reliability diagram: observed frequency against predicted probability per bin, one line per entry of
    `curves` ({label: cnnkit.decision.reliability(...)}) with its ECE in the label (PNG, atomic)."""
    fig = _figure(figsize=(5, 5))
    ax = fig.subplots()
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
    _save(fig, path)
