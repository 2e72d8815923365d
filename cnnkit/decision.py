"""From logits to a decision a clinician can use: calibrated probabilities and, for two classes, an operating point.

- **Calibration** (Guo et al. 2017, "On calibration of modern neural networks"): one temperature T, fitted on the
  validation split by minimising the negative log-likelihood of softmax(logits / T). It never changes which class
  is most probable, only how confident the model says it is. Measured by the expected calibration error (ECE,
  15 equal-width bins; torchmetrics' definitions: top-label confidence for many classes, the positive class's
  probability for two) before and after.
- **Operating point** (two classes): the positive class (`--positive`; default the rarer one) is predicted when its
  calibrated probability reaches a threshold chosen on the validation split: `argmax` (0.5), `youden`
  (max sensitivity + specificity − 1), `f1`, `sensitivity=0.95` (the highest threshold that keeps at least that
  sensitivity, so the best specificity with it), `specificity=0.95` (the lowest threshold that keeps that
  specificity). A target the validation split cannot reach is refused, saying what it reached.
- **Metrics at the threshold**: sensitivity, specificity, PPV, NPV, F1 and balanced accuracy, each with a 95%
  bootstrap confidence interval (scipy.stats.bootstrap, percentile, 1,000 resamples, seeded), ROC-AUC and PR-AUC
  (average precision) from scikit-learn.

The temperature and the decision are saved in model.json (`calibration`, `decision`) and applied by
`cnnkit.run.Predictor`, so predict, evaluate, explain and the exported ONNX model give the same answer.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch

from .errors import CnnkitError

ECE_BINS = 15
RULES = ("argmax", "youden", "f1", "sensitivity=X", "specificity=X")
BALANCE = ("auto", "none", "weights", "sampler")
# --balance auto, chosen on the validation split of bench/binary.py (Fashion-MNIST shirts at 10% prevalence, seeds
# 0-2, medians): with an operating point chosen on validation the threshold does the balancing, and the unweighted
# network ranks and calibrates best (ROC-AUC 0.932 against 0.891 weights and 0.892 sampler; balanced accuracy at the
# operating point 0.819 / 0.724 / 0.815; ECE 0.017 / 0.244 / 0.042): none. With argmax (p 0.5) the decision itself
# needs it: class weights when the rarest class has under half of an even share (binary: under 1 in 4), balanced
# accuracy at 0.5 0.826 against 0.702 unweighted (the sampler, 0.677, varied most between seeds). Balanced
# probabilities lean to the rare class (an even prior, which one temperature cannot undo): evaluate's ECE shows it.
AUTO_BALANCE_SHARE = 0.5
BOOTSTRAP = 1000


# --- calibration ------------------------------------------------------------------------------------------
def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (logits, y): LBFGS on log T, as Guo et al.

    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 3, (500,), generator=g)
    >>> logits = 3 * torch.nn.functional.one_hot(y, 3).float() + torch.randn(500, 3, generator=g)
    >>> 0.2 < fit_temperature(4 * logits, y) / 4 < 5  # overconfident logits get a larger temperature
    True
    """
    logits, y = logits.detach().double().cpu(), y.detach().long().cpu()
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return round(min(max(t, 0.05), 20.0), 6) if math.isfinite(t) else 1.0


def _confidence(probs, y, positive: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, hit) per image: the positive class's probability and whether the image is positive (two
    classes), else the top class's probability and whether it is right."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if positive is not None:
        return probs[:, positive], (y == positive).astype(np.float64)
    return probs.max(1), (probs.argmax(1) == y).astype(np.float64)


