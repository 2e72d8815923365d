"""Export a trained network for serving: ONNX (dynamic batch) or TorchScript, self-describing, checked against eager.

The exported graph is `nn.Sequential(preprocess.module(), model)`: it takes float32 N×C×H×W pixels in 0–255
and does the mean/std normalisation itself, so a consumer with onnxruntime and PIL alone resizes the image
(`ImageOps.fit`, bilinear), feeds the pixels and gets the logits cnnkit's own Predictor gets. What the consumer
needs besides the graph travels in the file:
- ONNX: `metadata_props` (onnxruntime: `session.get_modelmeta().custom_metadata_map`) with `cnnkit.classes`
  (JSON list), `cnnkit.preprocess` (JSON of `Preprocess.to_dict()`), `cnnkit.input` (one line for humans)
  and `cnnkit.version`;
- TorchScript: the extra file `cnnkit.json`, `{"classes", "preprocess", "input", "version"}`
  (`torch.jit.load(path, _extra_files={"cnnkit.json": ""})`).

Every export is verified before it is kept: the exported file and the eager model run the same random 0–255
batches (two batch sizes) and must agree to 1e-4; otherwise nothing is written (an older file stays as it was).
`OnnxModel` reads such a file back: `OnnxModel(path).logits(uint8_batch)`.
"""
from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ._io import atomic_write
from .errors import CnnkitError
from .preprocess import Preprocess

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}
TOLERANCE = 1e-4
EXTRA_FILE = "cnnkit.json"  # TorchScript's metadata file name
# A run directory's own files (one that holds model.json is a run): an export must never replace them.
from .run.format import META, RUN_FILES  # noqa: E402  (a run's own files: never an export's --out)
_REEXPORT = "re-export it with this cnnkit (cnnkit export RUN_DIR --format onnx)"


def describe_input(pre: Preprocess) -> str:
    """The one-line description stored as `cnnkit.input`."""
    (h, w), c = pre.size, pre.channels
    colour = "grayscale" if c == 1 else "RGB"
    fw, fh = pre.fit_size()
    resize = {"fit": f"resize to cover {fh}×{fw} keeping the aspect ratio, centre-crop to {h}×{w} "
                     f"(PIL ImageOps.fit, bilinear{', then the centre crop' if (fh, fw) != (h, w) else ''})"}[pre.resize]
    return (f"float32 N×{c}×{h}×{w} {colour} pixels 0-255: {resize}; EXIF orientation applied, transparency on "
            f"white, JPEGs larger than needed decoded at a reduced scale (PIL Image.draft to at least the target "
            f"size) as cnnkit does; the mean/std normalisation is inside the model")


def metadata(pre: Preprocess, classes: Sequence[str], temperature: float = 1.0, decision: dict | None = None) -> dict:
    """What an exported file carries besides the graph (as Python values; ONNX stores each as a string):
    `temperature` (already inside the graph: its outputs are the calibrated logits) and, for a two-class run with
    an operating point, `decision` ({positive, threshold, rule}: the positive class when softmax ≥ threshold)."""
    from ._version import __version__

    out = {"classes": list(classes), "preprocess": pre.to_dict(), "input": describe_input(pre),
           "version": __version__, "temperature": float(temperature)}
    if decision:
        out["decision"] = dict(decision)
    return out


