"""Exported models describe themselves (issue 11): 0–255 pixels in, class names and preprocessing in the file.

The oracle is the eager network fed `Preprocess.normalize`: an ONNX consumer with onnxruntime and PIL alone,
TorchScript with its extra file, and `OnnxModel` must all give its numbers.
"""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit import export
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.export import RUN_FILES, OnnxModel, check_out, export_model
from cnnkit.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

LABELS = {0: "tshirt", 1: "trouser", 7: "sneaker"}  # three Fashion-MNIST classes, told apart easily
CLASSES = list(LABELS.values())

# What a consumer writes with the file in hand and nothing of cnnkit's; run in a fresh interpreter where
# importing cnnkit or torch fails, so the test proves they are not needed.
CONSUMER = r"""
import json, sys
sys.modules["cnnkit"] = sys.modules["torch"] = None
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

model_path, *images = sys.argv[1:]
sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
meta = sess.get_modelmeta().custom_metadata_map
classes, pre = json.loads(meta["cnnkit.classes"]), json.loads(meta["cnnkit.preprocess"])
h, w = pre["size"]
batch = []
for f in images:
    im = Image.open(f).convert("L" if pre["channels"] == 1 else "RGB")
    a = np.asarray(ImageOps.fit(im, (w, h), method=Image.Resampling.BILINEAR), dtype=np.float32)
    batch.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
logits = sess.run(["logits"], {"pixels": np.stack(batch)})[0]
p = np.exp(logits - logits.max(1, keepdims=True))
print(json.dumps({"classes": classes, "input": meta["cnnkit.input"], "probs": (p / p.sum(1, keepdims=True)).tolist()}))
"""