def _bins(conf: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: (a, b] bins, 0 in the first (torchmetrics' binning)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)


def calibration_error(probs, y, positive: int | None = None, bins: int = ECE_BINS) -> float:
    """Expected calibration error (L1, equal-width bins). Two classes with `positive`: the positive class's
    probability against how often the image is positive (torchmetrics' BinaryCalibrationError); otherwise the
    top class's probability against whether it is right (MulticlassCalibrationError)."""
    r = reliability(probs, y, positive, bins)
    n = sum(r["count"])
    if n == 0:
        return float("nan")
    return round(float(sum(k / n * abs(c - f) for c, f, k in zip(r["confidence"], r["frequency"], r["count"]) if k)),
                 6)


def reliability(probs, y, positive: int | None = None, bins: int = ECE_BINS) -> dict:
    """Per bin: mean confidence, observed frequency, count (the reliability diagram's points)."""
    conf, hit = _confidence(probs, y, positive)
    idx = _bins(conf, bins)
    out = {"confidence": [], "frequency": [], "count": []}
    for b in range(bins):
        m = idx == b
        out["confidence"].append(float(conf[m].mean()) if m.any() else None)
        out["frequency"].append(float(hit[m].mean()) if m.any() else None)
        out["count"].append(int(m.sum()))
    return out


# --- the operating point ----------------------------------------------------------------------------------
def parse_rule(rule: str) -> tuple[str, float | None]:
    """'sensitivity=0.95' → ('sensitivity', 0.95); 'youden' → ('youden', None).

    >>> parse_rule('Sensitivity=0.95'), parse_rule('youden')
    (('sensitivity', 0.95), ('youden', None))
    """
    text = str(rule).strip().lower().replace(" ", "")
    if text in ("argmax", "youden", "f1"):
        return text, None
    m = re.fullmatch(r"(sensitivity|specificity|sens|spec|recall|tpr|tnr)=([0-9.]+)", text)
    if m:
        name = {"sens": "sensitivity", "recall": "sensitivity", "tpr": "sensitivity", "spec": "specificity",
                "tnr": "specificity"}.get(m.group(1), m.group(1))
        try:
            target = float(m.group(2))
        except ValueError:
            target = -1.0
        if 0 < target <= 1:
            return name, target
        raise CnnkitError(f"--operating-point {rule}: the target must be a fraction in (0, 1], e.g. {name}=0.95")
    raise CnnkitError(f"--operating-point {rule!r} is not one of {', '.join(RULES)} (e.g. sensitivity=0.95)")


def rates(is_pos: np.ndarray, p_pos: np.ndarray, threshold: float) -> dict:
    """Sensitivity, specificity, PPV, NPV, F1, balanced accuracy and accuracy when p ≥ threshold is positive
    (None where undefined, e.g. PPV when nothing is called positive)."""
    pred = p_pos >= threshold
    return _rates_from(np.asarray(is_pos, bool), pred)


def _rates_from(y: np.ndarray, pred: np.ndarray) -> dict:
    tp, fn = int((y & pred).sum()), int((y & ~pred).sum())
    tn, fp = int((~y & ~pred).sum()), int((~y & pred).sum())
    div = lambda a, b: round(a / b, 6) if b else None  # noqa: E731
    sens, spec = div(tp, tp + fn), div(tn, tn + fp)
    return {"sensitivity": sens, "specificity": spec, "ppv": div(tp, tp + fp), "npv": div(tn, tn + fn),
            "f1": div(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": round((sens + spec) / 2, 6) if sens is not None and spec is not None else None,
            "accuracy": div(tp + tn, len(y)), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def choose_threshold(is_pos, p_pos, rule: str) -> dict:
    """The threshold `rule` picks on (is_pos, p_pos) of the validation split, with what it achieves there.
    Refused (one line, saying what was reached) when the split cannot reach the target."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    name, target = parse_rule(rule)
    y, p = np.asarray(is_pos, bool), np.asarray(p_pos, np.float64)
    if name == "argmax":
        return {"rule": "argmax", "threshold": 0.5, "val": rates(y, p, 0.5)}
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise CnnkitError(f"--operating-point {rule}: the validation split has {n_pos} positive and {n_neg} negative "
                          "images; it needs both to choose a threshold (add images, or a larger --val-fraction)")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    thr = np.minimum(thr, 1.0)  # sklearn's first threshold is inf: nothing called positive
    if name == "youden":
        i = int(np.argmax(tpr - fpr))
    elif name == "f1":
        prec, rec, t = precision_recall_curve(y, p)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0)[:-1]
        best = _between(p, float(t[int(np.argmax(f1))]))
        return {"rule": "f1", "threshold": best, "val": rates(y, p, best)}
    elif name == "sensitivity":
        ok = np.flatnonzero((tpr >= target - 1e-12) & (fpr < 1))  # calling everything positive is no test
        if len(ok) == 0:
            best = float(tpr[fpr < 1].max()) if (fpr < 1).any() else 0.0
            raise CnnkitError(f"--operating-point {rule}: on the validation split ({n_pos} positives) no threshold "
                              f"reaches sensitivity {target:g} without calling every image positive; the highest it "
                              f"reached was {best:.3f}. Lower the target, or give a larger validation split")
        i = int(ok[0])  # the highest such threshold: the best specificity
    else:  # specificity
        ok = np.flatnonzero((1 - fpr >= target - 1e-12) & (tpr > 0))
        if len(ok) == 0:
            best = float((1 - fpr)[tpr > 0].max()) if (tpr > 0).any() else 0.0
            raise CnnkitError(f"--operating-point {rule}: on the validation split ({n_neg} negatives) no threshold "
                              f"reaches specificity {target:g} while finding any positive; the highest it reached "
                              f"was {best:.3f}. Lower the target, or give a larger validation split")
        i = int(ok[-1])  # the lowest such threshold: the best sensitivity
    t = _between(p, float(thr[i]))
    return {"rule": f"{name}={target:g}" if target is not None else name, "threshold": t, "val": rates(y, p, t)}


def _between(p: np.ndarray, score: float) -> float:
    """A threshold that calls positive exactly the images scoring at least `score`, halfway down to the next lower
    score: the same decisions on validation, and no image sits on the boundary (a rounding in another engine,
    ONNX against eager, cannot flip it)."""
    below = p[p < score]
    return float((score + below.max()) / 2) if below.size else float(score / 2)


def bootstrap_ci(is_pos, pred_pos, n_resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """95% percentile-bootstrap intervals (images resampled with replacement; scipy.stats.bootstrap) of each
    rate at a fixed decision. {metric: [low, high]}, None where a resample leaves it undefined too often."""
    from scipy.stats import bootstrap

    y, pred = np.asarray(is_pos, bool), np.asarray(pred_pos, bool)
    keys = ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy")

    def stat(y, pred, axis=-1):
        tp, fn = (y & pred).sum(axis), (y & ~pred).sum(axis)
        tn, fp = (~y & ~pred).sum(axis), (~y & pred).sum(axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens, spec = tp / (tp + fn), tn / (tn + fp)
            return np.stack([sens, spec, tp / (tp + fp), tn / (tn + fn), 2 * tp / (2 * tp + fp + fn),
                             (sens + spec) / 2])

    if len(y) < 2:
        return {k: None for k in keys}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples (a rate undefined) give NaN: reported as None
        res = bootstrap((y, pred), stat, paired=True, vectorized=True, n_resamples=n_resamples,
                        method="percentile", confidence_level=0.95, random_state=seed)
    lo, hi = res.confidence_interval
    return {k: ([round(float(a), 4), round(float(b), 4)] if np.isfinite(a) and np.isfinite(b) else None)
            for k, a, b in zip(keys, lo, hi)}


def binary_report(y, probs, positive: int, threshold: float, *, seed: int = 0) -> dict:
    """Everything evaluate reports for two classes at the operating point, JSON-ready."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y)
    p = np.asarray(probs, np.float64)[:, positive]
    is_pos = y == positive
    out = {"threshold": round(float(threshold), 6), "prevalence": round(float(is_pos.mean()), 6) if len(y) else None,
           **{k: v for k, v in rates(is_pos, p, threshold).items()}}
    out["ci95"] = bootstrap_ci(is_pos, p >= threshold, seed=seed)
    both = 0 < is_pos.sum() < len(y)
    out["roc_auc"] = round(float(roc_auc_score(is_pos, p)), 4) if both else None
    out["pr_auc"] = round(float(average_precision_score(is_pos, p)), 4) if both else None
    out["at_half"] = {k: v for k, v in rates(is_pos, p, 0.5).items()
                      if k in ("sensitivity", "specificity", "balanced_accuracy", "accuracy")}
    return out


def decision_plots(pred, run_dir, tag: str, y, probs, raw, positive, name: str, split: str) -> dict:
    """The reliability diagram (before/after temperature scaling) and, for two classes with both present, the ROC
    and PR curves marked with the operating point: PNGs in `run_dir`, {'reliability_png', 'roc_pr_png'}.
    `pred` is a `cnnkit.run.Predictor`; `raw`, its probabilities without the temperature."""
    from pathlib import Path

    from .metrics import plot_reliability, plot_roc_pr

    out = {}
    png = Path(run_dir) / f"reliability_{tag}.png"
    what = f"P({pred.classes[positive]})" if positive is not None else "top-class confidence"
    plot_reliability({f"network (ECE {calibration_error(raw.numpy(), y, positive):.4f})":
                      reliability(raw.numpy(), y, positive),
                      f"temperature {pred.temperature:.3g} (ECE {calibration_error(probs.numpy(), y, positive):.4f})":
                      reliability(probs.numpy(), y, positive)},
                     png, title=f"{name} {split}: {what}")
    out["reliability_png"] = str(png)
    if positive is not None and 0 < (y == positive).sum() < len(y):
        png = Path(run_dir) / f"roc_pr_{tag}.png"
        plot_roc_pr(y == positive, probs[:, positive].numpy(), pred.classes[positive],
                    pred.threshold if pred.positive is not None else 0.5, png,
                    title=f"{pred.name} on {name} {split}")
        out["roc_pr_png"] = str(png)
    return out


# --- imbalance ----------------------------------------------------------------------------------------------
def resolve_balance(balance: str | None, counts, operating_point: str = "argmax") -> tuple[str, str]:
    """(none|weights|sampler, why) for --balance; 'auto' (or None) decided from the training class counts and the
    operating point (see AUTO_BALANCE_SHARE)."""
    counts = np.asarray(counts, np.float64)
    share = counts.min() / counts.sum() if counts.sum() else 0.0
    even = 1.0 / len(counts)
    if balance not in (None, "auto"):
        return balance, "--balance"
    if parse_rule(operating_point or "argmax")[0] != "argmax":
        return "none", (f"auto: the operating point {operating_point}, chosen on validation, balances the decision "
                        f"(the rarest class is {share:.1%} of train)")
    if share < AUTO_BALANCE_SHARE * even:
        return "weights", f"auto: the rarest class is {share:.1%} of train, under half of an even {even:.0%}"
    return "none", f"auto: the rarest class is {share:.1%} of train (an even share is {even:.0%})"


def class_weights(counts) -> torch.Tensor:
    """n / (k · n_c): scikit-learn's 'balanced' weights; each class weighs the same in the loss."""
    counts = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1)
    return (counts.sum() / (len(counts) * counts)).float()


def default_positive(classes, counts) -> int:
    """The rarer class of two (the one screened for, as a rule); on a tie, the second (scikit-learn's pos_label=1)."""
    counts = list(counts)
    return 0 if counts[0] < counts[1] else 1


def positive_index(classes, positive: str | None, counts) -> int | None:
    """The index of `--positive` (one clear line listing the classes if it names none); None for > 2 classes."""
    if positive is not None:
        if len(classes) != 2:
            raise CnnkitError(f"--positive {positive}: an operating point is for two classes; this data has "
                              f"{len(classes)} ({', '.join(classes[:6])}{'…' if len(classes) > 6 else ''})")
        if positive not in classes:
            import difflib

            close = difflib.get_close_matches(positive, classes, n=1)
            raise CnnkitError(f"--positive {positive!r} is not a class of this data; its classes are "
                              f"{', '.join(classes)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return classes.index(positive)
    return default_positive(classes, counts) if len(classes) == 2 else None
