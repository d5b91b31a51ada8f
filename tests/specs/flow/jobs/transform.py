"""Transforms the rows the extract step (an earlier phase) produced."""


def handler(event, context):
    return {"rows": [row * 10 for row in event["results"]["extract"]["rows"]]}
