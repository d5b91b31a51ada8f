"""The AWS adapters of the ports (``runtime.ports``): Lambda invocation, SNS and Slack."""
