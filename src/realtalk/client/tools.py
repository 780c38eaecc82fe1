"""Tools realtalk runs for the model: the runner that ``realtalk talk`` and ``realtalk serve`` share.

The model asks for a tool with a ``function_call`` item (``response.function_call_arguments.done``
carries ``call_id``, ``name`` and the ``arguments`` JSON string); the answer goes back as a
``function_call_output`` item whose ``output`` is a string (protocol reference §2.3, and the
function-call sequence of §2.5). The decisions (when to answer, which calls a barge-in cancels, the
one follow-up ``response.create``) belong to the protocol core; this module only runs calls, as I/O:

* ``ToolRunner.run`` never raises for anything a call does: an unknown name, arguments that are not
  JSON or break the schema, an exception in the tool, a timeout: each becomes a ``ToolOutcome``
  whose ``output`` is a JSON object with an ``"error"`` sentence for the model (never a traceback),
  so a bad call costs one error output and the conversation goes on (lessons.md, mistake 3).
* Calls run concurrently (up to ``max_concurrent``), each under its time limit; blocking functions
  run off the event loop (``FunctionTool``); outputs are bounded in size and stay valid JSON.
* ``ToolCalls`` holds the running calls of one session: it starts them as tasks, reports each
  outcome once, and cancels them on barge-in or close. Nothing here is shared between sessions
  (lessons.md, mistake 1).

Tools themselves are made by ``FunctionTool``, ``HttpTool`` and ``load_tools``
(``realtalk.client.tool_loading``, re-exported here), or by any object that fits ``Tool``.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import enum
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, runtime_checkable

import jsonschema
import jsonschema.exceptions
import pydantic

from realtalk.client.tool_loading import (
    TOOL_NAME,
    FunctionTool,
    HttpTool,
    HttpToolError,
    InvalidToolArguments,
    check_schema,
    load_tools,
)
from realtalk.errors import ConfigError

__all__ = [
    "FunctionTool",
    "HttpTool",
    "HttpToolError",
    "InvalidToolArguments",
    "RunningCall",
    "Tool",
    "ToolCalls",
    "ToolOutcome",
    "ToolResult",
    "ToolRunner",
    "ToolStatus",
    "load_tools",
    "tool_definition",
]

logger = logging.getLogger(__name__)

# How long a cancelled or timed-out async tool gets to finish its cleanup before the runner moves on
# without it (a tool that swallows CancelledError must not hold the conversation).
_CANCEL_GRACE_S: Final = 0.5
_MAX_MESSAGE_CHARS: Final = 500
_MIN_OUTPUT_CHARS: Final = 200


@runtime_checkable
class Tool(Protocol):
    """Anything the runner can run: a definition for the model, and ``invoke``.

    Plain attributes or properties both fit. ``invoke`` gets arguments already validated against
    ``parameters``; it returns a ``str`` (sent as is), a JSON-able value, a pydantic model, or a
    ``ToolResult`` (to report a cost). An ``aclose()`` method, if present, is called by
    ``ToolRunner.aclose()``.
    """

    @property
    def name(self) -> str:
        """1-64 of ``[A-Za-z0-9_-]``, unique among the runner's tools."""
        ...

    @property
    def description(self) -> str:
        """What the model reads to decide when to call the tool."""
        ...

    @property
    def parameters(self) -> Mapping[str, Any]:
        """JSON schema (Draft 2020-12) of the arguments object."""
        ...

    @property
    def timeout_s(self) -> float | None:
        """This tool's time limit; ``None``: the runner's default."""
        ...

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run the tool; raise to report a failure (the runner turns it into an error outcome)."""
        ...


@dataclass(frozen=True)
class ToolResult:
    """What a tool may return to report a cost (delegation does).

    ``value`` is a ``str`` (sent as is) or JSON-able (``json.dumps``-ed); ``note`` is shown to the
    user (``"gpt-5-mini, 812 tokens"``) and must hold no secret.
    """

    value: Any
    cost_usd: Decimal = Decimal(0)
    note: str | None = None


ToolStatus = Literal["ok", "error", "timeout", "invalid_arguments", "unknown_tool", "cancelled"]


@dataclass(frozen=True)
class ToolOutcome:
    """How one call ended.

    ``output`` is exactly the ``output`` of the ``function_call_output`` item; for every status but
    ``ok`` it is a JSON object ``{"error": "<sentence for the model>"}``.
    """

    call_id: str
    name: str
    status: ToolStatus
    output: str
    duration_ms: float
    cost_usd: Decimal = Decimal(0)
    note: str | None = None


@dataclass(frozen=True)
class RunningCall:
    """A call still running: what the UI shows while the user waits."""

    call_id: str
    name: str
    elapsed_s: float


def tool_definition(tool: Tool) -> dict[str, Any]:
    """The Realtime function definition of ``tool`` (for the session's ``tools``), a fresh copy."""
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": copy.deepcopy(dict(tool.parameters)),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def output_text(value: Any) -> str:
    """A tool's return value as ``function_call_output`` text: ``str`` as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def bound_output(output: str, max_chars: int) -> str:
    """``output`` if it fits in ``max_chars``, else a JSON object holding its start and a marker.

    The cut falls between characters, and the result is valid JSON whatever ``output`` was.
    """
    if len(output) <= max_chars:
        return output

    def cut(keep: int) -> str:
        return json.dumps(
            {
                "truncated": f"the output was cut: {keep} of its {len(output)} characters follow",
                "partial_output": output[:keep],
            },
            ensure_ascii=False,
        )

    # JSON escapes make the envelope's length grow unevenly with what it keeps: the longest prefix
    # that fits, by bisection (the length only grows with the prefix).
    low, high = 0, max_chars
    while low < high:
        middle = (low + high + 1) // 2
        if len(cut(middle)) <= max_chars:
            low = middle
        else:
            high = middle - 1
    return cut(low)


def _error(message: str) -> str:
    """``{"error": message}``: one sentence, bounded, ending with a period."""
    message = message.strip().rstrip(".")
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
    return json.dumps({"error": message + "."}, ensure_ascii=False)


def _field_path(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class ToolRunner:
    """Runs the calls the model makes, for any number of sessions (it keeps no per-call state).

    Args:
        tools: what may be called; names must be unique and 1-64 of ``[A-Za-z0-9_-]``.
        default_timeout_s: the limit of a call whose tool sets none.
        max_output_chars: outputs longer than this are cut (still valid JSON, with a marker).
        max_concurrent: calls running at once; more wait for a slot (within their time limit).

    Raises:
        ConfigError: a duplicate or invalid name, or a tool whose ``parameters`` is not a valid
            JSON schema for an object.
    """

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        default_timeout_s: float = 10.0,
        max_output_chars: int = 16_000,
        max_concurrent: int = 8,
    ) -> None:
        if not (math.isfinite(default_timeout_s) and default_timeout_s > 0):
            raise ConfigError(f"default_timeout_s must be a number of seconds > 0, got {default_timeout_s!r}")
        if max_output_chars < _MIN_OUTPUT_CHARS:
            raise ConfigError(
                f"max_output_chars must be at least {_MIN_OUTPUT_CHARS}, got {max_output_chars}"
            )
        if max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be at least 1, got {max_concurrent}")
        by_name: dict[str, Tool] = {}
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        for tool in tools:
            name = tool.name
            if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
                raise ConfigError(
                    f"tool name must be 1-64 letters, digits, _ or -, got {name!r}",
                    variable="name",
                    example='name = "get_ticket"',
                )
            if name in by_name:
                raise ConfigError(
                    f"two tools are named {name!r}; give one another name",
                    variable="name",
                    example='name = "x2"',
                )
            by_name[name] = tool
            self._validators[name] = jsonschema.Draft202012Validator(
                check_schema(tool.parameters, f"tool {name!r}")
            )
        self.tools: Mapping[str, Tool] = MappingProxyType(by_name)
        """The tools by name."""
        self.default_timeout_s = default_timeout_s
        self.max_output_chars = max_output_chars
        self.max_concurrent = max_concurrent
        # Created lazily: a semaphore made outside a running loop would bind to the first loop
        # that uses it, and the runner may be built before the loop starts.
        self._slots: asyncio.Semaphore | None = None

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """The Realtime function definitions of every tool, in order."""
        return tuple(tool_definition(tool) for tool in self.tools.values())

    async def aclose(self) -> None:
        """Close the tools that hold resources (those with an ``aclose()``, like ``HttpTool``)."""
        for tool in self.tools.values():
            close = getattr(tool, "aclose", None)
            if close is not None:
                await close()

    async def run(self, call_id: str, name: str, arguments_json: str) -> ToolOutcome:
        """Run one call; every failure is an outcome, never an exception.

        Only ``asyncio.CancelledError`` comes through, when this coroutine is cancelled: the tool
        is cancelled first (an async tool gets up to half a second to clean up).
        """
        started = time.perf_counter()

        def outcome(status: ToolStatus, output: str, result: ToolResult | None = None) -> ToolOutcome:
            duration_ms = (time.perf_counter() - started) * 1000
            logger.debug("tool %s (call %s): %s in %.1f ms", name, call_id, status, duration_ms)
            return ToolOutcome(
                call_id,
                name,
                status,
                bound_output(output, self.max_output_chars),
                duration_ms,
                result.cost_usd if result is not None else Decimal(0),
                result.note if result is not None else None,
            )

        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            return outcome(
                "unknown_tool", _error(f"There is no tool named {name[:80]!r}. The tools are: {known}.")
            )
        checked = self._check_arguments(name, arguments_json)
        if isinstance(checked, str):
            return outcome("invalid_arguments", _error(checked))
        timeout_s = tool.timeout_s if tool.timeout_s is not None else self.default_timeout_s
        try:
            value = await self._invoke(tool, checked, timeout_s)
        except _Expired:
            return outcome("timeout", _error(f"The tool {name} did not finish within {timeout_s:g} s."))
        except TimeoutError as exc:
            return outcome(
                "timeout", _error(f"The tool {name} timed out: {exc or 'no answer in time'}."), _spent(exc)
            )
        except InvalidToolArguments as exc:
            return outcome("invalid_arguments", _error(f"Invalid arguments for {name}: {exc}."))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we were cancelled (barge-in, session end)
            # The tool itself raised CancelledError (something it awaited was cancelled).
            return outcome("cancelled", _error(f"The tool {name} was cancelled before it finished."))
        except Exception as exc:
            # The traceback is for the developer's log; the model gets one sentence.
            logger.warning("tool %s (call %s) raised %s", name, call_id, type(exc).__name__, exc_info=exc)
            message = str(exc).strip()
            return outcome(
                "error",
                _error(f"The tool {name} failed: {type(exc).__name__}{': ' + message if message else ''}"),
                _spent(exc),
            )
        result = value if isinstance(value, ToolResult) else None
        try:
            text = output_text(result.value if result is not None else value)
        except (TypeError, ValueError) as exc:
            logger.warning("tool %s (call %s) returned a value that is not JSON: %s", name, call_id, exc)
            return outcome("error", _error(f"The tool {name} returned a value that cannot be sent as JSON."))
        return outcome("ok", text, result)

    def _check_arguments(self, name: str, arguments_json: str) -> dict[str, Any] | str:
        """The arguments object, or a sentence for the model saying what is wrong."""
        try:
            # An empty string is what a call with no arguments may carry.
            arguments = json.loads(arguments_json) if arguments_json.strip() else {}
        except json.JSONDecodeError as exc:
            return (
                f"The arguments for {name} are not valid JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}); call it again with a JSON object"
            )
        if not isinstance(arguments, dict):
            return f"The arguments for {name} must be a JSON object, not {_json_type(arguments)}"
        error = jsonschema.exceptions.best_match(self._validators[name].iter_errors(arguments))
        if error is None:
            return arguments
        path = _field_path(list(error.absolute_path))
        message = error.message if len(error.message) <= 200 else error.message[:199] + "…"
        where = f"field {path!r}: " if path else ""
        return f"Invalid arguments for {name}: {where}{message}; call it again with corrected arguments"

    async def _invoke(self, tool: Tool, arguments: dict[str, Any], timeout_s: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        slots = self._slots
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:
            raise _Expired from None
        try:
            # The tool runs in a task of its own, so that a timeout or a cancel does not depend on
            # the tool giving way: one that swallows CancelledError is left behind, not waited for.
            task = asyncio.ensure_future(tool.invoke(arguments))
            try:
                done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            except asyncio.CancelledError:
                await _stop(task)
                raise
            if not done:
                await _stop(task)
                raise _Expired
            return task.result()
        finally:
            slots.release()


def _spent(exc: BaseException) -> ToolResult | None:
    # A failure can still have cost money (a delegated question whose answer broke off is billed
    # for what was generated): an exception says so with a ``cost_usd`` attribute.
    cost = getattr(exc, "cost_usd", None)
    return ToolResult(None, cost) if isinstance(cost, Decimal) and cost > 0 else None


class _Expired(Exception):
    """The runner's own time limit for a call passed (a tool's own TimeoutError is not this)."""


async def _stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
    if not task.done():
        logger.warning("a cancelled tool is still running after %g s; it is left behind", _CANCEL_GRACE_S)
    # Retrieve whatever it ends with, so asyncio does not log "exception was never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


class ToolCalls:
    """The running calls of one session: each a task, reported once through ``on_done``.

    ``on_done(outcome)`` is called exactly once per call that was not cancelled, on the event loop
    thread; ``on_start(call_id, name)``, if given, when a call starts. A cancelled call reports
    nothing: the protocol core decided it is no longer wanted.

    A sync function still running on its thread when its call is cancelled cannot be stopped; it
    runs to its end and its result is discarded.
    """

    def __init__(
        self,
        runner: ToolRunner,
        on_done: Callable[[ToolOutcome], None],
        *,
        on_start: Callable[[str, str], None] | None = None,
    ) -> None:
        self.runner = runner
        self._on_done = on_done
        self._on_start = on_start
        self._calls: dict[str, tuple[asyncio.Task[None], str, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every task not yet ended, cancelled ones too
        self._closed = False

    def start(self, call_id: str, name: str, arguments_json: str, now_s: float) -> None:
        """Start a call as an asyncio task; ``now_s`` is the session clock (for ``running()``).

        A ``call_id`` already running is not started again (its outcome will come once).
        """
        if self._closed:
            logger.warning("tool call %s (%s) arrived after the session's calls were closed", call_id, name)
            return
        if call_id in self._calls:
            logger.warning("tool call %s (%s) is already running; not started twice", call_id, name)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(call_id, name, arguments_json), name=f"realtalk tool {name} {call_id}"
        )
        self._calls[call_id] = (task, name, now_s)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._on_start is not None:
            try:
                self._on_start(call_id, name)
            except Exception:
                logger.exception("on_start failed for tool call %s", call_id)

    async def _run(self, call_id: str, name: str, arguments_json: str) -> None:
        try:
            outcome = await self.runner.run(call_id, name, arguments_json)
        except Exception as exc:  # run() turns every failure into an outcome; this is a last resort
            logger.exception("tool call %s failed outside its tool", call_id)
            outcome = ToolOutcome(call_id, name, "error", _error(f"The tool {name} failed: {exc}"), 0.0)
        if self._calls.get(call_id, (None,))[0] is asyncio.current_task():
            del self._calls[call_id]
        try:
            self._on_done(outcome)
        except Exception:
            logger.exception("on_done failed for tool call %s", call_id)

    def cancel(self, call_id: str) -> bool:
        """Cancel a running call; ``False`` if it is not running. ``on_done`` is not called for it."""
        entry = self._calls.pop(call_id, None)
        if entry is None:
            return False
        entry[0].cancel()
        return True

    def cancel_all(self) -> int:
        """Cancel every running call; how many there were."""
        call_ids = list(self._calls)
        for call_id in call_ids:
            self.cancel(call_id)
        return len(call_ids)

    def running(self, now_s: float) -> list[RunningCall]:
        """The calls still running, oldest first, with how long each has run at ``now_s``."""
        calls = sorted(self._calls.items(), key=lambda item: item[1][2])
        return [RunningCall(call_id, name, now_s - started_s) for call_id, (_, name, started_s) in calls]

    async def aclose(self) -> None:
        """Cancel every call and wait until their tasks have ended; later ``start()``s are ignored."""
        self._closed = True
        self.cancel_all()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
