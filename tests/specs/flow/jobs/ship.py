"""Ships with whichever approval succeeded."""


def handler(event, context):
    return {"approved_by": sorted(event["results"])}
