"""The layering, read from the source: hub (core) <- modalities (adapters) <- experiments.

Fails on an import cycle among hub modules, on hub importing modalities or experiments, and on
an experiment importing another experiment. Every import counts, also one inside a function
(a lazy import still makes the two modules depend on each other); imports under
``if TYPE_CHECKING:`` do not (they never run). The checker itself is tested on a small fake
tree, so a test that finds nothing is known to be able to find something.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hub", "modalities", "experiments")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the packages (``pkg/__init__.py`` -> ``pkg``)."""
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, files: dict[str, Path]) -> set[str]:
    """The project modules the import statements in ``tree`` name: ``from a import b`` is a.b
    when that is a module, else a; relative imports are resolved against ``module``."""
    out: set[str] = set()

    def add(name: str) -> None:
        if name in files and name != module:
            out.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                add(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = module_files(root, packages)
    return {mod: _imports(ast.parse(f.read_text(encoding="utf-8"), filename=str(f)), mod, f.name == "__init__.py",
                          files)
            for mod, f in files.items()}


def cycles(graph: dict[str, set[str]], within: str = "hub") -> list[list[str]]:
    """Strongly connected components of more than one module among modules under ``within``."""
    nodes = [m for m in graph if m == within or m.startswith(within + ".")]
    sub = {m: {d for d in graph[m] if d in nodes} for m in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(sub[v]):
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

    for v in sorted(sub):
        if v not in index:
            strong(v)
    return out


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """hub -> modalities/experiments, and experiment -> another experiment."""
    bad = []
    for mod, deps in sorted(graph.items()):
        top = mod.split(".")[0]
        for d in sorted(deps):
            dtop = d.split(".")[0]
            if top == "hub" and dtop in ("modalities", "experiments"):
                bad.append(f"{mod} imports {d}: the core imports no adapter and no experiment")
            if top == "experiments" and dtop == "experiments" and d != mod:
                bad.append(f"{mod} imports {d}: an experiment imports no other experiment "
                           "(shared steps go into hub/ or modalities/)")
    return bad


# ------------------------------------------------------------------------ the project
def test_the_core_imports_no_adapter_and_no_experiment_imports_another():
    graph = import_graph()
    assert "hub.pairs" in graph and "experiments.similarity" in graph  # the walk found the project
    assert layer_violations(graph) == []


def test_no_import_cycle_in_the_core():
    assert cycles(import_graph()) == []


# ------------------------------------------------------------------------ the checker on a fake tree
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


def test_checker_finds_a_lazy_cycle_a_back_edge_and_an_experiment_edge(tmp_path):
    root = _tree(tmp_path, {
        "hub/a.py": "from hub.b import f\n",
        "hub/b.py": "def f():\n    from hub import a\n    return a\n",  # lazy import: still a cycle
        "hub/c.py": "from modalities.base import Side\n",
        "hub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hub.e import X\n",
        "hub/e.py": "from hub.d import Y\n",  # d -> e only for type checking: no cycle
        "hub/lens/__init__.py": "from hub.lens.base import Lens\n",
        "hub/lens/base.py": "from .energy import E\n",
        "hub/lens/energy.py": "",
        "modalities/base.py": "from hub.c import x\n",
        "experiments/one.py": "from experiments import two\nfrom hub.a import f\n",
        "experiments/two.py": "import hub.lens\n",
    })
    graph = import_graph(root)
    assert graph["hub.a"] == {"hub.b"} and graph["hub.b"] == {"hub.a"}
    assert graph["hub.lens.base"] == {"hub.lens.energy"}  # relative import resolved
    assert graph["hub.d"] == set()
    assert cycles(graph) == [["hub.a", "hub.b"]]
    bad = layer_violations(graph)
    assert any(b.startswith("hub.c imports modalities.base") for b in bad)
    assert any(b.startswith("experiments.one imports experiments.two") for b in bad)
    assert len(bad) == 2  # modalities -> hub and experiments -> hub are the allowed direction
