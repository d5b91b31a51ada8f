"""The ``FunctionVersions`` port's AWS adapter: Lambda's listings, read page by page, and its
deletions, each failure a ``PruneError`` naming what could not be done."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runtime.errors import WorkflowError

LATEST = "$LATEST"


class PruneError(WorkflowError):
    """Lambda refused a listing or a deletion."""


class LambdaVersions:
    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def _call(self, what: str, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self.client, operation)(**arguments)
        except Exception as exc:  # botocore's error types vary by cause
            raise PruneError(f"could not {what}: {exc}") from exc

    def _listed(self, what: str, operation: str, field: str, **arguments: Any) -> Iterator[Any]:
        """Every entry of a Lambda listing's ``field``, page after page (``NextMarker``)."""
        marker: str | None = None
        while True:
            page = self._call(what, operation, **arguments, **({"Marker": marker} if marker else {}))
            yield from page[field]
            marker = page.get("NextMarker")
            if not marker:
                return

    def function_names(self, prefix: str) -> list[str]:
        functions = self._listed("list functions", "list_functions", "Functions")
        return sorted(f["FunctionName"] for f in functions if f["FunctionName"].startswith(prefix))

    def _function_versions(self, function: str) -> Iterator[Any]:
        return self._listed(
            f"list the versions of {function}", "list_versions_by_function", "Versions", FunctionName=function
        )

    def versions(self, function: str) -> list[int]:
        return sorted(int(v["Version"]) for v in self._function_versions(function) if v["Version"] != LATEST)

    def delete_version(self, function: str, version: int) -> None:
        self._call(
            f"delete version {version} of {function}",
            "delete_function",
            FunctionName=function,
            Qualifier=str(version),
        )

    def delete_function(self, function: str) -> None:
        self._call(f"delete {function}", "delete_function", FunctionName=function)

    def layer_references(self, function: str) -> set[str]:
        versions = self._function_versions(function)
        return {layer["Arn"] for version in versions for layer in version.get("Layers", [])}

    def layer_versions(self, layer: str) -> list[int]:
        listed = self._listed(
            f"list the versions of layer {layer}", "list_layer_versions", "LayerVersions", LayerName=layer
        )
        return sorted(int(version["Version"]) for version in listed)

    def delete_layer_version(self, layer: str, version: int) -> None:
        self._call(
            f"delete version {version} of layer {layer}",
            "delete_layer_version",
            LayerName=layer,
            VersionNumber=version,
        )
