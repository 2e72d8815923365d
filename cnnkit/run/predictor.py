"""`Predictor`: a model with its classes and preprocessing; the one way cnnkit turns images into predictions.

evaluate, predict, report, explain, export and (later) the server all go through it, so they give the same
probabilities for the same image. Its inputs: image files, scikit-image sample names, PIL images or uint8
arrays (each through `Preprocess.image`), or uint8 batches already at the model's size (a data split).
Inference is batched, and `predict_iter` keeps memory bounded however many images are given.

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

from .._device import pick_device
from ..errors import CnnkitError, UnknownNameError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from . import format as fmt

DEFAULT_IMG_SIZE = 224  # an untrained registry model sees images at this size unless told


class Predictor:
    """`model` (eval mode, no normalisation inside), `preprocess`, `classes`; `meta` and `run_dir` for a run."""

    def __init__(self, model: torch.nn.Module, preprocess: Preprocess, classes: Sequence[str], *, name: str,
                 device: str | torch.device = "cpu", trained: bool = True, meta: dict | None = None,
                 run_dir: str | Path | None = None, source: str | None = None, engine: str = "torch"):
        if engine not in ("torch", "onnx"):
            raise CnnkitError(f"--engine {engine!r} is not one of torch, onnx")
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
        self._onnx = self._onnx_model() if engine == "onnx" else None

    # --- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str = "cpu", engine: str = "torch") -> "Predictor":
        """A run directory's best model (safetensors weights + validated model.json; no pickle)."""
        meta, model = fmt.load_run_model(run_dir)  # validated: model.json's schema, the weights' shapes and values
        return cls(model, Preprocess.from_dict(meta["preprocess"]), meta["classes"], name=meta["model"]["name"],
                   device=device, meta=meta, run_dir=run_dir, engine=engine)

    @classmethod
    def untrained(cls, name: str, *, img_size: int | None = None, num_classes: int | None = None) -> "Predictor":
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
                   name=name, trained=False)

    @classmethod
    def pretrained(cls, name: str, *, pretrained: bool | str = True, weights: str | None = None,
                   download: bool = False, device: str = "cpu") -> "Predictor":
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
                   source=f"{name} ({info['weights'] or info['file']})")

    @property
    def max_pixels(self) -> int | None:
        """The run's image-size limit (--max-pixels), used wherever it reads images."""
        return self.meta.get("train", {}).get("max_pixels")

    # kept for the callers that knew the old TrainedModel's attributes
    channels = property(lambda self: self.preprocess.channels)
    size = property(lambda self: self.preprocess.size)
    mean = property(lambda self: list(self.preprocess.mean))
    std = property(lambda self: list(self.preprocess.std))

    def _onnx_model(self):
        """RUN_DIR/model.onnx, exported (and checked against eager) when missing or older than the weights."""
        from ..export import OnnxModel, export_model

        if self.run_dir is None:
            raise CnnkitError("--engine onnx needs a run directory")
        onnx_path = self.run_dir / "model.onnx"
        newest = max((self.run_dir / f).stat().st_mtime for f in (fmt.WEIGHTS, fmt.META))  # calibration: model.json
        if onnx_path.is_file() and onnx_path.stat().st_mtime >= newest:
            try:
                found = OnnxModel(onnx_path)
                if abs(found.temperature - self.temperature) < 1e-9:
                    return found
            except CnnkitError:  # made by an older cnnkit (no metadata) or damaged: exported anew below
                pass
        export_model(self.model, self.preprocess, onnx_path, "onnx", classes=self.classes, **self.export_extras())
        return OnnxModel(onnx_path)

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
    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W → float32 calibrated logits (the network's divided by the run's temperature) on the CPU."""
        if tuple(x.shape[1:]) != (self.preprocess.channels, *self.preprocess.size):
            raise CnnkitError(f"a batch of shape {tuple(x.shape)} does not match the model's input "
                              f"{self.preprocess.channels}x{self.preprocess.size[0]}x{self.preprocess.size[1]}")
        if self._onnx is not None:
            return self._onnx.logits(x)  # the exported graph divides by the temperature itself
        out = self.model(self.prepare(x)).float().cpu()
        if not torch.isfinite(out).all():  # never a "nan" printed as a probability
            raise CnnkitError(f"{self.name} gave non-finite outputs (NaN or infinity) for this input; its weights or "
                              "preprocessing are damaged, or the input is far from what it was trained on")
        return out / self.temperature if self.temperature != 1.0 else out

    def _probs(self, x: torch.Tensor, tta: bool) -> torch.Tensor:
        if not tta:
            return torch.softmax(self.logits(x), 1)
        from ..data.transforms import tta_views

        views = tta_views(x, flips=self.tta_flips)
        return torch.stack([torch.softmax(self.logits(v), 1) for v in views]).mean(0)

    def probs(self, x: torch.Tensor, batch_size: int = 256, tta: bool = False) -> torch.Tensor:
        """Calibrated softmax probabilities for a uint8 batch of any length, `batch_size` images at a time.
        `tta`: averaged over test-time augmentation's views (`cnnkit.data.transforms.tta_views`)."""
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
                   untrained: bool = True) -> Predictor:
    """A run directory → its trained model; a registry name → with `pretrained`/`weights`, its ImageNet
    weights and their preprocessing and classes, else a fresh, untrained one (3 channels, ImageNet
    normalisation, `img_size`² input, `num_classes` default 1000)."""
    from ..models import list_models

    src = str(source)
    path = Path(src)
    if (pretrained or weights) and path.is_dir():
        raise CnnkitError(f"--pretrained/--weights go with a model name, not a run directory ({src} is one: "
                          "its own weights are used)")
    if path.is_dir():
        pred = Predictor.from_run(path)
        if img_size is not None and (img_size, img_size) != tuple(pred.size):
            raise CnnkitError(f"--img-size {img_size}: {src} is a trained run whose model takes "
                              f"{pred.size[0]}x{pred.size[1]} images; leave --img-size out")
        return pred
    if src in list_models() and (pretrained or weights):
        if img_size is not None or num_classes is not None:
            raise CnnkitError("--img-size and --num-classes are for an untrained model; pretrained weights come "
                              "with their own size and classes")
        return Predictor.pretrained(src, pretrained=pretrained or True, weights=weights, download=download)
    if src in list_models() and not untrained:
        raise CnnkitError(f"{src} is a model name: add --pretrained for its ImageNet weights (or --weights FILE), "
                          "or give a run directory that `cnnkit train` wrote")
    if src in list_models():
        return Predictor.untrained(src, img_size=img_size, num_classes=num_classes)
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
