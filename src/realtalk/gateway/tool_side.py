"""The tools a gateway session runs itself: the profile's tools and delegation, hidden from the client.

Issue 14, item 3 (lessons.md mistake 2: tool schemas and outputs sent to the browser). The profile's
tools are the server's: the client never sees their definitions (policy.py redacts the session),
their calls or their outputs, and cannot answer them. So, of the upstream's events:

* a ``function_call`` item of a server tool, a ``function_call_output`` answering one, and their
  ``response.output_item.*``, ``conversation.item.*`` and ``response.function_call_arguments.*``
  events are not forwarded; ``response.done`` is forwarded without those items;
* a later item whose ``previous_item_id`` names a hidden item is forwarded with the visible item
  before it, so a client that orders its conversation by ``previous_item_id`` keeps a whole chain;
* the UI gets ``realtalk.tool`` events: which tool ran, for how long, how it ended, what it cost.

Calls run as tasks (``realtalk.client.tools.ToolCalls``), never in the frame callbacks. Their
outputs go to the session's protocol core, which sends the one follow-up ``response.create`` and
decides the filler and the cancellations (a barge-in supersedes the calls still running).
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Container, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from realtalk.client.delegation import DelegationTool
from realtalk.client.tools import Tool, ToolCalls, ToolOutcome, ToolRunner
from realtalk.gateway import extension

if TYPE_CHECKING:
    from realtalk.gateway.logs import SessionLog
    from realtalk.gateway.policy import SessionView
    from realtalk.gateway.profile import GatewayProfile
    from realtalk.gateway.relay import SessionServices
    from realtalk.gateway.upstream import Upstream
    from realtalk.ledger.meter import SessionMeter
    from realtalk.protocol import ClientProtocol

__all__ = ["SessionTools", "ToolSide", "session_tools"]

_REMEMBERED: Final = 256  # hidden items and server calls per session; a few per turn are live
_ITEM_EVENTS: Final = frozenset(
    {"conversation.item.added", "conversation.item.done", "conversation.item.created"}
)
_OUTPUT_ITEM_EVENTS: Final = frozenset({"response.output_item.added", "response.output_item.done"})
_ARGUMENT_EVENTS: Final = frozenset(
    {"response.function_call_arguments.delta", "response.function_call_arguments.done"}
)
_BY_ITEM_ID: Final = frozenset(
    {"conversation.item.retrieved", "conversation.item.deleted", "conversation.item.truncated"}
)


class SessionTools:
    """What one gateway shares between its sessions' tools: the profile's tools and delegation."""

    def __init__(
        self, runner_tools: tuple[Any, ...], delegation: DelegationTool | None, timeout_s: float
    ) -> None:
        self._tools = runner_tools
        self._delegation = delegation
        self._timeout_s = timeout_s

    def runner(self, extra: Sequence[Tool] = ()) -> ToolRunner:
        """A runner for one session (delegation keeps one thread per session), with ``extra``
        tools of that session only."""
        tools = [*self._tools, *extra]
        if self._delegation is not None:
            tools.append(self._delegation.for_session())
        return ToolRunner(tools, default_timeout_s=self._timeout_s)

    async def aclose(self) -> None:
        if self._delegation is not None:
            await self._delegation.aclose()


def session_tools(profile: GatewayProfile, upstream: Upstream) -> SessionTools | None:
    """The tools of a gateway whose profile names any (``None``: the client answers every call)."""
    file = profile.file
    if file is None or not profile.server_tool_names:
        return None
    delegation = None
    if file.delegate is not None:
        delegation = DelegationTool(
            file.delegate, rest_base_url=upstream.endpoint.rest_base_url, credential=upstream.credential
        )
    return SessionTools(file.tools, delegation, file.tool_settings.timeout_s)


class ToolSide:
    """``GatewaySession``'s tool half (a mixin: the session's state is declared in relay.py)."""

    if TYPE_CHECKING:
        ui: bool
        log: SessionLog
        _svc: SessionServices
        _core: ClientProtocol
        _view: SessionView
        _ending: object | None
        _meter: SessionMeter | None

        def _flush_core(self) -> None: ...
        def _send_client(self, text: str) -> None: ...
        def _check_budget(self) -> None: ...

    def _tools_init(
        self, server_tools: frozenset[str], tools: SessionTools | None, extra: Sequence[Tool] = ()
    ) -> None:
        self._server_tools = server_tools
        runner: ToolRunner | None = None
        if tools is not None and server_tools:
            runner = tools.runner(extra)
        elif extra:
            runner = ToolRunner(list(extra))
        self._tool_calls = (
            ToolCalls(runner, self._tool_done, on_start=self._tool_started) if runner is not None else None
        )
        self._slow_timers: dict[str, asyncio.TimerHandle] = {}
        # hidden item id → the visible item before it (None: none, or not known yet)
        self._hidden: OrderedDict[str, str | None] = OrderedDict()
        self._server_calls: OrderedDict[str, None] = OrderedDict()

    # -- what the client sees ----------------------------------------------------------------------

    def _tool_filter(self, event: dict[str, Any], event_type: str, outgoing: bytes) -> bytes | None:
        """The frame to forward for this upstream event: as it came, rewritten, or ``None``."""
        if not self._server_tools:
            return outgoing
        if event_type in _OUTPUT_ITEM_EVENTS:
            item = event.get("item")
            if self._is_server_item(item):
                assert isinstance(item, dict)
                self._hide(item.get("id"), None)
                return None
        elif event_type in _ITEM_EVENTS:
            item = event.get("item")
            previous = event.get("previous_item_id")
            if self._is_server_item(item):
                assert isinstance(item, dict)
                self._hide(item.get("id"), self._visible(previous))
                return None
            if _is_in(previous, self._hidden):
                return _dumps({**event, "previous_item_id": self._visible(previous)})
        elif event_type in _ARGUMENT_EVENTS:
            if _is_in(event.get("item_id"), self._hidden) or _is_in(event.get("call_id"), self._server_calls):
                return None
        elif event_type == "input_audio_buffer.committed":
            previous = event.get("previous_item_id")
            if _is_in(previous, self._hidden):
                return _dumps({**event, "previous_item_id": self._visible(previous)})
        elif event_type in _BY_ITEM_ID:
            if _is_in(event.get("item_id"), self._hidden) or _is_in(
                _item_id(event.get("item")), self._hidden
            ):
                return None
        elif event_type == "response.done":
            return self._response_done(event, outgoing)
        return outgoing

    def _is_server_item(self, item: object) -> bool:
        if not isinstance(item, dict):
            return False
        kind = item.get("type")
        call_id = item.get("call_id")
        if kind == "function_call" and _is_in(item.get("name"), self._server_tools):
            if isinstance(call_id, str):
                self._remember_call(call_id)
            return True
        return kind == "function_call_output" and _is_in(call_id, self._server_calls)

    def _response_done(self, event: dict[str, Any], outgoing: bytes) -> bytes:
        response = event.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        if not isinstance(output, list):
            return outgoing
        kept = [item for item in output if not self._is_server_item(item)]
        if len(kept) == len(output):
            return outgoing
        assert isinstance(response, dict)
        return _dumps({**event, "response": {**response, "output": kept}})

    def _hide(self, item_id: object, visible_before: str | None) -> None:
        if not isinstance(item_id, str):
            return
        if self._hidden.get(item_id) is None:
            self._hidden[item_id] = visible_before
        self._view.hidden_item_ids.add(item_id)
        while len(self._hidden) > _REMEMBERED:
            old, _ = self._hidden.popitem(last=False)
            self._view.hidden_item_ids.discard(old)

    def _visible(self, item_id: object) -> str | None:
        seen = 0
        while isinstance(item_id, str) and item_id in self._hidden and seen < _REMEMBERED:
            item_id = self._hidden[item_id]
            seen += 1
        return item_id if isinstance(item_id, str) else None

    def _remember_call(self, call_id: str) -> None:
        self._server_calls[call_id] = None
        self._view.server_call_ids.add(call_id)
        while len(self._server_calls) > _REMEMBERED:
            old, _ = self._server_calls.popitem(last=False)
            self._view.server_call_ids.discard(old)

    # -- running calls (the core decides; this runs) -----------------------------------------------

    def _start_tool(self, call_id: str, name: str, arguments: str) -> None:
        if self._tool_calls is None:
            return
        self._remember_call(call_id)
        self._tool_calls.start(call_id, name, arguments, perf_counter())
        settings = self._svc.config.profile.file
        if settings is not None and settings.tool_settings.filler is not None:
            self._slow_timers[call_id] = asyncio.get_running_loop().call_later(
                settings.tool_settings.filler_after_s, self._tool_slow, call_id
            )

    def _tool_started(self, call_id: str, name: str) -> None:
        self.log.info("tool %s started (%s)", name, call_id)
        if self.ui:
            self._send_client(extension.tool_message(call_id, name, "running"))

    def _tool_slow(self, call_id: str) -> None:
        self._slow_timers.pop(call_id, None)
        if self._ending is None and self._core.tool_call_slow(call_id):
            self.log.info("tool call %s is slow: the agent says the filler", call_id)
            self._flush_core()

    def _tool_done(self, outcome: ToolOutcome) -> None:
        self._stop_timer(outcome.call_id)
        self.log.info(
            "tool %s %s in %.0f ms (%s)", outcome.name, outcome.status, outcome.duration_ms, outcome.call_id
        )
        if self._ending is not None:
            return
        sent = self._core.submit_tool_output(outcome.call_id, outcome.output, cost_usd=outcome.cost_usd)
        if self._meter is not None and outcome.cost_usd:
            self._meter.tool_cost(outcome.cost_usd)
        if self.ui:
            self._send_client(
                extension.tool_message(
                    outcome.call_id,
                    outcome.name,
                    outcome.status if sent else "cancelled",
                    duration_ms=outcome.duration_ms,
                    cost_usd=outcome.cost_usd,
                )
            )
            if outcome.cost_usd:
                self._send_client(extension.cost_message(self._core.costs, None))
        self._flush_core()
        if outcome.cost_usd:
            self._check_budget()

    def _cancel_tools(self, call_ids: tuple[str, ...], reason: str) -> None:
        if self._tool_calls is None:
            return
        running = {call.call_id: call for call in self._tool_calls.running(perf_counter())}
        for call_id in call_ids:
            self._stop_timer(call_id)
            call = running.get(call_id)
            if call is not None and self._tool_calls.cancel(call_id):
                self.log.info(
                    "tool %s cancelled after %.0f ms (%s)", call.name, call.elapsed_s * 1000, reason
                )
                if self.ui:
                    self._send_client(
                        extension.tool_message(
                            call_id, call.name, "cancelled", duration_ms=call.elapsed_s * 1000
                        )
                    )

    def _stop_timer(self, call_id: str) -> None:
        timer = self._slow_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    async def _tools_close(self) -> None:
        for timer in self._slow_timers.values():
            timer.cancel()
        self._slow_timers.clear()
        if self._tool_calls is not None:
            await self._tool_calls.aclose()


def _is_in(value: object, ids: Container[str]) -> bool:
    # Only strings are looked up: a list or an object in a frame is not hashable.
    return isinstance(value, str) and value in ids


def _item_id(item: object) -> object:
    return item.get("id") if isinstance(item, dict) else None


def _dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
