"""A job's ``code``: the file or folder exists, and its handler module would run in Lambda. The
module is read with ``ast``, never imported: validating a spec must not run anybody's code.

A syntax error or a missing ``handler(event, context)`` would fail every attempt, so they are
errors. An import that nothing provides is a warning: the check cannot see everything (a package
that installs under another name, a module put on the path at run time), but it names what the
job would most likely miss.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.definition.report import JsonPath, Report, did_you_mean

HANDLER_NAME = "handler"
"""What the job wrapper calls: ``handler(event, context)`` in the job's module."""

FOLDER_ENTRY = "handler.py"
"""The module a code folder runs."""

LAMBDA_MODULES = frozenset(
    {
        # Lambda's Python runtime: boto3 and the packages it depends on.
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
        "six",
        # The dependency layer every function gets: pymongo, with dnspython for mongodb+srv URIs,
        "pymongo",
        "bson",
        "gridfs",
        "dns",
        # ... and jsonschema (the starter checks run inputs with it), with what it depends on.
        "jsonschema",
        "jsonschema_specifications",
        "referencing",
        "rpds",
        "attrs",
        "attr",
        "typing_extensions",
        # Staged into every job's asset next to its code.
        "runtime",
    }
)
"""Top-level modules every job can import besides the standard library."""

_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


SHARED_PATH: JsonPath = ("shared",)


def check_shared_folder(shared: str, report: Report, base_dir: Path) -> Path | None:
    """Checks the spec's ``shared`` folder (relative to the spec's folder) and returns it
    resolved; None when it is not a folder."""
    target = (base_dir / shared).resolve()
    if not target.is_dir():
        if target.exists():
            report.add(SHARED_PATH, f"shared folder {shared!r} is not a folder ({target.as_posix()})")
            return None
        siblings = [entry.name for entry in target.parent.iterdir()] if target.parent.is_dir() else []
        hint = did_you_mean(target.name, siblings)
        report.add(
            SHARED_PATH, f"shared folder {shared!r} does not exist (looked for {target.as_posix()}){hint}"
        )
        return None
    if (target / "runtime").exists():
        report.add(
            SHARED_PATH, f"shared folder {shared!r} contains 'runtime', which would hide the bundled runtime"
        )
        return None
    return target


def check_job_code(
    code: str, path: JsonPath, report: Report, base_dir: Path, shared: Path | None = None
) -> str:
    """Checks ``code`` (relative to the spec's folder) and returns it resolved. The modules of
    the ``shared`` folder are bundled beside it: the code may import them, and must not hold a
    module of the same name (one would hide the other)."""
    target = (base_dir / code).resolve()
    shared_modules = frozenset() if shared is None else _folder_modules(shared)
    shown_shared = "" if shared is None else _shown(shared, base_dir)
    if target.is_dir():
        entry = target / FOLDER_ENTRY
        if not entry.is_file():
            report.add(path, f"code folder {code!r} has no handler.py (looked in {target.as_posix()})")
        clashes = sorted(_folder_modules(target) & shared_modules)
        if (target / "runtime").exists():
            report.add(path, f"code folder {code!r} contains 'runtime', which would hide the bundled runtime")
        elif clashes:
            report.add(
                path,
                f"code folder {code.rstrip('/')!r} and the shared folder {shown_shared!r} both hold "
                f"{', '.join(repr(name) for name in clashes)}: one would hide the other in the bundle",
            )
        elif entry.is_file():
            provided = (
                _folder_modules(target) | _required_modules(target / "requirements.txt") | shared_modules
            )
            _check_module(
                entry,
                f"{code.rstrip('/')}/{FOLDER_ENTRY}",
                _Context(path, report, provided, code.rstrip("/")),
            )
    elif target.is_file():
        if target.suffix != ".py":
            report.add(
                path, f"code {code!r} is not a Python file: name a .py file or a folder with handler.py"
            )
        elif not target.stem.isidentifier() or target.stem == "runtime":
            # The file is imported as a module named after it, next to the bundled `runtime` package.
            report.add(
                path, f"code {code!r} cannot be imported as a module: name it like a Python identifier"
            )
        elif target.stem in shared_modules:
            report.add(
                path,
                f"{target.stem!r} is both the job's module and a module of the shared folder "
                f"{shown_shared!r}: one would hide the other in the bundle",
            )
        else:
            _check_module(target, code, _Context(path, report, shared_modules, None))
    else:
        siblings = [entry.name for entry in target.parent.iterdir()] if target.parent.is_dir() else []
        hint = did_you_mean(target.name, siblings)
        report.add(path, f"code {code!r} does not exist (looked for {target.as_posix()}){hint}")
    return target.as_posix()


@dataclass(frozen=True)
class _Context:
    path: JsonPath
    report: Report
    provided: frozenset[str]
    """Top-level modules the job folder holds or its requirements.txt installs."""
    folder: str | None
    """The code folder as the spec names it; ``None`` for a single-file job."""


