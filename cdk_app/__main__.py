"""``python -m cdk_app``: the developer CLI (see ``cdk_app.cli.main``)."""

from __future__ import annotations

from cdk_app.cli.interrupt import bound_interrupts

bound_interrupts("python -m cdk_app")

from cdk_app.cli.main import main  # noqa: E402 (Ctrl-C is bounded from the first import on)

raise SystemExit(main())
