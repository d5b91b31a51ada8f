"""Loads what the transform step produced."""


def handler(event, context):
    return {"loaded": len(event["results"]["transform"]["rows"])}
