"""`write_report(run_dir)`: report.html for a training run, one self-contained file.

It holds the model summary, a training batch as the model saw it (augmented), the loss and accuracy curves,
the confusion matrix and per-class metrics, the misclassified validation images with the highest loss and
their class activation maps (method auto, at the layer `explainer.layer_choices` picks once for the model: on
validation images for a flatten head; a blank map labelled and drawn signed), each method's mean deletion and
insertion scores at its own chosen layer against a random order (a declined method: its measured reason), the
first-layer filters (matches only beyond chance) and sample feature maps.
Every picture is a PNG embedded as base64 and the style is inline: the file opens from disk in any browser,
with no server, no script and nothing fetched. It is built from the run directory (model.json, metrics.csv,
model.safetensors) and the run's data, reloaded as `cnnkit.evaluate` reloads it (same split seed and
validation fraction), so the validation images are the ones the run held out.

>>> import cnnkit, tempfile
>>> run = cnnkit.train('digits', epochs=1, out=tempfile.mkdtemp() + '/run', quiet=True)['run_dir']
>>> write_report(run).name
'report.html'
"""
from __future__ import annotations

import base64
import csv
import html
from datetime import datetime
from pathlib import Path

import torch

from .._io import atomic_write_text
from ..errors import CnnkitError

