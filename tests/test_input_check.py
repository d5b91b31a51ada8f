"""Which JSON Schema ``format``s a run input is checked against: the ones jsonschema checks with
nothing but its own dependencies, the same on this machine as in the Lambda layer; every other
format is an annotation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.definition.input_check import CHECKED_FORMATS, InputRefused, check_input, input_problems

ROOT = Path(__file__).resolve().parents[1]

BAD = {
    "date": "2026-02-30",
    "email": "ops team",
    "idn-email": "ops team",
    "ipv4": "10.0.0.256",
    "ipv6": "::g",
    "regex": "([a-z]",
    "uuid": "not-a-uuid",
}

GOOD = {
    "date": "2026-02-28",
    "email": "ops@example.com",
    "idn-email": "ops@exämple.com",
    "ipv4": "10.0.0.255",
    "ipv6": "::1",
    "regex": "^[a-z]+$",
    "uuid": "3f2a1c9e-8b7d-4e6f-a5c4-1b2d3e4f5a6b",
}


def problems(format_name: str, value: Any) -> list[tuple[str, str]]:
    schema = {"type": "object", "properties": {"field": {"type": "string", "format": format_name}}}
    return [(where, message) for _, where, message in input_problems(schema, {"field": value})]


OPTIONAL = (
    "fqdn",
    "idna",
    "isoduration",
    "jsonpointer",
    "rfc3339_validator",
    "rfc3986_validator",
    "rfc3987",
    "rfc3987_syntax",
    "uri_template",
    "webcolors",
)
"""The packages of jsonschema's ``format`` extras; the Lambda layer (``runtime/requirements.txt``)
bundles none of them."""


def test_the_checked_formats_are_the_ones_documented() -> None:
    assert CHECKED_FORMATS == frozenset(BAD) == frozenset(GOOD)


def test_the_checked_formats_are_what_jsonschema_checks_without_its_format_extras() -> None:
    """As in the Lambda layer: the starter checks exactly what ``run`` and ``start`` check here."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in OPTIONAL)
    script = (
        f"import sys\n{blocked}"
        "from jsonschema import Draft202012Validator as V\nprint(sorted(V.FORMAT_CHECKER.checkers))"
    )
    layer = (ROOT / "runtime" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    bundled = {line.split("==")[0].strip().lower() for line in layer if line and not line.startswith("#")}

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == str(sorted(CHECKED_FORMATS))
    assert bundled & {name.replace("_", "-") for name in OPTIONAL} == set()  # as simulated above


@pytest.mark.parametrize("format_name", sorted(BAD))
def test_a_value_not_of_a_checked_format_is_refused_at_its_path(format_name: str) -> None:
    assert problems(format_name, BAD[format_name]) == [
        ("$.field", f"{BAD[format_name]!r} is not a {format_name!r}")
    ]
    assert problems(format_name, GOOD[format_name]) == []


@pytest.mark.parametrize(
    ("format_name", "value"),
    [
        ("date-time", "yesterday at noon"),  # needs rfc3339-validator, which the layer does not bundle
        ("time", "noon"),
        ("uri", "not a uri"),
        ("hostname", "-bad-"),
        ("idn-hostname", "-bad-"),  # idna is installed here, not in the Lambda layer: not checked
        ("json-pointer", "no/leading/slash"),  # the same for jsonpointer
        ("duration", "a while"),
        ("a-format-of-our-own", "anything"),
    ],
)
def test_every_other_format_is_an_annotation(format_name: str, value: str) -> None:
    assert problems(format_name, value) == []


def test_an_input_with_a_bad_email_is_refused_naming_its_path() -> None:
    schema = {
        "type": "object",
        "properties": {"contacts": {"type": "array", "items": {"type": "string", "format": "email"}}},
    }

    with pytest.raises(InputRefused) as refused:
        check_input("orders", schema, {"contacts": ["ops@example.com", "ops team"]})

    assert refused.value.problems == ["$.contacts[1]: 'ops team' is not a 'email'"]
    assert str(refused.value) == (
        "the input does not match the input_schema of workflow 'orders': "
        "$.contacts[1]: 'ops team' is not a 'email'"
    )
