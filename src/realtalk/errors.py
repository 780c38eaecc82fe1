"""Every exception realtalk raises, split by who is at fault.

::

    RealtalkError                 base class; catch this to catch everything below
    ├── ConfigError               the user's setup is wrong (names the variable, shows an example)
    ├── LocalProtocolError        we (or the calling code) misused the protocol
    ├── RemoteProtocolError       the server sent something that is not valid protocol
    ├── ServerError               the server sent an ``error`` event (keeps code, event_id, param)
    └── ConnectionClosed          the connection ended (keeps close code and reason)
        └── HandshakeRejected     the server refused the WebSocket upgrade (keeps HTTP status)

Messages are written for the person who has to fix the problem: what is wrong, and what to do.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectionClosed",
    "HandshakeRejected",
    "LocalProtocolError",
    "RealtalkError",
    "RemoteProtocolError",
    "ServerError",
]


class RealtalkError(Exception):
    """Base class of every error realtalk raises on purpose."""


class ConfigError(RealtalkError):
    """The user's configuration is wrong.

    ``variable`` names the setting (an environment variable or option) at fault, and ``example``
    shows a correct value, so the message can say exactly what to change.
    """

    def __init__(self, message: str, *, variable: str | None = None, example: str | None = None) -> None:
        self.variable = variable
        self.example = example
        parts = [message]
        if example:
            # The example is a sentence of its own: end the message first.
            if not message.rstrip().endswith((".", "!", "?", ":")):
                parts[0] = message.rstrip() + "."
            parts.append(f"Example: {example}")
        super().__init__(" ".join(parts))


class LocalProtocolError(RealtalkError):
    """We, or the code calling us, tried to do something the protocol does not allow."""


class RemoteProtocolError(RealtalkError):
    """The server sent something that is not valid Realtime protocol."""


class ServerError(RealtalkError):
    """The server answered with an ``error`` event.

    Keeps the fields of the event's ``error`` object so callers can branch on ``code``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self.code = code
        self.type = type
        self.param = param
        self.event_id = event_id
        super().__init__(f"{code}: {message}" if code else message)
        self.message = message


class ConnectionClosed(RealtalkError):
    """The WebSocket connection closed; ``code`` and ``reason`` are the close frame's."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        text = f"connection closed (code {code})" if code is not None else "connection closed"
        super().__init__(f"{text}: {reason}" if reason else text)


class HandshakeRejected(ConnectionClosed):
    """The server refused the WebSocket upgrade with an HTTP status (401, 404, ...).

    ``body`` is the response body as text (never contains our credentials).
    """

    def __init__(self, status: int, body: str = "", reason: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(None, reason or f"HTTP {status}")
