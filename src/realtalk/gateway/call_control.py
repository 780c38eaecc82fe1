"""The gateway's REST calls to the upstream for WebRTC and SIP calls (§4.1, §4.2, §5.5).

Every request carries the server's credential (a fresh header each time, as for the sockets); the
browser and the phone network never see it. The WebRTC offer is posted with the short-lived
``ek_`` secret minted for it, in the ``application/sdp`` form Azure documents (the multipart form
with the server key is unconfirmed on Azure), so the secret lives only inside this module.

A refusal or an unreachable upstream raises ``CallControlError``: ``status`` is the upstream's
HTTP status (``None`` when it could not be reached) and ``detail`` says what happened, for the log.
Neither contains a credential; the route tells the client only a sentence of its own.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final
from urllib.parse import quote

import httpx

from realtalk.gateway.upstream import Upstream

__all__ = ["CallControl", "CallControlError"]

logger = logging.getLogger("realtalk.gateway.calls")

# A minted secret only has to start the call this module posts right after: the shortest lifetime
# the API accepts (§4.1: 10..7200 s).
SECRET_TTL_S: Final = 10
_MAX_DETAIL_CHARS: Final = 300


class CallControlError(Exception):
    """The upstream refused a call-control request, or could not be reached."""

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        self.what = what
        self.status = status
        self.detail = detail
        super().__init__(f"{what}: {detail}")


def _detail(response: httpx.Response) -> str:
    """The upstream's error message (its JSON ``error.message``), short; never a header."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        text = message if isinstance(message, str) else json.dumps(body)[:_MAX_DETAIL_CHARS]
    return f"HTTP {response.status_code}: {text[:_MAX_DETAIL_CHARS] or response.reason_phrase}"


class CallControl:
    """Mint, answer, accept, reject, refer and hang up calls on the upstream."""

    def __init__(self, upstream: Upstream, *, timeout_s: float) -> None:
        self._upstream = upstream
        self._base = upstream.endpoint.rest_base_url
        self._http = httpx.AsyncClient(
            timeout=timeout_s,
            # A proxy from the environment applies to Azure, never to a loopback upstream.
            trust_env=upstream.endpoint.provider != "local",
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(
        self,
        what: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
        idempotent: bool = False,
    ) -> httpx.Response:
        request_headers = dict(headers) if headers is not None else await self._upstream.credential.headers()
        for attempt in (1, 2):
            try:
                response = await self._http.post(
                    self._base + path, json=json_body, content=content, headers=request_headers
                )
                break
            except httpx.HTTPError as exc:
                # A pooled connection the upstream closed while idle fails as the request leaves;
                # an idempotent request (a hangup) is sent once more on a fresh one.
                stale = isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.TimeoutException)
                if attempt == 1 and idempotent and stale:
                    continue
                raise CallControlError(what, None, f"{type(exc).__name__}: {exc!r}") from None
        if response.status_code not in expected:
            raise CallControlError(what, response.status_code, _detail(response))
        return response

    async def mint_client_secret(self, session: dict[str, Any]) -> str:
        """A short-lived ``ek_`` secret whose sessions start with ``session`` (§4.1)."""
        body = {"expires_after": {"anchor": "created_at", "seconds": SECRET_TTL_S}, "session": session}
        response = await self._post("minting a client secret", "/realtime/client_secrets", json_body=body)
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            raise CallControlError("minting a client secret", 200, "the answer had no secret") from None
        if not isinstance(value, str) or not value:
            raise CallControlError("minting a client secret", 200, "the answer had no secret")
        return value

    async def create_call(self, offer_sdp: str, session: dict[str, Any]) -> tuple[str, str]:
        """Start a WebRTC call with the browser's SDP offer: ``(answer SDP, call id)`` (§4.2)."""
        secret = await self.mint_client_secret(session)
        response = await self._post(
            "starting a WebRTC call",
            "/realtime/calls",
            content=offer_sdp.encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
            expected=(200, 201),
        )
        location = response.headers.get("location", "")
        call_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not call_id:
            raise CallControlError("starting a WebRTC call", response.status_code, "no Location header")
        return response.text, call_id

    async def accept(self, call_id: str, session: dict[str, Any]) -> None:
        """Answer a ringing SIP call with ``session`` (§5.5)."""
        await self._post(
            "accepting a call", f"/realtime/calls/{quote(call_id, safe='')}/accept", json_body=session
        )

    async def reject(self, call_id: str, status_code: int | None = None) -> None:
        """Decline a ringing SIP call (the upstream's default status is 603 Decline)."""
        body = {} if status_code is None else {"status_code": status_code}
        await self._post(
            "rejecting a call", f"/realtime/calls/{quote(call_id, safe='')}/reject", json_body=body
        )

    async def refer(self, call_id: str, target_uri: str) -> None:
        """Transfer a SIP call to ``target_uri`` (``tel:+…`` or ``sip:…``)."""
        await self._post(
            "transferring a call",
            f"/realtime/calls/{quote(call_id, safe='')}/refer",
            json_body={"target_uri": target_uri},
        )

    async def hangup(self, call_id: str) -> None:
        """End a WebRTC or SIP call."""
        await self._post(
            "hanging up a call", f"/realtime/calls/{quote(call_id, safe='')}/hangup", idempotent=True
        )
