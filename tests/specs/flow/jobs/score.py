"""A score taken from the run input."""


def handler(event, context):
    return {"score": event["input"]["score"]}
