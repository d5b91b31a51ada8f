# The test kit's fixtures: `workflow_test` and the server it runs on. In a project of your own,
# `pytest_plugins = ["cdk_app.testkit"]` in the root conftest.py does the same.
from cdk_app.testkit import workflow_test, workflow_test_server

__all__ = ["workflow_test", "workflow_test_server"]
