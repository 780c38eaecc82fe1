"""The Realtime gateway behind ``realtalk serve``: one secure, metered hop to Azure.

::

    app = create_app(load_settings())          # FastAPI, with a lifespan that opens the upstream
    async with Gateway(app) as gw:             # uvicorn on the configured host and port
        client = AsyncOpenAI(websocket_base_url=gw.websocket_base_url, api_key=<gateway token>)

It speaks the GA Realtime protocol at ``/openai/v1/realtime``, authenticates its own clients before
opening anything upstream, owns the session (the profile's ``session.update``, an event allowlist,
instructions and tool definitions never shown to clients), forwards audio frames without
re-serialising them, meters every session (limits, a dollar budget), and serves the browser UI.
See docs/gateway.md.
"""

from realtalk.gateway.app import create_app
from realtalk.gateway.config import GatewayConfig, check_exposure
from realtalk.gateway.profile import GatewayProfile, load_profile
from realtalk.gateway.runner import Gateway

__all__ = ["Gateway", "GatewayConfig", "GatewayProfile", "check_exposure", "create_app", "load_profile"]
