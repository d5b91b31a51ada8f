"""The app assembly and the developer tools: one CDK stack per workflow spec, the CLI
(``python -m cdk_app``) and the local runner. Build-time only: nothing here runs in Lambda."""
