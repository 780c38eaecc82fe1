"""The Responses API (§7 of the protocol notes), served statefully: the expert a voice agent delegates to.

Routes (registered in ``server.py``, authenticated like the Realtime handshake):

- ``POST /openai/v1/responses`` (and ``/v1/responses``): create a response; JSON, or SSE with
  ``"stream": true``.
- ``GET /openai/v1/responses/{id}``: a stored response. ``DELETE``: remove it.

Theory of operation. :func:`parse_request` checks a body into a :class:`ResponsesRequest` or refuses
it with a :class:`ResponsesApiError` (the HTTP status and OpenAI's ``{"error": {...}}`` object).
:meth:`ResponsesApi.begin` resolves ``previous_response_id`` in the instance's :class:`ResponseStore`,
takes the thread's next scripted entry, decides the answer and returns a :class:`Turn`; the server
waits the turn's ``delay_ms``, calls :meth:`ResponsesApi.finish` (which stores the response when
``store`` is true, before it is sent, so that a client can chain from it at once) and sends the
response object, or the SSE events of :func:`opening_events` (before the delay) and
:func:`closing_events`. Nothing here sleeps, reads the clock or does I/O: the server passes the
times and does the waiting.

What the emulated model answers is deterministic:

- by default ``"Expert answer <n> to: <q>"``: ``<n>`` is the number of user messages in the chained
  thread, this request's included, and ``<q>`` the latest user text; so a test can prove that
  ``previous_response_id`` carried the thread across questions;
- with a scenario's ``responses:`` list, its entries in order *per thread*: a thread is a response
  without ``previous_response_id`` and everything chained from it. A request that starts a thread
  takes the first entry; each request that continues a thread takes the thread's next entry, failed
  ones included (so a retry after a scripted error gets the entry after it; a request without
  ``previous_response_id`` starts a new thread, so an error first in the list fails every first
  question). When the list runs out, the default answer. An entry may delay the answer
  (``delay_ms``) or fail the request with an HTTP error (``error``).

Tokens are counted as one per 4 characters, rounded up, of each text. Input: the instructions of
*this* request (they are not carried over, §7), every message of the chained thread (earlier inputs
and answers: prior turns are re-billed) and this request's input. Output: the answer.

The store keeps text only (no audio ever reaches it), at most :data:`MAX_STORED_RESPONSES` responses
and :data:`MAX_STORED_CONTEXT_CHARS` characters of context, oldest evicted first.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from realtalk.emulator.errors import RealtimeApiError
from realtalk.emulator.events import new_id
from realtalk.emulator.responses_request import (
    ContextItem,
    ResponsesApiError,
    ResponsesRequest,
    bad_request,
    previous_response_not_found,
    response_not_found,
)

__all__ = [
    "DEFAULT_TEXT_DEPLOYMENTS",
    "MAX_CONTEXT_TOKENS",
    "MAX_STORED_CONTEXT_CHARS",
    "MAX_STORED_RESPONSES",
    "ContextItem",
    "ResponseStore",
    "ResponsesApi",
    "ResponsesApiError",
    "ResponsesRequest",
    "ScriptedError",
    "ScriptedResponse",
    "Turn",
    "closing_events",
    "count_tokens",
    "default_answer",
    "encode_sse",
    "opening_events",
]

# Deployment names of text and reasoning models a default emulator also accepts as ``model`` here
# (its default deployments are realtime models). A configured deployment list replaces both.
DEFAULT_TEXT_DEPLOYMENTS: tuple[str, ...] = (
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-5-chat",
    "gpt-5.1",
    "gpt-5.2",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o3-mini",
    "o4-mini",
)

MAX_STORED_RESPONSES = 10_000
# An upper bound of the text stored responses keep alive: each one counts its whole context, though
# a chain's messages are shared between its responses.
MAX_STORED_CONTEXT_CHARS = 64 * 1024 * 1024
MAX_CONTEXT_TOKENS = 128_000  # the emulated model's context window (a request past it is refused)


# --- the scenario's script --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedError:
    """An HTTP error a scripted entry answers with instead of a response."""

    status: int = 500
    message: str = "The server had an error while processing your request. Sorry about that!"
    code: str | None = "server_error"
    error_type: str = "server_error"
    param: str | None = None
    retry_after_s: int | None = None  # sent as a ``retry-after`` header

    def to_exception(self) -> ResponsesApiError:
        headers = {"retry-after": str(self.retry_after_s)} if self.retry_after_s is not None else None
        error = RealtimeApiError(self.code, self.message, param=self.param, error_type=self.error_type)
        return ResponsesApiError(self.status, error, headers)


@dataclass(frozen=True)
class ScriptedResponse:
    """One entry of a scenario's ``responses:``: an answer (``None``: the default one), a delay, an error."""

    text: str | None = None
    delay_ms: int = 0
    error: ScriptedError | None = None


