"""`summarize(model, input_shape)`: the per-layer table — shapes, parameters, multiply-adds, receptive fields.

Like torchinfo's summary, plus the receptive field of each layer's output. One forward pass of a single
zero image in eval mode, with hooks on every module and a `ReceptiveFieldMode` around it.
Multiply-adds (MACs) count the weight multiplications of convolutions and linear layers, as papers quote
them (ResNet-50: 4.1 G at 224×224); BatchNorm, activations and pooling are not counted. The result is a
plain dataclass; `format_summary` renders it (Keras' summary with an injectable printer).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ..errors import InputSizeError
from .receptive_field import RF, ReceptiveFieldMode


@dataclass
class LayerInfo:
    name: str
    type: str
    depth: int
    leaf: bool
    output_shape: list[int]
    params: int  # all parameters of the module (and its children)
    trainable_params: int
    macs: int  # of this call (children included), for one image
    receptive_field: int | None  # size in input pixels (max over H and W)
    rf_jump: float | None = None
    rf_start: float | None = None


@dataclass
class Summary:
    model: str
    input: list[int]
    layers: list[LayerInfo]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    activation_bytes: int  # outputs of every leaf layer for one image, float32: what backward keeps
    param_bytes: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def layer(self, name: str) -> LayerInfo:
        """The last call of the named layer (a module may run more than once)."""
        for info in reversed(self.layers):
            if info.name == name:
                return info
        raise KeyError(name)


def _shape(o) -> list[int]:
    if isinstance(o, torch.Tensor):
        return list(o.shape[1:])
    if isinstance(o, (tuple, list)) and o and isinstance(o[0], torch.Tensor):
        return list(o[0].shape[1:])
    return []


def _leaf_macs(module: nn.Module, out) -> int:
    if not isinstance(out, torch.Tensor):
        return 0
    per_image = out[0].numel()
    if isinstance(module, nn.modules.conv._ConvNd):
        return per_image * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def summarize(model: nn.Module, input_shape: Sequence[int], *, name: str | None = None) -> Summary:
    """Run one C×H×W zero image through `model` and describe every layer.

    >>> from cnnkit import create_model
    >>> s = summarize(create_model('simplecnn'), (3, 32, 32))
    >>> s.total_params, s.layer('conv1').params, s.layer('pool2').output_shape
    (545098, 896, [64, 8, 8])
    """
    input_shape = list(input_shape)
    if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
        raise InputSizeError(f"input shape must be C×H×W with positive sizes, got {input_shape}")
    name = name or getattr(model, "model_name", type(model).__name__)
    rows: list[LayerInfo] = []
    open_rows: list[LayerInfo] = []
    x = torch.zeros(1, *input_shape)
    names = {m: n for n, m in model.named_modules() if n}

    def pre_hook(module, _inputs):
        n_params = sum(p.numel() for p in module.parameters())
        n_train = sum(p.numel() for p in module.parameters() if p.requires_grad)
        row = LayerInfo(names[module], type(module).__name__, names[module].count(".") + 1,
                        not any(True for _ in module.children()), [], n_params, n_train, 0, None)
        rows.append(row)
        open_rows.append(row)

    def post_hook(module, _inputs, out):
        row = open_rows.pop()
        row.output_shape = _shape(out)
        if row.leaf:
            row.macs = _leaf_macs(module, out)
            for parent in open_rows:
                parent.macs += row.macs
        rf: RF | None = mode.rf_of(out)
        if rf is not None:
            row.receptive_field = max(rf.size)
            row.rf_jump = rf.jump[0]
            row.rf_start = rf.start[0]

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), ReceptiveFieldMode(x) as mode:
            model(x)
    except RuntimeError as e:  # torch's own size errors, said in our words
        if "too small" in str(e) or "size" in str(e).lower():
            raise InputSizeError(
                f"input {'x'.join(map(str, input_shape))} is too small for {name} ({str(e).splitlines()[0]}); "
                "use a larger --input or a model with the small-input stem"
            ) from None
        raise
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    leaf_rows = [r for r in rows if r.leaf]
    return Summary(
        model=name,
        input=input_shape,
        layers=rows,
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        macs=sum(r.macs for r in leaf_rows),
        activation_bytes=sum(math.prod(r.output_shape) for r in leaf_rows if r.output_shape) * 4,
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
    )


def compare_fc(input_shape: Sequence[int], neurons: int, first_conv: LayerInfo | None) -> dict:
    """The lesson's comparison: a fully connected layer from the whole image to `neurons` units, against the
    first convolution (whose weights are shared across every position)."""
    inputs = math.prod(input_shape)
    fc = inputs * neurons + neurons
    out = {"input_values": inputs, "neurons": neurons, "fc_params": fc}
    if first_conv is not None:
        out.update(conv_name=first_conv.name, conv_params=first_conv.params,
                   ratio=fc / first_conv.params if first_conv.params else None)
    return out


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def format_summary(s: Summary, *, depth: int | None = None, print_fn: Callable[[str], None] = print) -> None:
    """Print the table. `depth` limits the rows to modules at most that deep (None: every leaf layer).

    Containers are shown when depth is given; their parameter and MAC figures include their children.
    """
    rows = [r for r in s.layers if (r.leaf and (depth is None or r.depth <= depth)) or (depth is not None and r.depth == depth)]
    header = ("Layer", "Type", "Output shape", "Params", "Trainable", "MACs", "RF", "Jump", "Start")
    table = [header]
    for r in rows:
        rf = "-" if r.receptive_field is None else str(r.receptive_field)
        jump = "-" if r.rf_jump is None else f"{r.rf_jump:g}"
        start = "-" if r.rf_start is None else f"{r.rf_start:g}"
        table.append(("  " * (r.depth - 1) + r.name, r.type, "[" + ", ".join(map(str, r.output_shape)) + "]",
                      f"{r.params:,}", f"{r.trainable_params:,}", f"{r.macs:,}", rf, jump, start))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", ">"]
    line = "  ".join("-" * w for w in widths)
    print_fn(f"{s.model}  input {'x'.join(map(str, s.input))}")
    print_fn(line)
    for i, row in enumerate(table):
        print_fn("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip())
        if i == 0:
            print_fn(line)
    print_fn(line)
    print_fn(f"Total params:          {s.total_params:,}")
    print_fn(f"Trainable params:      {s.trainable_params:,}")
    print_fn(f"Non-trainable params:  {s.non_trainable_params:,}")
    print_fn(f"Multiply-adds (MACs):  {s.macs:,} ({_human(s.macs)})")
    print_fn(f"Parameter memory:      {_human(s.param_bytes, 'B')}")
    print_fn(f"Activation memory:     {_human(s.activation_bytes, 'B')} per image (float32 outputs of every layer)")
    print_fn("RF: receptive field of one output unit on the input, in pixels (largest over all paths); "
             "Jump: input pixels between neighbouring units; Start: centre of the first unit's field.")
