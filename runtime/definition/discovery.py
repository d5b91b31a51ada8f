"""Which files are specs: the files named, and the YAML and JSON files directly in the folders
named."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from runtime.definition.reading import SourceFile, read_spec_file
from runtime.errors import Problem, SpecError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
"""What may be a spec when a folder is loaded (``*.schema.json`` excluded)."""


@dataclass
class Discovery:
    specs: list[SourceFile] = field(default_factory=list)
    """Read, in the order given (a folder's files sorted by name)."""
    problems: list[Problem] = field(default_factory=list)
    """Paths that do not exist, folders without specs."""


def discover(paths: Sequence[str | PathLike[str]]) -> Discovery:
    """Reads the spec files under ``paths`` (files, or folders whose files are looked at, not
    their subfolders)."""
    found = Discovery()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(
                entry
                for entry in path.iterdir()
                if entry.is_file()
                and entry.suffix in SPEC_SUFFIXES
                and not entry.name.endswith(".schema.json")
            )
            specs = [read_spec_file(candidate) for candidate in candidates]
            if not specs:
                found.problems.append(
                    Problem(
                        str(path),
                        "$",
                        f"no spec files ({', '.join('*' + s for s in SPEC_SUFFIXES)}) in this folder",
                    )
                )
            found.specs += specs
        elif path.exists():
            found.specs.append(read_spec_file(path))
        else:
            found.problems.append(Problem(str(path), "$", "no such file or folder"))
    return found


def spec_files(paths: Sequence[str | PathLike[str]]) -> list[Path]:
    """The spec files under ``paths``, in load order; missing paths and folders without specs
    raise ``SpecError``."""
    found = discover(paths)
    if found.problems:
        raise SpecError(found.problems)
    return [file.path for file in found.specs]
