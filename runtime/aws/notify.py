"""The notifier's AWS adapters of the ``Notifier`` port: SNS (the workflow's topic) and a Slack
incoming webhook."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from runtime.ports import NotifyError

SNS_SUBJECT_MAX = 100


class SnsNotifier:
    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self.client = sns_client
        self.topic_arn = topic_arn

    def publish(self, subject: str, message: str) -> None:
        try:
            self.client.publish(TopicArn=self.topic_arn, Subject=subject[:SNS_SUBJECT_MAX], Message=message)
        except Exception as exc:  # see LambdaDispatcher.dispatch
            raise NotifyError(f"could not publish to {self.topic_arn}: {exc}") from exc


class SlackNotifier:
    """Posts to a Slack incoming webhook whose URL is read from Secrets Manager once."""

    def __init__(self, secrets_client: Any, secret_id: str, timeout: float = 5.0) -> None:
        self.secrets_client = secrets_client
        self.secret_id = secret_id
        self.timeout = timeout
        self._url: str | None = None

    def webhook_url(self) -> str:
        if self._url is None:
            try:
                url = self.secrets_client.get_secret_value(SecretId=self.secret_id)["SecretString"].strip()
            except Exception as exc:  # see LambdaDispatcher.dispatch
                raise NotifyError(f"could not read the Slack webhook secret {self.secret_id}: {exc}") from exc
            if not url.startswith(("https://", "http://")):
                raise NotifyError(f"the Slack webhook secret {self.secret_id} does not hold a URL")
            self._url = url
        return self._url

    def publish(self, subject: str, message: str) -> None:
        body = json.dumps({"text": f"*{subject}*\n{message}"}).encode()
        request = urllib.request.Request(
            self.webhook_url(), data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if response.status >= 300:
                    raise NotifyError(f"Slack answered {response.status}")
        except OSError as exc:
            raise NotifyError(f"could not post to Slack: {exc}") from exc
