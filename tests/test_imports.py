"""No import cycle inside cnnkit: the layers of ../shared/GUIDE.md (cli → api → explain → run → engine →
models / preprocess → data → ops) only import downwards.

Every import statement counts, those inside functions too (a deferred import is still a dependency, only a
hidden one). `from PKG import NAME` is an edge to the module PKG.NAME when that is a module, else to PKG.
A package's __init__ executing when one of its modules is imported is Python's mechanics, not a dependency,
and is not counted.
"""
from __future__ import annotations

import ast
from pathlib import Path

import cnnkit

ROOT = Path(cnnkit.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # `import cnnkit.data.images` → that module
                    t = t.rpartition(".")[0]
                if t and t.startswith("cnnkit") and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_inside_cnnkit():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = _graph()
    assert "cnnkit.run.predictor" in graph["cnnkit.api"] or "cnnkit.run" in graph["cnnkit.api"]
    assert "cnnkit.data.dataset" in graph["cnnkit.data"]  # edges are found


# --- what a command imports: `cnnkit --help` no torch, training nothing it does not use -----------------------
HEAVY = ("torch", "numpy", "matplotlib", "sklearn", "scipy", "pandas", "captum", "fastapi", "uvicorn", "onnx",
         "onnxruntime", "openvino", "torchvision", "skimage", "pydicom")


def _imported_after(code: str) -> set[str]:
    """The HEAVY packages in sys.modules after running `code` in a fresh interpreter."""
    import json
    import subprocess
    import sys

    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_torch():
    # what `cnnkit --help` runs: every command's name and help, none of their flags
    code = "import cnnkit\nfrom cnnkit.cli import build_parser\nbuild_parser(['--help']).format_help()"
    assert _imported_after(code) == set()


def test_training_imports_only_what_it_uses():
    # `cnnkit train`'s path up to the first step: its flags, the API, the trainer, the models and the data layer
    code = ("from cnnkit.cli import build_parser\n"
            "args = build_parser(['train']).parse_args(['train', '--data', 'fashion-mnist:DIR', '--preset', 'fast'])\n"
            "import cnnkit.api, cnnkit.engine.trainer, cnnkit.data.sources, cnnkit.models\n"
            "cnnkit.models.create_model('fastcnn', in_channels=1, num_classes=10, input_size=(28, 28))")
    assert _imported_after(code) == {"torch", "numpy"}


def test_the_flat_api_is_there_when_asked():
    import cnnkit

    assert {"train", "create_model", "Trainer", "summarize"} <= set(dir(cnnkit)) and "train" in cnnkit.__all__
    assert cnnkit.create_model("simplecnn").__class__.__name__ == "SimpleCNN"
    from cnnkit import Predictor, load_data  # noqa: F401 - `from cnnkit import NAME` resolves too
    try:
        cnnkit.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
