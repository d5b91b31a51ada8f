"""The folder tree is the architecture: imports point down the layers only (import-linter's
contracts in pyproject.toml), no module of runtime/, cdk_app/ or constructs/ is in an import cycle
(imports inside functions and under ``TYPE_CHECKING`` included), the engine decides without
loading an I/O library, and each audience has one public module with ``__all__``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "cdk_app", "constructs")
IO_LIBRARIES = ("pymongo", "bson", "gridfs", "boto3", "botocore")


def _module_files(root: Path) -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterator[str]:
    """Every module name an import statement anywhere in ``path`` names (and, for ``from x import
    y``, ``x.y`` too: y may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(
                    package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
                )
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project's modules it imports."""
    modules = _module_files(root)

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in _imported_names(module, path)}
        graph[module] = {target for target in targets if target is not None and target != module}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_is_in_an_import_cycle() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_the_cycle_check_finds_a_cycle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    # GIVEN two modules that import each other, one of them inside a function
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "a.py").write_text("from runtime.b import f\n")
    (tmp_path / "runtime" / "b.py").write_text("def f():\n    from runtime import a\n")
    # THEN the check reports them
    assert cycles(import_graph(tmp_path)) == [["runtime.a", "runtime.b"]]


def test_the_layer_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_constructs_never_import_the_app() -> None:
    graph = import_graph(ROOT)
    wrong = {
        module: sorted(target for target in targets if target.split(".")[0] == "cdk_app")
        for module, targets in graph.items()
        if module.startswith("constructs.")
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}


def test_the_engine_loads_no_io_library() -> None:
    # Every module of the engine, in a fresh interpreter: nothing else imported there before.
    code = (
        "import importlib, pkgutil, sys\n"
        "import runtime.engine\n"
        "for module in pkgutil.walk_packages(runtime.engine.__path__, 'runtime.engine.'):\n"
        "    importlib.import_module(module.name)\n"
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {IO_LIBRARIES!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_function_loads_a_library_the_layer_does_not_bundle() -> None:
    # Every Lambda entry point, in a fresh interpreter: what runtime/requirements.txt bundles
    # (and the runtime ships: boto3, jmespath) is all there is; the spec loader's YAML is not,
    # nor OpenTelemetry (an optional extra, loaded on first use when installed).
    code = (
        "import importlib, pkgutil, sys\n"
        "import runtime.handlers\n"
        "for module in pkgutil.walk_packages(runtime.handlers.__path__, 'runtime.handlers.'):\n"
        "    importlib.import_module(module.name)\n"
        "unbundled = ('yaml', 'rich', 'cdk_app', 'aws_cdk', 'opentelemetry')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in unbundled))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_runtime_root_holds_at_most_twelve_modules() -> None:
    assert len(sorted((ROOT / "runtime").glob("*.py"))) <= 12


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("constructs.api", ["Workflow", "WorkflowProps", "DependencyLayer", "StatusEvents", "load_workflow"]),
        ("runtime.client", ["open_store", "start_run", "request_cancel", "answer_approval", "wait_for_end"]),
        ("runtime.job", ["JobEvent", "Handler"]),
    ],
)
def test_each_audience_has_one_public_module(module: str, names: list[str]) -> None:
    public = importlib.import_module(module)
    assert set(names) <= set(public.__all__)
    assert all(hasattr(public, name) for name in public.__all__)
