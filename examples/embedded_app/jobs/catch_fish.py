"""Reads last season's catch log from the bucket the example grants this job (and no other)."""

from __future__ import annotations

import os
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    import boto3  # the Lambda runtime ships boto3

    log = boto3.client("s3").get_object(Bucket=os.environ["CATCH_LOG_BUCKET"], Key="last-season.txt")
    return {"last_season": len(log["Body"].read().splitlines())}
