"""The ``FunctionVersions`` port's AWS adapter: Lambda's listings, read page by page, and its
deletions, each failure a ``PruneError`` naming what could not be done."""

from __future__ import annotations

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

    def function_names(self, prefix: str) -> list[str]:
        names: list[str] = []
        marker: str | None = None
        while True:
            page = self._call("list functions", "list_functions", **({"Marker": marker} if marker else {}))
            names += [f["FunctionName"] for f in page["Functions"] if f["FunctionName"].startswith(prefix)]
            marker = page.get("NextMarker")
            if not marker:
                return sorted(names)

    def versions(self, function: str) -> list[int]:
        numbers: list[int] = []
        marker: str | None = None
        while True:
            page = self._call(
                f"list the versions of {function}",
                "list_versions_by_function",
                FunctionName=function,
                **({"Marker": marker} if marker else {}),
            )
            numbers += [int(v["Version"]) for v in page["Versions"] if v["Version"] != LATEST]
            marker = page.get("NextMarker")
            if not marker:
                return sorted(numbers)

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
        arns: set[str] = set()
        marker: str | None = None
        while True:
            page = self._call(
                f"list the versions of {function}",
                "list_versions_by_function",
                FunctionName=function,
                **({"Marker": marker} if marker else {}),
            )
            arns |= {layer["Arn"] for version in page["Versions"] for layer in version.get("Layers", [])}
            marker = page.get("NextMarker")
            if not marker:
                return arns

    def layer_versions(self, layer: str) -> list[int]:
        numbers: list[int] = []
        marker: str | None = None
        while True:
            page = self._call(
                f"list the versions of layer {layer}",
                "list_layer_versions",
                LayerName=layer,
                **({"Marker": marker} if marker else {}),
            )
            numbers += [int(version["Version"]) for version in page["LayerVersions"]]
            marker = page.get("NextMarker")
            if not marker:
                return sorted(numbers)

    def delete_layer_version(self, layer: str, version: int) -> None:
        self._call(
            f"delete version {version} of layer {layer}",
            "delete_layer_version",
            LayerName=layer,
            VersionNumber=version,
        )