REPORT = "report.html"
N_WORST = 8  # worst-classified (misclassified, highest loss first) validation images shown
N_FAITH = 32  # validation images whose maps get deletion and insertion scores (a seeded sample)
N_BATCH = 32  # images of the "training batch as the model saw it" panel
N_FEATURE_CHANNELS = 16  # channels per stage in the sample feature maps

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1f3a5f;color:#fff;padding:22px 36px}
header h1{margin:0 0 6px;font-size:26px}header p{margin:0;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:18px 28px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:16px 22px;margin:18px 0}
h2{font-size:19px;margin:4px 0 12px;color:#1f3a5f}h3{font-size:15px;margin:14px 0 6px}
.facts{display:flex;flex-wrap:wrap;gap:12px}.fact{background:#eef2f8;border-radius:6px;padding:8px 14px;min-width:120px}
.fact b{display:block;font-size:20px;color:#1f3a5f}.fact span{font-size:12px;color:#556}
img{max-width:100%;height:auto;display:block;margin:8px auto}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:4px 10px;text-align:right;border-bottom:1px solid #e3e6ea}
th{background:#eef2f8}td:first-child,th:first-child{text-align:left}
.bar{display:inline-block;height:9px;background:#4a7cc0;border-radius:2px;vertical-align:middle}td.left{text-align:left}
pre{font-size:11.5px;white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f8fa;padding:10px;border-radius:6px}
details{max-width:100%}table{max-width:100%}.wide{overflow-x:auto;max-width:100%}
.blank{color:#c00000;font-weight:600}
.note{color:#556;font-size:13px}footer{color:#778;font-size:12px;text-align:center;margin:20px}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _fig(fig, alt: str) -> str:
    from .plots import png_bytes

    return _img(png_bytes(fig), alt)


def read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r.get("epoch")]


def _per_class_table(rep: dict) -> str:
    rows = ["<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th></th><th>support</th></tr>"]
    for c, m in rep["per_class"].items():
        bar = f'<span class="bar" style="width:{int(round(100 * m["f1"]))}px"></span>'
        rows.append(f"<tr><td>{html.escape(c)}</td><td>{m['precision']:.4f}</td><td>{m['recall']:.4f}</td>"
                    f"<td>{m['f1']:.4f}</td><td class='left'>{bar}</td><td>{m['support']:,}</td></tr>")
    for avg in ("macro", "weighted"):
        m = rep[avg]
        rows.append(f"<tr><th>{avg} average</th><th>{m['precision']:.4f}</th><th>{m['recall']:.4f}</th>"
                    f"<th>{m['f1']:.4f}</th><th></th><th>{rep['n']:,}</th></tr>")
    return "".join(rows) + "</table>"


def _worst(tm, val, probs: torch.Tensor, n: int, cams: bool = True,
           choice=None) -> tuple[list[dict], list[dict], dict | None]:
    """The n misclassified validation images with the highest loss (fewer, or none, when fewer are wrong), with
    the class activation map (`attribution.attribute`, method auto) for the predicted and the true class
    (None without `cams`: a model with no feature maps, or a declined method); and the blank counts of those
    maps. `choice`: the `attribution.LayerChoice` whose method and layer both maps use (None: the last stage)."""
    from .attribution import attribute

    y = val.y
    loss = -torch.log(probs[torch.arange(len(y)), y].clamp_min(1e-12))
    wrong = tm.decide(probs) != y
    order = torch.argsort(loss, descending=True, stable=True)
    idx = [i for i in order.tolist() if wrong[i]][:n]
    if not idx:
        return [], [], None
    images = val.get(torch.tensor(idx))
    x = tm.prepare(images)
    pred = tm.decide(probs[idx]).tolist()
    true = y[idx].tolist()
    at = {"method": choice.method, "layer": choice.layer, "head": choice.head} if choice is not None else {}
    a_pred = attribute(tm.model, x, pred, classes=tm.classes, **at) if cams else None
    a_true = attribute(tm.model, x, true, layer=a_pred.layer, method=a_pred.method, head=a_pred.head,
                       classes=tm.classes) if cams else None
    items, rows = [], []
    for k, i in enumerate(idx):
        p, t = pred[k], true[k]
        row = {"index": i, "true": tm.classes[t], "pred": tm.classes[p], "p_pred": round(float(probs[i, p]), 4),
               "p_true": round(float(probs[i, t]), 4), "loss": round(float(loss[i]), 4),
               "path": val.paths[i] if val.paths else None}
        if cams:
            row.update(blank_pred=a_pred.blank[k], blank_true=a_true.blank[k])
        rows.append(row)
        items.append({**row, "image": images[k].numpy(),
                      **({f"{w}_{key}": v for key, a in (("pred", a_pred), ("true", a_true))
                          for w, v in (("cam", a.cam[k].numpy()), ("signed", a.signed[k].numpy()),
                                       ("blank", a.blank[k]))} if cams else {"cam_pred": None, "cam_true": None})})
    blanks = {"method": a_pred.method, "label": a_pred.label, "layer": a_pred.layer,
              "pred": sum(a_pred.blank), "true": sum(a_true.blank), "n": len(idx)} if cams else None
    return items, rows, blanks


def _faithfulness_section(tm, val, choices: dict) -> tuple[str, dict | None]:
    """Mean deletion and insertion scores (Petsiuk et al. 2018) over a seeded sample of validation images, for
    each method's map of the predicted class, at the layer `choices` (`explainer.layer_choices`: the auto method
    first, then the others for a small model) gives it, and for a random order; a declined method gets its
    measured reason instead of scores."""
    from . import faithfulness as fa
    from .attribution import LABELS, attribute

    if not len(val):
        return "", None
    n = min(N_FAITH, len(val))
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:n].sort().values
    x = tm.prepare(val.get(idx))
    auto = next(iter(choices))
    rows, out, targets = [], {}, None
    for m, c in choices.items():
        if c.declined:
            out[m] = {"declined": True, "reason": c.reason, "layer": None}
            continue
        a = attribute(tm.model, x, targets, method=m, layer=c.layer, head=c.head, classes=tm.classes)
        targets = a.target  # the predicted class, for every method and the random order
        s = fa.deletion_insertion(tm.model, x, a.signed, a.target, steps=10).summary()
        out[m] = {**s, "blank": int(sum(a.blank)), "layer": c.layer}
    if targets is None:
        with torch.no_grad():
            targets = tm.model(x).argmax(1).tolist()
    r = fa.deletion_insertion(tm.model, x, None, targets, steps=10).summary()
    out["random"] = {**r, "blank": 0, "layer": None}
    for m, v in out.items():
        name = "random order" if m == "random" else LABELS[m] + (" (auto: shown in this report)" if m == auto else "")
        if v.get("declined"):
            rows.append(f"<tr><td>{html.escape(name)}</td><td>-</td><td class='left' colspan='3'>declined: "
                        f"{html.escape(v['reason'])}</td></tr>")
            continue
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(v['layer'] or '-')}</td>"
                    f"<td>{v['deletion']:.4f}</td><td>{v['insertion']:.4f}</td>"
                    f"<td>{v['blank'] if m != 'random' else '-'}</td></tr>")
    how = "".join(f"<li>{html.escape(c.reason)}</li>" for m, c in choices.items() if not c.declined)
    head = choices[auto].head
    doc = ("<section><h2>Are the maps faithful?</h2>"
           f'<p class="note">Deletion and insertion scores (Petsiuk et al. 2018, RISE) of each map of the predicted '
           f"class, averaged over {n} validation images (a seeded sample), each method at its own layer ({head} "
           f"head): the area under the class probability as the most important pixels are removed "
           f"(replaced by {fa.DELETION_BASELINE}; lower is better), or added to {fa.INSERTION_BASELINE} (higher is "
           "better), in 10 steps. A map that does not beat the random order says nothing about the model.</p>"
           "<div class='wide'><table><tr><th>map</th><th>layer</th><th>deletion ↓</th><th>insertion ↑</th>"
           "<th>blank maps</th></tr>" + "".join(rows) + "</table></div>"
           + (f'<p class="note">How each layer was chosen:</p><ul class="note">{how}</ul>' if how else "")
           + "</section>")
    return doc, {"method": auto, "images": n, "scores": out,
                 "layers": {m: {"layer": c.layer, "declined": c.declined, "reason": c.reason, "images": c.images}
                            for m, c in choices.items()}}


def _layer_choices(tm, ds, data, own: bool, macs: int) -> tuple[dict, object]:
    """Each CAM method's layer, chosen once (`explainer.layer_choices`, measured on validation images for a flatten
    head): the auto method first, the others too for a small model; and the choice the maps use (the auto method's,
    else the first method not declined; None when every one is)."""
    from .explainer import layer_choices

    part = ds.val if len(ds.val) else ds.train
    x = tm.prepare(part.get(torch.tensor([0])))
    compare = macs * N_FAITH * 40 * 4 < 2e11  # the other methods' scores only for a small model
    spec = data if isinstance(data, str) and not own else None  # None: the run's own split
    choices = layer_choices(tm, x, "auto", data=spec, compare=compare)
    return choices, next((c for c in choices.values() if not c.declined), None)


def _batch_section(tm, ds) -> str:
    """The first training batch of a seeded shuffle, augmented as the trainer augments (level and flips from
    model.json): what the model saw, not what the files hold."""
    from ..data.transforms import augment
    from . import plots

    train = tm.meta.get("train", {})
    tr = ds.train
    if not len(tr):
        return ""
    g = torch.Generator().manual_seed(int(train.get("seed", 0)))
    idx = torch.randperm(len(tr), generator=g)[:N_BATCH].sort().values
    level = str(train.get("augment") or "none")
    flips = bool(train.get("flips"))
    x = augment(tr.get(idx), level, flips=flips, generator=g)
    labels = [tm.classes[int(c)] for c in tr.y[idx]]
    how = ("no augmentation" if level == "none" else
           f"augmentation '{level}' (random shifts{', horizontal flips' if flips else ''}), drawn afresh here")
    png = plots.batch_png(x.numpy(), labels, title=f"{len(idx)} training images as the model saw them: "
                                                    f"{how}, at {tm.size[0]}×{tm.size[1]}, before normalisation")
    return ("<section><h2>A training batch as the model saw it</h2>" + _img(png, "a training batch, augmented")
            + "</section>")


def _decision_section(tm, run_dir: Path, ds, split: str, probs: torch.Tensor, tag: str) -> str:
    """Class balance, calibration (temperature, ECE, reliability diagram) and, for two classes, the operating point
    with its rates and 95% CIs, and the ROC and PR curves marked with it."""
    from ..decision import binary_report, calibration_error, decision_plots

    y = ds.split(split).y.numpy()
    counts = torch.bincount(ds.train.y.cpu(), minlength=len(tm.classes)).tolist()
    n = max(sum(counts), 1)
    positive = tm.positive if tm.positive is not None else (1 if len(tm.classes) == 2 else None)
    raw = torch.softmax(torch.log(probs.clamp_min(1e-38)) * tm.temperature, 1)
    balance = tm.meta.get("train", {}).get("balance", "none")
    out = ["<section><h2>Decision and calibration</h2>"]
    share = ", ".join(f"{html.escape(c)} {k / n:.1%}" for c, k in zip(tm.classes, counts))
    out.append(f'<p class="note">Training classes: {share} ({n:,} images); balance: {html.escape(str(balance))}.'
               + (f" Prevalence of {html.escape(tm.classes[positive])} in {split}: {float((y == positive).mean()):.1%}."
                  if positive is not None and len(y) else "") + "</p>")
    cal = tm.meta.get("calibration", {})
    out.append(f'<p class="note">Temperature {tm.temperature:.3g} ({html.escape(str(cal.get("method", "none")))}, '
               f'fitted on {html.escape(str(cal.get("fitted_on", "-")))}). Expected calibration error on {split}: '
               f"{calibration_error(raw.numpy(), y, positive):.4f} for the network, "
               f"{calibration_error(probs.numpy(), y, positive):.4f} after temperature scaling.</p>")
    plots_ = decision_plots(tm, run_dir, f"{split}{tag}", y, probs, raw, positive, ds.name, split)
    if positive is not None and 0 < (y == positive).sum() < len(y):
        b = binary_report(y, probs.numpy(), positive, tm.threshold if tm.positive is not None else 0.5)
        rule = (tm.meta.get("decision") or {}).get("rule", "argmax")
        out.append(f'<p class="note">Operating point: <b>{html.escape(tm.classes[positive])}</b> when its probability '
                   f"is at least {b['threshold']:.4g} ({html.escape(rule)}, chosen on the validation split).</p>")
        rows = "".join(f"<tr><td>{k}</td><td>{'-' if b[k] is None else f'{b[k]:.4f}'}</td><td>"
                       f"{'-' if not b['ci95'].get(k) else '{:.4f} – {:.4f}'.format(*b['ci95'][k])}</td></tr>"
                       for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy"))
        out.append(f"<table><tr><th>{split}</th><th>value</th><th>95% CI (bootstrap)</th></tr>{rows}</table>")
        out.append(f'<p class="note">ROC-AUC {b["roc_auc"]:.4f}, PR-AUC {b["pr_auc"]:.4f}.</p>')
        out.append(_img(Path(plots_["roc_pr_png"]).read_bytes(), "ROC and PR curves with the operating point"))
    out.append(_img(Path(plots_["reliability_png"]).read_bytes(), "reliability diagram"))
    out.append("</section>")
    return "".join(out)


def write_report(run_dir: str | Path, data=None, probs: dict | None = None) -> Path:
    """Build `report.html` in `run_dir` and return its path. `data`: a data spec, or an already loaded
    `ImageData` (what `cnnkit.train` has in hand), or None for the spec in model.json. `probs`: {split name:
    the run's calibrated probabilities of that split of `data`} already computed (training's calibration has
    the validation split's), so they are not predicted twice."""
    return Path(build_report(run_dir, data, probs)["report"])


def build_report(run_dir: str | Path, data=None, probs: dict | None = None) -> dict:
    """`write_report`, returning what the report found: its path, the split, accuracies, the worst images."""
    from ..run import Predictor, load_run_data
    from ..run.predictor import is_own_data
    from ..metrics import classification_report, plot_confusion_matrix
    from . import features as feat
    from . import plots
    from .attribution import attribute
    from .summary import format_summary, summarize

    run_dir = Path(run_dir)
    tm = Predictor.from_run(run_dir)
    meta = tm.meta
    own = not isinstance(data, str) or is_own_data(tm, data)  # None, or the ImageData training has in hand
    if data is None or isinstance(data, str):
        ds = load_run_data(tm, data)
    else:
        ds = data
        if ds.classes != tm.classes or ds.preprocess.size != tm.preprocess.size or \
                ds.preprocess.channels != tm.preprocess.channels:
            raise CnnkitError(f"the data ({ds.describe()}) does not match the run's model "
                              f"({len(tm.classes)} classes, {tm.channels}x{tm.size[0]}x{tm.size[1]})")
    name = meta["model"]["name"]
    split = "test" if "test" in ds.splits else "val"
    known = {k: v for k, v in (probs or {}).items() if k in ds.splits and len(v) == len(ds.split(k))}
    probs = known.get(split)
    if probs is None:
        probs = tm.probs_split(ds.split(split))
    rep = classification_report(ds.split(split).y.numpy(), probs.numpy(), tm.classes, top_k=5,
                                y_pred=tm.decide(probs).numpy())
    val_probs = probs if split == "val" else known.get("val")
    if val_probs is None:
        val_probs = tm.probs_split(ds.val)
    val_acc = float((tm.decide(val_probs) == ds.val.y).float().mean()) if len(ds.val) else float("nan")

    parts: list[str] = []
    # --- facts
    m = meta.get("metrics", {})
    facts = [(f"{rep['accuracy']:.4f}", f"{split} accuracy ({rep['n']:,} images)")]
    if split != "val":  # with no test split the two tiles would be one number twice
        facts.append((f"{val_acc:.4f}", f"validation accuracy ({len(ds.val):,} images)"))
    facts += [(str(m.get("best_epoch", "?")), f"best epoch of {len(read_history(run_dir)) or '?'}"),
             (f"{sum(p.numel() for p in tm.model.parameters()):,}", "parameters"),
             (f"{tm.channels}×{tm.size[0]}×{tm.size[1]}", "input"), (str(len(tm.classes)), "classes")]
    parts.append('<section><h2>Run</h2><div class="facts">' + "".join(
        f'<div class="fact"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>' for v, k in facts) + "</div>")
    train = meta.get("train", {})
    keys = ("epochs", "batch_size", "optimizer", "lr", "scheduler", "augment", "weight_decay", "label_smoothing",
            "seed")
    settings = ", ".join(f"{k} {train[k]}" for k in keys if k in train)
    pre = meta.get("pretrained")
    if isinstance(pre, dict):  # where the weights came from and what was adapted
        mult = train.get("lr_mult")
        mult = f"{mult:g}" if isinstance(mult, (int, float)) else "?"
        settings += (f". Fine-tuned from {pre.get('weights') or pre.get('file')} (ImageNet top-1 "
                     f"{pre.get('imagenet_top1', '?')}%): {train.get('freeze_epochs', '?')} epoch(s) head only, then "
                     f"every layer at lr/{mult} to lr, BatchNorm {train.get('bn', '?')}"
                     + "".join(f"; {n}" for n in pre.get("adapted", [])))
    parts.append(f'<p class="note">{html.escape(settings)}</p></section>')

    # --- model summary
    lines: list[str] = []
    s = summarize(tm.model, (tm.channels, *tm.size), name=name)
    format_summary(s, print_fn=lines.append)
    n_leaf = sum(1 for r in s.layers if r.leaf)
    parts.append(f"<section><h2>Model summary</h2><p class='note'>{s.total_params:,} parameters, "
                 f"{s.macs:,} multiply-adds per image.</p><details{' open' if n_leaf <= 40 else ''}>"
                 f"<summary>per-layer table ({n_leaf} layers)</summary><pre>{html.escape(chr(10).join(lines))}</pre>"
                 "</details></section>")

    # --- a training batch as the model saw it (augmented)
    parts.append(_batch_section(tm, ds))

    # --- curves
    history = read_history(run_dir)
    parts.append("<section><h2>Training curves</h2>")
    parts.append(_fig(plots.curves_figure(history), "loss and accuracy per epoch") if history
                 else '<p class="note">metrics.csv is missing: no curves.</p>')
    parts.append("</section>")

    # --- confusion matrix and per-class metrics
    # another data set's report and matrix sit beside the run's own, never over them
    tag = "" if own else "_" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in ds.name)
    cm_png = run_dir / f"confusion_matrix{tag}_{split}.png"
    plot_confusion_matrix(rep["confusion_matrix"], tm.classes, cm_png,
                          title=f"{name} on {ds.name} {split}: accuracy {rep['accuracy']:.4f}")
    parts.append(f"<section><h2>Confusion matrix and per-class metrics ({split}, {rep['n']:,} images)</h2>")
    parts.append(_img(cm_png.read_bytes(), "confusion matrix"))
    parts.append(_per_class_table(rep))
    extra = [f"{k} {v:.4f}" for k, v in rep.items() if k.startswith("top") or k == "roc_auc"]
    if extra:
        parts.append(f'<p class="note">{html.escape(", ".join(extra))}</p>')
    parts.append("</section>")

    parts.append(_decision_section(tm, run_dir, ds, split, probs, tag))

    # --- worst-classified validation images: misclassified ones only, highest loss first
    maps = feat.has_feature_maps(tm.model)  # the fully connected mlp has none: no maps, filters, feature maps
    choices, choice = _layer_choices(tm, ds, data, own, s.macs) if maps else ({}, None)
    items, worst_rows, blanks = _worst(tm, ds.val, val_probs, N_WORST, cams=choice is not None, choice=choice)
    n_wrong = int((tm.decide(val_probs) != ds.val.y).sum()) if len(ds.val) else 0
    parts.append("<section><h2>Worst-classified validation images</h2>")
    if not len(ds.val):
        parts.append('<p class="note">no validation images.</p>')
    elif not items:
        parts.append(f'<p class="note">None: every one of the {len(ds.val):,} validation images is classified '
                     "correctly, so there is no misclassified image to show.</p>")
    else:
        intro = (f"The {len(items)} misclassified validation images with the highest loss (of {n_wrong:,} "
                 f"misclassified out of {len(ds.val):,}).")
        if blanks:
            intro += (f" Middle: {blanks['label']} at {html.escape(blanks['layer'])} for the class the model chose "
                      "(what it took as evidence); right: for the true class. "
                      + html.escape(choice.reason) + ".")
            nb = blanks["pred"] + blanks["true"]
            if nb:
                intro += (f' <span class="blank">{nb} of the {2 * blanks["n"]} maps are blank (no positive '
                          "evidence): drawn as their signed map (red raises, blue lowers the score) and stamped "
                          "BLANK.</span>")
        elif maps:  # every method measured was declined: no map drawn, the reason said
            intro += " No class activation maps: " + html.escape(next(iter(choices.values())).reason) + "."
        else:
            intro += f" {html.escape(name)} has no convolution, so no feature maps and no class activation maps."
        parts.append(f'<p class="note">{intro}</p>')
        parts.append(_img(plots.worst_png(items, label=blanks["label"] if blanks else "Grad-CAM"),
                          "worst-classified validation images (misclassified)" + (" with their maps" * maps)))
    parts.append("</section>")
    faith = None
    if maps:
        doc, faith = _faithfulness_section(tm, ds.val, choices)
        parts.append(doc)

    # --- filters and sample feature maps (the validation image the model is surest about, correctly)
    if not maps:
        parts.append(f"<section><h2>What the layers see</h2><p class='note'>{html.escape(name)} is fully connected: "
                     "every hidden unit weighs every pixel; with no convolution there are no filters, feature maps "
                     "or receptive fields to show.</p>")
    else:
        conv = feat.first_conv(tm.model)
        conv_name = next(n for n, mod in tm.model.named_modules() if mod is conv)
        w = feat.learned_filters(tm.model)
        kernels = feat.handmade_kernels()
        parts.append("<section><h2>What the layers see</h2><h3>First-layer filters</h3>")
        matches = feat.match_kernels(w, kernels)
        verdict = feat.filters_verdict(matches, feat.filter_structure(w), trained=True)
        fig = plots.filters_figure(w, kernels, matches, layer=f"{name}, {conv_name}", verdict=verdict)
        parts.append(f'<p class="note">{html.escape(verdict)}.</p>')
        parts.append(_fig(fig, "first-layer filters and the hand-made kernels"))
        if len(ds.val):
            yv = ds.val.y
            conf = val_probs[torch.arange(len(yv)), yv]
            i = int(torch.argmax(conf))
            img = ds.val.get(torch.tensor([i]))[0].numpy()
            x = tm.prepare(torch.from_numpy(img)[None])
            at = {"method": choice.method, "layer": choice.layer, "head": choice.head} if choice is not None else {}
            a = attribute(tm.model, x, int(yv[i]), classes=tm.classes, **at)
            parts.append(f"<h3>Sample feature maps: a validation '{html.escape(tm.classes[int(yv[i])])}' "
                         f"(p {float(conf[i]):.3f})</h3>")
            title = (f"{a.label} at {a.layer} for '{tm.classes[int(yv[i])]}'" + (f"\n{a.reasons[0]}" if a.blank[0] else ""))
            parts.append(_fig(plots.gradcam_figure(img, a.cam[0].numpy(), title=title, signed=a.signed[0].numpy(),
                                                   blank=a.blank[0], label=a.label), f"{a.label} of the sample image"))
            for layer, act in feat.stage_maps(tm.model, x).items():
                order = feat.rank_channels(act[0])
                parts.append(_fig(plots.feature_map_grid(act[0].numpy(), order, img, layer=layer,
                                                         max_channels=N_FEATURE_CHANNELS), f"feature maps of {layer}"))
    parts.append("</section>")

    title = f"{name} on {ds.name}"
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
           f'content="width=device-width, initial-scale=1"><title>{html.escape(title)} — cnnkit report</title>'
           f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>run {html.escape(str(run_dir))}"
           f" · trained {html.escape(str(meta.get('created', '?')))} · data {html.escape(str(ds.spec))}</p></header>"
           f"<main>{''.join(parts)}</main><footer>cnnkit report, {datetime.now().isoformat(timespec='seconds')}"
           f" · {html.escape(versions)}</footer></body></html>\n")
    path = atomic_write_text(run_dir / (REPORT if own else f"report{tag}.html"), doc)
    return {"report": str(path), "run_dir": str(run_dir), "model": name, "data": ds.spec, "split": split,
            "accuracy": rep["accuracy"], "val_accuracy": round(val_acc, 4), "confusion_matrix_png": str(cm_png),
            "worst": worst_rows, "faithfulness": faith, "bytes": path.stat().st_size}
