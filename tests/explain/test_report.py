"""report.html: self-contained, right numbers, rebuilt by `cnnkit report`, and rendered by a real browser."""
import base64
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from browser import launch, watch
import torch
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.explain.report import build_report, write_report

pytestmark = pytest.mark.xdist_group("explain_run")  # one trained run per worker


def embedded_pngs(doc: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()
        out.append(im)
    return out


def test_report_is_self_contained_and_right(digits_run):
    info = build_report(digits_run)
    path = Path(info["report"])
    assert path == digits_run / "report.html" and path.stat().st_size == info["bytes"]
    doc = path.read_text(encoding="utf-8")
    # nothing outside the file: every src is an embedded PNG, no links, scripts or remote URLs
    srcs = re.findall(r'src="([^"]*)"', doc)
    assert len(srcs) == 9 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<link|<script|<iframe|url\(|https?://", doc, re.I)
    pngs = embedded_pngs(doc)
    assert len(pngs) == 9 and all(im.format == "PNG" and im.width >= 300 and im.height >= 150 for im in pngs)
    for section in ("Model summary", "Training curves", "Confusion matrix", "Worst-classified validation images",
                    "First-layer filters", "Sample feature maps", "Decision and calibration",
                    "A training batch as the model saw it", "Are the maps faithful?"):
        assert section in doc
    # the numbers are evaluate's (digits has no test split: val)
    ev = cnnkit.evaluate(digits_run, plot=False)
    assert info["split"] == ev["split"] == "val" and info["accuracy"] == ev["accuracy"]
    assert f"{ev['accuracy']:.4f}" in doc and "simplecnn" in doc and "conv1" in doc  # the summary table
    for c, m in ev["per_class"].items():
        assert f"<tr><td>{c}</td><td>{m['precision']:.4f}</td><td>{m['recall']:.4f}</td><td>{m['f1']:.4f}</td>" in doc
    # the worst images: the highest losses of the validation split, in order
    tm = cnnkit.load_model(digits_run)
    val = cnnkit.load_data("digits", img_size=16, seed=0).val
    with torch.no_grad():
        probs = torch.softmax(tm.model(tm.prepare(val.x)) / tm.temperature, 1)  # calibrated, as everywhere
    loss = -torch.log(probs[torch.arange(len(val.y)), val.y])
    wrong = probs.argmax(1) != val.y
    want = [i for i in torch.argsort(loss, descending=True).tolist() if wrong[i]][:8]  # misclassified only
    worst = info["worst"]
    assert len(want) >= 4 and [w["index"] for w in worst] == want
    assert [w["loss"] for w in worst] == pytest.approx(loss[want].tolist(), abs=1e-3)
    assert all(w["true"] != w["pred"] and w["p_pred"] > w["p_true"] for w in worst)
    assert all(w["blank_pred"] in (True, False) for w in worst)
    # one accuracy tile: with no test split, "val accuracy" and "validation accuracy" would be one number twice
    tiles = re.findall(r'<div class="fact"><b>([^<]*)</b><span>([^<]*)</span>', doc)
    assert sum("accuracy" in label for _, label in tiles) == 1
    # faithfulness, averaged: every method's maps beat a random order on both scores
    f = info["faithfulness"]
    assert f["method"] == "hirescam" and f["images"] == 32
    rnd = f["scores"]["random"]
    for m in ("gradcam", "hirescam", "gradcam++", "layercam"):
        assert f["scores"][m]["deletion"] < rnd["deletion"] and f["scores"][m]["insertion"] > rnd["insertion"], m
        assert f"{f['scores'][m]['deletion']:.4f}" in doc
    # the confusion-matrix image written beside it, as evaluate writes it
    assert Path(info["confusion_matrix_png"]).name == "confusion_matrix_val.png"


def test_each_method_at_its_own_layer_and_a_declined_one_says_why(digits_run, tmp_path, monkeypatch):
    """The layers come from explainer.layer_choices, asked once: every method is scored at its own layer (named
    in its row), a declined method gets its reason instead of scores, and the worst images' maps (both) and the
    sample map use the auto method's layer."""
    import shutil

    from cnnkit.explain import attribution, explainer

    run = Path(shutil.copytree(digits_run, tmp_path / "run"))
    asked, seen = [], []
    real = explainer.layer_choices

    def fake(sub, x, method="auto", data=None, compare=False):
        asked.append((method, x.shape[0], data, compare))
        out = real(sub, x, method, data, compare)
        seen.clear()  # its own measuring maps are not the report's
        out["hirescam"] = attribution.LayerChoice("hirescam", "pool1", "spatial", "HiResCAM at pool1: the test's", 64)
        out["layercam"] = attribution.LayerChoice("layercam", "pool2", "spatial", "LayerCAM at pool2: the test's", 64)
        out["gradcam"] = attribution.LayerChoice("gradcam", None, "spatial", "Grad-CAM is declined for this model: "
                                                 "at none of its stages (the test's)", 64)
        return out

    def spy(model, x, target=None, **kw):
        seen.append((kw.get("method"), kw.get("layer")))
        return real_attribute(model, x, target, **kw)

    real_attribute = attribution.attribute
    monkeypatch.setattr(explainer, "layer_choices", fake)
    monkeypatch.setattr(attribution, "attribute", spy)
    info = build_report(run)
    assert asked == [("auto", 1, None, True)]  # once, the auto method first, the others compared
    f = info["faithfulness"]
    assert f["method"] == "hirescam" and list(f["scores"]) == ["hirescam", "gradcam", "gradcam++", "layercam", "random"]
    assert f["scores"]["hirescam"]["layer"] == "pool1" and f["scores"]["layercam"]["layer"] == "pool2"
    why = "Grad-CAM is declined for this model: at none of its stages (the test's)"
    assert f["scores"]["gradcam"] == {"declined": True, "layer": None, "reason": why}
    assert f["layers"]["gradcam"]["declined"] is True and f["layers"]["hirescam"]["layer"] == "pool1"
    # the worst images (predicted and true class) and the sample map: the auto method at its chosen layer;
    # the faithfulness rows: each method at its own; the declined one never drawn
    assert seen[:2] == [("hirescam", "pool1")] * 2
    assert ("gradcam", None) not in seen and not any(m == "gradcam" for m, _ in seen)
    assert ("layercam", "pool2") in seen and ("hirescam", "pool1") in seen[2:]
    doc = Path(info["report"]).read_text(encoding="utf-8")
    assert "<td>HiResCAM (auto: shown in this report)</td><td>pool1</td>" in doc
    assert "<td>LayerCAM</td><td>pool2</td>" in doc
    assert "declined: Grad-CAM is declined for this model: at none of its stages (the test&#x27;s)" in doc
    assert "Middle: HiResCAM at pool1 for the class the model chose" in doc
    assert "HiResCAM at pool1: the test&#x27;s" in doc
    assert seen[-1] == ("hirescam", "pool1")  # the sample feature maps' map, drawn last


def test_worst_says_so_when_nothing_is_misclassified(digits_run):
    from cnnkit.explain.report import _worst

    tm = cnnkit.load_model(digits_run)
    val = cnnkit.load_data("digits", img_size=16, seed=0).val
    perfect = torch.nn.functional.one_hot(val.y, 10).float() * 0.9 + 0.01
    assert _worst(tm, val, perfect, 8) == ([], [], None)


def test_report_from_loaded_data_and_a_wrong_data_set(digits_run):
    ds = cnnkit.load_data("digits", img_size=16)
    assert write_report(digits_run, data=ds) == digits_run / "report.html"
    with pytest.raises(cnnkit.CnnkitError, match=r"the data \(digits: 10 classes, 1x8x8.*does not match the run's model \(10 classes, 1x16x16\)"):
        write_report(digits_run, data=cnnkit.load_data("digits"))


def test_cli_report(digits_run, capsys, tmp_path):
    (digits_run / "report.html").unlink(missing_ok=True)
    assert main(["report", str(digits_run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert Path(info["report"]).is_file() and info["model"] == "simplecnn" and len(info["worst"]) == 8
    assert main(["report", str(digits_run)]) == 0
    text = capsys.readouterr().out
    assert "val accuracy" in text and "report.html" in text
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err






def test_report_renders_in_headless_chromium(digits_run, chromium, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e '.[test]'")
    path = digits_run / "report.html"
    if not path.is_file():  # the other tests of this file (on this worker) usually built it already
        write_report(digits_run)
    path = path.resolve()
    problems, requests = [], []
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = launch(p, chromium, profile, 1280, 900)
        try:
            page = ctx.new_page()
            watch(page, problems)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri(), wait_until="load")
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            # nothing cut off at 1280 px: no element reaches past the viewport, none scrolls sideways
            too_wide = page.evaluate("""() => { const W = document.documentElement.clientWidth, out = [];
              for (const e of document.querySelectorAll('body *')) {
                const r = e.getBoundingClientRect();
                if (r.width > 0 && (r.right > W + 0.5 || r.left < -0.5)) out.push(e.tagName + ' ' + r.right);
                if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
                  out.push('scrolls: ' + e.tagName);
              }
              return [W, document.documentElement.scrollWidth, out]; }""")
            body = page.inner_text("body")
            height = page.evaluate("document.body.scrollHeight")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched from a network
    assert len(widths) == 9 and all(w >= 300 for w in widths)
    assert too_wide == [1280, 1280, []], too_wide
    assert "simplecnn on digits" in body and "Worst-classified validation images" in body
    assert "misclassified validation images with the highest loss" in body
    assert height > 3000  # the whole report laid out, not an empty page
    im = np.asarray(Image.open(shot).convert("RGB")).astype(np.uint32)
    packed = (im[..., 0] << 16) | (im[..., 1] << 8) | im[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    assert len(values) > 2000, f"only {len(values)} colours: a blank page?"
    assert counts.max() / packed.size < 0.6, f"{counts.max() / packed.size:.0%} of the page is one colour"


def test_the_report_command_lists_a_declined_method_and_scores_the_others(digits_run, tmp_path, monkeypatch,
                                                                           capsys):
    """`cnnkit report RUN` prints every scored method with its layer and names the declined ones in a line of
    their own (a declined method has no scores: it once crashed the summary line)."""
    import shutil

    from cnnkit.cli import main
    from cnnkit.explain import attribution, explainer

    run = Path(shutil.copytree(digits_run, tmp_path / "run"))
    real = explainer.layer_choices

    def fake(sub, x, method="auto", data=None, compare=False):
        out = real(sub, x, method, data, compare)
        out["gradcam"] = attribution.LayerChoice("gradcam", None, "spatial", "Grad-CAM is declined for this model: "
                                                 "at none of its stages (the test's)", 64)
        return out

    monkeypatch.setattr(explainer, "layer_choices", fake)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    maps = next(line for line in out.splitlines() if line.startswith("maps ("))
    assert "HiResCAM (shown) at " in maps and "Grad-CAM deletion" not in maps and "random order" in maps
    assert "declined for this model (no stage where their maps beat a random order; report.html gives the scores): "\
           "Grad-CAM" in out
