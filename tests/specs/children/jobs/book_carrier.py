"""Books a carrier for the order the shipping run was started with."""


def handler(event, context):
    return {"tracking": f"TRK-{event['input']['order_id']}"}
