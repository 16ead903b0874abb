"""The layers of docs/where-things-live.md hold: no import runs from a lower layer to a
higher one, no folder holds more than 12 modules, no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lowest first; a package may import its own layer and any lower one.
LAYERS = [("base",), ("servers", "clients"), ("harness.scenario",), ("harness.measure",),
          ("harness.netlab",), ("harness.run",), ("harness.report",), ("harness.cli",)]
PEERS_APART = {("servers", "clients"), ("clients", "servers")}   # never import each other


def layer_of(module: str) -> int | None:
    for rank, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return rank
    return None


def package_of(module: str) -> str:
    for names in LAYERS:
        for n in names:
            if module == n or module.startswith(n + "."):
                return n
    return module


def modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("base", "servers", "clients", "harness"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append((".".join(parts), path))
    return out


def imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
    return found


@pytest.mark.parametrize("module,path", modules(), ids=lambda v: str(v))
def test_no_import_runs_up_a_layer(module, path):
    mine = layer_of(module)
    for target in imports(path, module):
        theirs = layer_of(target)
        if theirs is None or mine is None:
            continue
        assert theirs <= mine, f"{module} imports {target}, a higher layer"
        assert (package_of(module), package_of(target)) not in PEERS_APART, (
            f"{module} imports {target}: servers and clients are peers")


def test_folders_and_modules_stay_small():
    for top in ("base", "servers", "clients", "harness"):
        for folder in [ROOT / top, *[p for p in (ROOT / top).rglob("*") if p.is_dir()]]:
            if folder.name == "__pycache__":
                continue
            count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
            assert count <= 12, f"{folder.relative_to(ROOT)} holds {count} modules"
        for path in (ROOT / top).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= 600, f"{path.relative_to(ROOT)} has {lines} lines"
