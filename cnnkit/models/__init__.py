"""The model zoo: the lessons' SimpleCNNs, LeNet-5, and torchvision's classics, all behind one registry."""
from . import fast, lenet, mlp, simple  # noqa: F401  (registers the builders)
from ._base import CnnkitModel
from ._registry import create_model, get_builder, list_models, register_lazy, register_model

# torchvision's architectures: imported on first use (importing torchvision takes 1.4 s)
register_lazy("cnnkit.models.classic", ["alexnet", "vgg16", "resnet18", "resnet50", "googlenet", "efficientnet_b0",
                                         "mobilenet_v2", "convnext_tiny"])

__all__ = ["CnnkitModel", "create_model", "get_builder", "list_models", "register_lazy", "register_model"]
