"""The docs build as a site: ``mkdocs build --strict`` passes (no broken link or anchor, no page
left out of the nav), every page of docs/ is in mkdocs.yml's nav, and the README stays a short
front page whose length belongs to the pages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"
README_MAX_LINES = 330
"""The front page holds the worked examples users asked for (limits across runs, events, callback
tokens, child workflows) and links to docs/ for the rest."""


class _ConfigLoader(yaml.SafeLoader):
    """Safe loading that reads mkdocs.yml's ``!!python/name:`` tags (the mermaid fence's
    formatter) as the dotted name they spell, without importing anything."""


def _python_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    return suffix


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _python_name)


def _config() -> dict[str, Any]:
    loaded = yaml.load(CONFIG.read_text(encoding="utf-8"), Loader=_ConfigLoader)
    assert isinstance(loaded, dict)
    return loaded


def _nav_pages(entry: Any) -> Iterator[str]:
    """The page files of a nav entry: a path, a ``{title: path or entries}``, or a list."""
    if isinstance(entry, str):
        yield entry
    elif isinstance(entry, dict):
        for value in entry.values():
            yield from _nav_pages(value)
    elif isinstance(entry, list):
        for item in entry:
            yield from _nav_pages(item)


def _build(site: Path, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_page_is_in_the_nav() -> None:
    config = _config()
    assert config["docs_dir"] == "docs"
    assert config["strict"] is True
    nav = list(_nav_pages(config["nav"]))
    pages = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    assert sorted(set(nav)) == pages
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_the_mermaid_fence_is_configured() -> None:
    """Mermaid blocks (the README's graphs) render as diagrams, not as code."""
    options = {
        name: value
        for entry in _config()["markdown_extensions"]
        if isinstance(entry, dict)
        for name, value in entry.items()
    }
    mermaid = {"name": "mermaid", "class": "mermaid", "format": "pymdownx.superfences.fence_code_format"}
    assert mermaid in options["pymdownx.superfences"]["custom_fences"]


def test_the_readme_is_a_short_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert "make test" in readme, "CI runs the README's test command"


def test_the_site_home_is_the_readme() -> None:
    """docs/index.md is the README with its links made relative to docs/: edit both alike."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (DOCS / "index.md").read_text(encoding="utf-8") == readme.replace("](docs/", "](")


@pytest.mark.parametrize(
    ("page", "line", "problem"),
    [
        ("spec.md", "See [a page that is not there](missing.md).", "missing.md"),
        ("spec.md", "See [a heading that is not there](cli.md#no-such-heading).", "no-such-heading"),
        ("cli.md", "See [a file outside the site](../Makefile).", "../Makefile"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, page: str, line: str, problem: str) -> None:
    """The strict build is a real check: a copy of the docs with one bad link does not build."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(CONFIG, copy / "mkdocs.yml")
    with (copy / "docs" / page).open("a", encoding="utf-8") as text:
        text.write(f"\n{line}\n")
    built = _build(tmp_path / "site", root=copy)
    assert built.returncode != 0, built.stderr
    assert problem in built.stderr
