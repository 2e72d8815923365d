"""The oracle the attribution tests compare against: a layer's output and the gradient of the target scores
with respect to it, by plain autograd (tests/explain/test_attribution.py, test_gradcam.py)."""
import torch


def layer_grad(model, layer, x, targets):
    """A and dy/dA (tensors), in-place ops switched off so that A is exactly the layer's output."""
    flags = {m: m.inplace for m in model.modules() if hasattr(m, "inplace")}
    for m in flags:
        m.inplace = False
    got = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: got.__setitem__("a", o))
    try:
        out = model(x)
    finally:
        handle.remove()
        for m, v in flags.items():
            m.inplace = v
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.tensor(targets)].sum(), got["a"])
    return got["a"], g