# --- the model --------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """The emulator's token count of a text: one per 4 characters, rounded up."""
    return math.ceil(len(text) / 4)


def default_answer(user_turns: int, question: str) -> str:
    """What the emulated expert answers without a script."""
    return f"Expert answer {user_turns} to: {question}"


def _truncate_to_tokens(text: str, max_tokens: int) -> str:
    return text[: max_tokens * 4]


# --- the store --------------------------------------------------------------------------------------


class Thread:
    """A chain of responses from its first one: where it is in the scenario's ``responses:``."""

    __slots__ = ("next_entry",)

    def __init__(self) -> None:
        self.next_entry = 0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A stored response, and what the next response in its chain starts from."""

    body: dict[str, Any]
    context: tuple[ContextItem, ...]  # the thread's messages, this response's answer last; no instructions
    thread: Thread
    context_chars: int


class ResponseStore:
    """The stored responses of one emulator instance, bounded (oldest evicted first)."""

    def __init__(
        self, *, max_responses: int = MAX_STORED_RESPONSES, max_context_chars: int = MAX_STORED_CONTEXT_CHARS
    ) -> None:
        self.max_responses = max_responses
        self.max_context_chars = max_context_chars
        self._responses: OrderedDict[str, StoredResponse] = OrderedDict()
        self._context_chars = 0

    def __len__(self) -> int:
        return len(self._responses)

    @property
    def context_chars(self) -> int:
        return self._context_chars

    def get(self, response_id: str) -> StoredResponse | None:
        return self._responses.get(response_id)

    def put(self, stored: StoredResponse) -> None:
        response_id = stored.body["id"]
        self.delete(response_id)
        self._responses[response_id] = stored
        self._context_chars += stored.context_chars
        while len(self._responses) > self.max_responses or (
            self._context_chars > self.max_context_chars and len(self._responses) > 1
        ):
            _, evicted = self._responses.popitem(last=False)
            self._context_chars -= evicted.context_chars

    def delete(self, response_id: str) -> bool:
        stored = self._responses.pop(response_id, None)
        if stored is None:
            return False
        self._context_chars -= stored.context_chars
        return True


# --- one response -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One accepted request: what the model saw and what it answers (or the scripted error)."""

    request: ResponsesRequest
    response_id: str
    message_id: str
    created_at: int
    context: tuple[ContextItem, ...]  # the chained thread and this request's input
    thread: Thread
    answer: str
    incomplete: bool  # the answer was cut at max_output_tokens
    input_tokens: int
    delay_ms: int = 0
    error: ResponsesApiError | None = None

    @property
    def usage(self) -> dict[str, Any]:
        output_tokens = count_tokens(self.answer)
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + output_tokens,
        }

    def message(self, *, done: bool) -> dict[str, Any]:
        """The output message item: empty while in progress, whole when done."""
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        content = [_output_text(self.answer)] if done else []
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }

    def response(self, *, completed_at: int | None = None) -> dict[str, Any]:
        """The response object, finished at ``completed_at``; without it, as ``response.created`` shows it."""
        request = self.request
        settings = request.settings
        done = completed_at is not None
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": completed_at if done and not self.incomplete else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and self.incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": settings.get("max_tool_calls"),
            "model": request.model,
            "output": [self.message(done=True)] if done else [],
            "parallel_tool_calls": settings.get("parallel_tool_calls", True),
            "previous_response_id": request.previous_response_id,
            "prompt_cache_key": settings.get("prompt_cache_key"),
            "reasoning": settings.get("reasoning", {"effort": None, "summary": None}),
            "safety_identifier": settings.get("safety_identifier"),
            "service_tier": settings.get("service_tier", "default"),
            "store": request.store,
            "temperature": settings.get("temperature", 1.0),
            "text": settings.get("text", {"format": {"type": "text"}, "verbosity": "medium"}),
            "tool_choice": settings.get("tool_choice", "auto"),
            "tools": [_tool(tool) for tool in settings.get("tools", [])],
            "top_logprobs": settings.get("top_logprobs", 0),
            "top_p": settings.get("top_p", 1.0),
            "truncation": settings.get("truncation", "disabled"),
            "usage": self.usage if done else None,
            "user": settings.get("user"),
            "metadata": dict(request.metadata),
        }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _tool(tool: Any) -> Any:
    # A function tool comes back with the fields the server fills in.
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "parameters": None, "strict": True, **tool}
    return tool


