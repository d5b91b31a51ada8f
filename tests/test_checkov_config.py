"""checkov runs in ``make lint`` (issue 22) with a checked-in config whose every skipped check
says why; the scanner is pinned, in a virtualenv of its own."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / ".checkov.yaml"


def test_every_skipped_check_gives_its_reason_in_a_comment_above_it():
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    skipped = yaml.safe_load("\n".join(lines))["skip-check"]

    assert skipped, "nothing skipped: drop the list rather than leave it empty"
    for check in skipped:
        [at] = [index for index, line in enumerate(lines) if line.strip() == f"- {check}"]
        reason: list[str] = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            reason.insert(0, line.strip().lstrip("#").strip())
        assert len(" ".join(reason).split()) >= 8, f"{check} is skipped without a reason"


def test_make_lint_runs_the_pinned_checkov_over_every_template_with_the_config():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]

    assert "$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --file cdk.out/*.template.json" in lint
    assert yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["framework"] == ["cloudformation"]
    pins = [
        line
        for line in (REPO / "requirements-checkov.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    [pin] = pins
    assert re.fullmatch(r"checkov==\d+\.\d+\.\d+", pin), pin
