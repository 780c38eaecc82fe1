"""A malformed WebSocket upgrade gets a 4xx and one log line, and never a header's value in either.

uvicorn's WebSocket protocol hands the upgrade request to websockets' ``ServerProtocol.accept``.
Two things go wrong there with hostile input (issue 13, defect 2):

* on a header it cannot parse, ``accept`` refuses with a body that quotes the header: a token sent
  in ``Sec-WebSocket-Protocol: openai-insecure-api-key.<token>`` came back in the 400's body, and
  went into any proxy's or client's log that records error bodies;
* when that header holds a byte that is not ASCII (kept as a lone surrogate), building the refusal
  itself raises ``UnicodeEncodeError``: the client got no answer at all, and asyncio logged the
  traceback, the header's value included, as "Fatal error: protocol.data_received() call failed".

``QuietServerProtocol`` refuses with a fixed sentence naming the header (never its value) and logs
one line with the same; ``refuse_unparsable`` answers 400 where even that failed. The status codes
stay websockets' own (400 malformed, 403 origin, 426 not an upgrade).
"""

from __future__ import annotations

import http
import logging
from typing import Any, Final

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.http11 import Response
from websockets.server import ServerProtocol

__all__ = ["QuietServerProtocol", "malformed_upgrade_response"]

logger = logging.getLogger("realtalk.websocket")

_REFUSED: Final = "The WebSocket upgrade request is malformed"


def _what_was_wrong(exc: BaseException | None) -> str:
    """The header at fault, by name only (exception messages quote values)."""
    if isinstance(exc, InvalidHeader):
        return f"its {exc.name} header is not valid"
    if exc is None:
        return "it could not be parsed"
    return f"it failed the handshake's checks ({type(exc).__name__})"


def malformed_upgrade_response(status: int, exc: BaseException | None) -> Response:
    """A plain-text refusal that says what was wrong without repeating anything the client sent."""
    what = _what_was_wrong(exc)
    body = f"{_REFUSED}: {what}. Send a WebSocket upgrade as RFC 6455 describes.\n".encode()
    headers = Headers(
        [
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
    )
    logger.info("refused a WebSocket upgrade with HTTP %d: %s", status, what)
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class QuietServerProtocol(ServerProtocol):
    """websockets' server handshake, refusing without echoing the request (see the module doc)."""

    def reject(self, status: Any, text: str) -> Response:
        return malformed_upgrade_response(int(status), self.handshake_exc)