class Temperature(nn.Module):
    """logits / T: the run's calibration, inside the exported graph."""

    def __init__(self, temperature: float):
        super().__init__()
        self.register_buffer("inv", torch.tensor(1.0 / float(temperature), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.inv


def read_metadata(meta: Mapping[str, str], where: str) -> tuple[list[str], Preprocess]:
    """ONNX `custom_metadata_map` → (classes, preprocess); missing or malformed → one CnnkitError line."""
    try:
        classes = json.loads(meta["cnnkit.classes"])
        pre_dict = json.loads(meta["cnnkit.preprocess"])
    except KeyError as e:
        raise CnnkitError(f"{where} has no {e.args[0]} metadata (not exported by this cnnkit); {_REEXPORT}") from None
    except (TypeError, ValueError) as e:
        raise CnnkitError(f"{where}: its cnnkit metadata is not valid JSON ({e}); {_REEXPORT}") from None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise CnnkitError(f"{where}: cnnkit.classes must be a non-empty JSON list of strings; {_REEXPORT}")
    try:
        pre = Preprocess.from_dict(pre_dict, where="cnnkit.preprocess")
    except CnnkitError as e:
        raise CnnkitError(f"{where}: {e}; {_REEXPORT}") from None
    return classes, pre


def check_out(out: str | Path, fmt: str) -> Path:
    """Refuse an output path that would replace a run's own files, or whose suffix does not fit `fmt`."""
    if fmt not in FORMATS:
        raise CnnkitError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    real = out.resolve()  # a symlink or '..' must not sneak past the check below
    if real.name in RUN_FILES and (real.parent / META).is_file():
        raise CnnkitError(f"--out {out} is the run's own {real.name} in {real.parent}; pick another --out")
    if real.is_dir():
        raise CnnkitError(f"--out {out} is a directory; pick a file name such as {out / ('model' + SUFFIXES[fmt][0])}")
    if out.suffix.lower() not in SUFFIXES[fmt]:
        raise CnnkitError(f"--out {out} does not end in {' or '.join(SUFFIXES[fmt])} as --format {fmt} files do; "
                          f"pick another --out")
    return out


def _pixels(pre: Preprocess, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, pre.channels, *pre.size, generator=g) * 255.0


def export_model(model: nn.Module, preprocess: Preprocess, path: str | Path, fmt: str, *,
                 classes: Sequence[str], temperature: float = 1.0, decision: dict | None = None) -> dict:
    """Export `preprocess.module()` + `model` to `path` (ONNX or TorchScript), verified against eager.

    `model` is the bare network (normalised input, as trained); it is copied, not moved or switched to eval.
    Returns {'path', 'format', 'max_abs_diff', 'input', 'classes'}.
    """
    path = check_out(path, fmt)
    if not isinstance(preprocess, Preprocess):
        raise CnnkitError(f"preprocess must be a cnnkit Preprocess, got {type(preprocess).__name__}")
    classes = list(classes)
    parts = [preprocess.module(), copy.deepcopy(model)] + ([Temperature(temperature)] if temperature != 1.0 else [])
    net = nn.Sequential(*parts).cpu().eval()
    batches = [_pixels(preprocess, 2, 0), _pixels(preprocess, 3, 1)]  # two sizes: the batch axis is dynamic
    with torch.no_grad():
        refs = [net(x) for x in batches]
    if refs[0].ndim != 2 or refs[0].shape[1] != len(classes):
        raise CnnkitError(f"the model gives {tuple(refs[0].shape[1:])} outputs per image but {len(classes)} class "
                          f"names were given; pass one name per output")
    if not all(isinstance(c, str) for c in classes):
        raise CnnkitError(f"class names must be strings, got {classes[:5]}")
    meta = metadata(preprocess, classes, temperature, decision)
    diffs: list[float] = []

    def verify(outs) -> None:
        diffs.append(max(float(np.abs(np.asarray(o) - r.numpy()).max()) for o, r in zip(outs, refs)))
        if not diffs[-1] <= TOLERANCE:  # raising inside atomic_write's callback: the file is never written
            raise CnnkitError(f"the {fmt} export differs from the eager model by {diffs[-1]:.2e} "
                              f"(> {TOLERANCE}); not kept")

    def write(tmp: str) -> None:
        if fmt == "onnx":
            _write_onnx(net, batches[0], tmp, meta)
            session = onnx_session(tmp)
            verify([session.run(None, {"pixels": x.numpy()})[0] for x in batches])
        else:
            extra = {EXTRA_FILE: ""}
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TorchScript's deprecation notices and shape-check TracerWarnings
                traced = torch.jit.trace(net, batches[0], check_trace=False)
                # into memory, then to the file with Python's own write: torch.jit.save writing to a path aborts
                # the whole process (SIGABRT, no exception) when the disk is full
                buf = io.BytesIO()
                torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(meta)})
                with open(tmp, "wb") as f:
                    f.write(buf.getbuffer())
                del buf
                loaded = torch.jit.load(tmp, _extra_files=extra)
            if json.loads(extra[EXTRA_FILE]) != meta:
                raise CnnkitError(f"{path}: the saved {EXTRA_FILE} did not read back as written; not kept")
            with torch.no_grad():
                verify([loaded(x) for x in batches])

    atomic_write(path, write)
    return {"path": str(path), "format": fmt, "max_abs_diff": diffs[-1], "input": meta["input"],
            "classes": classes}


