"""Which files are specs. A file named on its own is one; in a folder, a YAML or JSON file is a
spec only if it says so at its top level (``workflow``, or the seed's ``purposeId``), so a
config file kept next to the specs is skipped instead of failing the build. A file that does not
parse is taken as a spec: it may well be one, and its errors must not go unseen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from runtime.definition.reading import SourceFile, read_spec_file
from runtime.errors import Problem, SpecError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
"""What may be a spec when a folder is loaded (``*.schema.json`` excluded)."""

SPEC_MARKERS = ("workflow", "purposeId")
"""Top-level keys that make a file in a folder a spec: the canonical id, the seed's id."""


@dataclass(frozen=True)
class SkippedFile:
    """A file in a spec folder that is not a spec; ``str()`` is the line ``validate`` prints."""

    path: Path

    def __str__(self) -> str:
        return (
            f"{self.path}: skipped: not a spec (a spec has 'workflow' at its top level, the seed's "
            "object 'purposeId'); keep other files out of the folder to silence this"
        )


@dataclass
class Discovery:
    specs: list[SourceFile] = field(default_factory=list)
    """Read, in the order given (a folder's files sorted by name)."""
    skipped: list[SkippedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Paths that do not exist, folders without specs."""


def is_spec(file: SourceFile) -> bool:
    """Whether a file found in a folder is a spec (see the module docstring)."""
    if file.report.problems:
        return True
    return isinstance(file.document, dict) and any(key in file.document for key in SPEC_MARKERS)


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
            files = [read_spec_file(candidate) for candidate in candidates]
            specs = [file for file in files if is_spec(file)]
            found.skipped += [SkippedFile(file.path) for file in files if not is_spec(file)]
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
