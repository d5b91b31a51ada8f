"""Imports of every kind the validator tells apart; only ``pandas`` is provided by nothing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pandas
import pymongo
import requests.adapters
from layout import render

try:
    import ujson
except ImportError:
    ujson = None

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    client: S3Client = boto3.client("s3")
    frame = pandas.DataFrame(event["results"])
    return {
        "report": render(json.dumps(frame.to_dict())),
        "bucket": str(client),
        "db": pymongo.version,
        "retries": requests.adapters.DEFAULT_RETRIES,
    }
