"""The import graph of msgzoo follows docs/architecture.md, and shared code never tests a method's name."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from msgzoo.training.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "msgzoo"
DOC = ROOT / "docs" / "architecture.md"
#: Top-level names of the repository that are not the library: msgzoo must never import them.
OUTSIDE = ("recipes", "benchmarks", "tests", "conftest", "scripts")
#: Where methods are defined and registered: the one module that may name them in code.
METHOD_DEFINITIONS = PACKAGE / "training" / "methods.py"


def layer_table() -> tuple[dict[str, str], dict[str, set[str]]]:
    """``({module prefix: layer}, {layer: layers it may import})`` from the table in docs/architecture.md."""
    text = DOC.read_text()
    block = re.search(r"<!-- architecture-table.*?-->(.*?)<!-- end architecture-table -->", text, re.S)
    assert block, "docs/architecture.md lost its architecture-table markers"
    owner, allowed = {}, {}
    for line in block.group(1).strip().splitlines()[2:]:  # skip the header and the |---| row
        layer, modules, imports = (cell.strip() for cell in line.strip().strip("|").split("|"))
        allowed[layer] = {name.strip() for name in imports.split(",") if name.strip()}
        for module in re.findall(r"`([\w.]+)`", modules):
            owner[module] = layer
    return owner, allowed


def layer_of(module: str, owner: dict[str, str]) -> str | None:
    """The layer of ``msgzoo.a.b`` (the longest prefix in the table; ``msgzoo`` itself is ``__init__``)."""
    parts = module.split(".")[1:] or ["__init__"]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in owner:
            return owner[".".join(parts[:n])]
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (annotations only: not a runtime dependency)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imports(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every runtime import in ``source``, the code of ``module`` (relative imports
    resolved; ``from msgzoo.pipelines import one_step`` counts as ``msgzoo.pipelines.one_step``)."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    package = module if is_package else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            submodules = [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
            out += [(node.lineno, name) for name in submodules] or [(node.lineno, base)]
    return out


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str, *, is_package: bool = False, where: str = "") -> list[str]:
    """The imports of ``module`` (code ``source``) that docs/architecture.md does not allow."""
    owner, allowed = layer_table()
    here = layer_of(module, owner)
    out = []
    for line, imported in imports(source, module, is_package=is_package):
        top = imported.split(".")[0]
        if top in OUTSIDE:
            out.append(f"{where}:{line} imports {imported}: msgzoo must not import {top}")
        elif top == "msgzoo":
            there = layer_of(imported, owner)
            if there != here and there not in allowed[here]:
                out.append(f"{where}:{line} imports {imported} ({there}), which the {here} layer may not import "
                           f"(docs/architecture.md: {here} may import {sorted(allowed[here]) or 'nothing of msgzoo'})")
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_table_covers_every_module():
    owner, allowed = layer_table()
    assert set().union(*allowed.values()) <= set(allowed), "a 'may import' cell names an unknown layer"
    for path in SOURCES:
        assert layer_of(_module_name(path), owner), (
            f"{path.relative_to(ROOT)} is in no layer: add it to the table of docs/architecture.md"
        )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    found = violations(path.read_text(), _module_name(path), is_package=path.name == "__init__.py",
                       where=str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, source", [
    ("msgzoo.objectives.fake", "from msgzoo.training.trainer import Trainer"),
    ("msgzoo.objectives.fake", "from ..pipelines import one_step"),
    ("msgzoo.envs.fake", "import msgzoo.objectives.obedience"),
    ("msgzoo.envs.fake", "from msgzoo.training.methods import build_method"),
    ("msgzoo.modules.fake", "from msgzoo.envs import ReachingGoalsEnv"),
    ("msgzoo.training.trainer", "from recipes import reproduce"),
    ("msgzoo.report", "import benchmarks.persuasion_suite"),
])
def test_the_checker_refuses_a_forbidden_import(module, source):
    assert len(violations(source, module)) == 1


def test_type_only_imports_are_not_dependencies():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from msgzoo.training.trainer import Trainer\n"
    assert violations(source, "msgzoo.objectives.fake") == []


def method_name_uses(source: str, where: str = "") -> list[str]:
    """``where:line`` of every comparison with a method's name, or subscript by one, in ``source``."""
    names = set(METHODS)

    def named(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(named(e) for e in node.elts)
        return False

    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(named(n) for n in (node.left, *node.comparators)):
            hits.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and named(node.slice):
            hits.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.match_case) and named(getattr(node.pattern, "value", None)):
            hits.append(f"{where}:{node.pattern.lineno}: case {ast.unparse(node.pattern)}")
    return hits


def test_shared_code_never_tests_a_method_name():
    """Methods declare what the shared code needs (phases, readout, config sections): no branch on their names."""
    hits = [hit for path in SOURCES if path != METHOD_DEFINITIONS
            for hit in method_name_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert not hits, "shared code branches on a method's name; declare it on the Method/MethodSpec instead:\n" + "\n".join(hits)


def test_the_name_check_bites():
    source = ('def f(method, losses):\n    if method.name == "dial":\n        return losses["sgoc"]\n'
              '    match method.name:\n        case "pg":\n            return 1\n    return method in ("sg", "pg")\n')
    assert sorted(int(h.split(":")[1]) for h in method_name_uses(source)) == [2, 3, 5, 7]


def test_the_collector_carrier_is_read_in_one_place():
    """TorchRL's ``Collector`` has no public accessor for its pending inputs: ``collector_carrier`` in the trainer
    is the one place that touches the private ``_carrier``; everything else goes through it."""
    hits = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        owners = {id(n): f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
        hits += [(str(path.relative_to(PACKAGE)), owners.get(id(node)))
                 for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "_carrier"]
    assert hits == [("training/trainer.py", "collector_carrier")], hits
