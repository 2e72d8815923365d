"""`Predictor`: a model with its classes and preprocessing; the one way cnnkit turns images into predictions.

evaluate, predict, report, explain, export and (later) the server all go through it, so they give the same
probabilities for the same image. Its inputs: image files, scikit-image sample names, PIL images or uint8
arrays (each through `Preprocess.image`), or uint8 batches already at the model's size (a data split).
Inference is batched, and `predict_iter` keeps memory bounded however many images are given.

Engines (`engine=`): 'torch' (the eager model), 'onnx' (ONNX Runtime) and 'openvino' (OpenVINO) run the model
exported to RUN_DIR/model.onnx (made on first use, checked against eager to 1e-4; a Predictor without a run
directory exports into a private temporary folder). 'auto' measures: on the first batch of each size class (1,
2-3, 4-7, ... images) it runs every engine that is installed on that very batch, one engine after the other: one
warm-up call, then timed calls (at least one, at most `AUTO_ROUNDS`) while that engine's share of `AUTO_BUDGET_S`
lasts; it keeps the engine with the lowest median for that size class (`auto_choices` records what it measured,
and the probe's whole cost, `probe_s`; the answer is torch's output of the warm-up, so no image is lost). The first
use of ONNX or OpenVINO costs the export (seconds, once per run directory) and OpenVINO's compilation (~0.2 s).

Precision (`precision=`: 'auto', 'fp32', 'bf16'): the torch and onnx engines compute in float32, always ('bf16' asked
of them is one clear error); the openvino engine, alone or within 'auto', in bfloat16 where the CPU has AVX-512 BF16
or AMX (`pick_precision`: exactly where OpenVINO itself defaults to bf16; 1.7-6x faster there, the same top-1 class
and probabilities within ~1e-2 of fp32's on a trained model, tests/test_openvino.py) and in float32 elsewhere;
'fp32' keeps it at float32 (PyTorch's numbers to ~1e-6). `Predictor.precision` says what its predictions used.

>>> import cnnkit, tempfile
>>> run = cnnkit.train('digits', epochs=1, out=tempfile.mkdtemp() + '/run', quiet=True, report=False)['run_dir']
>>> p = Predictor.from_run(run)
>>> p.classes[:3], p.preprocess.size
(['0', '1', '2'], (8, 8))
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .._device import PRECISIONS, pick_device, pick_precision
from ..errors import CnnkitError, UnknownNameError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from . import format as fmt

DEFAULT_IMG_SIZE = 224  # an untrained registry model sees images at this size unless told
ENGINES = ("torch", "onnx", "openvino", "auto")  # the --engine choices
AUTO_ROUNDS = 5  # --engine auto: at most this many timed calls per engine (after one warm-up call), ...
AUTO_BUDGET_S = 0.3  # ...while the engine's share of this budget lasts (one timed call at least)


class Predictor:
    """`model` (eval mode, no normalisation inside), `preprocess`, `classes`; `meta` and `run_dir` for a run;
    `engine`: 'torch', 'onnx', 'openvino' or 'auto'; `precision`: 'auto', 'fp32' or 'bf16', the openvino engine's
    (torch and onnx compute in fp32; the module docstring says what each does)."""

    def __init__(self, model: torch.nn.Module, preprocess: Preprocess, classes: Sequence[str], *, name: str,
                 device: str | torch.device = "cpu", trained: bool = True, meta: dict | None = None,
                 run_dir: str | Path | None = None, source: str | None = None, engine: str = "torch",
                 precision: str = "auto"):
        if engine not in ENGINES:
            raise CnnkitError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
        self._set_precision(engine, precision)
        self.device = pick_device(str(device)) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.preprocess, self.classes, self.name = preprocess, list(classes), name
        self.trained, self.meta = trained, meta or {}
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.source = source or (str(run_dir) if run_dir is not None else name)
        self.engine = engine
        # calibration and the operating point (model.json's 'calibration' and 'decision'; cnnkit.decision)
        self.temperature = float(self.meta.get("calibration", {}).get("temperature", 1.0))
        decision = self.meta.get("decision") or {}
        self.positive: int | None = self.classes.index(decision["positive"]) \
            if decision.get("positive") in self.classes and len(self.classes) == 2 else None
        self.threshold = float(decision.get("threshold", 0.5))
        self.tta_flips = bool(self.meta.get("train", {}).get("flips", False))
        self._exported: dict = {}  # engine -> its OnnxModel / OpenVinoModel, made on first use
        self._tmp = None  # where a Predictor without a run directory exports its ONNX file
        self.auto_choices: dict[int, dict] = {}  # --engine auto: size class -> {'engine', 'ms': {engine: median}}
        if engine in ("onnx", "openvino"):
            self._engine_model(engine)  # exported (and compiled) now: a failure is a clear error at load time

    def _set_precision(self, engine: str, precision: str) -> None:
        """`precision_asked`; `openvino_precision` (and `precision_why`): what the openvino engine computes in."""
        if precision not in PRECISIONS:
            raise CnnkitError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "bf16" and engine in ("torch", "onnx"):
            raise CnnkitError(f"--precision bf16 is for --engine openvino or auto; the {engine} engine computes in "
                              "fp32 (leave --precision out, or use --engine openvino)")
        self.precision_asked = precision
        # OpenVINO runs on the CPU whatever `device` is: its precision is chosen for the CPU
        self.openvino_precision, self.precision_why = pick_precision(precision, torch.device("cpu"))

    def _slot(self, engine: str) -> str:
        """The key of `engine`'s exported model in `_exported`: OpenVINO's compiled model is per precision."""
        return f"openvino-{self.openvino_precision}" if engine == "openvino" else engine

    def _engine_precision(self, engine: str) -> str:
        if engine != "openvino":
            return "fp32"
        compiled = self._exported.get(self._slot(engine))  # what OpenVINO reports it compiled, once it has
        return compiled.precision if compiled is not None else self.openvino_precision

    @property
    def precision(self) -> str | None:
        """What this Predictor's predictions are computed in: 'fp32' or 'bf16' ('torch' and 'onnx': fp32; 'openvino':
        its resolved precision; 'auto': that of the engine(s) it chose, e.g. 'bf16', or 'bf16+fp32' where size
        classes chose differently; None before its first batch)."""
        if self.engine != "auto":
            return self._engine_precision(self.engine)
        used = sorted({c["precision"] for c in self.auto_choices.values()})
        return "+".join(used) if used else None

    @property
    def _onnx(self):
        """The exported model the 'onnx' or 'openvino' engine runs (None for 'torch' and 'auto')."""
        return self._exported.get(self._slot(self.engine))

    # --- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str = "cpu", engine: str = "torch",
                 precision: str = "auto") -> "Predictor":
        """A run directory's best model (safetensors weights + validated model.json; no pickle)."""
        meta, model = fmt.load_run_model(run_dir)  # validated: model.json's schema, the weights' shapes and values
        return cls(model, Preprocess.from_dict(meta["preprocess"]), meta["classes"], name=meta["model"]["name"],
                   device=device, meta=meta, run_dir=run_dir, engine=engine, precision=precision)

    @classmethod
    def untrained(cls, name: str, *, img_size: int | None = None, num_classes: int | None = None,
                  engine: str = "torch", precision: str = "auto") -> "Predictor":
        """A registered model with random weights: 3 channels, ImageNet normalisation, `img_size`² input."""
        from ..models import create_model

        side = int(img_size or DEFAULT_IMG_SIZE)
        if side < 1:
            raise CnnkitError(f"--img-size must be positive, got {side}")
        n = int(num_classes or 1000)
        try:
            model = create_model(name, num_classes=n, in_channels=3, input_size=(side, side))
        except ValueError as e:
            raise CnnkitError(f"cannot build {name} for {side}x{side} images: {e}") from None
        return cls(model, Preprocess(3, (side, side), IMAGENET_MEAN, IMAGENET_STD), [str(i) for i in range(n)],
                   name=name, trained=False, engine=engine, precision=precision)

    @classmethod
    def pretrained(cls, name: str, *, pretrained: bool | str = True, weights: str | None = None,
                   download: bool = False, device: str = "cpu", engine: str = "torch",
                   precision: str = "auto") -> "Predictor":
        """A registered model with its ImageNet weights and their own preprocessing (resize, centre crop,
        mean/std) and class names: `Predictor.pretrained('mobilenet_v2').predict(['chelsea'])` → a cat."""
        from ..models import create_model

        model = create_model(name, pretrained=pretrained, weights=weights, download=download)
        info = model.pretrained_info
        if "crop" not in info:
            raise CnnkitError(f"{weights}: a {name} weight file of unknown preprocessing and classes; predict with "
                              "the run directory it came from instead")
        head = next((n for n in info["adapted"] if n.startswith("head ")), None)
        if head:  # a file fine-tuned for other classes: a random 1000-class head would predict noise
            raise CnnkitError(f"{weights}: its head was trained for other classes than ImageNet's 1000, which "
                              "this file does not name; predict with the run directory it came from")
        side = info["crop"]
        prep = Preprocess(3, (side, side), info["mean"], info["std"], crop=side / info["resize"])
        n = model.get_classifier().out_features
        classes = info.get("categories") or [str(i) for i in range(n)]
        return cls(model, prep, classes, name=name, device=device, meta={"pretrained": info},
                   source=f"{name} ({info['weights'] or info['file']})", engine=engine, precision=precision)

    @property
    def max_pixels(self) -> int | None:
        """The run's image-size limit (--max-pixels), used wherever it reads images."""
        return self.meta.get("train", {}).get("max_pixels")

    # kept for the callers that knew the old TrainedModel's attributes
    channels = property(lambda self: self.preprocess.channels)
    size = property(lambda self: self.preprocess.size)
    mean = property(lambda self: list(self.preprocess.mean))
    std = property(lambda self: list(self.preprocess.std))

    def _engine_model(self, engine: str):
        """The OnnxModel ('onnx') or OpenVinoModel ('openvino') of RUN_DIR/model.onnx, exported (and checked
        against eager) when missing or older than the weights; kept for the Predictor's life."""
        slot = self._slot(engine)
        if slot in self._exported:
            return self._exported[slot]
        from ..export import OnnxModel, OpenVinoModel, export_model, import_openvino

        load = OnnxModel if engine == "onnx" else lambda p: OpenVinoModel(p, precision=self.openvino_precision)
        if engine == "openvino":
            import_openvino()  # missing: its one line now, before any export
        if self.run_dir is None:  # an untrained or pretrained model: exported once into a private folder
            import tempfile

            if self._tmp is None:  # removed when no Predictor holds it any more (TemporaryDirectory's finalizer)
                self._tmp = tempfile.TemporaryDirectory(prefix="cnnkit-export-")
            onnx_path = Path(self._tmp.name) / "model.onnx"
            if not onnx_path.is_file():
                export_model(self.model, self.preprocess, onnx_path, "onnx", classes=self.classes,
                             **self.export_extras())
            self._exported[slot] = load(onnx_path)
            return self._exported[slot]
        onnx_path = self.run_dir / "model.onnx"
        newest = max((self.run_dir / f).stat().st_mtime for f in (fmt.WEIGHTS, fmt.META))  # calibration: model.json
        if onnx_path.is_file() and onnx_path.stat().st_mtime >= newest:
            try:
                found = load(onnx_path)
                if abs(found.temperature - self.temperature) < 1e-9:
                    self._exported[slot] = found
                    return found
            except CnnkitError:  # made by an older cnnkit (no metadata) or damaged: exported anew below
                pass
        export_model(self.model, self.preprocess, onnx_path, "onnx", classes=self.classes, **self.export_extras())
        self._exported[slot] = load(onnx_path)
        return self._exported[slot]

    def with_engine(self, engine: str, precision: str | None = None) -> "Predictor":
        """This Predictor on another engine, sharing its model and its exported ONNX file (exported once, each
        runtime compiled once per precision): `p.with_engine('openvino', 'fp32').probs(x)` equals `p.probs(x)` to
        ~1e-6. `precision` None: the one this Predictor was asked for ('auto' for torch and onnx)."""
        import copy

        if engine not in ENGINES:
            raise CnnkitError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
        if precision is None:
            precision = "auto" if engine in ("torch", "onnx") else self.precision_asked
        other = copy.copy(self)  # shares self._exported (a dict): what either exports or compiles, both use
        other._set_precision(engine, precision)
        other.engine, other.auto_choices = engine, {}
        if engine in ("onnx", "openvino"):
            other._engine_model(engine)
        return other

    def export_extras(self) -> dict:
        """What an exported file carries besides the network: the temperature (in the graph) and the decision."""
        return {"temperature": self.temperature, "decision": self.meta.get("decision")}

    # --- images in ----------------------------------------------------------------------------------------
    def image(self, item) -> np.ndarray:
        """A file path, a sample name, a PIL image or a uint8 array → uint8 C×H×W, as the model sees it."""
        if isinstance(item, (str, os.PathLike)):
            if Path(item).is_file():  # as the training cache decodes it (a large JPEG at a reduced scale)
                return self.preprocess.load(item, max_pixels=self.max_pixels)
            return self.preprocess.image(load_image(item))
        return self.preprocess.image(item)

    def image_bytes(self, data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
        """An image file's bytes (an upload, never written to disk) → uint8 C×H×W, decoded exactly as `image`
        decodes the same file from disk; the format found from the content. Raises BadImagesError naming `name`."""
        return self.preprocess.load(name, max_pixels=max_pixels or self.max_pixels, data=data)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W at the model's size → the normalised float batch on the model's device."""
        return self.preprocess.normalize(x.to(self.device))

    # --- predictions --------------------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W → float32 calibrated logits (the network's divided by the run's temperature) on the CPU."""
        if tuple(x.shape[1:]) != (self.preprocess.channels, *self.preprocess.size):
            raise CnnkitError(f"a batch of shape {tuple(x.shape)} does not match the model's input "
                              f"{self.preprocess.channels}x{self.preprocess.size[0]}x{self.preprocess.size[1]}")
        if self.engine == "torch":
            return self._torch_logits(x)
        if self.engine == "auto":
            return self._auto_logits(x)
        return self._exported[self._slot(self.engine)].logits(x)  # the exported graph divides by the temperature

    @torch.no_grad()
    def _torch_logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.prepare(x)).float().cpu()
        if not torch.isfinite(out).all():  # never a "nan" printed as a probability
            raise CnnkitError(f"{self.name} gave non-finite outputs (NaN or infinity) for this input; its weights or "
                              "preprocessing are damaged, or the input is far from what it was trained on")
        return out / self.temperature if self.temperature != 1.0 else out

    def _run(self, engine: str, x: torch.Tensor) -> torch.Tensor:
        return self._torch_logits(x) if engine == "torch" else self._exported[self._slot(engine)].logits(x)

    def _auto_logits(self, x: torch.Tensor) -> torch.Tensor:
        """--engine auto: the engine measured fastest for this batch's size class; measured here on first use."""
        size_class = len(x).bit_length()  # 1, 2-3, 4-7, 8-15, ...
        chosen = self.auto_choices.get(size_class)
        if chosen is not None:
            return self._run(chosen["engine"], x)
        import statistics
        import time

        from ..export import import_openvino

        engines, skipped = ["torch"], {}
        for engine in ("onnx", "openvino"):
            try:
                if engine == "openvino":
                    import_openvino()
                else:
                    import onnxruntime  # noqa: F401
                self._engine_model(engine)
                engines.append(engine)
            except (CnnkitError, ImportError) as e:  # not installed, or this model does not export: not a candidate
                skipped[engine] = str(e).splitlines()[0] if str(e) else type(e).__name__
        # One engine after the other, not interleaved: each runtime's worker threads spin for a while after a call
        # (ONNX Runtime's and OpenMP's spin-waits), which on a small CPU would slow whichever engine runs next.
        start, out, ms = time.perf_counter(), None, {}
        for engine in engines:
            first = self._run(engine, x)  # the warm-up call (OpenVINO compiles here); torch's output is the answer
            out = first if out is None else out
            times, t_engine = [], time.perf_counter()
            while len(times) < AUTO_ROUNDS and (not times or time.perf_counter() - t_engine < AUTO_BUDGET_S / len(engines)):
                t0 = time.perf_counter()
                self._run(engine, x)
                times.append(time.perf_counter() - t0)
            ms[engine] = statistics.median(times) * 1e3
        best = min(ms, key=ms.get)
        self.auto_choices[size_class] = {"engine": best, "precision": self._engine_precision(best), "batch": len(x),
                                         "ms": ms, "skipped": skipped, "probe_s": time.perf_counter() - start}
        return out

    def _softmax(self, z: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes. For ONNX Runtime's and OpenVINO's logits, NumPy's: torch's softmax runs its
        rows in parallel, waking its OpenMP team, which on a small CPU fights the runtime's still-spinning worker
        threads (a 64×10 softmax measured at 21 ms on 2 busy cores, as long as the network itself)."""
        engine = self.engine if self.engine != "auto" else \
            self.auto_choices.get(len(z).bit_length(), {}).get("engine", "torch")
        if engine == "torch" or len(z) == 1:
            return torch.softmax(z, 1)
        a = z.numpy()
        e = np.exp(a - a.max(1, keepdims=True))
        e /= e.sum(1, keepdims=True)
        return torch.from_numpy(e)

    def _probs(self, x: torch.Tensor, tta: bool) -> torch.Tensor:
        if not tta:
            return self._softmax(self.logits(x))
        from ..data.transforms import tta_views

        views = tta_views(x, flips=self.tta_flips)
        return torch.stack([self._softmax(self.logits(v)) for v in views]).mean(0)

    def probs(self, x: torch.Tensor, batch_size: int = 256, tta: bool = False) -> torch.Tensor:
        """Calibrated softmax probabilities for a uint8 batch of any length, `batch_size` images at a time.
        `tta`: averaged over test-time augmentation's views (`cnnkit.data.transforms.tta_views`)."""
        if 0 < len(x) <= batch_size:  # one batch: no copy into a new tensor
            return self._probs(x, tta)
        out = [self._probs(x[i:i + batch_size], tta) for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    def probs_split(self, split, batch_size: int = 256, tta: bool = False) -> torch.Tensor:
        """Probabilities for every image of a data split (`cnnkit.data.Split`), in its order, with progress."""
        from .._progress import progress

        out = []
        with progress(-(-len(split) // batch_size), "predicting" + (" (TTA)" if tta else ""), unit="batch") as bar:
            for x, _ in split.batches(batch_size):
                out.append(self._probs(x, tta))
                bar.update(1)
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """The predicted class of each row: for a two-class run with an operating point, the positive class when
        its probability reaches the threshold; otherwise the most probable class."""
        if self.positive is None:
            return probs.argmax(1)
        pos = probs[:, self.positive] >= self.threshold
        return torch.where(pos, self.positive, 1 - self.positive)

    def decision_text(self) -> str | None:
        """'Shirt when p ≥ 0.231 (sensitivity=0.95)', for two-class runs with an operating point."""
        rule = (self.meta.get("decision") or {}).get("rule", "argmax")
        if self.positive is None or rule == "argmax":  # argmax: the top class is the decision
            return None
        return f"{self.classes[self.positive]} when p >= {self.threshold:.4g}" + (f" ({rule})" if rule else "")

    def top(self, probs: torch.Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
        k = max(1, min(top_k, len(self.classes)))
        top = probs.topk(k, dim=1)
        return [[(self.classes[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
                for ps, ix in zip(top.values, top.indices)]

    def predict_proba(self, images: Iterable, tta: bool = False) -> torch.Tensor:
        arrays = [self.image(im) for im in images]
        return self.probs(torch.from_numpy(np.stack(arrays)), tta=tta) if arrays else torch.zeros(0, len(self.classes))

    def predict(self, images: Iterable, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Per image (path, sample name, PIL image or uint8 array), the top-k (class, probability) pairs."""
        return self.top(self.predict_proba(images), top_k)

    def predict_iter(self, images: Sequence, top_k: int = 1, batch_size: int = 64, on_error=None, tta: bool = False,
                     decisions: bool = False) -> Iterator[tuple]:
        """(input, top-k) for each input, `batch_size` images decoded at a time, so memory stays bounded.
        An unreadable file raises, or with `on_error(item, exc)` given, is reported and yields (item, None).
        `decisions`: (input, top-k, decided class) instead (`decide`: the operating point of a two-class run)."""
        from ..data.images import BadImagesError

        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            arrays, ok = [], []
            for item in chunk:
                try:
                    arrays.append(self.image(item))
                    ok.append(True)
                except BadImagesError as e:
                    if on_error is None:
                        raise
                    on_error(item, e)
                    ok.append(False)
            probs = self.probs(torch.from_numpy(np.stack(arrays)), tta=tta) if arrays else None
            tops = iter(self.top(probs, top_k) if arrays else [])
            decided = iter(self.decide(probs).tolist() if arrays else [])
            for item, good in zip(chunk, ok):
                top = next(tops) if good else None
                if decisions:
                    yield item, top, (self.classes[next(decided)] if good else None)
                else:
                    yield item, top


def load_predictor(source: str | Path, *, img_size: int | None = None, num_classes: int | None = None,
                   pretrained: bool | str = False, weights: str | None = None, download: bool = False,
                   untrained: bool = True, engine: str = "torch", precision: str = "auto") -> Predictor:
    """A run directory → its trained model; a registry name → with `pretrained`/`weights`, its ImageNet
    weights and their preprocessing and classes, else a fresh, untrained one (3 channels, ImageNet
    normalisation, `img_size`² input, `num_classes` default 1000). `engine`, `precision`: as `Predictor` takes them."""
    from ..models import list_models

    src = str(source)
    path = Path(src)
    if (pretrained or weights) and path.is_dir():
        raise CnnkitError(f"--pretrained/--weights go with a model name, not a run directory ({src} is one: "
                          "its own weights are used)")
    if path.is_dir():
        pred = Predictor.from_run(path, engine=engine, precision=precision)
        if img_size is not None and (img_size, img_size) != tuple(pred.size):
            raise CnnkitError(f"--img-size {img_size}: {src} is a trained run whose model takes "
                              f"{pred.size[0]}x{pred.size[1]} images; leave --img-size out")
        return pred
    if src in list_models() and (pretrained or weights):
        if img_size is not None or num_classes is not None:
            raise CnnkitError("--img-size and --num-classes are for an untrained model; pretrained weights come "
                              "with their own size and classes")
        return Predictor.pretrained(src, pretrained=pretrained or True, weights=weights, download=download,
                                    engine=engine, precision=precision)
    if src in list_models() and not untrained:
        raise CnnkitError(f"{src} is a model name: add --pretrained for its ImageNet weights (or --weights FILE), "
                          "or give a run directory that `cnnkit train` wrote")
    if src in list_models():
        return Predictor.untrained(src, img_size=img_size, num_classes=num_classes, engine=engine,
                                   precision=precision)
    if "/" in src or path.suffix or path.exists():
        raise CnnkitError(f"{src} is not a run directory (no such folder) nor a registered model; give the folder "
                          "`cnnkit train` wrote, or a model name from `cnnkit models`")
    raise UnknownNameError("model (or run directory)", src, list_models())


def load_image(spec: str | os.PathLike):
    """An image file (checked and decoded safely) or a scikit-image sample name → a PIL image."""
    from PIL import Image

    from ..data.images import open_image
    from ..data.samples import SAMPLES, load_sample

    s = str(spec)
    if Path(s).is_file():
        return open_image(s)
    if s in SAMPLES:
        return Image.fromarray(load_sample(s))
    if Path(s).exists() or os.sep in s or "/" in s or Path(s).suffix:
        return open_image(s)  # a missing or unreadable file: one line naming it
    raise UnknownNameError("sample image (or image file)", s, SAMPLES)


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """Files, folders (their images, recursively, sorted), globs and sample names → a list of inputs.
    A folder or glob that matches no image is one clear line."""
    from ..data.images import IMAGE_EXTENSIONS, list_images
    from ..data.samples import SAMPLES

    out: list[str] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            found = [str(f) for f in list_images(p)]
            if not found:
                raise CnnkitError(f"{spec} is a folder with no images ({', '.join(IMAGE_EXTENSIONS)}) in it")
            out += found
        elif p.is_file() or spec in SAMPLES:
            out.append(spec)
        elif glob.has_magic(spec):
            found = sorted(f for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            if not found:
                raise CnnkitError(f"{spec} matches no file")
            out += found
        else:
            out.append(spec)  # a missing file or an unknown sample name: named when it is read
    return out


def is_own_data(pred: Predictor, spec: str | None) -> bool:
    """Whether `spec` names the data the run was trained on (the same source, however the path is written)."""
    own = pred.meta.get("data", {}).get("spec")
    if spec is None:
        return True
    if not own:
        return False
    from ..data.sources import canonical_spec

    try:
        return canonical_spec(spec) == canonical_spec(own)
    except CnnkitError:
        return spec == own


def load_run_data(pred: Predictor, spec: str | None = None, *, mode: str = "auto", log=None):
    """The data a run was trained on, split exactly as then (its split.json), preprocessed as then; or, with
    `spec` naming other data, that data preprocessed as the run's model needs (its own splits)."""
    from ..data import load_data

    if pred.run_dir is None:
        raise CnnkitError("load_run_data needs a trained run")
    train_cfg = pred.meta.get("train", {})
    data_meta = pred.meta.get("data", {})
    own = is_own_data(pred, spec)
    if own and not data_meta.get("spec"):
        raise CnnkitError(f"{pred.run_dir}/model.json names no data set; pass one (--data SPEC)")
    # the spec model.json names is read only if this user's training recorded it (a run directory may come from
    # anywhere: it must not choose files to read); else the user names the data with --data
    use = fmt.check_saved_spec(data_meta["spec"], data_meta.get("spec_mac"), pred.run_dir / fmt.META) \
        if own and spec is None else spec
    manifest = fmt.read_split(pred.run_dir) if own else None
    common = dict(preprocess=pred.preprocess, mode=mode, log=log, max_pixels=pred.max_pixels,
                  seed=int(train_cfg.get("seed", 0)))
    if own and manifest is None:  # a run saved before split.json existed: its split re-derived as it was made
        ds = load_data(use, val_fraction=data_meta.get("val_fraction"),
                       on_bad_image=train_cfg.get("on_bad_image", "fail"), **common)
    else:
        ds = load_data(use, on_bad_image="fail" if own else "skip", manifest=manifest, **common)
    if ds.classes != pred.classes:
        raise CnnkitError(f"the data's classes {ds.classes[:5]} differ from the model's {pred.classes[:5]}")
    return ds
