"""The layering docs/architecture.md promises, checked on the code's own imports (lazy ones included).

* No import circle inside ``fusionlab/``: a module never reaches itself through what it imports, whether at the
  top of the file or inside a function.
* The pages (``app.py``, ``app_pages/``) import fusionlab only through ``fusionlab.dashboard``: a page holds
  layout, and whatever it needs from the core comes through the dashboard's views and widgets.
* The Streamlit-free dashboard logic never imports Streamlit (it is unit-tested without a browser).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fusionlab"
TOP_LAYER = {"fusionlab.dashboard.widgets", "fusionlab.dashboard.urlstate"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (``from a import b`` counts ``a.b`` if that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path) if t in modules and t != name}
        # importing a submodule runs its package's __init__ first; a package's own children are not a circle
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_inside_the_package():
    assert _cycle(_graph()) is None, f"import circle: {' -> '.join(_cycle(_graph()) or [])}"


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_pages_import_fusionlab_only_through_the_dashboard():
    pages = [REPO / "app.py", *sorted((REPO / "app_pages").glob("*.py"))]
    offenders = {
        page.name: sorted(
            m for m in _imports(page) if m.startswith("fusionlab") and not m.startswith("fusionlab.dashboard")
        )
        for page in pages
    }
    assert {page: found for page, found in offenders.items() if found} == {}


def test_dashboard_logic_is_streamlit_free():
    logic = [
        p for p in (PACKAGE / "dashboard").glob("*.py") if _module_name(p) not in TOP_LAYER and p.name != "__init__.py"
    ]
    assert logic, "the dashboard has no logic modules?"
    uses_streamlit = sorted(p.name for p in logic if any(m.split(".")[0] == "streamlit" for m in _imports(p)))
    assert uses_streamlit == []