def _check_module(module: Path, shown: str, context: _Context) -> None:
    try:
        source = module.read_bytes()
        tree = ast.parse(source, filename=module.as_posix())
    except OSError as exc:
        context.report.add(context.path, f"cannot read {shown!r}: {exc.strerror or exc}")
        return
    except SyntaxError as exc:
        if exc.lineno is None:  # e.g. a null byte: the text is not Python source at all
            context.report.add(context.path, f"{shown!r} cannot be compiled: {exc.msg}")
        else:
            column = f", column {exc.offset}" if exc.offset else ""
            context.report.add(
                context.path, f"{shown!r} has a syntax error at line {exc.lineno}{column}: {exc.msg}"
            )
        return
    except (ValueError, RecursionError, MemoryError) as exc:
        context.report.add(context.path, f"{shown!r} cannot be compiled: {exc}")
        return
    _check_handler(tree, shown, context)
    _check_imports(tree, shown, context)


def _check_handler(tree: ast.Module, shown: str, context: _Context) -> None:
    functions = {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    handler = functions.get(HANDLER_NAME)
    if handler is None:
        if HANDLER_NAME not in _other_bindings(tree):
            hint = did_you_mean(HANDLER_NAME, functions)
            context.report.add(
                context.path,
                f"{shown!r} defines no top-level {HANDLER_NAME}(event, context), which the job wrapper "
                f"calls{hint}",
            )
        return
    if isinstance(handler, ast.AsyncFunctionDef):
        context.report.add(
            context.path,
            f"{HANDLER_NAME} in {shown!r} is 'async def' (line {handler.lineno}); Lambda calls it as a plain "
            "function, so it must be 'def'",
        )
        return
    problem = _signature_problem(handler.args)
    if problem:
        context.report.add(
            context.path,
            f"{HANDLER_NAME} in {shown!r} (line {handler.lineno}) {problem}; it is called as "
            f"{HANDLER_NAME}(event, context)",
        )


def _other_bindings(tree: ast.Module) -> set[str]:
    """Top-level names bound otherwise than by ``def`` (assigned, imported, a class): their
    signature cannot be read, so a ``handler`` bound that way is taken as it is."""
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound


def _signature_problem(args: ast.arguments) -> str | None:
    """Why ``def handler(<args>)`` cannot be called with two positional arguments, if it cannot."""
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    keyword_only = [
        arg.arg for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True) if default is None
    ]
    if len(positional) < 2 and args.vararg is None:
        count = len(positional)
        return f"takes {count} positional parameter{'s' if count != 1 else ''}"
    if required > 2:
        return f"requires {required} positional parameters"
    if keyword_only:
        return f"requires the keyword-only parameters {', '.join(keyword_only)}"
    return None


def _check_imports(tree: ast.Module, shown: str, context: _Context) -> None:
    warned: set[str] = set()
    for module, line in _unconditional_imports(tree):
        top = module.split(".")[0]
        if top in warned or _is_provided(top, context.provided):
            continue
        warned.add(top)
        fix = (
            f"list it in {context.folder}/requirements.txt or put it beside {FOLDER_ENTRY}"
            if context.folder is not None
            else f"only {shown!r} is bundled: make the code a folder with {FOLDER_ENTRY}, its modules and "
            "a requirements.txt"
        )
        context.report.warn(
            context.path,
            f"{shown!r} imports {top!r} at line {line}, which neither the standard library, the Lambda "
            f"runtime and layer, nor the job's code provides: {fix}",
        )


def _unconditional_imports(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Absolute imports that run: not those under ``if TYPE_CHECKING:`` or in a ``try`` that
    catches ``ImportError`` (the code has planned for the module to be missing)."""
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if (isinstance(node, ast.If) and _is_type_checking(node.test))
        or (isinstance(node, ast.Try) and _catches_import_error(node))
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else test.id if isinstance(test, ast.Name) else ""
    return name == "TYPE_CHECKING"


def _catches_import_error(node: ast.Try) -> bool:
    caught: list[ast.expr] = []
    for handler in node.handlers:
        if handler.type is None:
            return True
        caught += handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in caught
    )


def _is_provided(top: str, provided: frozenset[str]) -> bool:
    if top in sys.stdlib_module_names or top in LAMBDA_MODULES or top in provided:
        return True
    if _normalized(top) in provided:
        return True
    # A distribution installed here may say which modules it provides (PyYAML gives yaml): only
    # ever a reason to stay quiet, never to warn.
    distributions = _installed_distributions().get(top, [])
    return any(_normalized(name) in provided for name in distributions)


@functools.cache
def _installed_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _shown(folder: Path, base_dir: Path) -> str:
    """A folder as the spec would name it: relative to the spec's folder where it is inside it."""
    return folder.relative_to(base_dir).as_posix() if folder.is_relative_to(base_dir) else folder.as_posix()


def _folder_modules(folder: Path) -> frozenset[str]:
    """What the folder puts on the path: its modules and packages (namespace packages included)."""
    return frozenset(
        entry.stem if entry.is_file() else entry.name
        for entry in folder.iterdir()
        if (entry.is_file() and entry.suffix == ".py") or (entry.is_dir() and entry.name.isidentifier())
    )


def _required_modules(requirements: Path) -> frozenset[str]:
    """The normalized project names a requirements file lists (options, URLs-only lines and
    comments skipped); a project's module usually has its name."""
    try:
        lines = requirements.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return frozenset()
    found = set()
    for line in lines:
        text = line.split(" #")[0].strip()
        match = _REQUIREMENT_NAME.match(text)
        if match and not text.startswith("#"):
            found.add(_normalized(match.group()))
    return frozenset(found)
