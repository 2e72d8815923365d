"""The model-randomisation sanity check of Adebayo et al. 2018 ("Sanity Checks for Saliency Maps"), for the
user's own model: cascading randomisation from the top.

The layers with weights are re-initialised one at a time, from the classifier down to the first
convolution, each on top of the last (a copy of the model: the user's is never touched), and after each
step the map for the same image(s) and class is compared with the trained model's by Spearman's rank
correlation of the signed maps at the input size (the map before the ReLU, so that a map that goes blank
still has a ranking). A map that depends on what the model learned falls apart as the layers it rests on
are randomised; one that stays (rho near 1) shows the architecture or the image, not the learning.

Verdict: "passes" when |rho| < 0.5 once every layer is random (the threshold tests/explain/test_sanity.py
uses on Fashion-MNIST), "fails" otherwise; a note when the classifier alone leaves the map almost the same
(rho > 0.9), which a faithful map of a trained head should not.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import spearmanr

PASS_BELOW = 0.5


def _weighted_layers(model: nn.Module) -> list[str]:
    """Modules with their own weights and a reset_parameters, in forward (definition) order."""
    return [n for n, m in model.named_modules() if n and hasattr(m, "reset_parameters")
            and any(True for _ in m.parameters(recurse=False))]


def _rho(a: torch.Tensor, b: torch.Tensor) -> float:
    vals = []
    for u, v in zip(a, b):
        u, v = u.flatten().numpy(), v.flatten().numpy()
        if np.ptp(u) == 0 or np.ptp(v) == 0:
            vals.append(0.0)  # a constant map has no ranking: nothing of the trained map left
        else:
            vals.append(float(spearmanr(u, v)[0]))
    return float(np.mean(vals))


def cascade(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | int | None = None, *,
            method: str = "auto", layer: str | None = None, seed: int = 0, max_rows: int = 8) -> dict:
    """Cascading model randomisation for the normalised batch `x`: a table (one row per group of layers
    randomised so far, classifier first) with the mean Spearman rho against the trained model's maps, and
    a verdict. At most `max_rows` steps (layers are grouped when there are more).
    """
    from .attribution import attribute

    trained = attribute(model, x, targets, method=method, layer=layer)
    names = _weighted_layers(model)[::-1]  # top first
    k = max(1, -(-len(names) // max_rows))
    groups = [names[i:i + k] for i in range(0, len(names), k)]
    other = copy.deepcopy(model)
    torch.manual_seed(seed)
    rows = []
    for grp in groups:
        for n in grp:
            other.get_submodule(n).reset_parameters()
        got = attribute(other, x, trained.target, method=trained.method, layer=trained.layer, head=trained.head)
        rows.append({"randomised": grp[0] if len(grp) == 1 else f"{grp[0]} … {grp[-1]}", "layers": len(grp),
                     "spearman": round(_rho(trained.signed, got.signed), 4),
                     "blank_share": round(float(np.mean(got.blank)), 4)})
    final = rows[-1]["spearman"] if rows else 1.0
    ok = abs(final) < PASS_BELOW  # an inverted map still carries the trained map's structure
    note = None
    if rows and rows[0]["spearman"] > 0.9:
        note = (f"randomising only {rows[0]['randomised']} left the map almost unchanged (rho {rows[0]['spearman']:.2f}):"
                " the map hardly depends on the classifier")
    return {"method": trained.method, "layer": trained.layer, "images": len(x), "rows": rows,
            "verdict": ("passes" if ok else "fails") + f": rho {final:.2f} with every layer random "
                       f"(|rho| {'below' if ok else 'not below'} {PASS_BELOW}); the map "
                       + ("depends on the learned weights" if ok else "does not depend on what the model learned"),
            "passed": ok, "note": note}


def table_lines(result: dict) -> list[str]:
    """The cascade as a small text table, then the verdict."""
    lines = [f"sanity check (Adebayo et al. 2018, cascading model randomisation) of {result['method']} at "
             f"{result['layer']}, {result['images']} image(s):",
             f"  {'randomised down to':<28} {'Spearman rho':>12}  {'blank':>6}"]
    for r in result["rows"]:
        lines.append(f"  {r['randomised']:<28} {r['spearman']:>12.3f}  {r['blank_share']:>6.0%}")
    lines.append("  verdict: " + result["verdict"])
    if result["note"]:
        lines.append("  note: " + result["note"])
    return lines