class ResponsesApi:
    """The Responses API of one emulator instance: its store, and its script (a scenario's ``responses:``)."""

    def __init__(
        self, script: Sequence[ScriptedResponse] = (), *, store: ResponseStore | None = None
    ) -> None:
        self.script = tuple(script)
        self.store = store if store is not None else ResponseStore()

    def begin(self, request: ResponsesRequest, *, created_at: int) -> Turn:
        """Decide the answer to ``request``; :class:`ResponsesApiError` for an unknown previous response."""
        if request.previous_response_id is not None:
            previous = self.store.get(request.previous_response_id)
            if previous is None:
                raise previous_response_not_found(request.previous_response_id)
            thread, history = previous.thread, previous.context
        else:
            thread, history = Thread(), ()
        context = history + request.input
        input_tokens = count_tokens(request.instructions or "") + sum(count_tokens(m.text) for m in context)
        if input_tokens > MAX_CONTEXT_TOKENS:
            # [unconfirmed] text; the code is the API's for an input past the context window.
            raise bad_request(
                RealtimeApiError(
                    "context_length_exceeded",
                    "Your input exceeds the context window of this model. "
                    "Please adjust your input and try again.",
                    param="input",
                )
            )
        entry = self.script[thread.next_entry] if thread.next_entry < len(self.script) else ScriptedResponse()
        thread.next_entry += 1
        user_texts = [m.text for m in context if m.role == "user"]
        answer = (
            entry.text
            if entry.text is not None
            else default_answer(len(user_texts), (user_texts or [""])[-1])
        )
        limit = request.max_output_tokens
        incomplete = limit is not None and count_tokens(answer) > limit
        if incomplete and limit is not None:
            answer = _truncate_to_tokens(answer, limit)
        return Turn(
            request=request,
            response_id=new_id("resp", 48),
            message_id=new_id("msg", 48),
            created_at=created_at,
            context=context,
            thread=thread,
            answer=answer,
            incomplete=incomplete,
            input_tokens=input_tokens,
            delay_ms=entry.delay_ms,
            error=entry.error.to_exception() if entry.error is not None else None,
        )

    def finish(self, turn: Turn, *, completed_at: int) -> dict[str, Any]:
        """The finished response object, stored (chainable, retrievable) if ``store`` is true."""
        body = turn.response(completed_at=completed_at)
        if turn.request.store:
            context = (*turn.context, ContextItem("assistant", turn.answer))
            chars = sum(len(m.text) for m in context)
            self.store.put(
                StoredResponse(body=body, context=context, thread=turn.thread, context_chars=chars)
            )
        return body

    def retrieve(self, response_id: str) -> dict[str, Any]:
        """A stored response object; :class:`ResponsesApiError` (404) if unknown, deleted or not stored."""
        stored = self.store.get(response_id)
        if stored is None:
            raise response_not_found(response_id)
        return stored.body

    def delete(self, response_id: str) -> dict[str, Any]:
        """Remove a stored response: ``{"id", "object": "response.deleted", "deleted": true}``, or 404."""
        if not self.store.delete(response_id):
            raise response_not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}


# --- streaming --------------------------------------------------------------------------------------


def _text_deltas(text: str) -> list[str]:
    """The answer cut into word-sized deltas that join back to it exactly."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[sum(len(p) for p in pieces) :]
    if rest:
        pieces.append(rest)
    return pieces


def opening_events(turn: Turn) -> list[dict[str, Any]]:
    """The SSE events sent before the model's delay: ``response.created``, ``response.in_progress``."""
    started = turn.response()
    return [
        {"type": "response.created", "response": started, "sequence_number": 0},
        {"type": "response.in_progress", "response": started, "sequence_number": 1},
    ]


def closing_events(turn: Turn, finished: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events after the delay, numbered on from 2; ``finished`` is :meth:`ResponsesApi.finish`'s.

    ``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta``...,
    ``response.output_text.done``, ``response.content_part.done``, ``response.output_item.done``, then
    ``response.completed`` (``response.incomplete`` when the answer was cut at ``max_output_tokens``).
    """
    item = {"item_id": turn.message_id, "output_index": 0, "content_index": 0}
    deltas = [
        {"type": "response.output_text.delta", **item, "delta": d, "logprobs": []}
        for d in _text_deltas(turn.answer)
    ]
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": turn.message(done=False)},
        {"type": "response.content_part.added", **item, "part": _output_text("")},
        *deltas,
        {"type": "response.output_text.done", **item, "text": turn.answer, "logprobs": []},
        {"type": "response.content_part.done", **item, "part": _output_text(turn.answer)},
        {"type": "response.output_item.done", "output_index": 0, "item": turn.message(done=True)},
        {"type": f"response.{finished['status']}", "response": finished},
    ]
    for number, event in enumerate(events, start=2):
        event["sequence_number"] = number
    return events


def encode_sse(event: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>``, ``data: <json>``, a blank line."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
