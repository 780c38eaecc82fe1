"""The tool runner: schemas from signatures, calls off the loop, every failure an outcome, HttpTool."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from realtalk.client.tools import (
    FunctionTool,
    HttpTool,
    RunningCall,
    ToolCalls,
    ToolOutcome,
    ToolResult,
    ToolRunner,
    tool_definition,
)
from realtalk.errors import ConfigError

TOOL_SECRET = "tool-secret-0123456789abcdef"


# -- sample tools -------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Guest(BaseModel):
    """Who the booking is for."""

    name: str
    title: str | None = None  # a property called "title" is not schema noise


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Booking(BaseModel):
    nights: int

    @field_validator("nights")
    @classmethod
    def positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least one night")
        return value


def book_room(
    room: Literal["single", "double"],
    guest: Guest,
    nights: int = 1,
    note: str | None = None,
    ticket_id: Annotated[str, Field(description="The ticket ID, like XR-4892.")] = "none",
    color: Color = Color.RED,
) -> dict[str, Any]:
    """Book a room for a guest.

    The booking is held for ten minutes.

    Args:
        room: which kind of room.
        nights: how many nights
            the guest stays.
    """
    return {
        "room": room,
        "guest_type": type(guest).__name__,
        "guest": guest,
        "nights": nights,
        "color": color,
    }


async def async_echo(text: str) -> dict[str, str]:
    """Say it back."""
    await asyncio.sleep(0)
    return {"echo": text}


def plain_text() -> str:
    return 'not "JSON", sent as is'


def blocking_sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def broken(ticket_id: str) -> str:
    raise KeyError(f"no ticket {ticket_id}")


@dataclass
class Probe:
    """An async tool that records whether it saw its cancellation."""

    cleanup_s: float = 0.0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    cleaned_up: bool = False

    async def __call__(self, seconds: float = 10.0) -> str:
        self.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            await asyncio.sleep(self.cleanup_s)  # closing a connection, say
            self.cleaned_up = True
            raise
        return "finished"


def tool(function: Callable[..., Any], **options: Any) -> FunctionTool:
    return FunctionTool(function, **options)


async def run_one(
    function: Callable[..., Any], arguments: dict[str, Any] | str, **options: Any
) -> ToolOutcome:
    runner = ToolRunner([FunctionTool(function, **options)])
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    name = options.get("name") or function.__name__
    return await runner.run("call_1", name, text)


def error_of(outcome: ToolOutcome) -> str:
    message = json.loads(outcome.output)["error"]
    assert isinstance(message, str)
    return message


# -- schemas ------------------------------------------------------------------------------------------


def test_the_schema_comes_from_the_signature_and_the_docstring() -> None:
    definition = tool_definition(tool(book_room))

    assert definition["type"] == "function"
    assert definition["name"] == "book_room"
    assert definition["description"] == "Book a room for a guest."
    schema = definition["parameters"]
    assert schema["type"] == "object"
    assert schema["required"] == ["room", "guest"]
    props = schema["properties"]
    assert props["room"] == {
        "enum": ["single", "double"],
        "type": "string",
        "description": "which kind of room.",
    }
    assert props["nights"] == {
        "default": 1,
        "type": "integer",
        "description": "how many nights the guest stays.",
    }
    assert props["note"] == {"default": None, "type": ["string", "null"]}
    assert props["ticket_id"]["description"] == "The ticket ID, like XR-4892."
    assert props["color"] == {"default": "red", "enum": ["red", "blue"], "type": "string"}
    # The model's schema is inlined: no $defs, no titles, but its property named "title" stays.
    assert props["guest"]["type"] == "object"
    assert props["guest"]["required"] == ["name"]
    assert set(props["guest"]["properties"]) == {"name", "title"}
    text = json.dumps(schema)
    assert "$defs" not in text and "$ref" not in text
    assert '"title": "' not in text


def test_explicit_parameters_replace_the_derived_schema() -> None:
    parameters = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 5}}}

    definition = tool_definition(tool(async_echo, parameters=parameters, description="Echo."))

    assert definition["parameters"] == parameters
    assert definition["description"] == "Echo."


def test_a_recursive_model_keeps_its_defs() -> None:
    def total(root: Node) -> int:
        return root.value

    schema = tool(total).parameters

    assert schema["properties"]["root"] == {"$ref": "#/$defs/Node"}
    assert "Node" in schema["$defs"]


def test_a_parameter_type_without_a_json_schema_is_a_config_error() -> None:
    def send(sock: socket.socket) -> None:
        pass

    with pytest.raises(ConfigError, match=r"'send'.*no JSON schema"):
        tool(send)


def test_a_function_without_a_usable_name_needs_one() -> None:
    with pytest.raises(ConfigError, match="give the tool a name"):
        tool(lambda: None)
    assert tool(lambda: None, name="noop").name == "noop"


def test_runner_refuses_duplicate_and_invalid_names() -> None:
    with pytest.raises(ConfigError, match="two tools are named 'async_echo'"):
        ToolRunner([tool(async_echo), tool(async_echo)])
    with pytest.raises(ConfigError, match="1-64 letters"):
        ToolRunner([tool(async_echo, name="has space")])


def test_runner_refuses_a_schema_that_is_not_valid() -> None:
    bad = {"type": "object", "properties": {"x": {"type": "strin"}}}

    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        ToolRunner([tool(async_echo, parameters=bad)])


def test_definitions_list_every_tool_in_order() -> None:
    runner = ToolRunner([tool(book_room), tool(async_echo)])

    assert [d["name"] for d in runner.definitions()] == ["book_room", "async_echo"]
    assert list(runner.tools) == ["book_room", "async_echo"]


# -- running ------------------------------------------------------------------------------------------


async def test_a_sync_tool_runs_and_returns_json_text() -> None:
    outcome = await run_one(book_room, {"room": "double", "guest": {"name": "Ann"}, "color": "blue"})

    assert outcome.status == "ok"
    assert outcome.call_id == "call_1"
    assert outcome.duration_ms > 0
    assert json.loads(outcome.output) == {
        "room": "double",
        "guest_type": "Guest",  # the model argument arrived as a Guest instance
        "guest": {"name": "Ann", "title": None},
        "nights": 1,
        "color": "blue",
    }


async def test_an_async_tool_runs_and_returns_json_text() -> None:
    outcome = await run_one(async_echo, {"text": "hello"})

    assert (outcome.status, json.loads(outcome.output)) == ("ok", {"echo": "hello"})


async def test_a_string_result_is_sent_as_is() -> None:
    outcome = await run_one(plain_text, "")

    assert (outcome.status, outcome.output) == ("ok", 'not "JSON", sent as is')


async def test_a_pydantic_model_result_is_dumped_as_json() -> None:
    def make_guest(name: str) -> Guest:
        return Guest(name=name, title="Dr")

    outcome = await run_one(make_guest, {"name": "Ann"})

    assert json.loads(outcome.output) == {"name": "Ann", "title": "Dr"}


async def test_a_tool_result_reports_its_cost_and_note() -> None:
    async def ask(question: str) -> ToolResult:
        return ToolResult({"answer": "42"}, cost_usd=Decimal("0.0012"), note="gpt-5-mini, 812 tokens")

    outcome = await run_one(ask, {"question": "why"})

    assert outcome.status == "ok"
    assert json.loads(outcome.output) == {"answer": "42"}
    assert outcome.cost_usd == Decimal("0.0012")
    assert outcome.note == "gpt-5-mini, 812 tokens"


async def test_the_functions_own_defaults_apply_to_arguments_left_out() -> None:
    seen: list[dict[str, Any]] = []

    def record(a: int, b: list[int] | None = None, c: str = "default") -> str:
        seen.append({"a": a, "b": b, "c": c})
        return "ok"

    await run_one(record, {"a": 1})

    assert seen == [{"a": 1, "b": None, "c": "default"}]


async def test_a_blocking_sync_tool_does_not_block_the_event_loop() -> None:
    runner = ToolRunner([tool(blocking_sleep)])
    call = asyncio.create_task(runner.run("call_1", "blocking_sleep", '{"seconds": 0.5}'))
    gaps_s: list[float] = []
    while not call.done():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        gaps_s.append(time.perf_counter() - before)

    assert call.result().status == "ok"
    assert len(gaps_s) > 20
    assert max(gaps_s) < 0.1


async def test_two_calls_run_concurrently() -> None:
    runner = ToolRunner([tool(blocking_sleep), tool(async_sleep)])
    started = time.perf_counter()

    outcomes = await asyncio.gather(
        runner.run("call_1", "blocking_sleep", '{"seconds": 0.3}'),
        runner.run("call_2", "async_sleep", '{"seconds": 0.3}'),
    )

    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert time.perf_counter() - started < 0.5


async def test_calls_beyond_max_concurrent_wait_for_a_slot() -> None:
    runner = ToolRunner([tool(async_sleep)], max_concurrent=1)
    started = time.perf_counter()

    outcomes = await asyncio.gather(
        runner.run("call_1", "async_sleep", '{"seconds": 0.2}'),
        runner.run("call_2", "async_sleep", '{"seconds": 0.2}'),
    )

    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert time.perf_counter() - started >= 0.39


async def test_a_tool_that_raises_is_an_error_outcome_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = await run_one(broken, {"ticket_id": "XR-4892"})

    assert outcome.status == "error"
    assert error_of(outcome) == "The tool broken failed: KeyError: 'no ticket XR-4892'."
    assert "Traceback" not in outcome.output and "line " not in outcome.output
    [record] = [r for r in caplog.records if r.name.startswith("realtalk") and r.levelno == logging.WARNING]
    assert record.exc_info is not None and "broken" in record.getMessage()


async def test_a_slow_tool_times_out_within_its_limit() -> None:
    probe = Probe()
    started = time.perf_counter()

    outcome = await run_one(probe, {"seconds": 5}, name="probe", timeout_s=0.2)

    assert outcome.status == "timeout"
    assert error_of(outcome) == "The tool probe did not finish within 0.2 s."
    assert 0.2 <= time.perf_counter() - started < 0.45
    assert probe.cancelled  # the tool saw CancelledError


async def test_the_default_timeout_applies_when_the_tool_sets_none() -> None:
    runner = ToolRunner([tool(blocking_sleep)], default_timeout_s=0.1)
    started = time.perf_counter()

    outcome = await runner.run("call_1", "blocking_sleep", '{"seconds": 0.5}')

    assert outcome.status == "timeout"
    assert time.perf_counter() - started < 0.25


async def test_a_tool_that_swallows_its_cancellation_still_times_out() -> None:
    release = asyncio.Event()

    async def stubborn() -> str:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass  # bad manners: the runner must not wait for it
        return "late"

    started = time.perf_counter()
    outcome = await run_one(stubborn, "{}", timeout_s=0.1)
    release.set()

    assert outcome.status == "timeout"
    assert time.perf_counter() - started < 1.0


async def test_a_tools_own_timeout_error_is_a_timeout_outcome() -> None:
    def upstream() -> str:
        raise TimeoutError("the ticket service did not answer")

    outcome = await run_one(upstream, "{}")

    assert outcome.status == "timeout"
    assert "the ticket service did not answer" in error_of(outcome)


async def test_arguments_that_are_not_json_are_invalid_arguments() -> None:
    outcome = await run_one(async_echo, '{"text": ')

    assert outcome.status == "invalid_arguments"
    assert error_of(outcome).startswith("The arguments for async_echo are not valid JSON")


async def test_arguments_that_are_not_an_object_are_invalid_arguments() -> None:
    outcome = await run_one(async_echo, '["hello"]')

    assert outcome.status == "invalid_arguments"
    assert "must be a JSON object, not an array" in error_of(outcome)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"guest": {"name": "Ann"}}, "'room' is a required property"),
        (
            {"room": "suite", "guest": {"name": "Ann"}},
            "field 'room': 'suite' is not one of ['single', 'double']",
        ),
        ({"room": "single", "guest": {"name": 7}}, "field 'guest.name': 7 is not of type 'string'"),
        (
            {"room": "single", "guest": {"name": "Ann"}, "nights": "two"},
            "field 'nights': 'two' is not of type",
        ),
    ],
)
async def test_a_schema_violation_is_invalid_arguments_naming_the_field(
    arguments: dict[str, Any], expected: str
) -> None:
    called: list[str] = []

    def book(room: Literal["single", "double"], guest: Guest, nights: int = 1) -> str:
        called.append(room)
        return "booked"

    outcome = await run_one(book, arguments)

    assert outcome.status == "invalid_arguments"
    assert error_of(outcome).startswith("Invalid arguments for book: ")
    assert expected in error_of(outcome)
    assert called == []


async def test_a_refusal_by_the_tools_own_model_is_invalid_arguments() -> None:
    def book(booking: Booking) -> str:
        return "booked"

    outcome = await run_one(book, {"booking": {"nights": 0}})

    assert outcome.status == "invalid_arguments"
    assert "field 'booking.nights'" in error_of(outcome)
    assert "must be at least one night" in error_of(outcome)


async def test_an_unknown_tool_is_an_unknown_tool_outcome_listing_the_known_names() -> None:
    runner = ToolRunner([tool(async_echo), tool(book_room)])

    outcome = await runner.run("call_1", "get_weather", "{}")

    assert outcome.status == "unknown_tool"
    assert error_of(outcome) == "There is no tool named 'get_weather'. The tools are: async_echo, book_room."


async def test_a_tool_that_raises_cancelled_error_itself_is_a_cancelled_outcome() -> None:
    async def gives_up() -> str:
        raise asyncio.CancelledError

    outcome = await run_one(gives_up, "{}")

    assert outcome.status == "cancelled"


async def test_a_value_that_is_not_json_is_an_error_outcome() -> None:
    def nan() -> float:
        return float("nan")

    outcome = await run_one(nan, "{}")

    assert outcome.status == "error"
    assert "cannot be sent as JSON" in error_of(outcome)


@pytest.mark.parametrize(
    "value",
    [
        'é😀"\\\n' * 5000,  # a string: escapes and characters outside the BMP
        {"rows": [{"id": i, "text": 'x"y' * 10} for i in range(2000)]},  # JSON
    ],
)
async def test_an_output_over_the_bound_is_cut_and_still_valid_json(value: Any) -> None:
    def big() -> Any:
        return value

    runner = ToolRunner([tool(big)], max_output_chars=1000)

    outcome = await runner.run("call_1", "big", "{}")

    assert outcome.status == "ok"
    assert len(outcome.output) <= 1000
    cut = json.loads(outcome.output)
    full = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    assert "cut" in cut["truncated"]
    assert len(outcome.output) > 990  # the longest prefix that fits
    assert full.startswith(cut["partial_output"])


async def test_an_output_within_the_bound_is_not_touched() -> None:
    def exact() -> str:
        return "x" * 1000

    outcome = await ToolRunner([tool(exact)], max_output_chars=1000).run("call_1", "exact", "{}")

    assert outcome.output == "x" * 1000


# -- ToolCalls ----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.done: list[ToolOutcome] = []
        self.started: list[tuple[str, str]] = []
        self.threads: list[int] = []
        self.finished = asyncio.Event()

    def on_done(self, outcome: ToolOutcome) -> None:
        self.done.append(outcome)
        self.threads.append(threading.get_ident())
        self.finished.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self.done) < count:
                self.finished.clear()
                await self.finished.wait()

    def on_start(self, call_id: str, name: str) -> None:
        self.started.append((call_id, name))


async def test_each_call_is_reported_once_on_the_loop_thread() -> None:
    recorder = Recorder()
    calls = ToolCalls(
        ToolRunner([tool(blocking_sleep), tool(async_echo)]), recorder.on_done, on_start=recorder.on_start
    )

    calls.start("call_1", "blocking_sleep", '{"seconds": 0.05}', now_s=0.0)
    calls.start("call_2", "async_echo", '{"text": "hi"}', now_s=0.0)
    calls.start("call_3", "nope", "{}", now_s=0.0)
    await recorder.wait_for(3)
    await asyncio.sleep(0.1)

    assert sorted((o.call_id, o.status) for o in recorder.done) == [
        ("call_1", "ok"),
        ("call_2", "ok"),
        ("call_3", "unknown_tool"),
    ]
    assert recorder.started == [("call_1", "blocking_sleep"), ("call_2", "async_echo"), ("call_3", "nope")]
    assert set(recorder.threads) == {threading.get_ident()}
    assert calls.running(1.0) == []


async def test_cancel_stops_an_async_tool_and_on_done_is_never_called() -> None:
    recorder = Recorder()
    probe = Probe()
    calls = ToolCalls(ToolRunner([tool(probe, name="probe")]), recorder.on_done)
    calls.start("call_1", "probe", "{}", now_s=0.0)
    await asyncio.wait_for(probe.started.wait(), 1)

    assert calls.cancel("call_1") is True
    await asyncio.sleep(0.1)

    assert probe.cancelled
    assert recorder.done == []
    assert calls.running(1.0) == []
    assert calls.cancel("call_1") is False


async def test_a_cancelled_sync_tools_result_is_discarded() -> None:
    recorder = Recorder()
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        finished.set()
        return "late"

    calls = ToolCalls(ToolRunner([tool(slow)]), recorder.on_done)
    calls.start("call_1", "slow", "{}", now_s=0.0)
    await asyncio.sleep(0.05)
    calls.cancel("call_1")
    await asyncio.to_thread(finished.wait, 2)
    await asyncio.sleep(0.1)

    assert recorder.done == []


async def test_cancel_all_cancels_every_running_call() -> None:
    recorder = Recorder()
    probes = [Probe(), Probe()]
    calls = ToolCalls(
        ToolRunner([tool(probes[0], name="a"), tool(probes[1], name="b"), tool(async_echo)]), recorder.on_done
    )
    calls.start("call_a", "a", "{}", now_s=0.0)
    calls.start("call_b", "b", "{}", now_s=0.0)
    calls.start("call_c", "async_echo", '{"text": "x"}', now_s=0.0)
    await asyncio.wait_for(recorder.finished.wait(), 1)

    assert calls.cancel_all() == 2
    await asyncio.sleep(0.1)

    assert all(probe.cancelled for probe in probes)
    assert [o.call_id for o in recorder.done] == ["call_c"]
    assert calls.cancel_all() == 0


async def test_running_reports_elapsed_time_oldest_first() -> None:
    calls = ToolCalls(ToolRunner([tool(Probe(), name="a"), tool(Probe(), name="b")]), lambda outcome: None)
    calls.start("call_b", "b", "{}", now_s=12.0)
    calls.start("call_a", "a", "{}", now_s=10.5)

    running = calls.running(now_s=13.0)
    await calls.aclose()

    assert running == [RunningCall("call_a", "a", 2.5), RunningCall("call_b", "b", 1.0)]


async def test_a_call_id_already_running_is_not_started_twice() -> None:
    recorder = Recorder()
    calls = ToolCalls(ToolRunner([tool(async_sleep)]), recorder.on_done)

    calls.start("call_1", "async_sleep", '{"seconds": 0.05}', now_s=0.0)
    calls.start("call_1", "async_sleep", '{"seconds": 0.05}', now_s=0.0)
    await asyncio.sleep(0.2)

    assert len(recorder.done) == 1


async def test_aclose_cancels_every_call_and_leaves_no_task_behind() -> None:
    recorder = Recorder()
    probe = Probe()
    calls = ToolCalls(ToolRunner([tool(probe, name="probe")]), recorder.on_done)
    calls.start("call_1", "probe", "{}", now_s=0.0)
    await asyncio.wait_for(probe.started.wait(), 1)

    await calls.aclose()

    assert probe.cancelled
    assert asyncio.all_tasks() == {asyncio.current_task()}
    calls.start("call_2", "probe", "{}", now_s=0.0)  # after close: ignored
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert recorder.done == []


# -- HttpTool ----------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    base_url: str
    requests: list[dict[str, Any]]


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """A small HTTP server on 127.0.0.1 that records what it receives."""
    requests: list[dict[str, Any]] = []

    async def record(request: web.Request) -> dict[str, Any]:
        seen = {"path": request.path, "headers": dict(request.headers), "json": await request.json()}
        requests.append(seen)
        return seen

    async def echo(request: web.Request) -> web.Response:
        seen = await record(request)
        return web.json_response({"received": seen["json"]})

    async def text(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="Room 12 is free.")

    async def refuse(request: web.Request) -> web.Response:
        seen = await record(request)
        # A careless server that echoes the credential in its error page.
        return web.Response(status=503, text=f"overloaded; you sent {seen['headers'].get('Authorization')}")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/text", text)
    app.router.add_post("/refuse", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Endpoint(f"http://{host}:{port}", requests)
    finally:
        await runner.cleanup()


def http_tool(url: str, **options: Any) -> HttpTool:
    parameters = {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]}
    return HttpTool(name="check_room", url=url, description="Check a room.", parameters=parameters, **options)


async def run_http(tool_: HttpTool, arguments: dict[str, Any]) -> ToolOutcome:
    runner = ToolRunner([tool_])
    try:
        return await runner.run("call_1", tool_.name, json.dumps(arguments))
    finally:
        await runner.aclose()


async def test_http_tool_posts_the_arguments_as_json_with_the_secret_as_a_bearer(endpoint: Endpoint) -> None:
    outcome = await run_http(http_tool(f"{endpoint.base_url}/echo", secret=TOOL_SECRET), {"room": "12"})

    assert outcome.status == "ok"
    assert json.loads(outcome.output) == {"received": {"room": "12"}}
    [request] = endpoint.requests
    assert request["json"] == {"room": "12"}
    assert request["headers"]["Authorization"] == f"Bearer {TOOL_SECRET}"
    assert request["headers"]["Content-Type"] == "application/json"


async def test_http_tool_sends_the_secret_raw_in_another_header(endpoint: Endpoint) -> None:
    tool_ = http_tool(f"{endpoint.base_url}/echo", secret=TOOL_SECRET, secret_header="X-Api-Key")

    await run_http(tool_, {"room": "12"})

    [request] = endpoint.requests
    assert request["headers"]["X-Api-Key"] == TOOL_SECRET
    assert "Authorization" not in request["headers"]


async def test_http_tool_without_a_secret_sends_no_credential(endpoint: Endpoint) -> None:
    await run_http(http_tool(f"{endpoint.base_url}/echo"), {"room": "12"})

    assert "Authorization" not in endpoint.requests[0]["headers"]


async def test_http_tool_passes_a_text_body_as_text(endpoint: Endpoint) -> None:
    outcome = await run_http(http_tool(f"{endpoint.base_url}/text"), {"room": "12"})

    assert (outcome.status, outcome.output) == ("ok", "Room 12 is free.")


async def test_http_tool_non_2xx_is_an_error_naming_the_status_and_never_the_secret(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await run_http(http_tool(f"{endpoint.base_url}/refuse", secret=TOOL_SECRET), {"room": "12"})

    assert outcome.status == "error"
    assert "HTTP 503" in error_of(outcome)
    assert "overloaded" in error_of(outcome)
    assert TOOL_SECRET not in outcome.output
    assert all(TOOL_SECRET not in record.getMessage() for record in caplog.records)
    assert all(TOOL_SECRET not in str(record.exc_info) for record in caplog.records)


async def test_http_tool_unreachable_is_an_error_outcome() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.

    outcome = await run_http(http_tool(f"http://127.0.0.1:{port}/x", secret=TOOL_SECRET), {"room": "12"})

    assert outcome.status == "error"
    assert f"could not reach http://127.0.0.1:{port}/x" in error_of(outcome)
    assert TOOL_SECRET not in outcome.output


def test_http_tool_repr_has_no_secret() -> None:
    tool_ = http_tool("https://user:pw@tools.example.com/rooms?key=abc123", secret=TOOL_SECRET)

    text = repr(tool_)

    assert TOOL_SECRET not in text
    assert "secret=<set>" in text
    assert "pw" not in text and "abc123" not in text
    assert "https://tools.example.com/rooms" in text


def test_http_tool_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        http_tool("ftp://tools.example.com/rooms")


async def test_aclose_waits_for_a_cancelled_tool_to_clean_up() -> None:
    probe = Probe(cleanup_s=0.1)
    calls = ToolCalls(ToolRunner([tool(probe, name="probe")]), lambda outcome: None)
    calls.start("call_1", "probe", "{}", now_s=0.0)
    await asyncio.wait_for(probe.started.wait(), 1)

    await calls.aclose()

    assert probe.cleaned_up
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_what_a_failed_call_still_cost_is_in_its_outcome() -> None:
    class Billed(RuntimeError):
        cost_usd = Decimal("0.0031")

    def expensive_failure() -> str:
        """Fails after spending money."""
        raise Billed("the answer broke off")

    outcome = await ToolRunner([FunctionTool(expensive_failure)]).run("call_1", "expensive_failure", "{}")
    assert (outcome.status, outcome.cost_usd) == ("error", Decimal("0.0031"))
