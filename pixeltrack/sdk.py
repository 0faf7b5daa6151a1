"""The SDK's public import path (`from pixeltrack.sdk import Tracker, ...`): it lives in pixeltrack/sender/sdk.py."""

from __future__ import annotations

from pixeltrack.sender.sdk import DAY_MS, ApiClient, ApiError, Message, PreparedSend, Tracker, prepare

__all__ = ["DAY_MS", "ApiClient", "ApiError", "Message", "PreparedSend", "Tracker", "prepare"]
