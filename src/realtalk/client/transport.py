"""Open one Realtime WebSocket to a resolved endpoint: the handshake that every caller shares.

``RealtimeSession`` (the app-facing client) and the gateway (one upstream connection per client)
open their sockets here, so both send the same headers and limits: credential headers fetched per
connect (an Entra ID token is refreshed when it nears expiry), a 16 MiB incoming size limit (§1.4:
``session.updated`` or ``conversation.item.retrieved`` with audio exceed websockets' 1 MiB default),
no compression (base64 PCM compresses poorly; deflate costs CPU and latency on every frame), and no
proxy for a loopback server. An HTTP refusal of the upgrade becomes ``HandshakeRejected`` with the
status, the body and one sentence saying what to check.
"""

from __future__ import annotations

from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from realtalk.client.credentials import Credential
from realtalk.client.handshake import describe_rejection
from realtalk.errors import HandshakeRejected
from realtalk.protocol.endpoint import ResolvedEndpoint

__all__ = ["MAX_MESSAGE_BYTES", "open_websocket"]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


async def open_websocket(
    endpoint: ResolvedEndpoint,
    credential: Credential,
    *,
    timeout_s: float,
    extra_headers: Mapping[str, str] | None = None,
    close_timeout_s: float = 10.0,
) -> ClientConnection:
    """Open the Realtime WebSocket of ``endpoint``, authenticated by ``credential``.

    ``timeout_s`` bounds the TCP, TLS and WebSocket handshake; ``close_timeout_s`` bounds the
    closing handshake later.

    Raises:
        HandshakeRejected: the server answered the upgrade with an HTTP error (401, 404, ...).
        OSError, TimeoutError, websockets.exceptions.InvalidHandshake: the server could not be
            reached or did not speak WebSocket.
    """
    headers = {**(extra_headers or {}), **await credential.headers()}
    try:
        return await connect(
            endpoint.url,
            additional_headers=headers,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout_s,
            close_timeout=close_timeout_s,
            compression=None,
            proxy=None if endpoint.provider == "local" else True,
        )
    except InvalidStatus as exc:
        body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        raise HandshakeRejected(exc.response.status_code, body, describe_rejection(exc, endpoint)) from None
