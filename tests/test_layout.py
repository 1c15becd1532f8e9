"""The import rules of the layout, checked by walking every import of every module.

Serving never imports training or evaluation, nothing below `api` imports `api`, each
package imports only the layers beneath it, and no two modules import each other in a
circle. Imports inside functions and under TYPE_CHECKING count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lectern", "ingest", "retriever", "model", "api")
OFFLINE = ("train", "eval")  # the sub-packages serving must never reach

# What each layer may import, first-party. `api` is the composition root: anything.
ALLOWED = {
    "lectern": {"lectern"},
    "ingest": {"lectern", "ingest"},
    "retriever": {"lectern", "retriever"},
    "model": {"lectern", "model"},
    # Training and evaluation chunk and ingest the way the product does.
    "retriever.offline": {"lectern", "ingest", "retriever"},
    "model.offline": {"lectern", "ingest", "retriever", "model"},
}
# The `lectern` command runs training and evaluation too: it hands them the objects
# they need, importing them inside the commands that run them. At import time it may
# read only the configs (`*_config` modules, which import nothing heavy), whose field
# defaults are its options' defaults.
CLI = (
    "api.cli", "api.cli_train", "api.cli_train_generator", "api.cli_calibrate",
    "api.cli_feedback",
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports(path: Path, name: str, known: set[str], top_level: bool = False) -> set[str]:
    """The first-party modules `path` imports, wherever in the file the import stands
    (top_level: only those the module imports when it is imported)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in (_top_level(tree) if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from retriever.train import questions` imports the module questions.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in PACKAGES)
    return out


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """The statements run at import: the module's own, and those inside its top-level
    if/try blocks (except `if TYPE_CHECKING:`), not those inside functions or classes."""
    out: list[ast.AST] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        out.append(node)
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                pending += [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            pending += [*node.body, *node.orelse, *node.finalbody]
            for handler in node.handlers:
                pending += handler.body
    return out


def layer(name: str) -> str:
    top, _, rest = name.partition(".")
    if top in ("retriever", "model") and rest.split(".")[0] in OFFLINE:
        return f"{top}.offline"
    return top


def is_offline(name: str) -> bool:
    return layer(name).endswith(".offline")


def violations(root: Path) -> list[str]:
    found = modules(root)
    known = set(found)
    graph = {name: imports(path, name, known) for name, path in found.items()}
    problems = []
    for name, targets in sorted(graph.items()):
        own = layer(name)
        for target in sorted(targets):
            top = target.split(".")[0]
            if own != "api" and top not in ALLOWED[own]:
                problems.append(f"{name} imports {target} ({own} may import {ALLOWED[own]})")
            serving = not is_offline(name) and name not in CLI
            if serving and is_offline(target):
                problems.append(f"{name} is serving code but imports {target}")
            if top == "api" and target in CLI and name not in CLI:
                problems.append(f"{name} imports the command line {target}")
    for name in CLI:
        if name not in found:
            continue
        for target in sorted(imports(found[name], name, known, top_level=True)):
            if is_offline(target) and not target.endswith("_config"):
                problems.append(f"{name} imports {target} when imported; only configs may be")
    for name, path in found.items():  # and a config reads no other training code
        if is_offline(name) and name.endswith("_config"):
            for target in sorted(imports(path, name, known, top_level=True)):
                if is_offline(target) and not target.endswith("_config"):
                    problems.append(f"config {name} imports {target}")
    problems += [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_project_follows_the_import_rules():
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in ("retriever/train", "retriever/eval", "model/train"):
        if (tmp_path / folder).is_dir():
            (tmp_path / folder / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    # serving code reaching training, even inside a function
    ({"retriever/train/fit.py": "", "retriever/corpus.py":
      "def f():\n    from retriever.train import fit\n"},
     "retriever.corpus is serving code but imports retriever.train.fit"),
    ({"retriever/eval/metrics.py": "", "api/service.py": "import retriever.eval.metrics\n"},
     "api.service is serving code but imports retriever.eval.metrics"),
    # a lower layer importing the composition root, under TYPE_CHECKING
    ({"api/service.py": "", "retriever/eval/harness.py":
      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from api.service import L\n"},
     "retriever.eval.harness imports api.service"),
    ({"model/answer.py": "", "lectern/types.py": "from model.answer import x\n"},
     "lectern.types imports model.answer"),
    # a circle through a function-level import
    ({"retriever/a.py": "from retriever import b\n", "retriever/b.py":
      "def f():\n    from retriever.a import x\n"},
     "import circle: retriever.a -> retriever.b"),
    # relative imports resolve like absolute ones
    ({"retriever/train/fit.py": "", "retriever/dense.py": "from .train import fit\n"},
     "retriever.dense is serving code but imports retriever.train.fit"),
])
def test_the_checker_finds_each_kind_of_violation(tmp_path, files, expected):
    problems = violations(_tree(tmp_path, files))
    assert any(p.startswith(expected) for p in problems), problems


def test_the_command_line_reads_only_configs_when_imported(tmp_path):
    root = _tree(tmp_path, {
        "retriever/train/fit.py": "", "retriever/train/fit_config.py": "",
        "api/cli.py": "from retriever.train.fit_config import C\nfrom retriever.train import fit\n",
    })
    assert violations(root) == [
        "api.cli imports retriever.train.fit when imported; only configs may be"
    ]


def test_the_checker_allows_what_the_layout_allows(tmp_path):
    root = _tree(tmp_path, {
        "retriever/dense.py": "from lectern.types import Chunk\n",
        "retriever/train/fit.py": "from retriever.dense import D\nfrom ingest.chunker import C\n",
        "ingest/chunker.py": "",
        "api/cli.py": "def train():\n    from retriever.train import fit\n",
    })
    assert violations(root) == []


def test_the_served_app_loads_no_training_or_evaluation_code():
    import subprocess
    import sys

    code = (
        "import sys, api.app, api.service, api.routes.ask\n"
        "print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
        "(['retriever', 'train'], ['retriever', 'eval'], ['model', 'train'], ['model', 'eval'])))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert run.stdout.split() == []
