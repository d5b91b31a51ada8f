"""Says what it got: the results it was given and, for a failure handler, the failure."""


def handler(event, context):
    output = {"job": event["job"], "saw": sorted(event["results"])}
    if "failure" in event:
        output["failure"] = event["failure"]
    return output
