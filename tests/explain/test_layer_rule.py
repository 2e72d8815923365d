"""The layer rule (`attribution.choose_layers`) on real trained models: for a flatten head each method goes to the
stage where its maps beat a random order on validation images, or is declined with the measured reason; the
CLI shows the chosen layer and refuses a declined method in one line. Validation images only: Fashion-MNIST's
train file, never t10k."""
import json

import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.explain import faithfulness as fa
from cnnkit.run import load_run_data
from cnnkit.explain.attribution import METHODS, RULE_IMAGES, attribute, choose_layers
from idx_files import read_idx_gz, write_idx


@pytest.fixture(scope="module")
def fmnist_run(fmnist_dir, tmp_path_factory):
    """simplecnn trained by cnnkit.train on the first 4,000 Fashion-MNIST training images (2 epochs, its own
    validation split held out); t10k is a 100-image stub the loader needs and nothing here reads."""
    d = tmp_path_factory.mktemp("fmnist-4000")
    write_idx(d / "train-images-idx3-ubyte.gz", read_idx_gz(fmnist_dir / "train-images-idx3-ubyte.gz")[:4000], gz=True)
    write_idx(d / "train-labels-idx1-ubyte.gz", read_idx_gz(fmnist_dir / "train-labels-idx1-ubyte.gz")[:4000], gz=True)
    write_idx(d / "t10k-images-idx3-ubyte.gz", read_idx_gz(fmnist_dir / "t10k-images-idx3-ubyte.gz")[:100], gz=True)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", read_idx_gz(fmnist_dir / "t10k-labels-idx1-ubyte.gz")[:100], gz=True)
    r = cnnkit.train(f"fashion-mnist:{d}", model="simplecnn", epochs=2, out=str(d / "run"), quiet=True, report=False,
                     seed=0)
    assert r["val_acc"] > 0.7, r  # it learned (0.75 measured)
    tm = cnnkit.load_model(r["run_dir"])
    val = load_run_data(tm).val
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:RULE_IMAGES].sort().values
    return r["run_dir"], tm, tm.prepare(val.get(idx))


@pytest.mark.slow
def test_the_rule_on_a_flatten_head(fmnist_run):
    _, tm, xv = fmnist_run
    choices = choose_layers(tm.model, xv, METHODS)
    assert {m: c.head for m, c in choices.items()} == dict.fromkeys(METHODS, "spatial")
    for m, c in choices.items():
        assert c.images == RULE_IMAGES and list(c.stages) == ["pool1", "pool2"], m
        # every stage measured, the rule applied to those numbers
        ok = [s for s, v in c.stages.items() if v["beats_random"]]
        for s, v in c.stages.items():  # beating by 2 paired SEs implies beating the means
            if v["beats_random"]:
                assert v["deletion"] < c.random["deletion"] and v["insertion"] > c.random["insertion"], (m, s)
        if ok:
            assert c.layer == max(ok, key=lambda s: c.stages[s]["ins_minus_del"]) and not c.declined
            assert f"at {c.layer}: chosen on {RULE_IMAGES} validation images" in c.reason
        else:
            assert c.declined and c.layer is None and "declined for this model" in c.reason
            assert all(f"{s} {v['deletion']:.3f}/{v['insertion']:.3f}" in c.reason for s, v in c.stages.items())
    # the measured picture on this model (bench/explain_quality.py finds the same on 12,000 images): HiResCAM
    # and LayerCAM are faithful, best at the finer stage; Grad-CAM's averaged gradient deletes no better than a
    # random order at either stage, so it is declined
    assert choices["hirescam"].layer == "pool1" and choices["layercam"].layer in ("pool1", "pool2")
    h = choices["hirescam"].stages["pool1"]
    assert h["deletion"] < choices["hirescam"].random["deletion"] - 0.05
    assert h["insertion"] > choices["hirescam"].random["insertion"] + 0.1
    assert choices["gradcam"].declined
    # an independent check of the chosen layer: scored again by faithfulness.py directly, same numbers
    targets = tm.model(xv).argmax(1).tolist()
    a = attribute(tm.model, xv, targets, method="hirescam", layer="pool1")
    s = fa.deletion_insertion(tm.model, xv, a.signed, targets, steps=10, seed=0)
    assert float(s.deletion.mean()) == pytest.approx(h["deletion"], abs=1e-4)
    assert float(s.insertion.mean()) == pytest.approx(h["insertion"], abs=1e-4)


def test_a_global_pool_head_keeps_the_last_stage():
    model = cnnkit.create_model("resnet18", num_classes=4, in_channels=1, input_size=(28, 28)).eval()
    choices = choose_layers(model, torch.randn(3, 1, 28, 28), METHODS)
    assert {m: c.layer for m, c in choices.items()} == dict.fromkeys(METHODS, "layer4")
    assert all(c.images == 0 and "CAM (exact)" in c.reason for c in choices.values())


@pytest.mark.slow
def test_the_cli_shows_the_layer_and_declines(fmnist_run, tmp_path, capsys):
    from PIL import Image

    run_dir, tm, xv = fmnist_run
    img = tmp_path / "val0.png"
    val = load_run_data(tm).val
    Image.fromarray(val.get(torch.arange(1))[0, 0].numpy()).save(img)
    assert main(["explain", run_dir, str(img), "--out", str(tmp_path / "a"), "--json", "--compare",
                 "--no-faithfulness"]) == 0
    info = json.loads(capsys.readouterr().out)
    cam = info["attribution"]
    assert cam["method"] == "hirescam" and cam["layer"] == "pool1" == cam["layer_choice"]["layer"]
    assert cam["layer_choice"]["images"] == RULE_IMAGES and cam["layer_choice"]["rule"]
    assert "gradcam" in cam["declined"] and "declined for this model" in cam["declined"]["gradcam"]
    # text: the layer and how it was chosen
    assert main(["explain", run_dir, str(img), "--out", str(tmp_path / "b"), "--no-faithfulness"]) == 0
    text = capsys.readouterr().out
    assert "HiResCAM at pool1 (spatial head)" in text and "chosen on 64 validation images" in text
    # a declined method: one line, exit 2, nothing written
    assert main(["explain", run_dir, str(img), "--out", str(tmp_path / "c"), "--method", "gradcam"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Grad-CAM is declined for this model" in err[0] and "pool1" in err[0]
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
