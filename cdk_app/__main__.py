"""``python -m cdk_app``: the developer CLI (see ``cdk_app.cli``)."""

from __future__ import annotations

from cdk_app.cli import main

raise SystemExit(main())
