"""The gateway's HTTP and WebSocket routes, one router per concern; handlers are glue only."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from realtalk.gateway.state import GatewayState

__all__ = ["state_of"]


def state_of(connection: HTTPConnection) -> GatewayState:
    """The ``GatewayState`` of the app serving ``connection``."""
    state: GatewayState = connection.app.state.gateway
    return state
