"""Delegation to the Responses API: chaining, headers, streaming, failures, retry, timeout, cost.

Unit tests drive ``DelegationTool`` through ``httpx.MockTransport`` with SSE bodies written from
the documented event shapes (protocol reference §7; openai-python's ``types/responses``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from realtalk.client.credentials import ApiKeyCredential, EntraCredential
from realtalk.client.delegation import (
    DEFAULT_INSTRUCTIONS,
    DelegationSettings,
    DelegationTool,
    ExpertUnavailable,
)
from realtalk.client.tools import Tool, ToolResult, ToolRunner
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines, parse_scenario
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.protocol.text_prices import TEXT_PRICE_TABLE, TextPrices, TextUsage, text_cost_usd

API_KEY = "delegation-test-key-0123456789"
ENTRA_TOKEN = "entra-token-for-delegation-0123456789"
REST_BASE = "https://res.openai.azure.com/openai/v1"
DEPLOYMENT = "gpt-5-mini"
USAGE: dict[str, Any] = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 192},
    "total_tokens": 1500,
}


# --- SSE bodies ------------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    """An SSE body: each event as ``event:`` and ``data:`` lines, numbered in order."""
    chunks = []
    for number, event in enumerate(events):
        event = {**event, "sequence_number": number}
        chunks.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
    return "".join(chunks).encode()


def response_object(
    response_id: str,
    status: str,
    *,
    text: str | None = None,
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    output = []
    if text is not None:
        output.append(
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1_800_000_000,
        "model": DEPLOYMENT,
        "status": status,
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        **extra,
    }


def answer_events(
    response_id: str, text: str, usage: dict[str, Any] | None = None, *, final_text: bool = True
) -> list[dict[str, Any]]:
    """The documented sequence of a streamed text answer, ``response.completed`` last."""
    usage = USAGE if usage is None else usage
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    ids = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    words = text.split(" ")
    deltas = [word if i == 0 else " " + word for i, word in enumerate(words)]
    return [
        {"type": "response.created", "response": response_object(response_id, "in_progress")},
        {"type": "response.in_progress", "response": response_object(response_id, "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            **ids,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
        *({"type": "response.output_text.delta", **ids, "delta": d, "logprobs": []} for d in deltas),
        {"type": "response.output_text.done", **ids, "text": text, "logprobs": []},
        {
            "type": "response.content_part.done",
            **ids,
            "part": {"type": "output_text", "text": text, "annotations": []},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": {**item, "status": "completed"}},
        {
            "type": "response.completed",
            "response": response_object(
                response_id, "completed", text=text if final_text else None, usage=usage
            ),
        },
    ]


def stream_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body)


def error_response(status: int, code: str | None, message: str, **extra: Any) -> httpx.Response:
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": extra.pop("param", None),
        "code": code,
    }
    return httpx.Response(status, json={"error": error}, **extra)


# --- a scripted server -----------------------------------------------------------------------------


class Responses:
    """A scripted ``/responses`` endpoint: records each request, answers with the next reply.

    A reply is an ``httpx.Response`` or a callable taking the request's JSON body. With no script,
    it answers like a stored thread would: ``resp_<n>`` and "Answer <n> to: <question>".
    """

    def __init__(self, *replies: httpx.Response | Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(request)
        self.bodies.append(body)
        if self.replies:
            reply = self.replies.pop(0)
            return reply(body) if callable(reply) else reply
        number = len(self.bodies)
        question = body["input"][0]["content"]
        return stream_response(sse(*answer_events(f"resp_{number}", f"Answer {number} to: {question}")))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def make_tool(
    server: Responses,
    *,
    credential: Any = None,
    prices: TextPrices | None = None,
    prices_override: dict[str, Any] | None = None,
    **settings: Any,
) -> DelegationTool:
    settings.setdefault("deployment", DEPLOYMENT)
    if prices_override is not None:
        settings["prices"] = prices_override
    return DelegationTool(
        DelegationSettings(**settings),
        rest_base_url=REST_BASE,
        credential=credential or ApiKeyCredential(API_KEY),
        prices=prices,
        client=server.client(),
    )


class FakeTokenCredential:
    """An async azure token credential that hands out one fixed token and counts the fetches."""

    def __init__(self) -> None:
        self.calls = 0
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        self.scopes.extend(scopes)
        return AccessToken(ENTRA_TOKEN, 1_800_003_600)

    async def close(self) -> None:
        pass


async def ask(tool: DelegationTool, question: str) -> ToolResult:
    return await tool.invoke({"question": question})


# --- chaining and the request ----------------------------------------------------------------------


async def test_three_questions_chain_each_on_the_answer_before() -> None:
    server = Responses()
    tool = make_tool(server)
    for question in ("What is 17 times 23?", "And divided by 7?", "Round that."):
        await ask(tool, question)
    assert [body.get("previous_response_id") for body in server.bodies] == [None, "resp_1", "resp_2"]
    assert "previous_response_id" not in server.bodies[0]
    assert tool.last_response_id == "resp_3"
    assert tool.questions == 3


async def test_instructions_store_stream_and_the_token_limit_go_with_every_request() -> None:
    server = Responses()
    tool = make_tool(server, max_output_tokens=256)
    for question in ("one?", "two?", "three?"):
        await ask(tool, question)
    for body in server.bodies:
        assert body["instructions"] == DEFAULT_INSTRUCTIONS
        assert body["store"] is True and body["stream"] is True
        assert body["max_output_tokens"] == 256
        assert body["model"] == DEPLOYMENT
        assert "reasoning" not in body
    assert [body["input"] for body in server.bodies] == [
        [{"role": "user", "content": q}] for q in ("one?", "two?", "three?")
    ]


async def test_requests_go_to_the_v1_responses_url_without_an_api_version() -> None:
    server = Responses()
    await ask(make_tool(server), "Why?")
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://res.openai.azure.com/openai/v1/responses"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"


async def test_the_reasoning_effort_is_sent_when_set() -> None:
    server = Responses()
    await ask(make_tool(server, reasoning_effort="low"), "Why?")
    assert server.bodies[0]["reasoning"] == {"effort": "low"}


async def test_an_api_key_credential_sends_the_api_key_header() -> None:
    server = Responses()
    await ask(make_tool(server, credential=ApiKeyCredential(API_KEY)), "Why?")
    headers = server.requests[0].headers
    assert headers["api-key"] == API_KEY
    assert "authorization" not in headers


async def test_an_entra_credential_sends_a_bearer_token_from_the_token_credential() -> None:
    server = Responses()
    token_credential = FakeTokenCredential()
    credential = EntraCredential(token_credential, clock=lambda: 1_800_000_000.0)
    tool = make_tool(server, credential=credential)
    await ask(tool, "Why?")
    await ask(tool, "And?")
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
        assert "api-key" not in request.headers
    assert token_credential.calls == 1  # the cached token serves the second request
    assert token_credential.scopes == ["https://cognitiveservices.azure.com/.default"]


# --- the answer and its cost -----------------------------------------------------------------------


async def test_the_answer_is_the_completed_text_priced_from_its_usage() -> None:
    server = Responses(stream_response(sse(*answer_events("resp_a", "Three hundred ninety one."))))
    tool = make_tool(server)
    result = await ask(tool, "What is 17 times 23?")
    assert result.value == {"answer": "Three hundred ninety one."}
    # gpt-5-mini: 176 uncached * 0.25 + 1024 cached * 0.025 + 300 output (192 reasoning) * 2.00, per 1M.
    assert result.cost_usd == Decimal("0.0006696")
    assert (
        result.cost_usd == (Decimal(176) * Decimal("0.25") + Decimal(1024) * Decimal("0.025") + 600) / 10**6
    )
    assert result.note == "gpt-5-mini, 1500 tokens"


async def test_given_prices_replace_the_price_table() -> None:
    server = Responses(stream_response(sse(*answer_events("resp_a", "Yes."))))
    prices = TextPrices(Decimal(1), Decimal("0.5"), Decimal(10))
    result = await ask(make_tool(server, prices=prices), "Is it?")
    assert result.cost_usd == Decimal("0.003688")  # (176 * 1 + 1024 * 0.5 + 300 * 10) / 1M


async def test_a_deployment_with_another_name_is_priced_as_model_for_prices() -> None:
    server = Responses(stream_response(sse(*answer_events("resp_a", "Yes."))))
    tool = make_tool(server, deployment="expert-prod", model_for_prices="gpt-4.1")
    result = await ask(tool, "Is it?")
    assert tool.prices == TEXT_PRICE_TABLE["gpt-4.1"]
    assert result.cost_usd == text_cost_usd(TextUsage.from_wire(USAGE), TEXT_PRICE_TABLE["gpt-4.1"])
    assert server.bodies[0]["model"] == "expert-prod"
    assert result.note == "expert-prod, 1500 tokens"


def test_a_deployment_that_is_no_model_name_needs_model_for_prices() -> None:
    with pytest.raises(ConfigError) as caught:
        make_tool(Responses(), deployment="expert-prod")
    assert caught.value.variable == "delegate.model_for_prices"


async def test_running_totals_add_up_over_the_session() -> None:
    usages = [
        {"input_tokens": 100, "output_tokens": 20},
        {"input_tokens": 150, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 30},
    ]
    server = Responses(
        *(stream_response(sse(*answer_events(f"resp_{i}", "Fine.", usage))) for i, usage in enumerate(usages))
    )
    tool = make_tool(server)
    first = await ask(tool, "One?")
    second = await ask(tool, "Two?")
    assert (tool.questions, tool.input_tokens, tool.output_tokens) == (2, 250, 50)
    assert tool.cost_usd == first.cost_usd + second.cost_usd
    # (100 * 0.25 + 20 * 2) + (50 * 0.25 + 100 * 0.025 + 30 * 2) = 65 + 75 per 1M
    assert tool.cost_usd == Decimal("0.00014")


async def test_the_streamed_deltas_are_the_answer_when_the_final_response_has_no_text() -> None:
    events = answer_events("resp_a", "Pieced together from deltas.", final_text=False)
    result = await ask(make_tool(Responses(stream_response(sse(*events)))), "Q?")
    assert result.value == {"answer": "Pieced together from deltas."}


async def test_events_split_over_several_data_lines_and_comments_are_read() -> None:
    completed = answer_events("resp_a", "Fine.")[-1]
    body = (
        b": keep-alive\n\n"
        + b"event: response.completed\ndata: "
        + json.dumps(completed, indent=1).replace("\n", "\ndata: ").encode()
        + b"\n\n"
    )
    result = await ask(make_tool(Responses(stream_response(body))), "Q?")
    assert result.value == {"answer": "Fine."}


# --- failures --------------------------------------------------------------------------------------


def failed_events(kind: str) -> list[dict[str, Any]]:
    created = {"type": "response.created", "response": response_object("resp_x", "in_progress")}
    if kind == "failed":
        error = {"code": "server_error", "message": "The model had an error."}
        return [
            created,
            {"type": "response.failed", "response": response_object("resp_x", "failed", error=error)},
        ]
    if kind == "incomplete":
        usage = {"input_tokens": 40, "output_tokens": 400, "output_tokens_details": {"reasoning_tokens": 400}}
        response = response_object(
            "resp_x", "incomplete", usage=usage, incomplete_details={"reason": "max_output_tokens"}
        )
        return [created, {"type": "response.incomplete", "response": response}]
    if kind == "error":
        return [
            created,
            {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down.", "param": None},
        ]
    return [created, {"type": "response.output_text.delta", "item_id": "m", "delta": "Half an"}]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("failed", "it failed (server_error: The model had an error.)"),
        ("incomplete", "its answer was cut off (max_output_tokens)"),
        ("error", "it reported an error (rate_limit_exceeded: Slow down.)"),
        ("truncated", "the stream ended before the answer was complete"),
    ],
)
async def test_a_failure_event_is_an_exception_with_a_sentence(kind: str, words: str) -> None:
    tool = make_tool(Responses(stream_response(sse(*failed_events(kind)))))
    with pytest.raises(ExpertUnavailable) as caught:
        await ask(tool, "Q?")
    assert str(caught.value) == f"the expert is unavailable: {words}"
    assert tool.last_response_id is None


async def test_a_cut_off_answer_is_still_billed_in_the_running_totals() -> None:
    tool = make_tool(Responses(stream_response(sse(*failed_events("incomplete")))))
    with pytest.raises(ExpertUnavailable) as caught:
        await ask(tool, "Q?")
    assert caught.value.cost_usd == Decimal("0.00081")  # (40 * 0.25 + 400 * 2.00) / 1M
    assert tool.cost_usd == Decimal("0.00081")
    assert (tool.input_tokens, tool.output_tokens, tool.questions) == (40, 400, 1)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (error_response(401, "401", "Access denied due to invalid subscription key."), "HTTP 401"),
        (error_response(403, "PermissionDenied", "The principal lacks the data action."), "HTTP 403"),
        (error_response(404, "DeploymentNotFound", "The API deployment does not exist."), "HTTP 404"),
        (
            error_response(429, "rate_limit_exceeded", "Too many requests.", headers={"retry-after": "7"}),
            "retry after 7 seconds",
        ),
        (error_response(500, "server_error", "Internal error."), "HTTP 500"),
        (httpx.Response(503, text="Service Unavailable"), "HTTP 503: Service Unavailable"),
        (error_response(400, "invalid_value", "max_output_tokens is too large."), "HTTP 400"),
    ],
)
async def test_an_http_error_is_an_exception_with_a_sentence(reply: httpx.Response, words: str) -> None:
    tool = make_tool(Responses(reply))
    with pytest.raises(ExpertUnavailable) as caught:
        await ask(tool, "Q?")
    message = str(caught.value)
    assert message.startswith("the expert is unavailable: ")
    assert words in message
    assert caught.value.status == reply.status_code


async def test_a_404_names_the_deployment_that_was_not_found() -> None:
    tool = make_tool(Responses(error_response(404, "DeploymentNotFound", "No such deployment.")))
    with pytest.raises(ExpertUnavailable, match="its deployment 'gpt-5-mini' was not found"):
        await ask(tool, "Q?")


async def test_an_unreachable_server_is_an_exception_with_a_sentence() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    tool = DelegationTool(
        DelegationSettings(DEPLOYMENT),
        rest_base_url=REST_BASE,
        credential=ApiKeyCredential(API_KEY),
        client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
    )
    with pytest.raises(
        ExpertUnavailable, match=re.escape("could not reach it (ConnectError: All connection attempts")
    ):
        await ask(tool, "Q?")


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (stream_response(b"data: {not json\n\n"), "not JSON"),
        (
            stream_response(
                sse(
                    {
                        "type": "response.completed",
                        "response": response_object("r", "completed", text="Hi.", usage={"input_tokens": -1}),
                    }
                )
            ),
            "invalid usage",
        ),
        (
            stream_response(sse({"type": "response.completed", "response": {"status": "completed"}})),
            "without an id",
        ),
        (
            httpx.Response(200, json=response_object("r", "completed", text="Hi.", usage=USAGE)),
            "not an event stream",
        ),
        (stream_response(sse(*answer_events("r", " "))), "an empty answer"),
    ],
)
async def test_an_invalid_stream_is_an_exception_with_a_sentence(reply: httpx.Response, words: str) -> None:
    with pytest.raises(ExpertUnavailable, match=words):
        await ask(make_tool(Responses(reply)), "Q?")


async def test_a_failed_question_leaves_the_thread_where_it_was() -> None:
    server = Responses(
        stream_response(sse(*answer_events("resp_1", "First."))),
        error_response(500, "server_error", "Oops."),
    )
    tool = make_tool(server)
    await ask(tool, "One?")
    with pytest.raises(ExpertUnavailable):
        await ask(tool, "Two?")
    await ask(tool, "Three?")
    assert server.bodies[2]["previous_response_id"] == "resp_1"


async def test_an_empty_question_is_refused_before_any_request() -> None:
    server = Responses()
    with pytest.raises(ValueError, match="needs the question in full"):
        await ask(make_tool(server), "   ")
    assert server.requests == []


# --- an expired thread -----------------------------------------------------------------------------


def previous_not_found(body: dict[str, Any], status: int = 400) -> httpx.Response:
    # Azure and OpenAI answer 400 with this code and text; some servers answer 404.
    previous = body["previous_response_id"]
    return error_response(
        status,
        "previous_response_not_found",
        f"Previous response with id '{previous}' not found.",
        param="previous_response_id",
    )


@pytest.mark.parametrize("status", [400, 404])
async def test_a_previous_response_not_found_starts_a_new_thread_once(status: int) -> None:
    server = Responses(
        stream_response(sse(*answer_events("resp_1", "First."))),
        lambda body: previous_not_found(body, status),
        stream_response(sse(*answer_events("resp_2", "Second, on a new thread."))),
    )
    tool = make_tool(server)
    await ask(tool, "One?")
    result = await ask(tool, "Two?")
    assert result.value == {"answer": "Second, on a new thread."}
    assert [body.get("previous_response_id") for body in server.bodies] == [None, "resp_1", None]
    assert server.bodies[2]["input"] == server.bodies[1]["input"]
    assert tool.last_response_id == "resp_2"
    await ask(tool, "Three?")
    assert server.bodies[3]["previous_response_id"] == "resp_2"


async def test_the_new_thread_is_tried_only_once() -> None:
    server = Responses(
        stream_response(sse(*answer_events("resp_1", "First."))),
        previous_not_found,
        error_response(404, "DeploymentNotFound", "The API deployment does not exist."),
    )
    tool = make_tool(server)
    await ask(tool, "One?")
    with pytest.raises(ExpertUnavailable, match="HTTP 404"):
        await ask(tool, "Two?")
    assert len(server.requests) == 3
    assert tool.last_response_id is None


async def test_a_404_on_a_first_question_is_not_retried() -> None:
    server = Responses(error_response(404, "DeploymentNotFound", "The API deployment does not exist."))
    with pytest.raises(ExpertUnavailable, match="HTTP 404"):
        await ask(make_tool(server), "One?")
    assert len(server.requests) == 1


async def test_another_404_on_a_chained_question_is_not_retried() -> None:
    server = Responses(
        stream_response(sse(*answer_events("resp_1", "First."))),
        error_response(404, "DeploymentNotFound", "The API deployment does not exist."),
    )
    tool = make_tool(server)
    await ask(tool, "One?")
    with pytest.raises(ExpertUnavailable, match="was not found"):
        await ask(tool, "Two?")
    assert len(server.requests) == 2
    assert tool.last_response_id == "resp_1"


async def test_an_error_event_about_the_previous_response_also_starts_a_new_thread() -> None:
    gone = {"type": "error", "code": "previous_response_not_found", "message": "Not found.", "param": None}
    server = Responses(
        stream_response(sse(*answer_events("resp_1", "First."))),
        stream_response(sse(gone)),
        stream_response(sse(*answer_events("resp_2", "Second."))),
    )
    tool = make_tool(server)
    await ask(tool, "One?")
    assert (await ask(tool, "Two?")).value == {"answer": "Second."}
    assert [body.get("previous_response_id") for body in server.bodies] == [None, "resp_1", None]


# --- time ------------------------------------------------------------------------------------------


async def test_a_server_that_does_not_answer_times_out_with_a_sentence() -> None:
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    tool = DelegationTool(
        DelegationSettings(DEPLOYMENT, timeout_s=0.2),
        rest_base_url=REST_BASE,
        credential=ApiKeyCredential(API_KEY),
        client=httpx.AsyncClient(transport=httpx.MockTransport(silent)),
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(ExpertUnavailable, match=re.escape("it did not answer within 0.2 seconds")):
        await ask(tool, "Q?")
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_stream_that_stalls_midway_times_out_too() -> None:
    class Stalling(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sse(*answer_events("resp_1", "Half")[:5])
            await asyncio.sleep(30)

    tool = DelegationTool(
        DelegationSettings(DEPLOYMENT, timeout_s=0.2),
        rest_base_url=REST_BASE,
        credential=ApiKeyCredential(API_KEY),
        client=httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda request: httpx.Response(
                    200, headers={"content-type": "text/event-stream"}, stream=Stalling()
                )
            )
        ),
    )
    with pytest.raises(ExpertUnavailable, match="did not answer within"):
        await ask(tool, "Q?")


def test_the_runner_timeout_is_a_little_later_than_the_tools_own() -> None:
    tool = make_tool(Responses(), timeout_s=20)
    assert tool.timeout_s is not None and 20 < tool.timeout_s <= 22


async def test_concurrent_questions_go_one_at_a_time_and_chain() -> None:
    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return await server(request)

    server = Responses()
    tool = DelegationTool(
        DelegationSettings(DEPLOYMENT),
        rest_base_url=REST_BASE,
        credential=ApiKeyCredential(API_KEY),
        client=httpx.AsyncClient(transport=httpx.MockTransport(slow_answer)),
    )
    await asyncio.gather(ask(tool, "A?"), ask(tool, "B?"))
    assert [body.get("previous_response_id") for body in server.bodies] == [None, "resp_1"]


# --- sessions, settings, secrets -------------------------------------------------------------------


async def test_for_session_starts_a_new_thread_with_zero_totals() -> None:
    server = Responses()
    first = make_tool(server)
    await ask(first, "One?")
    second = first.for_session()
    assert (second.questions, second.cost_usd, second.last_response_id) == (0, 0, None)
    await ask(second, "Two?")
    assert server.bodies[1].get("previous_response_id") is None  # the other session's thread is not joined
    assert first.questions == 1 and first.last_response_id == "resp_1"
    assert second.last_response_id == "resp_2"


async def test_a_tool_closes_the_client_it_made_and_its_session_copies_do_not() -> None:
    tool = DelegationTool(
        DelegationSettings(DEPLOYMENT),
        rest_base_url="http://127.0.0.1:9/openai/v1",
        credential=ApiKeyCredential(API_KEY),
    )
    copy = tool.for_session()
    await copy.aclose()
    await tool.aclose()
    await tool.aclose()  # closing twice is harmless


def test_the_tool_is_a_tool_for_the_runner() -> None:
    tool = make_tool(Responses())
    assert isinstance(tool, Tool)
    ToolRunner([tool])  # its parameters are a valid JSON schema for an object


def test_the_tool_describes_one_required_question() -> None:
    tool = make_tool(Responses(), name="consult", description="Ask the consultant.")
    assert (tool.name, tool.description) == ("consult", "Ask the consultant.")
    assert tool.parameters["type"] == "object"
    assert tool.parameters["required"] == ["question"]
    assert tool.parameters["properties"]["question"]["type"] == "string"
    assert "self-contained" in tool.parameters["properties"]["question"]["description"]


def test_the_default_description_says_when_to_use_it() -> None:
    description = DelegationSettings(DEPLOYMENT).description
    assert "hard question" in description and "self-contained" in description


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"deployment": ""}, "deployment"),
        ({"deployment": "has space"}, "deployment"),
        ({"name": "ask expert"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"description": " "}, "description"),
        ({"instructions": ""}, "instructions"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"timeout_s": "20"}, "timeout_s"),
        ({"max_output_tokens": 8}, "max_output_tokens"),
        ({"max_output_tokens": 400.0}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"model_for_prices": ""}, "model_for_prices"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
def test_invalid_settings_name_the_profile_key(settings: dict[str, Any], key: str) -> None:
    settings = {"deployment": DEPLOYMENT, **settings}
    with pytest.raises(ConfigError) as caught:
        DelegationSettings(**settings)
    assert caught.value.variable == f"delegate.{key}"


def test_settings_come_from_the_profiles_delegate_table() -> None:
    table = {"deployment": "o4-mini", "timeout_s": 30, "reasoning_effort": "low", "prices": {"input": "1"}}
    settings = DelegationSettings.from_profile(table)
    assert (settings.deployment, settings.timeout_s, settings.reasoning_effort) == ("o4-mini", 30, "low")
    assert settings.name == "ask_expert" and settings.max_output_tokens == 400
    assert settings.prices == {"input": Decimal(1)}


def test_the_profiles_prices_override_the_price_table() -> None:
    tool = make_tool(Responses(), prices_override={"output": 2.5})
    assert tool.prices == TextPrices(Decimal("0.25"), Decimal("0.025"), Decimal("2.5"))


def test_the_profiles_prices_can_price_a_model_the_table_does_not_know() -> None:
    prices = {"input": "3", "cached_input": "0.3", "output": "12"}
    tool = make_tool(Responses(), deployment="in-house-expert", prices_override=prices)
    assert tool.prices == TextPrices(Decimal(3), Decimal("0.3"), Decimal(12))


@pytest.mark.parametrize("prices", [{"out": "1"}, {"output": "-1"}, "cheap"])
def test_bad_profile_prices_name_the_prices_key(prices: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        DelegationSettings(DEPLOYMENT, prices=prices)
    assert caught.value.variable == "delegate.prices"


@pytest.mark.parametrize(
    ("table", "key"),
    [({"deployment": "gpt-5", "timeout": 3}, "timeout"), ({"name": "ask_expert"}, "deployment")],
)
def test_a_bad_delegate_table_names_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DelegationSettings.from_profile(table)
    assert caught.value.variable == f"delegate.{key}"


@pytest.mark.parametrize(
    "url", ["ftp://res.openai.azure.com/openai/v1", "http://res.openai.azure.com/openai/v1", "not a url"]
)
def test_an_unusable_rest_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        DelegationTool(
            DelegationSettings(DEPLOYMENT), rest_base_url=url, credential=ApiKeyCredential(API_KEY)
        )


async def test_the_key_reaches_neither_the_log_nor_the_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtalk")
    tool = make_tool(Responses(error_response(401, "401", "Access denied.")))
    with pytest.raises(ExpertUnavailable) as caught:
        await ask(tool, "Q?")
    assert API_KEY not in str(caught.value) and API_KEY not in repr(tool)
    assert caplog.records, "the failure is logged for the operator"
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


# --- against the emulator (127.0.0.1) --------------------------------------------------------------

EMULATOR_KEY = "emulator-delegation-key-0123456789"


@pytest.fixture(scope="module")
def fast_engines() -> Engines:
    """No speech engines worth the name: the Responses API needs none."""
    return load_engines("energy", "none", "tone")


@pytest.fixture
def expert(
    fast_engines: Engines, caplog: pytest.LogCaptureFixture
) -> Callable[..., AbstractAsyncContextManager[tuple[Emulator, DelegationTool]]]:
    """``async with expert(scenario=..., **settings) as (emu, tool)``: a tool on a local emulator.

    A test that used it fails if the emulator logged an error meanwhile.
    """
    caplog.set_level(logging.WARNING)

    @asynccontextmanager
    async def start(
        scenario: dict[str, Any] | None = None,
        credential: Any = None,
        keys: tuple[str, ...] = (EMULATOR_KEY,),
        **settings: Any,
    ) -> AsyncIterator[tuple[Emulator, DelegationTool]]:
        config = EmulatorConfig(pace=40.0, keys=keys, scenario=parse_scenario(scenario) if scenario else None)
        async with Emulator(config, engines=fast_engines) as emu:
            endpoint = resolve_endpoint(emu.http_base_url, "gpt-realtime-1.5")
            tool = DelegationTool(
                DelegationSettings(deployment=DEPLOYMENT, **settings),
                rest_base_url=endpoint.rest_base_url,
                credential=credential or ApiKeyCredential(EMULATOR_KEY),
            )
            try:
                yield emu, tool
            finally:
                await tool.aclose()

    yield start
    errors = [
        r for phase in ("setup", "call") for r in caplog.get_records(phase) if r.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def test_three_questions_on_the_emulator_carry_one_thread(expert: Any) -> None:
    async with expert() as (_, tool):
        answers = [await ask(tool, q) for q in ("What is a quasar?", "How far away?", "How bright?")]
    assert [result.value["answer"] for result in answers] == [
        "Expert answer 1 to: What is a quasar?",
        "Expert answer 2 to: How far away?",
        "Expert answer 3 to: How bright?",
    ]
    assert tool.questions == 3 and tool.last_response_id is not None
    assert tool.last_response_id.startswith("resp_")


async def test_usage_and_cost_grow_along_the_chain_on_the_emulator(expert: Any) -> None:
    input_tokens: list[int] = []
    costs: list[Decimal] = []
    async with expert() as (_, tool):
        for question in ("Why is the sky blue?", "And at sunset?", "And on Mars?"):
            before = tool.input_tokens
            result = await ask(tool, question)
            input_tokens.append(tool.input_tokens - before)
            costs.append(result.cost_usd)
    # Every earlier question and answer is billed again as input on the next question (§7).
    assert input_tokens[0] < input_tokens[1] < input_tokens[2]
    assert costs[0] < costs[1] < costs[2]
    assert tool.cost_usd == sum(costs) and tool.output_tokens > 0
    assert tool.cost_usd == text_cost_usd(tool.usage, TEXT_PRICE_TABLE[DEPLOYMENT])


async def test_an_unknown_previous_response_on_the_emulator_starts_a_new_thread(expert: Any) -> None:
    async with expert() as (emu, tool):
        await ask(tool, "What is a quasar?")
        gone = tool.last_response_id
        async with httpx.AsyncClient(base_url=emu.http_base_url, headers={"api-key": EMULATOR_KEY}) as http:
            deleted = await http.delete(f"/openai/v1/responses/{gone}")
        assert deleted.status_code == 200
        second = await ask(tool, "How far away?")
        third = await ask(tool, "How bright?")
    assert second.value == {"answer": "Expert answer 1 to: How far away?"}  # a new thread
    assert third.value == {"answer": "Expert answer 2 to: How bright?"}  # chained on the new one
    assert tool.last_response_id not in (None, gone)


async def test_an_entra_token_is_accepted_by_the_emulator_as_a_bearer(expert: Any) -> None:
    credential = EntraCredential(FakeTokenCredential(), clock=lambda: 1_800_000_000.0)
    async with expert(credential=credential, keys=(ENTRA_TOKEN,)) as (_, tool):
        result = await ask(tool, "Who is there?")
    assert result.value == {"answer": "Expert answer 1 to: Who is there?"}


async def test_a_wrong_key_on_the_emulator_is_a_401_sentence(expert: Any) -> None:
    async with expert(credential=ApiKeyCredential("not-the-emulator-key-0123456789")) as (_, tool):
        with pytest.raises(ExpertUnavailable, match=re.escape("refused realtalk's credentials (HTTP 401")):
            await ask(tool, "Q?")


async def test_a_slow_expert_on_the_emulator_times_out(expert: Any) -> None:
    scenario = {"responses": ["First.", {"delay_ms": 10_000}]}  # the thread's second answer is late
    async with expert(scenario=scenario, timeout_s=0.3) as (_, tool):
        assert (await ask(tool, "One?")).value == {"answer": "First."}
        with pytest.raises(ExpertUnavailable, match=re.escape("did not answer within 0.3 seconds")):
            await ask(tool, "Two?")
        # The timed-out question left the thread where it was: the next one chains on the first.
        assert (await ask(tool, "Three?")).value == {"answer": "Expert answer 2 to: Three?"}


async def test_a_rate_limited_expert_on_the_emulator_says_when_to_retry(expert: Any) -> None:
    scenario = {"responses": [{"error": {"status": 429, "retry_after_s": 2}}]}
    async with expert(scenario=scenario) as (_, tool):
        with pytest.raises(ExpertUnavailable, match=r"rate-limited \(HTTP 429.*\); retry after 2 seconds$"):
            await ask(tool, "Q?")


async def test_through_the_runner_the_answer_and_its_cost_reach_the_outcome(expert: Any) -> None:
    async with expert() as (_, tool):
        runner = ToolRunner([tool])
        outcome = await runner.run("call_1", "ask_expert", json.dumps({"question": "What is a quasar?"}))
        await runner.aclose()
    assert outcome.status == "ok"
    assert json.loads(outcome.output) == {"answer": "Expert answer 1 to: What is a quasar?"}
    assert outcome.cost_usd == tool.cost_usd > 0
    assert outcome.note == f"gpt-5-mini, {tool.usage.total_tokens} tokens"


async def test_through_the_runner_our_timeout_fires_first_with_its_sentence(expert: Any) -> None:
    async with expert(scenario={"responses": [{"delay_ms": 10_000}]}, timeout_s=0.3) as (_, tool):
        outcome = await ToolRunner([tool]).run("call_1", "ask_expert", json.dumps({"question": "Q?"}))
    assert outcome.status == "error"
    assert (
        "the expert is unavailable: it did not answer within 0.3 seconds"
        in json.loads(outcome.output)["error"]
    )
