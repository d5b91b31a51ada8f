"""A job's ``code``: the file or folder it names exists and can be imported."""

from __future__ import annotations

from pathlib import Path

from runtime.definition.report import JsonPath, Report, did_you_mean


def check_job_code(code: str, path: JsonPath, report: Report, base_dir: Path) -> str:
    """Checks ``code`` (relative to the spec's folder) and returns it resolved."""
    target = (base_dir / code).resolve()
    if target.is_dir():
        if not (target / "handler.py").is_file():
            report.add(path, f"code folder {code!r} has no handler.py (looked in {target.as_posix()})")
        if (target / "runtime").exists():
            report.add(path, f"code folder {code!r} contains 'runtime', which would hide the bundled runtime")
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
    else:
        siblings = [entry.name for entry in target.parent.iterdir()] if target.parent.is_dir() else []
        hint = did_you_mean(target.name, siblings)
        report.add(path, f"code {code!r} does not exist (looked for {target.as_posix()}){hint}")
    return target.as_posix()
