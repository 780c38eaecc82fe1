"""The emulator's Responses API (§7): stateful chaining, streaming, GET/DELETE, errors and scripts.

Driven with the official SDK (``AsyncOpenAI(base_url=<emulator>/openai/v1/)``) and, where the wire
itself is the point (SSE framing, error bodies, headers), with httpx. Every response object and
stream event is validated against the SDK's types, strictly, with no field the SDK does not declare
(``store`` excepted: the API sends it, this SDK version does not declare it).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from realtalk.emulator import Emulator, ScenarioError, parse_scenario
from realtalk.emulator.responses_api import (
    ResponsesApi,
    ResponseStore,
    ScriptedError,
    ScriptedResponse,
    count_tokens,
)
from realtalk.emulator.responses_request import ResponsesRequest, parse_request

from .conftest import KEY

EXPERT = "gpt-5-mini"  # a default emulator accepts the usual text-model deployment names
STREAM_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
EXTRA_FIELDS_ALLOWED = {("$", "store")}


def _extra_fields(model: Any, path: str = "$") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    if isinstance(model, BaseModel):
        found |= {(path, name) for name in model.model_extra or {}}
        for name in type(model).model_fields:
            found |= _extra_fields(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for index, inner in enumerate(model):
            found |= _extra_fields(inner, f"{path}[{index}]")
    return found


def checked_response(body: dict[str, Any]) -> Response:
    response = Response.model_validate(body, strict=True)
    assert _extra_fields(response) <= EXTRA_FIELDS_ALLOWED
    return response


def checked_event(data: dict[str, Any]) -> Any:
    event = STREAM_EVENTS.validate_python(data, strict=True)
    assert {field for path, field in _extra_fields(event)} <= {"store"}
    return event


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Each ``event: <type>`` / ``data: <json>`` block, checked: the two name the same type."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == event_line.removeprefix("event: ")
        checked_event(data)
        events.append(data)
    return events


@asynccontextmanager
async def sdk(emu: Emulator, **options: Any) -> AsyncIterator[AsyncOpenAI]:
    """The official SDK pointed at the emulator, without its retries (each call is one request)."""
    options.setdefault("max_retries", 0)
    client = AsyncOpenAI(base_url=f"{emu.http_base_url}/openai/v1/", api_key=KEY, **options)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def raw(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.http_base_url, headers={"api-key": KEY}) as http:
        yield http


# --- chaining -------------------------------------------------------------------------------------


async def test_three_questions_chained_by_previous_response_id_carry_the_thread(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        first = await client.responses.create(model=EXPERT, input="What is a quasar?")
        second = await client.responses.create(
            model=EXPERT, input=[{"role": "user", "content": "How far away?"}], previous_response_id=first.id
        )
        third = await client.responses.create(
            model=EXPERT,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "How bright?"}]}],
            previous_response_id=second.id,
        )
    assert [r.output_text for r in (first, second, third)] == [
        "Expert answer 1 to: What is a quasar?",
        "Expert answer 2 to: How far away?",
        "Expert answer 3 to: How bright?",
    ]
    assert (first.previous_response_id, second.previous_response_id, third.previous_response_id) == (
        None,
        first.id,
        second.id,
    )
    assert len({first.id, second.id, third.id}) == 3 and all(r.id.startswith("resp_") for r in (first, third))


async def test_the_response_object_has_the_documented_shape(emulator) -> None:
    async with emulator() as emu, raw(emu) as http:
        before = int(time.time())
        reply = await http.post(
            "/openai/v1/responses",
            json={
                "model": EXPERT,
                "input": "Explain X briefly.",
                "instructions": "Answer for a voice agent.",
                "max_output_tokens": 400,
                "metadata": {"call": "c-1"},
                "temperature": 0.2,
                "reasoning": {"effort": "low"},
            },
        )
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    checked_response(body)
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["error"] is None and body["incomplete_details"] is None
    assert (body["model"], body["instructions"], body["metadata"], body["store"]) == (
        EXPERT,
        "Answer for a voice agent.",
        {"call": "c-1"},
        True,
    )
    assert (body["temperature"], body["reasoning"], body["max_output_tokens"]) == (
        0.2,
        {"effort": "low"},
        400,
    )
    assert before <= body["created_at"] <= time.time()
    (message,) = body["output"]
    assert message["id"].startswith("msg_")
    assert (message["type"], message["role"], message["status"]) == ("message", "assistant", "completed")
    assert message["content"] == [
        {
            "type": "output_text",
            "text": "Expert answer 1 to: Explain X briefly.",
            "annotations": [],
            "logprobs": [],
        }
    ]


async def test_usage_grows_along_the_chain_because_prior_turns_are_billed_again(emulator) -> None:
    questions = ["What is a quasar?", "How far away is the nearest one?", "Could we ever see one?"]
    async with emulator() as emu, sdk(emu) as client:
        responses = []
        previous = None
        for question in questions:
            response = await client.responses.create(
                model=EXPERT, input=question, previous_response_id=previous
            )
            responses.append(response)
            previous = response.id
    usages = [r.usage for r in responses]
    assert all(u is not None for u in usages)
    inputs = [u.input_tokens for u in usages if u is not None]
    assert inputs[0] < inputs[1] < inputs[2]
    for before, after, question in zip(responses, responses[1:], questions[1:], strict=False):
        assert before.usage is not None and after.usage is not None
        # The thread so far (its inputs and answers) plus the new question.
        expected = before.usage.input_tokens + before.usage.output_tokens + count_tokens(question)
        assert after.usage.input_tokens == expected
    for usage, response in zip(usages, responses, strict=True):
        assert usage is not None
        assert usage.output_tokens == count_tokens(response.output_text)
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (
            0,
            0,
        )


async def test_instructions_are_not_carried_over_by_previous_response_id(emulator) -> None:
    long_instructions = "You are a meticulous astrophysicist. " * 20
    async with emulator() as emu, sdk(emu) as client:
        with_instructions = await client.responses.create(
            model=EXPERT, input="What is a quasar?", instructions=long_instructions
        )
        without = await client.responses.create(model=EXPERT, input="What is a quasar?")
        after_instructions = await client.responses.create(
            model=EXPERT, input="How far?", previous_response_id=with_instructions.id
        )
        after_none = await client.responses.create(
            model=EXPERT, input="How far?", previous_response_id=without.id
        )
    assert with_instructions.instructions == long_instructions and after_instructions.instructions is None
    assert with_instructions.usage is not None and without.usage is not None
    assert with_instructions.usage.input_tokens == without.usage.input_tokens + count_tokens(
        long_instructions
    )
    # The second turn sees the same thread whether or not the first had instructions.
    assert after_instructions.usage is not None and after_none.usage is not None
    assert after_instructions.usage.input_tokens == after_none.usage.input_tokens


async def test_an_unknown_previous_response_id_is_a_400_previous_response_not_found(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model=EXPERT, input="And Y?", previous_response_id="resp_unknown")
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "Previous response with id 'resp_unknown' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


async def test_a_response_created_with_store_false_can_be_neither_chained_nor_retrieved(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        unstored = await client.responses.create(model=EXPERT, input="Off the record?", store=False)
        assert unstored.output_text == "Expert answer 1 to: Off the record?"
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model=EXPERT, input="And?", previous_response_id=unstored.id)
        assert (
            isinstance(refused.value.body, dict)
            and refused.value.body["code"] == "previous_response_not_found"
        )
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unstored.id)


async def test_a_thread_can_branch_from_any_stored_response(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        root = await client.responses.create(model=EXPERT, input="Q1")
        left = await client.responses.create(model=EXPERT, input="Q2 left", previous_response_id=root.id)
        right = await client.responses.create(model=EXPERT, input="Q2 right", previous_response_id=root.id)
        deeper = await client.responses.create(model=EXPERT, input="Q3", previous_response_id=left.id)
    assert (left.output_text, right.output_text, deeper.output_text) == (
        "Expert answer 2 to: Q2 left",
        "Expert answer 2 to: Q2 right",
        "Expert answer 3 to: Q3",
    )


async def test_input_items_of_every_role_and_a_function_call_output_are_read(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        response = await client.responses.create(
            model=EXPERT,
            input=[
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "input_text", "text": "Cite nothing."}]},
                {"role": "user", "content": "First question"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "First answer"}]},
                {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 7}'},
                {"type": "message", "role": "user", "content": "Second question"},
            ],
        )
    assert response.output_text == "Expert answer 2 to: Second question"
    texts = [
        "Be terse.",
        "Cite nothing.",
        "First question",
        "First answer",
        '{"temp_c": 7}',
        "Second question",
    ]
    assert response.usage is not None and response.usage.input_tokens == sum(count_tokens(t) for t in texts)


async def test_the_openai_form_of_the_path_is_served_too(emulator) -> None:
    async with emulator() as emu, raw(emu) as http:
        created = await http.post("/v1/responses", json={"model": EXPERT, "input": "Hi"})
        assert created.status_code == 200
        assert (await http.get(f"/v1/responses/{created.json()['id']}")).json() == created.json()
        assert emu.stats.responses_requests == 1


# --- streaming ------------------------------------------------------------------------------------


async def test_a_streamed_response_sends_the_documented_events_in_order(emulator) -> None:
    async with emulator() as emu, raw(emu) as http:
        reply = await http.post(
            "/openai/v1/responses", json={"model": EXPERT, "input": "Tell me about quasars", "stream": True}
        )
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(reply.text)
    types = [e["type"] for e in events]
    deltas = types.count("response.output_text.delta")
    assert deltas >= 3
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    created, completed = events[0]["response"], events[-1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert created["id"] == completed["id"] and completed["status"] == "completed"
    answer = "Expert answer 1 to: Tell me about quasars"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == answer
    assert events[-4]["text"] == answer and events[-3]["part"]["text"] == answer
    assert completed["output"][0]["content"][0]["text"] == answer
    assert completed["usage"]["output_tokens"] == count_tokens(answer)
    item_ids = {e.get("item_id") or e.get("item", {}).get("id") for e in events[2:-1]}
    assert item_ids == {completed["output"][0]["id"]}


async def test_the_sdk_streams_a_chained_response_and_can_chain_from_it_at_once(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        first = await client.responses.create(model=EXPERT, input="Q1")
        stream = await client.responses.create(
            model=EXPERT, input="Q2 streamed", previous_response_id=first.id, stream=True
        )
        deltas, final = [], None
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        assert final is not None and final.usage is not None
        assert "".join(deltas) == final.output_text == "Expert answer 2 to: Q2 streamed"
        third = await client.responses.create(model=EXPERT, input="Q3", previous_response_id=final.id)
        assert third.output_text == "Expert answer 3 to: Q3"


async def test_max_output_tokens_cuts_the_answer_and_marks_it_incomplete(emulator) -> None:
    question = "Please explain everything about the history of the universe in detail."
    async with emulator() as emu, sdk(emu) as client:
        cut = await client.responses.create(model=EXPERT, input=question, max_output_tokens=16)
        stream = await client.responses.create(
            model=EXPERT, input=question, max_output_tokens=16, stream=True
        )
        last = None
        async for event in stream:
            last = event
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage is not None and cut.usage.output_tokens == 16
    assert f"Expert answer 1 to: {question}".startswith(cut.output_text)
    assert last is not None and last.type == "response.incomplete"


# --- GET and DELETE -------------------------------------------------------------------------------


async def test_get_returns_a_stored_response_and_delete_removes_it(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client, raw(emu) as http:
        created = await client.responses.create(model=EXPERT, input="Keep this", metadata={"k": "v"})
        retrieved = await client.responses.retrieve(created.id)
        assert retrieved == created
        fetched = await http.get(f"/openai/v1/responses/{created.id}")
        checked_response(fetched.json())
        deleted = await http.delete(f"/openai/v1/responses/{created.id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
        with pytest.raises(openai.NotFoundError) as gone:
            await client.responses.retrieve(created.id)
        assert gone.value.body == {
            "message": f"Response with id '{created.id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(created.id)
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model=EXPERT, input="More", previous_response_id=created.id)


async def test_the_sdk_deletes_a_response(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        created = await client.responses.create(model=EXPERT, input="Short-lived")
        await client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(created.id)


# --- auth and validation --------------------------------------------------------------------------


async def test_requests_without_a_credential_are_refused_with_401(emulator) -> None:
    async with emulator() as emu, httpx.AsyncClient(base_url=emu.http_base_url) as http:
        created = await http.post("/openai/v1/responses", json={"model": EXPERT, "input": "Hi"})
        fetched = await http.get("/openai/v1/responses/resp_x")
        deleted = await http.delete("/openai/v1/responses/resp_x")
    for reply in (created, fetched, deleted):
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "401"
        assert "missing subscription key" in reply.json()["error"]["message"]


async def test_a_wrong_key_is_refused_and_the_configured_one_accepted_in_either_header(emulator) -> None:
    async with emulator(keys=("secret",)) as emu:
        async with sdk(emu) as client:  # Authorization: Bearer test-key
            with pytest.raises(openai.AuthenticationError):
                await client.responses.create(model=EXPERT, input="Hi")
        async with httpx.AsyncClient(base_url=emu.http_base_url) as http:
            by_header = await http.post(
                "/openai/v1/responses", headers={"api-key": "secret"}, json={"model": EXPERT, "input": "Hi"}
            )
            by_bearer = await http.post(
                "/openai/v1/responses",
                headers={"authorization": "Bearer secret"},
                json={"model": EXPERT, "input": "Hi"},
            )
            assert (by_header.status_code, by_bearer.status_code) == (200, 200)
            minted = await http.post(
                "/openai/v1/realtime/client_secrets", headers={"api-key": "secret"}, json={}
            )
            ephemeral = await http.post(
                "/openai/v1/responses",
                headers={"api-key": minted.json()["value"]},
                json={"model": EXPERT, "input": "Hi"},
            )
            assert ephemeral.status_code == 401  # ephemeral keys are for realtime sessions only


async def test_an_unknown_deployment_is_a_404_deployment_not_found(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            await client.responses.create(model="no-such-deployment", input="Hi")
    assert isinstance(refused.value.body, dict) and refused.value.body["code"] == "DeploymentNotFound"


async def test_a_configured_deployment_list_is_exact(emulator) -> None:
    async with emulator(deployments=("gpt-realtime-1.5", "my-expert")) as emu, sdk(emu) as client:
        response = await client.responses.create(model="my-expert", input="Hi")
        assert response.model == "my-expert"
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model=EXPERT, input="Hi")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "Hi"}, "model", "missing_required_parameter"),
        ({"model": 5, "input": "Hi"}, "model", "invalid_type"),
        ({"model": EXPERT}, "input", "missing_required_parameter"),
        ({"model": EXPERT, "input": 42}, "input", "invalid_type"),
        ({"model": EXPERT, "input": []}, "input", "empty_array"),
        ({"model": EXPERT, "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({"model": EXPERT, "input": [{"role": "user"}]}, "input[0].content", "missing_required_parameter"),
        (
            {
                "model": EXPERT,
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}],
            },
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": EXPERT, "input": [{"type": "item_reference", "id": "x"}]},
            "input[0].type",
            "invalid_value",
        ),
        ({"model": EXPERT, "input": "Hi", "store": "yes"}, "store", "invalid_type"),
        ({"model": EXPERT, "input": "Hi", "stream": 1}, "stream", "invalid_type"),
        ({"model": EXPERT, "input": "Hi", "instructions": ["x"]}, "instructions", "invalid_type"),
        (
            {"model": EXPERT, "input": "Hi", "max_output_tokens": 5},
            "max_output_tokens",
            "integer_below_min_value",
        ),
        ({"model": EXPERT, "input": "Hi", "temperature": 3}, "temperature", "decimal_above_max_value"),
        ({"model": EXPERT, "input": "Hi", "metadata": {"k": 1}}, "metadata.k", "invalid_type"),
        ({"model": EXPERT, "input": "Hi", "voice": "alloy"}, "voice", "unknown_parameter"),
        (
            {"model": EXPERT, "input": "Hi", "previous_response_id": "resp_1", "conversation": "conv_1"},
            "previous_response_id",
            "mutually_exclusive_parameters",
        ),
        ({"model": EXPERT, "input": "Hi", "background": True}, "background", "unsupported_parameter"),
    ],
)
async def test_a_bad_body_is_a_400_that_names_the_field(emulator, body, param, code) -> None:
    async with emulator() as emu, raw(emu) as http:
        reply = await http.post("/openai/v1/responses", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert f"'{param}'" in error["message"]


async def test_a_body_that_is_not_json_is_a_400(emulator) -> None:
    async with emulator() as emu, raw(emu) as http:
        reply = await http.post(
            "/openai/v1/responses", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_the_sdk_reports_a_bad_body_as_bad_request(emulator) -> None:
    async with emulator() as emu, sdk(emu) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model=EXPERT, input="Hi", max_output_tokens=1)
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "max_output_tokens"


# --- scripted answers -----------------------------------------------------------------------------


async def test_scripted_answers_are_played_per_thread_then_the_default_answer(emulator) -> None:
    scenario = parse_scenario({"responses": ["Paris is the capital.", {"say": "About two million people."}]})
    async with emulator(scenario=scenario) as emu, sdk(emu) as client:
        first = await client.responses.create(model=EXPERT, input="Capital of France?")
        second = await client.responses.create(
            model=EXPERT, input="Population?", previous_response_id=first.id
        )
        third = await client.responses.create(model=EXPERT, input="Mayor?", previous_response_id=second.id)
        other_thread = await client.responses.create(model=EXPERT, input="Capital of Spain?")
    assert [r.output_text for r in (first, second, third, other_thread)] == [
        "Paris is the capital.",
        "About two million people.",
        "Expert answer 3 to: Mayor?",
        "Paris is the capital.",
    ]


async def test_a_scripted_delay_holds_the_answer_and_a_short_client_timeout_fires(emulator) -> None:
    scenario = parse_scenario({"responses": [{"say": "Late.", "delay_ms": 400}, {"delay_ms": 3000}]})
    async with emulator(scenario=scenario) as emu, sdk(emu) as client:
        started = time.monotonic()
        late = await client.responses.create(model=EXPERT, input="Q1")
        assert late.output_text == "Late." and time.monotonic() - started >= 0.4
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await client.responses.create(model=EXPERT, input="Q2", previous_response_id=late.id, timeout=0.3)
        assert time.monotonic() - started < 2.5
        # The timed-out call took its entry; the thread goes on with the default answer.
        after = await client.responses.create(model=EXPERT, input="Q3", previous_response_id=late.id)
        assert after.output_text == "Expert answer 2 to: Q3"


async def test_a_scripted_delay_in_a_stream_comes_after_in_progress(emulator) -> None:
    scenario = parse_scenario({"responses": [{"say": "Slow and steady.", "delay_ms": 400}]})
    async with emulator(scenario=scenario) as emu, sdk(emu) as client:
        started = time.monotonic()
        arrivals: dict[str, float] = {}
        stream = await client.responses.create(model=EXPERT, input="Q", stream=True)
        async for event in stream:
            arrivals.setdefault(event.type, time.monotonic() - started)
    assert arrivals["response.in_progress"] < 0.3
    assert arrivals["response.output_text.delta"] >= 0.4


async def test_a_scripted_error_is_an_http_error_and_the_retry_takes_the_next_entry(emulator) -> None:
    scenario = parse_scenario(
        {
            "responses": [
                "First answer.",
                {"error": {"status": 429, "retry_after_s": 2}},
                {"error": 500},
                "Recovered.",
            ]
        }
    )
    async with emulator(scenario=scenario) as emu, sdk(emu) as client, raw(emu) as http:
        first = await client.responses.create(model=EXPERT, input="Q1")
        limited = await http.post(
            "/openai/v1/responses", json={"model": EXPERT, "input": "Q2", "previous_response_id": first.id}
        )
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError) as failed:
            await client.responses.create(
                model=EXPERT, input="Q2", previous_response_id=first.id, stream=True
            )
        assert isinstance(failed.value.body, dict) and failed.value.body["type"] == "server_error"
        recovered = await client.responses.create(model=EXPERT, input="Q2", previous_response_id=first.id)
    assert recovered.output_text == "Recovered."
    # Failed requests store nothing: the thread is the first answer and the recovered one.
    assert recovered.usage is not None and first.usage is not None
    assert recovered.usage.input_tokens == first.usage.total_tokens + count_tokens("Q2")


async def test_the_sdk_raises_rate_limit_error_for_a_scripted_429(emulator) -> None:
    scenario = parse_scenario({"responses": [{"error": {"status": 429, "message": "Slow down."}}]})
    async with emulator(scenario=scenario) as emu, sdk(emu) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model=EXPERT, input="Q")
    assert isinstance(limited.value.body, dict) and limited.value.body["message"] == "Slow down."
    assert emu.stats.responses_requests == 1


# --- the scenario key ----------------------------------------------------------------------------


def test_a_scenario_reads_its_responses_entries() -> None:
    scenario = parse_scenario(
        {
            "responses": [
                "Plain.",
                {"say": "Later.", "delay_ms": 1500},
                {"delay_ms": 200},
                {"error": {"status": 503}},
                {"error": {"status": 404, "message": "Gone.", "code": "gone", "param": "x"}, "delay_ms": 5},
            ]
        }
    )
    assert scenario.turns == ()
    assert scenario.responses == (
        ScriptedResponse("Plain."),
        ScriptedResponse("Later.", 1500),
        ScriptedResponse(None, 200),
        ScriptedResponse(error=ScriptedError(503)),
        ScriptedResponse(
            delay_ms=5, error=ScriptedError(404, "Gone.", "gone", "invalid_request_error", param="x")
        ),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"responses": "Paris"}, "'responses' must be a list"),
        ({"responses": [{"sing": "x"}]}, "responses entry 1: unknown key(s) sing"),
        ({"responses": ["ok", {"say": "x", "error": 500}]}, "responses entry 2: 'error' replaces the answer"),
        ({"responses": [{"delay_ms": -1}]}, "responses entry 1: 'delay_ms' must be a non-negative integer"),
        ({"responses": [{"error": 200}]}, "responses entry 1: error 'status' must be an HTTP error status"),
        (
            {"responses": [{"error": {"status": 403}}]},
            "responses entry 1: an error with status 403 needs a 'message'",
        ),
        ({"responses": [{}]}, "responses entry 1: nothing to do"),
        ({"responses": [3]}, "responses entry 1: expected a mapping or an answer text"),
    ],
)
def test_a_malformed_responses_entry_is_named_in_the_error(data, message) -> None:
    with pytest.raises(ScenarioError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_scenario(data)


# --- the store (pure) -----------------------------------------------------------------------------


def _request(text: str, previous: str | None = None) -> ResponsesRequest:
    return parse_request({"model": EXPERT, "input": text, "previous_response_id": previous})


def test_the_store_is_bounded_and_evicts_the_oldest_responses_first() -> None:
    api = ResponsesApi(store=ResponseStore(max_responses=3))
    ids = []
    previous = None
    for number in range(5):
        turn = api.begin(_request(f"Q{number}", previous), created_at=0)
        previous = api.finish(turn, completed_at=0)["id"]
        ids.append(previous)
    assert len(api.store) == 3
    assert [api.store.get(i) is not None for i in ids] == [False, False, True, True, True]
    # The newest response still carries the whole thread, evicted ancestors included.
    tip = api.begin(_request("Q5", ids[-1]), created_at=0)
    assert tip.answer == "Expert answer 6 to: Q5"


def test_the_store_bounds_the_context_it_keeps_alive() -> None:
    api = ResponsesApi(store=ResponseStore(max_context_chars=1_000))
    for _ in range(10):
        api.finish(api.begin(_request("x" * 200), created_at=0), completed_at=0)
    assert api.store.context_chars <= 1_000 and len(api.store) < 10
