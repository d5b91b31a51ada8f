"""Shared pytest set-up. Fixture families live in their own modules, registered here."""

pytest_plugins = ["tests.mongo_server", "tests.cdk_fixtures"]
