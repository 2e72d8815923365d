"""The classic ImageNet architectures, taken from torchvision (not rewritten) and given cnnkit's interface.

Each builder calls torchvision's own builder, so the layers, their names and their initialisation are
torchvision's: with the standard stem the state dict is torchvision's, so its ImageNet weights load unchanged
(`create_model(name, pretrained=True)`, models/pretrained.py). cnnkit adds three things:

- `in_channels`: the first convolution is rebuilt for 1-channel (or N-channel) images (with pretrained
  weights, its filters are adapted rather than replaced: pretrained.adapt_first_conv);
- a small-input stem for 28×28 and 32×32 images (chosen when `input_size` is below 64 pixels, or by
  `small_input=True`): the early stride-2 layers become stride 1, so the last feature map is still 3×3 to
  4×4 instead of 1×1 or nothing — the CIFAR-style variants the literature uses;
- the uniform interface of `_base.CnnkitModel` (forward_features, forward_head, feature maps by name).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torchvision.models as tvm

from ._base import CnnkitModel, wants_small_stem
from ._registry import register_model


def _adopt(model: nn.Module, cls: type) -> CnnkitModel:
    """Give a torchvision model cnnkit's interface: `cls` subclasses (CnnkitModel, type(model)) and adds
    methods only, so swapping the class keeps torchvision's modules, weights and state-dict keys."""
    model.__class__ = cls
    return model


def _conv_like(conv: nn.Conv2d, in_channels: int, **override) -> nn.Conv2d:
    """A fresh conv with `conv`'s geometry and `in_channels` inputs (`override` changes kernel/stride/padding)."""
    kw = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding, bias=conv.bias is not None)
    kw.update(override)
    return nn.Conv2d(in_channels, conv.out_channels, **kw)


def _unstride(block: nn.Module) -> None:
    """The stride-2 convolutions of `block` run at stride 1 (the kernel, so a pretrained weight, is unchanged)."""
    for conv in block.modules():
        if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
            conv.stride = (1, 1)


def _new_stem_conv(m: nn.Module, in_channels: int) -> nn.Conv2d:
    """`features[0][0]` (the stem convolution of EfficientNet, MobileNetV2, ConvNeXt), rebuilt for
    `in_channels` inputs when they are not 3; returned either way."""
    if in_channels != 3:
        m.features[0][0] = _conv_like(m.features[0][0], in_channels)
    return m.features[0][0]


class _FeaturesPoolClassifier(CnnkitModel):
    """torchvision's `features` → `avgpool` → flatten → `classifier` layout (AlexNet, VGG, EfficientNet)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# --- AlexNet ---------------------------------------------------------------------------------------------
class AlexNet(_FeaturesPoolClassifier, tvm.AlexNet):
    stage_names = ("features.2", "features.5", "features.12")
    classifier_name = "classifier.6"


@register_model
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
            small_input: bool | None = None, dropout: float = 0.5) -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012), torchvision's single-tower version. Small stem: conv1 3×3 stride 1."""
    m = _adopt(tvm.alexnet(num_classes=num_classes, dropout=dropout), AlexNet)
    small = wants_small_stem(input_size, small_input)
    if small:
        m.features[0] = _conv_like(m.features[0], in_channels, kernel_size=3, stride=1, padding=1)
    elif in_channels != 3:
        m.features[0] = _conv_like(m.features[0], in_channels)
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, (15 if small else 63)
    return m


# --- VGG-16 ----------------------------------------------------------------------------------------------
class VGG(_FeaturesPoolClassifier, tvm.VGG):
    stage_names = ("features.4", "features.9", "features.16", "features.23", "features.30")
    classifier_name = "classifier.6"


@register_model
def vgg16(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
          small_input: bool | None = None, dropout: float = 0.5) -> VGG:
    """VGG-16 (Simonyan & Zisserman 2014), configuration D. Small stem: the first and last of the five
    max-pools become identities (28×28 → 3×3, 32×32 → 4×4 at the last stage)."""
    m = _adopt(tvm.vgg16(num_classes=num_classes, dropout=dropout), VGG)
    if in_channels != 3:
        m.features[0] = _conv_like(m.features[0], in_channels)
    small = wants_small_stem(input_size, small_input)
    if small:  # Identity keeps the indices, so the state-dict keys stay torchvision's
        m.features[4] = nn.Identity()
        m.features[30] = nn.Identity()
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, (8 if small else 32)
    return m


# --- ResNet ----------------------------------------------------------------------------------------------
class ResNet(CnnkitModel, tvm.ResNet):
    stage_names = ("layer1", "layer2", "layer3", "layer4")
    classifier_name = "fc"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(builder, num_classes, in_channels, input_size, small_input) -> ResNet:
    m = _adopt(builder(num_classes=num_classes), ResNet)
    small = wants_small_stem(input_size, small_input)
    if small:  # the CIFAR stem of He et al. 2016, §4.2: 3×3 stride 1, no max-pool
        m.conv1 = _conv_like(m.conv1, in_channels, kernel_size=3, stride=1, padding=1)
        m.maxpool = nn.Identity()
    elif in_channels != 3:
        m.conv1 = _conv_like(m.conv1, in_channels)
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, 1
    return m


