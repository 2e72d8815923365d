"""`lessons()`: the lessons' numbers, each computed from cnnkit's models, beside the figure the lesson gives.

A fully connected layer from a flattened 224×224×3 image to 1,024 hidden units against the first convolution
of the lessons' CNN, weight sharing (one 3×3×3 kernel at every position against a kernel per position), and
the real parameter counts of the lessons' two SimpleCNNs. Every count comes from a registered model
(`create_model`, `summarize`, `compare_fc`), none is typed in; where the lesson's figure differs, the note
says by how much and why. The models are built on PyTorch's meta device where only their sizes are needed
(the mlp at 224×224×3 would otherwise allocate 617 MB of weights).

>>> rows = {r.key: r for r in lessons()}
>>> rows['fc_weights'].value, rows['conv1_params'].value, rows['simplecnn_bn_params'].value
(154140672, 896, 102082)
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn

IMAGE = (3, 224, 224)  # the lessons' image: 224×224 RGB
CIFAR = (3, 32, 32)  # lesson 1's CIFAR-10 images
NOTE_WIDTH = 110  # the printed notes are wrapped at this width


@dataclass
class LessonRow:
    key: str  # a stable name for scripts
    quantity: str  # what is counted
    value: int | float  # cnnkit's count
    shown: str  # the count as printed
    lesson: str  # the lesson's figure, as the lesson gives it ("" where it gives none)
    agrees: bool | None  # whether the lesson's figure holds (None: no figure to check)
    note: str  # where and why they differ, or what the count is made of

    def to_dict(self) -> dict:
        return asdict(self)


def _build(name: str, shape=IMAGE, **kw) -> nn.Module:
    """A registered model for C×H×W inputs, on the meta device: parameters counted, never allocated."""
    from ..models import create_model

    with torch.device("meta"):
        return create_model(name, in_channels=shape[0], input_size=shape[1:], **kw)


def _params(model: nn.Module, kind: type | None = None) -> int:
    """All parameters of `model`, or those of its modules of one type."""
    if kind is None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for m in model.modules() if isinstance(m, kind) for p in m.parameters())


def lessons() -> list[LessonRow]:
    """The table's rows, computed now from the models."""
    from ..models import create_model
    from ..models.mlp import HIDDEN
    from .summary import compare_fc, summarize

    mlp = _build("mlp")
    inputs, fc_weights = mlp.fc1.in_features, mlp.fc1.weight.numel()
    bn_net = create_model("simplecnn_bn")  # lesson 2's 224×224 network; real weights: one forward pass below
    s = summarize(bn_net, IMAGE, name="simplecnn_bn")
    conv_info = next(r for r in s.layers if r.type == "Conv2d")  # the first convolution, 3→32, 3×3, padding 1
    conv = bn_net.get_submodule(conv_info.name)
    fc = compare_fc(IMAGE, HIDDEN, conv_info)  # fully connected layer (weights and biases) against it
    kernel = conv.weight[0].numel()  # one filter: in_channels × 3 × 3
    positions = math.prod(conv_info.output_shape[1:])
    cifar_net = _build("simplecnn", CIFAR)
    cifar_cnn, cifar_fc1 = _params(cifar_net), _params(cifar_net.fc1)
    cnn_224 = _build("simplecnn")
    cifar_mlp = _params(_build("mlp", CIFAR))
    ratio = fc_weights / conv_info.params
    n = f"{IMAGE[1]}×{IMAGE[2]}×{IMAGE[0]}"

    def row(key, quantity, value, lesson, agrees, note, shown=None) -> LessonRow:
        return LessonRow(key, quantity, value, shown or f"{value:,}", lesson, agrees, note)

    return [
        row("fc_inputs", f"{n} image, flattened: input values", inputs, "150,528", inputs == 150_528,
            "every pixel of every channel is one input of the fully connected network"),
        row("fc_weights", f"FC weights, those inputs → {HIDDEN:,} hidden units", fc_weights, "150M+",
            fc_weights >= 150_000_000,
            f"{fc_weights / 1e6:.1f} M: the lesson's 150M+ holds. With its {HIDDEN:,} biases the layer has "
            f"{fc['fc_params']:,} parameters; the whole mlp with 10 classes {_params(mlp):,} "
            f"({_params(mlp) * 4 / 1e6:.0f} MB of float32)"),
        row("conv1_params", "first convolution (3→32, 3×3): parameters", conv_info.params,
            "896", conv_info.params == 896,
            f"{conv.weight.numel():,} weights ({'·'.join(map(str, conv.weight.shape[1:]))} = {kernel} per filter × "
            f"{conv.out_channels} filters) + {conv.bias.numel()} biases, "
            "whatever the image size"),
        row("fc_vs_conv", "FC weights / first-convolution parameters", round(ratio, 1),
            "≈172,000×", round(ratio, -3) == 172_000,
            f"{fc_weights:,} / {conv_info.params:,} sets weights against weights and biases; like for like: "
            f"{fc['ratio']:,.0f}× (parameters / parameters), {fc_weights / conv.weight.numel():,.0f}× "
            "(weights / weights)", shown=f"{ratio:,.0f}×"),
        row("positions", f"3×3 kernel positions on {IMAGE[1]}×{IMAGE[2]} (stride 1, pad 1)", positions,
            "50,176", positions == 50_176, "padding 1 keeps the output at the input's size: one position per pixel"),
        row("unshared_weights", "one 3×3×3 filter, a kernel per position: weights", positions * kernel,
            "50,176 × 27", positions * kernel == 50_176 * 27,
            f"{positions:,} × {kernel}; for all {conv.out_channels} filters of the layer "
            f"{positions * kernel * conv.out_channels:,} weights, against {conv.weight.numel():,} shared"),
        row("shared_weights", "one 3×3×3 filter, shared by every position: weights", kernel, "27", kernel == 27,
            "the same weights everywhere: a pattern learned at one place is found at every place"),
        row("simplecnn_bn_params", f"simplecnn_bn (lesson 2, {n}, 2 classes): parameters",
            s.total_params, "~200K", abs(s.total_params - 200_000) <= 20_000,
            f"about half the lesson's figure: {_params(bn_net, nn.Conv2d):,} in the three convolutions, "
            f"{_params(bn_net, nn.BatchNorm2d):,} BatchNorm scales and shifts, {_params(bn_net, nn.Linear):,} in "
            f"the two linear layers (global average pooling leaves fc1 {bn_net.fc1.in_features} inputs); "
            "BatchNorm's running statistics are buffers, not parameters"),
        row("simplecnn_params", "simplecnn (lesson 1, CIFAR-10 32×32×3, 10 classes): parameters",
            cifar_cnn, "~1M (\"1M for the same task\")", abs(cifar_cnn - 1_000_000) <= 100_000,
            f"about half of 1M, {cifar_fc1 / cifar_cnn:.0%} of it in fc1 ({cifar_net.fc1.in_features:,} flattened "
            f"values → {cifar_net.fc1.out_features}). At {n} the flatten grows to {cnn_224.fc1.in_features:,} and "
            f"the network to {_params(cnn_224):,}; the global-average-pooling network above stays at "
            f"{s.total_params:,}"),
        row("mlp_cifar_params", "mlp on the same CIFAR-10 images (10 classes): parameters", cifar_mlp, "", None,
            f"not a lesson figure: {cifar_mlp / cifar_cnn:.1f}× the SimpleCNN's parameters for the same images"),
    ]


def format_lessons(rows: list[LessonRow], *, print_fn: Callable[[str], None] = print) -> None:
    """Print the table: quantity, cnnkit's count, the lesson's figure (= it holds, ≠ it does not), the note."""
    header = ("quantity", "cnnkit", "lesson")
    table = [header] + [(r.quantity, r.shown, ("" if r.agrees is None else "= " if r.agrees else "≠ ") + r.lesson)
                        for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print_fn("The lessons' numbers, computed from cnnkit's models (= the lesson's figure holds, ≠ it does not)")
    print_fn(line)
    for i, (t, r) in enumerate(zip(table, [None, *rows])):
        print_fn(f"{t[0]:<{widths[0]}}  {t[1]:>{widths[1]}}  {t[2]}".rstrip())
        if r is None:
            print_fn(line)
        elif r.note:
            print_fn(textwrap.fill(r.note, NOTE_WIDTH, initial_indent="    ", subsequent_indent="    "))
    print_fn(line)
