"""cnnkit.metrics against scikit-learn, the reference: the counting metrics are computed in NumPy (importing
scikit-learn costs a second at the end of every run), so they must equal sklearn's on random and edge cases."""
import numpy as np
import pytest
from sklearn import metrics as skm

from cnnkit.metrics import classification_report


@pytest.mark.parametrize("seed,k,n", [(0, 10, 500), (1, 3, 40), (2, 2, 30), (3, 7, 5)])
def test_classification_report_equals_sklearn(seed, k, n):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    probs = rng.random((n, k))
    probs[:, 0] = probs[:, 1]  # ties: broken as sklearn breaks them
    probs /= probs.sum(1, keepdims=True)
    classes = [f"c{i}" for i in range(k)]
    pred = probs.argmax(1)
    r = classification_report(y, probs, classes)
    labels = np.arange(k)
    p, rc, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    assert r["accuracy"] == round(skm.accuracy_score(y, pred), 4)
    assert r["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    for i, c in enumerate(classes):
        assert r["per_class"][c] == {"precision": round(p[i], 4), "recall": round(rc[i], 4), "f1": round(f[i], 4),
                                     "support": int(s[i])}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert r[avg] == {"precision": round(ap, 4), "recall": round(ar, 4), "f1": round(af, 4)}
    top = min(5, k - 1)
    if top >= 2:
        assert r[f"top{top}_accuracy"] == round(skm.top_k_accuracy_score(y, probs, k=top, labels=labels), 4)
    if k == 2:
        assert r["roc_auc"] == round(skm.roc_auc_score(y, probs[:, 1]), 4)


def test_a_class_never_predicted_or_absent_counts_zero():
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])
    probs = np.eye(3)[pred]
    r = classification_report(y, probs, ["a", "b", "c"], y_pred=pred)
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert r["per_class"]["c"]["support"] == 0 and r["accuracy"] == 0.5
    assert r["macro"]["recall"] == round((1 + 0 + 0) / 3, 4)
