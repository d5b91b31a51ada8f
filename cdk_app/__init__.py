"""The app assembly and the developer tools: one CDK stack per workflow spec (``app``, ``config``),
the CLI (``cli``, ``python -m cdk_app``), the cloud in one process (``local``), the run console
(``console``) and terminal rendering (``terminal``). Build-time only: nothing here runs in Lambda."""
