"""The extract step of an ETL: rows from the run input."""


def handler(event, context):
    return {"rows": event["input"].get("rows", [1, 2, 3])}
