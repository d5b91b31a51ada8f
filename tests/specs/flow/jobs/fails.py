"""Fails every attempt."""


def handler(event, context):
    raise RuntimeError(f"{event['job']} broke on attempt {event['attempt']}")
