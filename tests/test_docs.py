"""The repository's docs stand alone: nothing cites a design note outside the repository, every
relative link in README.md and docs/ leads to a file (and heading) that exists, and every code
comment that sends the reader to a section of docs/architecture.md names a section it has."""

from __future__ import annotations

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
