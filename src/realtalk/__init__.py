"""realtalk: production voice agents on Azure OpenAI gpt-realtime-1.5 over the GA Realtime API."""

from __future__ import annotations

from realtalk.errors import (
    ConfigError,
    ConnectionClosed,
    HandshakeRejected,
    LocalProtocolError,
    RealtalkError,
    RemoteProtocolError,
    ServerError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectionClosed",
    "HandshakeRejected",
    "LocalProtocolError",
    "RealtalkError",
    "RemoteProtocolError",
    "ServerError",
    "__version__",
]
