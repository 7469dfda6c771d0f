"""No import cycles among the project's modules, function-level imports and ``__main__`` blocks
included: stages (``getok_data``) sit below ``pipelines``, which sit below the command line."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("getok_data", "pipelines")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        parts = target.split(".")
        for k in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ too (not the root's),
            mod = ".".join(parts[:k])      # unless a.b is the importer's own package (already running)
            if mod in modules and mod != name and not name.startswith(mod + "."):
                found.add(mod)
        if target in modules and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):  # ``if __name__ == "__main__":`` blocks count too
            if isinstance(child, ast.Import):
                for a in child.names:
                    add(a.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                add(mod)
                for a in child.names:
                    add(f"{mod}.{a.name}")
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_there_are_no_import_cycles():
    assert cycles(import_graph()) == []


def test_layers_stages_below_pipelines_below_the_cli():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("getok_data") and not name.startswith(("getok_data.cli", "getok_data.__main__")):
            assert not {d for d in deps if d.startswith("pipelines")}, f"{name} imports a pipeline"
            assert "getok_data.cli" not in deps, f"{name} imports the CLI"
        if name.startswith("pipelines"):
            assert "getok_data.cli" not in deps, f"{name} imports the CLI"


def test_the_walker_sees_function_level_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    mods = {"p.x": tmp_path / "x.py", "p.y": tmp_path / "y.py"}
    (tmp_path / "x.py").write_text("def f():\n    from .y import g\n")
    assert _imports("p.x", mods["p.x"], mods) == {"p.y"}


def test_predict_and_score_share_one_owner_of_the_answer_grammar():
    """``predict`` uses the answer grammar from ``tokens.answers``, not from ``score``, so the two
    never import each other's helpers in both directions."""
    graph = import_graph()
    assert not {d for d in graph["getok_data.predict"] if d.startswith("getok_data.score")}
    assert "getok_data.tokens.answers" in graph["getok_data.score.scoring"]
