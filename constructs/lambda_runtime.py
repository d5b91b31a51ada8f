"""The one Python runtime and architecture every function of ours runs on, and the ``runtime``
package they ship: what the code staging and the dependency layer must agree on."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

import runtime

PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_14
"""The newest Python runtime aws-cdk-lib knows; the layer is built for the same version."""


ARCHITECTURE = lambda_.Architecture.X86_64
"""Matches the ``manylinux_2_28_x86_64`` (and older) wheels the layer and job assets are built from
(``constructs.bundling.WHEEL_PLATFORMS``)."""


RUNTIME_PACKAGE = Path(runtime.__file__).resolve().parent
"""The ``runtime`` package every function ships (handlers, engine, store, spec model)."""


def python_version(runtime_: lambda_.Runtime) -> str:
    """``python3.14`` -> ``3.14``: what ``pip --python-version`` wants."""
    return runtime_.name.removeprefix("python")