def consume(model_path, images) -> dict:
    out = subprocess.run([sys.executable, "-c", CONSUMER, str(model_path), *map(str, images)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def eager_probs(model, pre, files) -> torch.Tensor:
    x = torch.from_numpy(np.stack([pre.load(f) for f in files]))
    with torch.no_grad():
        return torch.softmax(model(pre.normalize(x)), 1)


@pytest.fixture(scope="module")
def fmnist3(fmnist_small):
    """Train and test images (uint8 N×1×28×28) and labels 0..2 of three classes."""
    xtr, ytr, xte, yte = fmnist_small
    remap = {k: i for i, k in enumerate(LABELS)}
    tr, te = np.isin(ytr, list(LABELS)), np.isin(yte, list(LABELS))
    return (torch.from_numpy(xtr[tr][:, None].copy()), torch.tensor([remap[int(v)] for v in ytr[tr]]),
            xte[te], [remap[int(v)] for v in yte[te]])


@pytest.fixture(scope="module")
def gray(fmnist3, tmp_path_factory):
    """A SimpleCNN trained briefly on three real Fashion-MNIST classes, exported once to ONNX and TorchScript."""
    xtr, ytr, _, _ = fmnist3
    torch.manual_seed(0)
    pre = Preprocess(1, (28, 28), (0.286,), (0.353,))  # Fashion-MNIST's statistics: normalisation matters
    model = cnnkit.create_model("simplecnn", num_classes=3, in_channels=1, input_size=(28, 28))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(0, 40 * 32, 32):
        j = torch.arange(i, i + 32) % len(xtr)
        loss = torch.nn.functional.cross_entropy(model(pre.normalize(xtr[j])), ytr[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    d = tmp_path_factory.mktemp("gray")
    export_model(model, pre, d / "m.onnx", "onnx", classes=CLASSES)
    export_model(model, pre, d / "m.pt", "torchscript", classes=CLASSES)
    return model, pre, d


def test_onnx_consumer_without_cnnkit_matches_eager_on_real_images(gray, fmnist3, tmp_path):
    model, pre, d = gray
    _, _, xte, yte = fmnist3
    files = []
    for k in range(24):
        files.append(tmp_path / f"{k}.png")
        Image.fromarray(xte[k]).save(files[-1])
    got = consume(d / "m.onnx", files)
    assert got["classes"] == CLASSES and got["input"].startswith("float32 N×1×28×28 grayscale pixels 0-255")
    want = eager_probs(model, pre, files)
    np.testing.assert_allclose(np.array(got["probs"]), want.numpy(), atol=1e-5, rtol=0)
    # The numbers are those of a working classifier, not of an untrained or unnormalised one.
    assert (want.argmax(1).numpy() == np.array(yte[:24])).mean() >= 0.8


def test_onnx_consumer_resizes_and_crops_an_rgb_photo_like_cnnkit(tmp_path):
    from skimage.data import chelsea  # 451×300 RGB: the resize and the centre crop both do something

    Image.fromarray(chelsea()).save(tmp_path / "cat.png")
    torch.manual_seed(1)
    model = cnnkit.create_model("simplecnn_bn", num_classes=4, in_channels=3, input_size=(32, 48)).eval()
    pre = Preprocess(3, (32, 48), IMAGENET_MEAN, IMAGENET_STD)
    export_model(model, pre, tmp_path / "m.onnx", "onnx", classes=["a", "b", "c", "d"])
    got = consume(tmp_path / "m.onnx", [tmp_path / "cat.png"])
    want = eager_probs(model, pre, [tmp_path / "cat.png"])
    np.testing.assert_allclose(np.array(got["probs"]), want.numpy(), atol=1e-5, rtol=0)
    assert got["input"].startswith("float32 N×3×32×48 RGB pixels 0-255")


def test_torchscript_carries_metadata_and_equals_eager(gray, fmnist3):
    model, pre, d = gray
    extra = {"cnnkit.json": ""}
    loaded = torch.jit.load(str(d / "m.pt"), _extra_files=extra)
    meta = json.loads(extra["cnnkit.json"])
    assert meta["classes"] == CLASSES and Preprocess.from_dict(meta["preprocess"]) == pre
    assert meta["version"] == cnnkit.__version__ and "0-255" in meta["input"]
    x = torch.from_numpy(fmnist3[2][:16, None].copy())  # uint8 pixels, fed as 0–255 floats
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.float()), model(pre.normalize(x)), atol=1e-5, rtol=0)


def test_onnx_model_reads_classes_and_preprocess_back(gray, fmnist3):
    model, pre, d = gray
    om = OnnxModel(d / "m.onnx")
    assert om.classes == CLASSES and om.preprocess == pre
    x = torch.from_numpy(fmnist3[2][:5, None].copy())
    with torch.no_grad():
        want = model(pre.normalize(x))
    torch.testing.assert_close(om.logits(x), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(om.logits(x.double()), want, atol=1e-5, rtol=0)  # floats 0–255 too
    with pytest.raises(CnnkitError, match=r"takes N×1×28×28 pixels 0-255, got \(5, 1, 32, 32\)"):
        om.logits(torch.zeros(5, 1, 32, 32, dtype=torch.uint8))


def _edit_metadata(src, dst, **changes):
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(changes)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: v for k, v in props.items() if v is not None})
    onnx.save(proto, str(dst))


@pytest.mark.parametrize("changes,message", [
    ({"cnnkit.classes": None}, "has no cnnkit.classes metadata"),
    ({"cnnkit.preprocess": "{not json"}, "not valid JSON"),
    ({"cnnkit.classes": "[]"}, "non-empty JSON list of strings"),
    ({"cnnkit.preprocess": json.dumps({"channels": 1, "size": [28, 28], "mean": [0.5]})}, "lacks 'std'"),
    ({"cnnkit.preprocess": json.dumps({"channels": 1, "size": [32, 32], "mean": [0.5], "std": [0.2]})},
     "does not match its metadata"),
    ({"cnnkit.classes": json.dumps(["a", "b"])}, "does not match its metadata"),
])
def test_malformed_metadata_is_one_error_line(gray, tmp_path, changes, message):
    _edit_metadata(gray[2] / "m.onnx", tmp_path / "bad.onnx", **changes)
    with pytest.raises(CnnkitError, match=message) as e:
        OnnxModel(tmp_path / "bad.onnx")
    assert "\n" not in str(e.value) and "re-export" in str(e.value) and "bad.onnx" in str(e.value)


def test_a_non_onnx_or_missing_file_is_one_error_line(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"this is not a protobuf")
    with pytest.raises(CnnkitError, match="x.onnx is not a loadable ONNX model") as e:
        OnnxModel(tmp_path / "x.onnx")
    assert "\n" not in str(e.value)
    with pytest.raises(CnnkitError, match="no such ONNX file"):
        OnnxModel(tmp_path / "missing.onnx")


@pytest.fixture()
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    for name in RUN_FILES:
        (d / name).write_text("original")
    return d


@pytest.mark.parametrize("name", RUN_FILES)
def test_out_never_replaces_a_runs_own_files(run_dir, name):
    with pytest.raises(CnnkitError, match=f"run's own {name}.*pick another --out"):
        check_out(run_dir / "sub" / ".." / name, "onnx")


def test_out_refusals_in_export_model_and_the_cli(run_dir, tmp_path, capsys):
    (tmp_path / "link.onnx").symlink_to(run_dir / "model.safetensors")
    with pytest.raises(CnnkitError, match="run's own model.safetensors"):
        check_out(tmp_path / "link.onnx", "onnx")
    with pytest.raises(CnnkitError, match=r"does not end in \.onnx"):
        check_out(tmp_path / "m.pt", "onnx")
    with pytest.raises(CnnkitError, match=r"does not end in \.pt or \.ts"):
        check_out(tmp_path / "m.onnx", "torchscript")
    with pytest.raises(CnnkitError, match="is a directory"):
        check_out(run_dir, "onnx")
    assert check_out(run_dir / "model.onnx", "onnx") == run_dir / "model.onnx"  # the default is fine
    assert check_out(tmp_path / "M.TS", "torchscript") == tmp_path / "M.TS"
    model = cnnkit.create_model("simplecnn", num_classes=3, in_channels=1, input_size=(28, 28))
    with pytest.raises(CnnkitError, match="run's own model.json"):
        export_model(model, Preprocess(1, (28, 28), (0.5,), (0.25,)), run_dir / "model.json", "torchscript",
                     classes=CLASSES)
    assert main(["export", str(run_dir), "--out", str(run_dir / "train_state.pt"), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_state.pt" in err and "would overwrite a file of the run" in err
    assert all((run_dir / n).read_text() == "original" for n in RUN_FILES)


def test_a_failed_check_keeps_nothing_and_leaves_an_older_file(tmp_path, monkeypatch):
    model = cnnkit.create_model("simplecnn", num_classes=3, in_channels=1, input_size=(28, 28))
    pre = Preprocess(1, (28, 28), (0.5,), (0.25,))
    (tmp_path / "old.pt").write_text("older export")
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference passes: the check must refuse
    for out in ("new.pt", "old.pt"):
        with pytest.raises(CnnkitError, match="differs from the eager model.*not kept"):
            export_model(model, pre, tmp_path / out, "torchscript", classes=CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"]  # no new file, no temporary left
    assert (tmp_path / "old.pt").read_text() == "older export"


def test_class_names_must_match_the_outputs(tmp_path):
    model = cnnkit.create_model("simplecnn", num_classes=3, in_channels=1, input_size=(28, 28))
    with pytest.raises(CnnkitError, match=r"gives \(3,\) outputs per image but 2 class names"):
        export_model(model, Preprocess(1, (28, 28), (0.5,), (0.25,)), tmp_path / "m.pt", "torchscript",
                     classes=["a", "b"])
    assert not (tmp_path / "m.pt").exists()
