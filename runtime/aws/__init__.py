"""The AWS adapters of the ports (``runtime.ports``): Lambda invocation, SNS and Slack, Lambda's
function versions (``lambda_versions``, for prune); and the starter's version map (``versions``)."""
