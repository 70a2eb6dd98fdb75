"""Alerts: a JSON message to a webhook (Slack-compatible ``{"text": ...}`` plus the structured event).

The URL comes from ``$FORECASTING_WEBHOOK_URL`` (never from the repository); without it alerts are off.
A webhook that is down never fails a run or a sensor tick: the error is returned and logged instead.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

WEBHOOK_ENV = "FORECASTING_WEBHOOK_URL"
TIMEOUT_S = 5.0


def webhook_url() -> str | None:
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    return url or None


def alert_payload(event: str, text: str, details: dict[str, Any] | None = None) -> dict:
    """Slack shows ``text``; other receivers can read ``event`` and ``details``."""
    return {"text": f"[forecasting_assets] {text}", "event": event, "details": details or {}}


def send_alert(event: str, text: str, details: dict[str, Any] | None = None, url: str | None = None) -> str:
    """POST the alert; returns "sent", "off" (no URL configured) or "failed: <why>"."""
    url = url or webhook_url()
    if url is None:
        return "off"
    if not url.startswith(("http://", "https://")):
        return f"failed: {WEBHOOK_ENV} must be an http(s) URL"
    body = json.dumps(alert_payload(event, text, details), default=str).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return "sent" if 200 <= response.status < 300 else f"failed: HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        return f"failed: {error}"
