"""The spec language: the IR (``model``, safe inside Lambda) and the build-time loader
(``loader``: YAML and JSON Schema, never imported by the handlers)."""