@register_model
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
             small_input: bool | None = None) -> ResNet:
    """ResNet-18 (He et al. 2016). Small stem: conv1 3×3 stride 1, no max-pool."""
    return _resnet(tvm.resnet18, num_classes, in_channels, input_size, small_input)


@register_model
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
             small_input: bool | None = None) -> ResNet:
    """ResNet-50 (torchvision's v1.5: stride in the 3×3 conv), 25,557,032 parameters at 1000 classes."""
    return _resnet(tvm.resnet50, num_classes, in_channels, input_size, small_input)


# --- GoogLeNet (Inception v1) ----------------------------------------------------------------------------
class GoogLeNet(CnnkitModel, tvm.GoogLeNet):
    stage_names = ("conv3", "inception3b", "inception4e", "inception5b")
    classifier_name = "fc"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        return self.inception5b(self.inception5a(self.maxpool4(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@register_model
def googlenet(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
              small_input: bool | None = None) -> GoogLeNet:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015), without the auxiliary classifiers (torchvision drops
    them at inference too). Small stem: conv1 3×3 stride 1 and the first two max-pools removed."""
    m = _adopt(tvm.googlenet(num_classes=num_classes, aux_logits=False, transform_input=False,
                             init_weights=True), GoogLeNet)
    small = wants_small_stem(input_size, small_input)
    if small:
        m.conv1.conv = _conv_like(m.conv1.conv, in_channels, kernel_size=3, stride=1, padding=1)
        m.maxpool1, m.maxpool2 = nn.Identity(), nn.Identity()
    elif in_channels != 3:
        m.conv1.conv = _conv_like(m.conv1.conv, in_channels)
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, (2 if small else 15)
    return m


# --- EfficientNet-B0 -------------------------------------------------------------------------------------
class EfficientNet(_FeaturesPoolClassifier, tvm.EfficientNet):
    stage_names = ("features.1", "features.2", "features.3", "features.5", "features.8")
    classifier_name = "classifier.1"


@register_model
def efficientnet_b0(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
                    small_input: bool | None = None) -> EfficientNet:
    """EfficientNet-B0 (Tan & Le 2019). Small stem: the stem and the first stride-2 stage run at stride 1
    (overall stride 8 instead of 32)."""
    m = _adopt(tvm.efficientnet_b0(num_classes=num_classes), EfficientNet)
    stem = _new_stem_conv(m, in_channels)
    small = wants_small_stem(input_size, small_input)
    if small:
        stem.stride = (1, 1)
        _unstride(m.features[2][0])  # the depthwise conv that carries stage 2's stride
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, 1
    return m


# --- MobileNetV2 -----------------------------------------------------------------------------------------
class MobileNetV2(CnnkitModel, tvm.MobileNetV2):
    # the last block at each resolution: 112, 56, 28, 14 and 7 pixels at 224×224
    stage_names = ("features.1", "features.3", "features.6", "features.13", "features.18")
    classifier_name = "classifier.1"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


@register_model
def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
                 small_input: bool | None = None, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, 3,504,872 parameters at
    1000 classes. Small stem: the stem and the first stride-2 block run at stride 1 (overall stride 8)."""
    m = _adopt(tvm.mobilenet_v2(num_classes=num_classes, dropout=dropout), MobileNetV2)
    _new_stem_conv(m, in_channels)
    small = wants_small_stem(input_size, small_input)
    if small:
        _unstride(m.features[0])
        _unstride(m.features[2])
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, 1
    return m


# --- ConvNeXt-Tiny ---------------------------------------------------------------------------------------
class ConvNeXt(CnnkitModel, tvm.ConvNeXt):
    stage_names = ("features.1", "features.3", "features.5", "features.7")
    classifier_name = "classifier.2"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(x))  # classifier = LayerNorm2d, Flatten, Linear


@register_model
def convnext_tiny(*, num_classes: int = 1000, in_channels: int = 3, input_size: Sequence[int] | None = None,
                  small_input: bool | None = None) -> ConvNeXt:
    """ConvNeXt-Tiny (Liu et al. 2022), the lessons' "modern hybrid": a ResNet modernised with a transformer's
    design choices (4×4 patchify stem, 7×7 depthwise convolutions, LayerNorm, GELU, inverted bottlenecks).
    Small stem: the 4×4 patchify convolution runs at stride 1 instead of 4 (overall stride 8)."""
    m = _adopt(tvm.convnext_tiny(num_classes=num_classes), ConvNeXt)
    stem = _new_stem_conv(m, in_channels)
    small = wants_small_stem(input_size, small_input)
    if small:
        stem.stride = (1, 1)
    # the stem's 4×4 patches and three 2×2 downsamplings need 32 pixels (11 with the small stem)
    m.in_channels, m.small_input, m.min_input_size = in_channels, small, (11 if small else 32)
    return m
