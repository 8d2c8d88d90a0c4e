"""The package graph: no import circles and no upward imports in ``agent/``.

Every module is parsed with ``ast``; every import counts, wherever it is written (module level,
inside a function, under ``if TYPE_CHECKING:``), and so do module names given to
``importlib.import_module`` as string literals. An import of a package counts as an import of its
``__init__``; ``from pkg import sub`` of a submodule counts as an import of that submodule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"

# What the engine shows the rest of the runtime. tools and planner (and functions and server)
# reach it only through these: the generator protocol, the prompt templates, the grammar package,
# the scripted stand-in, and the CLI helpers (for the packages' own ``cli`` modules).
ENGINE_PUBLIC = {
    "agent.llm",
    "agent.llm.protocol",
    "agent.llm.prompts",
    "agent.llm.grammar",
    "agent.llm.scripted",
    "agent.llm.llama2",  # the model family's constants (the context length a generator may lack)
}
ENGINE_CLI = "agent.llm.cli"
# Besides the packages' own ``cli`` modules, what opens a model from command-line options in
# another process: batch workers and Ray actors, Ray Serve replicas.
ENGINE_CLI_USERS = {"agent.batch.runner", "agent.server.ray_serve"}

# What each top-level part may import from the other parts (besides agent.errors and itself).
ALLOWED = {
    "agent.errors": set(),
    "agent.llm": set(),
    "agent.tools": {"agent.llm"},
    "agent.planner": {"agent.llm", "agent.tools"},
    "agent.functions": {"agent.llm"},
    "agent.server": {"agent.llm", "agent.functions"},
    "agent.testing": {"agent.llm", "agent.planner", "agent.tools"},
    "agent.batch": {"agent.llm", "agent.planner", "agent.tools"},
    "agent.cli": {"agent.planner", "agent.functions", "agent.llm", "agent.server", "agent.batch"},
    "agent": set(),
}


def module_files(root: Path = AGENT) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports, anywhere in it."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in known else source)
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
        elif isinstance(node, ast.Dict):  # lazy-attribute tables: {"Name": "agent.x.y", ...}
            for value in node.values:  # (dotted only: a plain "agent" is a word, as in "owned_by")
                if (
                    isinstance(value, ast.Constant)
                    and "." in str(value.value)
                    and value.value in known
                ):
                    found.add(str(value.value))
    return {m for m in found if m in known and m != name}


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in ("import_module", "find_spec")
    return isinstance(func, ast.Name) and func.id == "import_module"


def import_graph(root: Path = AGENT) -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imports_of(name, path, files) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def part_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(graph.items()):
        part = part_of(source)
        for target in sorted(targets):
            other = part_of(target)
            if other in (part, "agent.errors"):
                continue
            if other not in ALLOWED[part]:
                problems.append(f"{source} imports {target}: {part} may not depend on {other}")
            elif other == "agent.llm" and not _engine_public(source, target):
                problems.append(
                    f"{source} imports engine internals ({target}); use a name of agent.llm, "
                    "its protocol, prompts or grammar package"
                )
    return problems


def _engine_public(source: str, target: str) -> bool:
    if target in ENGINE_PUBLIC:
        return True
    return target == ENGINE_CLI and (source.endswith(".cli") or source in ENGINE_CLI_USERS)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "agent"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("_LAZY = {'X': 'agent.sub.lazy'}\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent.sub.c import C\n"
    )
    (pkg / "sub" / "c.py").write_text("def f():\n    from ..sub import a\n")
    (pkg / "sub" / "lazy.py").write_text("import importlib\nimportlib.import_module('agent')\n")
    graph = import_graph(pkg)
    assert graph["agent.sub.a"] == {"agent.sub.b"}
    assert graph["agent.sub.b"] == {"agent.sub.c"}
    assert graph["agent.sub.c"] == {"agent.sub.a"}
    assert graph["agent"] == {"agent.sub.lazy"}
    assert graph["agent.sub.lazy"] == {"agent"}
    assert cycles(graph) == [
        ["agent", "agent.sub.lazy"],
        ["agent.sub.a", "agent.sub.b", "agent.sub.c"],
    ]


def test_upward_imports_are_named() -> None:
    graph = {
        "agent.llm.model": {"agent.planner.plan", "agent.errors"},
        "agent.tools.knowledge": {"agent.llm.sampling", "agent.llm"},
        "agent.planner.cli": {"agent.llm.cli"},
        "agent.planner.ask": {"agent.llm.cli"},
    }
    problems = "\n".join(upward_imports(graph))
    assert problems.count("\n") == 2
    assert "agent.llm.model imports agent.planner.plan: agent.llm may not depend" in problems
    assert "agent.tools.knowledge imports engine internals (agent.llm.sampling)" in problems
    assert "agent.planner.ask imports engine internals (agent.llm.cli)" in problems


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 50  # the walk found the package
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_upward_imports(graph: dict[str, set[str]]) -> None:
    assert {part_of(m) for m in graph} <= set(ALLOWED), "a new part needs a rule in ALLOWED"
    problems = upward_imports(graph)
    assert not problems, "\n".join(problems)
