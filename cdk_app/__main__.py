"""``python -m cdk_app``: the developer CLI (see ``cdk_app.cli.main``)."""

from __future__ import annotations

from cdk_app.cli.main import main

raise SystemExit(main())
