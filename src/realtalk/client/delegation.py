"""Delegation: a tool the realtime model calls to hand a hard question to a stronger text model.

The realtime model is quick and speaks well, but it reasons less than a text or reasoning model.
``DelegationTool`` is a function tool (``ask_expert`` by default): the realtime model says the
question in full, realtalk sends it to ``POST <resource>/openai/v1/responses`` (the Responses API,
protocol reference §7) on a configured deployment, and the answer goes back as the tool's output
for the realtime model to speak.

When to use it: questions that need careful, multi-step reasoning, calculation, or facts the
realtime model gets wrong; not small talk or what the realtime model answers well itself (every
delegated question costs a round trip and money).

What it costs in latency: one HTTP round trip to a text model on top of the turn. The first token
typically comes after 0.5 to 3 s; reasoning models (o3, o4-mini, gpt-5 with reasoning) think first
and take longer, often 5 to 20 s. The answer is used whole (it is spoken by the realtime model, not
streamed into audio), so the wait is the full generation time. Meanwhile the response that made
the call has finished, so the realtime model can speak a filler ("one moment, I am checking").
``timeout_s`` bounds the whole exchange.

What it costs in money: the text model's tokens at its list prices
(``realtalk.protocol.text_prices``). The questions of one realtime session form one thread,
chained with ``previous_response_id``, so the expert sees its earlier questions and answers; but
every earlier turn is billed again as input tokens on each question (cached input is cheaper), so
a long thread costs more per question. Reasoning tokens are billed as output and count against
``max_output_tokens``: a reasoning model needs a larger limit (or a low ``reasoning_effort``), or
its answers come back cut off.

One ``DelegationTool`` serves one realtime session; ``for_session()`` makes the next session's
(a fresh thread and fresh totals, sharing the HTTP client, the credential and the prices).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from realtalk.client.credentials import Credential
from realtalk.client.tools import ToolResult
from realtalk.errors import ConfigError, RealtalkError, RemoteProtocolError
from realtalk.protocol.endpoint import is_loopback_host
from realtalk.protocol.text_prices import (
    TextPrices,
    TextUsage,
    text_cost_usd,
    text_price_overrides,
    text_prices_for,
)

__all__ = [
    "DEFAULT_DESCRIPTION",
    "DEFAULT_INSTRUCTIONS",
    "QUESTION_DESCRIPTION",
    "REASONING_EFFORTS",
    "DelegationSettings",
    "DelegationTool",
    "ExpertUnavailable",
]

logger = logging.getLogger(__name__)


DEFAULT_DESCRIPTION: Final = (
    "Ask an expert (a stronger text model) a hard question: one that needs careful, multi-step "
    "reasoning, a calculation, or facts you are not sure of. Do not use it for small talk or what "
    "you can answer well yourself; it takes a few seconds. The expert does not hear this "
    "conversation: say the question in full and self-contained, with every name, number and "
    "detail it needs. Then tell the user the expert's answer in your own words."
)
DEFAULT_INSTRUCTIONS: Final = (
    "You answer questions for a voice assistant; your answer is read aloud to a caller. Answer in "
    "plain spoken sentences, at most three. No markdown, no lists, no headings, no URLs, no code "
    "and no emoji. Write numbers, units and symbols the way people say them. If you are not sure, "
    "say so in a few words."
)
QUESTION_DESCRIPTION: Final = (
    "The question in full and self-contained, with every name, number and detail the expert "
    "needs: it does not hear the conversation."
)
# openai-python's ReasoningEffort literal (types/shared/reasoning_effort.py); which ones a model
# accepts depends on the model.
REASONING_EFFORTS: Final = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})

_TABLE = "delegate"
# Function names the Realtime and Responses APIs accept.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Azure deployment names (and OpenAI model names, which may contain ':').
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The Responses API refuses max_output_tokens below 16.
_MIN_OUTPUT_TOKENS = 16
_MAX_OUTPUT_TOKENS = 128_000
_MAX_TIMEOUT_S = 600.0
# The runner's own timeout (``timeout_s`` of the Tool protocol) is set a little later than ours, so
# ours fires first: its error says what happened and the running totals stay consistent.
_RUNNER_TIMEOUT_MARGIN_S = 1.0
_MAX_QUESTION_CHARS = 16_000
# Bounds on what the server may send: one SSE event's data, the streamed answer, an error body.
_MAX_EVENT_CHARS = 4 * 1024 * 1024
_MAX_ANSWER_CHARS = 200_000
_MAX_ERROR_BODY_BYTES = 64 * 1024
_MAX_REASON_CHARS = 200
_PREVIOUS_NOT_FOUND = "previous_response_not_found"


@dataclass(frozen=True)
class DelegationSettings:
    """How the delegation tool behaves: the profile's ``[delegate]`` table.

    ``deployment`` is the text or reasoning model's deployment name on the resource;
    ``model_for_prices`` is the price-table model when the deployment name is not a model name
    (``None``: the deployment name is looked up). ``max_output_tokens`` includes reasoning
    tokens. ``reasoning_effort`` is sent as ``reasoning.effort`` (reasoning models only).
    ``prices`` overrides single list prices of the price table (``{"output": "11.00"}``, USD per
    1M tokens; with all three, any model can be priced).

    Raises:
        ConfigError: a value out of range; ``variable`` names the profile key
            (``delegate.deployment``, ...).
    """

    deployment: str
    name: str = "ask_expert"
    description: str = DEFAULT_DESCRIPTION
    instructions: str = DEFAULT_INSTRUCTIONS
    timeout_s: float = 20.0
    max_output_tokens: int = 400
    model_for_prices: str | None = None
    reasoning_effort: str | None = None
    prices: Mapping[str, Decimal] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.deployment, str) or not _DEPLOYMENT_NAME.match(self.deployment):
            raise _invalid(
                "deployment",
                f"{self.deployment!r} is not a deployment name: the name of the text model's "
                "deployment on your Azure OpenAI resource (letters, digits, '.', '_', '-')",
                'deployment = "gpt-5-mini"',
            )
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name):
            raise _invalid(
                "name",
                f"{self.name!r} is not a tool name (1 to 64 letters, digits, '_' or '-')",
                'name = "ask_expert"',
            )
        for key in ("description", "instructions"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise _invalid(key, "must be a non-empty text", f'{key} = "..."')
        timeout_s = self.timeout_s
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not math.isfinite(timeout_s)
            or not 0 < timeout_s <= _MAX_TIMEOUT_S
        ):
            raise _invalid(
                "timeout_s", f"{timeout_s!r} must be a number of seconds in (0, 600]", "timeout_s = 20"
            )
        tokens = self.max_output_tokens
        if (
            isinstance(tokens, bool)
            or not isinstance(tokens, int)
            or not _MIN_OUTPUT_TOKENS <= tokens <= _MAX_OUTPUT_TOKENS
        ):
            raise _invalid(
                "max_output_tokens",
                f"{tokens!r} must be a whole number from {_MIN_OUTPUT_TOKENS} to {_MAX_OUTPUT_TOKENS} "
                "(reasoning tokens count too)",
                "max_output_tokens = 400",
            )
        if self.model_for_prices is not None and (
            not isinstance(self.model_for_prices, str) or not self.model_for_prices.strip()
        ):
            raise _invalid(
                "model_for_prices",
                f"{self.model_for_prices!r} must be a model name from the price table",
                'model_for_prices = "gpt-5-mini"',
            )
        if self.prices is not None:
            # Checked and frozen here, so a wrong price is reported when the profile is loaded.
            object.__setattr__(self, "prices", MappingProxyType(text_price_overrides(self.prices)))
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise _invalid(
                "reasoning_effort",
                f"{self.reasoning_effort!r} is not one of {', '.join(sorted(REASONING_EFFORTS))}",
                'reasoning_effort = "low"',
            )

    @classmethod
    def from_profile(cls, table: Mapping[str, Any]) -> DelegationSettings:
        """Settings from a parsed ``[delegate]`` table (its keys are the field names).

        Raises:
            ConfigError: an unknown key, a missing ``deployment``, or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"unknown key {key!r} in [{_TABLE}]; known keys: {', '.join(sorted(known))}",
                    variable=f"{_TABLE}.{key}",
                )
        if "deployment" not in table:
            raise _invalid("deployment", "is missing", 'deployment = "gpt-5-mini"')
        return cls(**table)

    @property
    def pricing_model(self) -> str:
        """The price-table key: ``model_for_prices``, else the deployment name."""
        return self.model_for_prices or self.deployment


