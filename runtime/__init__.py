"""Lambda run-time code: spec IR, engine, MongoDB store, handlers. Never imports aws_cdk."""
