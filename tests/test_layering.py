"""The package's modules import one another one way: no two modules import each other (at any level, lazy
imports inside functions included), and the plain PyTorch library never imports Kedro."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = ("data", "models", "distill", "training", "evaluation")


def _imports() -> dict[str, set[str]]:
    modules = {}
    for path in (SRC / "sstkd").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        modules[name] = found
    return modules


def test_no_two_modules_import_each_other():
    modules = _imports()
    mutual = sorted({tuple(sorted((a, b))) for a, found in modules.items() for b in found
                     if b in modules and b != a and a in modules[b]})
    assert mutual == []
    assert "sstkd.audit" not in modules["sstkd.reproduce"]  # the tracking URI lookup lives below both
    assert "sstkd.store" in modules["sstkd.reproduce"] and "sstkd.store" in modules["sstkd.audit"]


def test_the_library_imports_no_kedro():
    for name, found in _imports().items():
        if name.split(".")[1:2] and name.split(".")[1] in LIBRARY:
            assert not any(module.split(".")[0] == "kedro" or module.startswith("kedro_") for module in found), name