def _invalid(key: str, problem: str, example: str) -> ConfigError:
    return ConfigError(f"{_TABLE}.{key} {problem}.", variable=f"{_TABLE}.{key}", example=example)


class ExpertUnavailable(RealtalkError):
    """The expert gave no answer; the message is one sentence for the realtime model.

    ``status`` is the HTTP status when the server refused the request, ``code`` the server's error
    code, ``usage`` and ``cost_usd`` what a failed or cut-off response was billed (zero when the
    server said nothing about it).
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: str | None = None,
        usage: TextUsage | None = None,
        cost_usd: Decimal = Decimal(0),
    ) -> None:
        self.reason = reason
        self.status = status
        self.code = code
        self.usage = usage
        self.cost_usd = cost_usd
        super().__init__(f"the expert is unavailable: {reason}")


class _PreviousResponseGone(Exception):
    """The server no longer knows the thread's previous_response_id."""


@dataclass(frozen=True)
class _Answer:
    response_id: str
    text: str
    usage: TextUsage


class _SharedClient:
    """The HTTP client that a tool and its per-session copies share; made on first use."""

    def __init__(self, client: httpx.AsyncClient | None, *, trust_env: bool) -> None:
        self._client = client
        self._owned = client is None
        self._trust_env = trust_env

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            # No client-wide timeout: each request gets the tool's own (a reasoning model may be
            # silent for many seconds before its first event, longer than httpx's 5 s default).
            self._client = httpx.AsyncClient(timeout=None, trust_env=self._trust_env)
        return self._client

    async def aclose(self) -> None:
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class DelegationTool:
    """The delegation tool of one realtime session (satisfies ``realtalk.client.tools.Tool``).

    ``rest_base_url`` is the resource's REST base, e.g. ``https://res.openai.azure.com/openai/v1``
    (``ResolvedEndpoint.rest_base_url``); requests go to ``<rest_base_url>/responses``.
    ``credential`` authenticates each request exactly as it does the realtime handshake (an
    ``api-key`` header, or a fresh Entra ID bearer token). ``prices`` defaults to the price table's
    entry for ``settings.pricing_model`` with ``settings.prices`` applied. ``client`` is an
    ``httpx.AsyncClient`` to use (tests pass one with ``httpx.MockTransport``); without one the tool
    makes its own, closed by ``aclose()``.

    Running totals since the session began: ``questions`` asked, ``usage`` (and
    ``input_tokens``/``output_tokens``), ``cost_usd`` (failed or cut-off answers included when the
    server reported their usage), and ``last_response_id``, the thread's last answer.

    Raises:
        ConfigError: no known prices for the model, or an unusable ``rest_base_url``.
    """

    def __init__(
        self,
        settings: DelegationSettings,
        *,
        rest_base_url: str,
        credential: Credential,
        prices: TextPrices | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        host = _checked_host(rest_base_url)
        self._init(
            settings,
            url=rest_base_url.rstrip("/") + "/responses",
            credential=credential,
            prices=prices if prices is not None else text_prices_for(settings.pricing_model, settings.prices),
            shared=_SharedClient(client, trust_env=not is_loopback_host(host)),
            owns_client=True,
        )

    def _init(
        self,
        settings: DelegationSettings,
        *,
        url: str,
        credential: Credential,
        prices: TextPrices,
        shared: _SharedClient,
        owns_client: bool,
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.name = settings.name
        self.description = settings.description
        self.parameters: Mapping[str, Any] = {
            "type": "object",
            "properties": {"question": {"type": "string", "description": QUESTION_DESCRIPTION}},
            "required": ["question"],
        }
        self.timeout_s: float | None = settings.timeout_s + _RUNNER_TIMEOUT_MARGIN_S
        self._url = url
        self._credential = credential
        self._shared = shared
        self._owns_client = owns_client
        # Questions of one session go one at a time, so each chains on the answer before it.
        self._lock = asyncio.Lock()
        self.questions = 0
        self.usage = TextUsage()
        self.cost_usd = Decimal(0)
        self.last_response_id: str | None = None

    def for_session(self) -> DelegationTool:
        """A tool for another realtime session: a new thread and zero totals; same settings,
        prices, credential and HTTP client (closed by this tool's ``aclose()``)."""
        tool = DelegationTool.__new__(DelegationTool)
        tool._init(
            self.settings,
            url=self._url,
            credential=self._credential,
            prices=self.prices,
            shared=self._shared,
            owns_client=False,
        )
        return tool

    @property
    def input_tokens(self) -> int:
        """Input tokens billed in this session (cached included)."""
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens billed in this session (reasoning included)."""
        return self.usage.output_tokens

    async def aclose(self) -> None:
        """Close the HTTP client this tool made (not one passed in; a no-op on a session copy)."""
        if self._owns_client:
            await self._shared.aclose()

    def __repr__(self) -> str:
        return (
            f"DelegationTool(name={self.name!r}, deployment={self.settings.deployment!r}, url={self._url!r})"
        )

    async def invoke(self, arguments: dict[str, Any]) -> ToolResult:
        """Ask the expert ``arguments["question"]``; the answer is ``{"answer": text}``.

        Raises:
            ExpertUnavailable: the expert gave no answer (HTTP error, failed or cut-off response,
                timeout, unreachable server); the message is a sentence for the model.
            ValueError: the question is empty or too long.
        """
        question = arguments.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{self.name} needs the question in full; the question was empty")
        if len(question) > _MAX_QUESTION_CHARS:
            raise ValueError(f"{self.name} takes questions up to {_MAX_QUESTION_CHARS} characters")
        self.questions += 1
        timeout_s = self.settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async with self._lock:
                    answer = await self._ask(question.strip())
        except TimeoutError:
            logger.warning("delegation to %s: no answer within %g s", self.settings.deployment, timeout_s)
            raise ExpertUnavailable(f"it did not answer within {timeout_s:g} seconds") from None
        except ExpertUnavailable as exc:
            if exc.usage is not None:
                self.usage = self.usage + exc.usage
                self.cost_usd += exc.cost_usd
            logger.warning("delegation to %s failed: %s", self.settings.deployment, exc.reason)
            raise
        cost_usd = text_cost_usd(answer.usage, self.prices)
        self.usage = self.usage + answer.usage
        self.cost_usd += cost_usd
        self.last_response_id = answer.response_id
        return ToolResult(
            value={"answer": answer.text},
            cost_usd=cost_usd,
            note=f"{self.settings.deployment}, {answer.usage.total_tokens} tokens",
        )

    async def _ask(self, question: str) -> _Answer:
        previous = self.last_response_id
        try:
            return await self._exchange(question, previous)
        except _PreviousResponseGone:
            # The thread's last stored response is gone (Azure keeps stored responses 30 days, and
            # one can be deleted; Azure and OpenAI answer 400 previous_response_not_found, some
            # servers 404): start a new thread once, without previous_response_id. The
            # expert loses the earlier questions; the tool's description asks for self-contained
            # questions, so this one still stands on its own.
            logger.info(
                "delegation to %s: the previous response is gone; starting a new thread",
                self.settings.deployment,
            )
            self.last_response_id = None
            return await self._exchange(question, None)

    def _request_body(self, question: str, previous: str | None) -> dict[str, Any]:
        settings = self.settings
        body: dict[str, Any] = {
            "model": settings.deployment,
            "input": [{"role": "user", "content": question}],
            # §7: instructions are not carried over by previous_response_id; send them each time.
            "instructions": settings.instructions,
            "max_output_tokens": settings.max_output_tokens,
            # store: previous_response_id can only chain on stored responses.
            "store": True,
            "stream": True,
        }
        if previous is not None:
            body["previous_response_id"] = previous
        if settings.reasoning_effort is not None:
            body["reasoning"] = {"effort": settings.reasoning_effort}
        return body

    async def _exchange(self, question: str, previous: str | None) -> _Answer:
        try:
            auth = await self._credential.headers()
        except ConfigError as exc:
            logger.warning("delegation to %s: %s", self.settings.deployment, exc)
            raise ExpertUnavailable("realtalk could not get credentials for it") from exc
        headers = {**auth, "Accept": "text/event-stream"}
        body = self._request_body(question, previous)
        client = self._shared.get()
        try:
            async with client.stream(
                "POST", self._url, json=body, headers=headers, timeout=self.settings.timeout_s
            ) as response:
                if response.status_code != 200:
                    raise await self._refusal(response, previous)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise ExpertUnavailable(
                        f"the service answered with {content_type or 'no content type'}, not an event stream"
                    )
                return await self._read_stream(response.aiter_lines(), previous)
        except httpx.HTTPError as exc:
            raise ExpertUnavailable(
                f"realtalk could not reach it ({type(exc).__name__}: {_short(str(exc))})"
            ) from exc

    async def _refusal(self, response: httpx.Response, previous: str | None) -> Exception:
        status = response.status_code
        raw = bytearray()
        async for chunk in response.aiter_bytes():
            raw += chunk[: _MAX_ERROR_BODY_BYTES - len(raw)]
            if len(raw) >= _MAX_ERROR_BODY_BYTES:
                break
        code, param, message = _error_fields(raw)
        if previous is not None and status in (400, 404) and _names_previous(code, param, message, previous):
            return _PreviousResponseGone()
        detail = f": {_short(message)}" if message else ""
        if status == 401:
            reason = f"it refused realtalk's credentials (HTTP 401{detail})"
        elif status == 403:
            reason = f"realtalk's identity is not allowed to use it (HTTP 403{detail})"
        elif status == 404:
            reason = f"its deployment {self.settings.deployment!r} was not found (HTTP 404{detail})"
        elif status == 429:
            retry_after = response.headers.get("retry-after")
            wait = f"; retry after {_short(retry_after)} seconds" if retry_after else ""
            reason = f"it is rate-limited (HTTP 429{detail}){wait}"
        elif status >= 500:
            reason = f"the service failed (HTTP {status}{detail})"
        else:
            reason = f"it refused the request (HTTP {status}{detail})"
        return ExpertUnavailable(reason, status=status, code=code)

    async def _read_stream(self, lines: AsyncIterator[str], previous: str | None) -> _Answer:
        deltas: list[str] = []
        streamed_chars = 0
        async for name, data in _sse_events(lines):
            if data == "[DONE]":  # not sent by the Responses API; some proxies add it
                continue
            try:
                event = json.loads(data)
            except ValueError:
                raise ExpertUnavailable("it sent an event that is not JSON") from None
            if not isinstance(event, dict):
                raise ExpertUnavailable("it sent an event that is not a JSON object")
            kind = event.get("type") or name
            if kind == "response.output_text.delta":
                delta = event.get("delta")
                if isinstance(delta, str):
                    streamed_chars += len(delta)
                    if streamed_chars > _MAX_ANSWER_CHARS:
                        raise ExpertUnavailable("its answer was far too long")
                    deltas.append(delta)
            elif kind == "response.completed":
                return self._completed(event.get("response"), "".join(deltas))
            elif kind in ("response.failed", "response.incomplete"):
                raise self._unfinished(kind, event.get("response"))
            elif kind == "error":
                # openai-python's ResponseErrorEvent has code/message/param at the top; some
                # servers nest them in an "error" object as in an HTTP error body.
                nested = event.get("error")
                error = nested if isinstance(nested, dict) else event
                code, param = _str_field(error, "code"), _str_field(error, "param")
                message = _str_field(error, "message")
                if previous is not None and not deltas and _names_previous(code, param, message, previous):
                    raise _PreviousResponseGone()
                detail = ": ".join(_short(part) for part in (code, message) if part)
                raise ExpertUnavailable(
                    f"it reported an error ({detail})" if detail else "it reported an error", code=code
                )
            # Every other event (response.created, output_item.added, reasoning summaries, ...)
            # carries nothing the answer needs.
        raise ExpertUnavailable("the stream ended before the answer was complete")

    def _completed(self, response: Any, streamed: str) -> _Answer:
        if not isinstance(response, dict) or not isinstance(response.get("id"), str):
            raise ExpertUnavailable("it sent a completed response without an id")
        usage = _usage_of(response)
        if usage is None:
            raise ExpertUnavailable("it sent a completed response without usage")
        text = _output_text(response.get("output")) or streamed
        if not text.strip():
            raise ExpertUnavailable(
                "it gave an empty answer", usage=usage, cost_usd=text_cost_usd(usage, self.prices)
            )
        return _Answer(response["id"], text.strip(), usage)

    def _unfinished(self, kind: str, response: Any) -> ExpertUnavailable:
        response = response if isinstance(response, dict) else {}
        usage = _usage_of(response)
        cost_usd = text_cost_usd(usage, self.prices) if usage is not None else Decimal(0)
        if kind == "response.incomplete":
            details = response.get("incomplete_details")
            why = _str_field(details, "reason") if isinstance(details, dict) else None
            if why == "max_output_tokens":
                logger.warning(
                    "delegation to %s: answer cut off at max_output_tokens=%d (reasoning tokens count "
                    "too); raise delegate.max_output_tokens or lower delegate.reasoning_effort",
                    self.settings.deployment,
                    self.settings.max_output_tokens,
                )
            reason = f"its answer was cut off ({_short(why)})" if why else "its answer was cut off"
            return ExpertUnavailable(reason, code=why, usage=usage, cost_usd=cost_usd)
        error = response.get("error")
        code = _str_field(error, "code") if isinstance(error, dict) else None
        message = _str_field(error, "message") if isinstance(error, dict) else None
        detail = ": ".join(_short(part) for part in (code, message) if part)
        reason = f"it failed ({detail})" if detail else "it failed"
        return ExpertUnavailable(reason, code=code, usage=usage, cost_usd=cost_usd)


def _usage_of(response: dict[str, Any]) -> TextUsage | None:
    """The response's usage; ``None`` when it has none (a failed response may not)."""
    raw = response.get("usage")
    if raw is None:
        return None
    try:
        return TextUsage.from_wire(raw)
    except RemoteProtocolError as exc:
        raise ExpertUnavailable(f"it sent an invalid usage ({exc})") from exc


def _checked_host(rest_base_url: str) -> str:
    parts = urlsplit(rest_base_url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(
            f"the delegation endpoint {rest_base_url!r} is not an http(s) URL",
            example="https://my-resource.openai.azure.com/openai/v1",
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"the delegation endpoint {rest_base_url!r} uses http:// on a public host; use https://",
            example="https://my-resource.openai.azure.com/openai/v1",
        )
    return host


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Server-sent events as (event name, data): ``event:``/``data:`` lines, a blank line ends one."""
    name: str | None = None
    data: list[str] = []
    size = 0
    async for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data, size = None, [], 0
            continue
        if line.startswith(":"):  # a comment (keep-alive)
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            size += len(value)
            if size > _MAX_EVENT_CHARS:
                raise ExpertUnavailable("it sent an event far too large")
            data.append(value)
        # "id" and "retry" do not matter for one request's stream.
    if data:
        yield name, "\n".join(data)


def _output_text(output: Any) -> str:
    """The text of the assistant message items' ``output_text`` parts, joined."""
    if not isinstance(output, list):
        return ""
    parts: list[str] = []
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            if (
                isinstance(part, dict)
                and part.get("type") == "output_text"
                and isinstance(part.get("text"), str)
            ):
                parts.append(part["text"])
    return "".join(parts)


def _error_fields(raw: bytes | bytearray) -> tuple[str | None, str | None, str | None]:
    """``code``, ``param`` and ``message`` of an OpenAI/Azure error body, as far as there are any."""
    try:
        body = json.loads(bytes(raw).decode("utf-8", "replace"))
    except ValueError:
        text = bytes(raw).decode("utf-8", "replace").strip()
        return None, None, text or None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = body if isinstance(body, dict) else {}
    return _str_field(error, "code"), _str_field(error, "param"), _str_field(error, "message")


def _str_field(mapping: Any, key: str) -> str | None:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _names_previous(code: str | None, param: str | None, message: str | None, previous: str) -> bool:
    """Whether an error is about the previous_response_id: OpenAI's code
    ``previous_response_not_found`` ("Previous response with id '...' not found."), the parameter,
    or a message naming the id."""
    if code == _PREVIOUS_NOT_FOUND or param == "previous_response_id":
        return True
    return message is not None and (previous in message or "previous response" in message.lower())


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"
