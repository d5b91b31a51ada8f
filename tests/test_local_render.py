"""The summary table at the terminal's width: the output column takes what the other columns
leave, and a value longer than that is cut in the middle, never the column's name."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cdk_app.terminal.render import OUTPUT_COLUMN, cut_middle, print_summary
from runtime.service.run_view import JobReport, RunReport

OUTPUT = {"rows": 12, "source": "s3://bucket/exports/2026/11/27/customers-with-addresses.csv", "ok": True}
OUTPUT_TEXT = (
    '{"rows": 12, "source": "s3://bucket/exports/2026/11/27/customers-with-addresses.csv", "ok": true}'
)
ERROR = "ConnectionError: could not reach https://api.example.com/v1/customers?page=3 after 3 tries"


def _report() -> RunReport:
    def job(name: str, phase: str, status: str, output: object = None, error: str | None = None) -> JobReport:
        return JobReport(
            name=name,
            phase=phase,
            status=status,
            attempts=1,
            executions=1,
            output=output,
            error=error,
            seconds=0.5,
        )

    return RunReport(
        run_id="etl-20261127T005850-c8bdfdfa",
        workflow="etl",
        status="failed",
        phase="load",
        jobs=(
            job("go_to_fishing_ground", "extract", "succeeded", output=OUTPUT),
            job("extract_web", "extract", "failed", error=ERROR),
            job("load", "load", "pending"),
        ),
        error="job 'extract_web' failed",
        seconds=1.0,
    )


def _render(width: int) -> list[str]:
    out = io.StringIO()
    print_summary(Console(file=out, width=width, highlight=False, color_system=None), _report())
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines), lines
    return lines


def _row(lines: list[str], job: str) -> str:
    return next(line for line in lines if line.strip().startswith(job + " "))


def test_at_80_columns_the_column_name_is_whole_and_a_value_keeps_both_ends() -> None:
    lines = _render(80)

    header = next(line for line in lines if line.startswith("job"))
    assert header.rstrip().endswith(OUTPUT_COLUMN)
    row = _row(lines, "go_to_fishing_ground").rstrip()
    preview = row[header.index(OUTPUT_COLUMN) :]
    assert " … " in preview
    head, tail = preview.split(" … ")
    assert OUTPUT_TEXT.startswith(head)
    assert OUTPUT_TEXT.endswith(tail)
    assert tail.endswith("true}")
    assert len(preview) >= len(OUTPUT_COLUMN)  # what the others leave of 80, not a handful
    error = _row(lines, "extract_web")[header.index(OUTPUT_COLUMN) :].rstrip()
    assert error.startswith("Connectio")
    assert error.endswith("3 tries")


def test_at_200_columns_the_output_column_takes_the_remaining_width() -> None:
    lines = _render(200)

    assert OUTPUT_TEXT in _row(lines, "go_to_fishing_ground")
    assert ERROR in _row(lines, "extract_web")
    assert len(OUTPUT_TEXT) > 48
    assert len(ERROR) > 48


@pytest.mark.parametrize("width", [80, 120, 200])
def test_every_phase_is_a_heading_over_its_jobs(width: int) -> None:
    lines = _render(width)

    names = [line.split()[0] for line in lines if line and not line.startswith(("─", "etl run", "job "))]
    assert names[:5] == ["extract", "go_to_fishing_ground", "extract_web", "load", "load"]


def test_a_cut_keeps_the_start_and_the_end_of_the_value() -> None:
    assert (
        cut_middle('{"rows": 12, "source": "s3://b/k.csv", "ok": true}', 26) == '{"rows": 12, … "ok": true}'
    )
    assert cut_middle("short", 26) == "short"
    assert cut_middle("abcdef", 3) == "ab…"
    assert cut_middle("abcdef", 0) == ""
