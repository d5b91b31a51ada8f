"""The repository's docs stand alone: nothing cites a design note outside the repository, every
relative link in README.md and docs/ leads to a file (and heading) that exists, and every code
comment that sends the reader to a section of docs/architecture.md names a section it has."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
READ_BY_CONTRIBUTORS = (
    "README.md",
    "docs",
    "runtime",
    "constructs",
    "cdk_app",
    "tests",
    "benchmarks",
    "workflows",
    "pyproject.toml",
    "Makefile",
    "app.py",
    "wf",
)
OUTSIDE_CITATIONS = ("DESIGN" + ".md", "../" + "shared/")
"""The team's design note and the folder beside the clone; spelled in two halves so that this
file does not cite them either (``grep -rn`` over the repository must find nothing)."""
TEXT_SUFFIXES = {"", ".py", ".md", ".json", ".yaml", ".yml", ".toml", ".txt"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SECTION_REFERENCE = re.compile(r'docs/architecture\.md(?:, | \()(?:"([^"]+)"|([A-Z]\w+))')
"""``docs/architecture.md, "Job API"``, ``docs/architecture.md ("Invariants")``, or one unquoted word."""


def _sections_cited(text: str) -> list[str]:
    return [quoted or word for quoted, word in SECTION_REFERENCE.findall(text)]


def _text_files() -> Iterator[Path]:
    """Every text file a contributor reads."""
    for name in READ_BY_CONTRIBUTORS:
        path = ROOT / name
        for candidate in path.rglob("*") if path.is_dir() else [path]:
            if (
                candidate.is_file()
                and candidate.suffix in TEXT_SUFFIXES
                and "__pycache__" not in candidate.parts
            ):
                yield candidate


def _headings(markdown: Path) -> set[str]:
    lines = markdown.read_text(encoding="utf-8").splitlines()
    return {line.lstrip("#").strip() for line in lines if line.startswith("#")}


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in _headings(markdown)}


def _resolves(document: Path, target: str) -> bool:
    file_part, _, anchor = target.partition("#")
    linked = (document.parent / file_part).resolve() if file_part else document
    if not linked.exists() or not linked.is_relative_to(ROOT):
        return False
    return not anchor or linked.suffix != ".md" or anchor in _anchors(linked)


def test_nothing_cites_a_design_note_outside_the_repository() -> None:
    citing = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(citation in line for citation in OUTSIDE_CITATIONS)
    ]
    assert citing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    links = LINK.findall(document.read_text(encoding="utf-8"))
    relative = [target for target in links if not re.match(r"[a-z]+:", target)]
    assert [target for target in relative if not _resolves(document, target)] == []


def test_every_section_the_code_points_at_exists() -> None:
    headings = _headings(ARCHITECTURE)
    references = {
        (section, str(path.relative_to(ROOT)))
        for path in _text_files()
        for section in _sections_cited(path.read_text(encoding="utf-8"))
    }
    assert len(references) >= 5, "the pattern no longer finds the code's references"
    assert sorted(reference for reference in references if reference[0] not in headings) == []


def test_the_section_pattern_reads_each_way_the_code_cites() -> None:
    cited = (
        'a (docs/architecture.md, "Job API"); b docs/architecture.md ("Invariants"); '
        "c (docs/architecture.md, Layout)"
    )
    assert _sections_cited(cited) == ["Job API", "Invariants", "Layout"]


DOTTED_NAME = re.compile(r"(?<![\w./-])((?:runtime|cdk_app|constructs)(?:\.[A-Za-z_]\w*)+)")
"""``runtime.service.timers.fire_due_timers``, ``cdk_app.cli.main``: a module, maybe a name in it."""
PROSE = ("README.md", "docs", "runtime", "cdk_app", "constructs", "benchmarks", "scripts", "pyproject.toml")


def _top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names |= {element.id for element in elements if isinstance(element, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def dotted_name_exists(name: str, root: Path = ROOT) -> bool:
    """``a.b.c.d`` names a module of the repository, or a top-level name of one (what follows that
    name, an attribute, is not checked). ``constructs.X`` alone may be the CDK library's."""
    parts = name.split(".")
    while parts[-1].startswith("__"):  # runtime.__file__: the module's own attribute
        parts.pop()
    for length in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:length])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file() or (length == 1 and base.is_dir()):
            rest = parts[length:]
            if not rest:
                return True
            if not module.is_file():
                return parts[0] == "constructs" and len(parts) == 2  # the library's own names
            names = _top_level_names(module)
            submodule = base / rest[0]
            return rest[0] in names or submodule.with_suffix(".py").is_file() or submodule.is_dir()
    return False


def _prose_files() -> Iterator[Path]:
    for candidate in _text_files():
        if candidate.relative_to(ROOT).parts[0] in PROSE:
            yield candidate


def test_every_dotted_name_the_docs_and_code_mention_exists() -> None:
    """A module or name the docs, docstrings and comments point at is where they say: a move that
    forgets one fails here."""
    missing = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in _prose_files()
        for name in DOTTED_NAME.findall(path.read_text(encoding="utf-8"))
        if not dotted_name_exists(name.rstrip("."))
    )
    assert missing == []


def test_the_dotted_name_check_finds_a_name_that_moved() -> None:
    assert dotted_name_exists("runtime.service.timers.fire_due_timers")
    assert dotted_name_exists("runtime.engine")
    assert dotted_name_exists("constructs.Construct")
    assert not dotted_name_exists("runtime.engine.timers.fire_due_timers")
    assert not dotted_name_exists("runtime.timers")


MODULE_PATH = re.compile(r"(?<![\w./-])((?:runtime|cdk_app|constructs)/[\w/]*\w(?:\.\w+)*)(?![\w/])")


def test_every_module_path_the_docs_and_code_mention_exists() -> None:
    missing = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in _prose_files()
        for name in MODULE_PATH.findall(path.read_text(encoding="utf-8"))
        if not (ROOT / name).exists()
    )
    assert missing == []