def _write_onnx(net: nn.Module, x: torch.Tensor, tmp: str, meta: dict) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["pixels"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
        program.save(tmp)
    proto = onnx.load(tmp)
    # Strings only in ONNX metadata: the lists and objects as JSON, the rest as they are.
    onnx.helper.set_model_props(proto, {f"cnnkit.{k}": v if isinstance(v, str) else json.dumps(v)
                                        for k, v in meta.items()})
    onnx.save(proto, tmp)


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for `path`; an unreadable file is one CnnkitError line."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise CnnkitError(f"{path}: no such ONNX file; export one with cnnkit export RUN_DIR --format onnx")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CnnkitError(f"{path} is not a loadable ONNX model ({first}); {_REEXPORT}") from None


class _Exported:
    """What an exported ONNX file carries (classes, preprocessing, temperature, decision), read from its metadata,
    and the input check both runtimes share. Subclasses set `path` and call `_read(props, in_shape, out_shape)`."""

    path: Path

    def _read(self, props: Mapping[str, str], in_shape, out_shape) -> None:
        self.classes, self.preprocess = read_metadata(props, str(self.path))
        try:  # files exported before calibration carried neither: T = 1, argmax
            self.temperature = float(props.get("cnnkit.temperature", 1.0))
            self.decision = json.loads(props["cnnkit.decision"]) if "cnnkit.decision" in props else None
        except (TypeError, ValueError) as e:
            raise CnnkitError(f"{self.path}: its cnnkit.temperature/decision metadata is malformed ({e}); "
                              f"{_REEXPORT}") from None
        self._want = (self.preprocess.channels, *self.preprocess.size)
        # Static dimensions in the graph must agree with the metadata, or one of them was edited.
        if any(isinstance(d, int) and d != w for d, w in zip(in_shape[1:], self._want)) or \
                (len(out_shape) == 2 and isinstance(out_shape[1], int) and out_shape[1] != len(self.classes)):
            raise CnnkitError(f"{self.path}: the graph's input {in_shape} / output {out_shape} does not match its "
                              f"metadata ({list(self._want)}, {len(self.classes)} classes); {_REEXPORT}")

    def _array(self, x: torch.Tensor) -> np.ndarray:
        """N×C×H×W uint8 or float pixels 0–255 → the contiguous float32 array the graph takes."""
        if not torch.is_tensor(x) or x.ndim != 4 or tuple(x.shape[1:]) != self._want:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise CnnkitError(f"{self.path} takes N×{'×'.join(map(str, self._want))} pixels 0-255, got {shape}")
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise CnnkitError(f"{self.path} takes uint8 or float pixels 0-255, got {x.dtype}")
        if x.dtype not in (torch.uint8, torch.float32):  # float16/bfloat16/float64: NumPy lacks bfloat16
            x = x.float()
        if x.requires_grad or x.device.type != "cpu":
            x = x.detach().cpu()
        # one conversion, straight to float32 in NumPy (no torch thread pool woken; a float32 batch is shared)
        return x.numpy().astype(np.float32, copy=False, order="C")

    def __repr__(self) -> str:
        prec = f", {self.precision}" if hasattr(self, "precision") else ""
        return (f"{type(self).__name__}({str(self.path)!r}, {len(self.classes)} classes, "
                f"{describe_input(self.preprocess)}{prec})")


class OnnxModel(_Exported):
    """An exported ONNX file, run by onnxruntime, with the classes and preprocessing it carries.

    `logits(x)` takes N×C×H×W pixels, uint8 or float in 0–255 (what `preprocess.load` gives, stacked).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.session = onnx_session(self.path, threads)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        self._read(self.session.get_modelmeta().custom_metadata_map, inp.shape, out.shape)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: self._array(x)})[0])


def import_openvino():
    """The `openvino` module, imported only when its engine is used; missing → one CnnkitError line."""
    try:
        import openvino
    except ImportError:
        raise CnnkitError("--engine openvino needs OpenVINO, which is not installed: pip install openvino "
                          "(or pip install 'cnnkit[export]')") from None
    return openvino


class OpenVinoModel(_Exported):
    """An exported ONNX file, compiled by OpenVINO for the CPU, with the classes and preprocessing it carries.

    `precision`: 'fp32' (`INFERENCE_PRECISION_HINT: f32`, PyTorch's numbers to ~1e-6), 'bf16' (bfloat16, OpenVINO's
    own default on CPUs with AVX-512 BF16 or AMX: 1.7-6x faster there, its probabilities within ~1e-2 of fp32's;
    tests/test_openvino.py measures it on a trained model) or 'auto' (bf16 exactly where the CPU has those units,
    `cnnkit._device.pick_precision`); `self.precision` is what it resolved to. As OpenVINO's performance hints guide
    advises: one image runs as one synchronous request of a `LATENCY`-compiled model; a batch is split across the
    parallel requests (`OPTIMAL_NUMBER_OF_INFER_REQUESTS`, one per CPU stream) of a `THROUGHPUT`-compiled model.
    Each is compiled on first use (~0.1-0.2 s).
    `logits(x)` takes N×C×H×W pixels, uint8 or float in 0–255.
    """

    HINTS = {"fp32": "f32", "bf16": "bf16"}  # cnnkit's precision names -> OpenVINO's INFERENCE_PRECISION_HINT

    def __init__(self, path: str | Path, precision: str = "fp32"):
        from ._device import pick_precision

        ov = import_openvino()
        self.precision, self.precision_why = pick_precision(precision, torch.device("cpu"))
        self.path = Path(path)
        if not self.path.is_file():
            raise CnnkitError(f"{path}: no such ONNX file; export one with cnnkit export RUN_DIR --format onnx")
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises its own exception types for unreadable models
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CnnkitError(f"{path} is not a loadable ONNX model ({first}); {_REEXPORT}") from None
        info = self._model.get_rt_info()  # the ONNX metadata_props, under 'framework'
        props = {k: v.astype(str) for k, v in info["framework"].items()} if "framework" in info else {}
        shape = lambda port: [d.get_length() if d.is_static else None for d in port.get_partial_shape()]  # noqa: E731
        self._read(props, shape(self._model.inputs[0]), shape(self._model.outputs[0]))
        self._request = None  # LATENCY: one synchronous request
        self._queue = None  # THROUGHPUT: parallel requests

    def _compile(self, hint: str):
        cfg = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self.HINTS[self.precision]}
        compiled = self._core.compile_model(self._model, "CPU", cfg)
        # what OpenVINO compiled, not what was asked (a CPU without bf16 units may run a bf16 hint in f32)
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # an openvino.Type: 'bf16', 'f32'
        self.precision = {"bf16": "bf16", "f32": "fp32"}.get(got, self.precision)
        return compiled

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        a = self._array(x)
        if len(a) == 1:
            if self._request is None:
                self._request = self._compile("LATENCY").create_infer_request()
            return torch.from_numpy(self._request.infer({0: a}, share_inputs=True)[0])
        if self._queue is None:
            import openvino as ov

            compiled = self._compile("THROUGHPUT")
            self._queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._out: dict = {}
            self._queue.set_callback(lambda req, i: self._out.__setitem__(i, req.get_output_tensor(0).data.copy()))
        parts = np.array_split(a, min(len(self._queue), len(a)))
        for i, part in enumerate(parts):
            self._queue.start_async({0: part}, i, share_inputs=True)
        self._queue.wait_all()
        return torch.from_numpy(np.concatenate([self._out.pop(i) for i in range(len(parts))]))
