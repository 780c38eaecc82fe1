"""Tools from code and configuration: ``FunctionTool``, ``HttpTool`` and ``load_tools``.

``realtalk.client.tools`` re-exports everything here; the runner that calls these tools lives there.

* ``FunctionTool`` wraps a Python callable, sync or async. Its JSON schema comes from the signature
  (pydantic builds a model from it, so ``Literal``, enums, ``Optional``, defaults, pydantic models
  and ``Annotated[..., Field(description=...)]`` all work), cleaned to what the Realtime API takes:
  an object schema with ``$defs`` inlined and no ``title`` noise. A sync function runs on a daemon
  thread of a small pool of our own, never on the event loop (lessons.md, mistake 3).
* ``HttpTool`` POSTs the arguments as JSON to an endpoint, with an optional secret header.
* ``load_tools`` builds both from the ``tools`` entries of an agent profile (parsed TOML).

Secrets are resolved through a callable the caller passes in: the client layer never reads the
environment itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import math
import queue
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit

import httpx
import jsonschema
import pydantic

from realtalk.errors import ConfigError

if TYPE_CHECKING:
    from realtalk.client.tools import Tool

__all__ = ["FunctionTool", "HttpTool", "HttpToolError", "InvalidToolArguments", "load_tools"]

logger = logging.getLogger(__name__)

TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What the Realtime API accepts as a function name."""

_MAX_TOOL_THREADS: Final = 32
_MAX_ERROR_BODY_CHARS: Final = 300
_FUNCTION_KEYS: Final = ("type", "function", "name", "description", "parameters", "timeout_s")
_URL_KEYS: Final = (
    "type",
    "url",
    "name",
    "description",
    "parameters",
    "secret_env",
    "secret_header",
    "timeout_s",
)
_EMPTY_OBJECT: Final[Mapping[str, Any]] = {"type": "object", "properties": {}}
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class InvalidToolArguments(ValueError):
    """A tool's arguments passed the JSON schema but not the tool's own checks.

    Raise it from ``invoke`` (``FunctionTool`` does when pydantic refuses the arguments): the
    runner answers the model with an ``invalid_arguments`` outcome carrying this message, which
    should name the field and say what is expected.
    """


class HttpToolError(RuntimeError):
    """An ``HttpTool`` endpoint failed (non-2xx status, unreachable); the message holds no secret."""


# -- schemas ----------------------------------------------------------------------------------------


def check_timeout(value: object, where: str) -> float | None:
    """``value`` as a time limit in seconds: ``None``, or a finite number > 0 (else ConfigError)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"{where}: timeout_s must be a number of seconds > 0, got {value!r}",
            variable="timeout_s",
            example="timeout_s = 5.0",
        )
    return float(value)


def check_schema(parameters: object, where: str) -> dict[str, Any]:
    """A deep copy of ``parameters`` if it is a valid JSON schema (Draft 2020-12) for an object."""
    example = 'parameters = {type = "object", properties = {ticket_id = {type = "string"}}}'
    if not isinstance(parameters, Mapping):
        raise ConfigError(
            f"{where}: parameters must be a JSON schema object", variable="parameters", example=example
        )
    schema = copy.deepcopy(dict(parameters))
    if schema.get("type", "object") != "object":
        raise ConfigError(
            f'{where}: parameters must describe an object (type = "object"), got type {schema["type"]!r}',
            variable="parameters",
            example=example,
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"{where}: parameters is not a valid JSON schema: {exc.message}",
            variable="parameters",
            example=example,
        ) from None
    return schema


def _clean_schema(
    node: Any, defs: Mapping[str, Any], inline: bool, seen: frozenset[str] = frozenset()
) -> Any:
    """Drop ``title`` keywords (not properties called title) and, with ``inline``, inline ``$ref``s."""
    if isinstance(node, list):
        return [_clean_schema(item, defs, inline, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if inline and isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen or name not in defs:
            raise _Recursive(name)
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return _clean_schema({**defs[name], **siblings}, defs, inline, seen | {name})
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "$defs" and inline):
            continue
        if key in ("properties", "patternProperties", "$defs") and isinstance(value, dict):
            cleaned[key] = {name: _clean_schema(sub, defs, inline, seen) for name, sub in value.items()}
        else:
            cleaned[key] = _clean_schema(value, defs, inline, seen)
    # Optional[str] comes out as anyOf [string, null]; the type-list form says the same, shorter.
    branches = cleaned.get("anyOf")
    if (
        isinstance(branches, list)
        and branches
        and "type" not in cleaned
        and all(isinstance(b, dict) and set(b) == {"type"} and isinstance(b["type"], str) for b in branches)
    ):
        del cleaned["anyOf"]
        cleaned["type"] = [branch["type"] for branch in branches]
    return cleaned


class _Recursive(Exception):
    """A recursive model: its ``$defs`` cannot be inlined, so the schema keeps them."""


def realtime_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The JSON schema of a pydantic model, as the Realtime API takes it for ``parameters``."""
    raw = model.model_json_schema()
    try:
        schema: dict[str, Any] = _clean_schema(raw, raw.get("$defs", {}), inline=True)
    except _Recursive:
        schema = _clean_schema(raw, {}, inline=False)
    schema.setdefault("properties", {})
    return schema


_SECTION: Final = re.compile(r"(Args|Arguments|Parameters|Params):\s*")
_ENTRY: Final = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")


def _docstring_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph (one line), and Google-style ``Args:`` descriptions by parameter."""
    if not doc:
        return "", {}
    lines = doc.strip().splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.fullmatch(line.strip()):
            break
        summary.append(line.strip())
    described: dict[str, str] = {}
    current: str | None = None
    entry_indent: int | None = None
    in_section = False
    for line in lines:
        if not line.strip():
            current = None
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_section = bool(_SECTION.fullmatch(line.strip()))
            current, entry_indent = None, None
            continue
        if not in_section:
            continue
        match = _ENTRY.fullmatch(line.strip())
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent = indent
            current = match.group(1)
            described[current] = match.group(2).strip()
        elif current is not None:
            described[current] = f"{described[current]} {line.strip()}".strip()
    return " ".join(summary), described


# -- blocking functions off the loop ----------------------------------------------------------------


class _ToolThreads:
    """Daemon threads for blocking tool functions, at most ``max_threads``, reused when idle.

    Not the loop's default executor: a tool that blocks for long holds a worker, and enough of them
    would starve ``asyncio.to_thread`` and ``getaddrinfo`` for everything else. Daemon threads,
    because ``ThreadPoolExecutor`` joins its workers at interpreter exit: one hung tool would keep
    ``realtalk talk`` from exiting after Ctrl-C.
    """

    def __init__(self, max_threads: int) -> None:
        self._max_threads = max_threads
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # One permit per worker that finished a job and waits for the next: a submit takes one
        # instead of starting a thread.
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._threads >= self._max_threads:
                return  # queued: the next worker to finish takes it
            self._threads += 1
            number = self._threads
        threading.Thread(target=self._work, name=f"realtalk-tool-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            self._idle.release()


_THREADS: Final = _ToolThreads(_MAX_TOOL_THREADS)


async def _call_in_thread(function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():
            return  # the call was cancelled meanwhile: its result is dropped
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def job() -> None:
        if future.cancelled():
            return  # cancelled while queued: never start its side effects
        try:
            ok, value = True, context.run(function, *args, **kwargs)
        except Exception as exc:
            ok, value = False, exc
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt raised inside a tool is the tool's failure; re-raised
            # on the loop it would end the whole program.
            ok, value = False, RuntimeError(f"the tool raised {type(exc).__name__}")
        try:
            loop.call_soon_threadsafe(deliver, ok, value)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for this result any more

    _THREADS.submit(job)
    return await future


# -- FunctionTool -----------------------------------------------------------------------------------


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 -- an object with an async __call__
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _validation_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"field {where!r}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


class FunctionTool:
    """A Python function as a tool; sync functions run on a daemon thread, async ones on the loop.

    Args:
        function: any callable. Its parameters become the tool's arguments: their type hints give
            the JSON schema (str, int, float, bool, Literal, enums, lists, dicts, Optional,
            pydantic models, ``Annotated[T, Field(description=...)]``), defaults make them
            optional, and a Google-style ``Args:`` docstring section describes them.
        name: the tool's name (default: the function's ``__name__``); 1-64 of ``[A-Za-z0-9_-]``.
        description: what the model reads to decide when to call it (default: the docstring's first
            paragraph).
        parameters: a JSON schema that replaces the derived one; arguments are then passed as
            keyword arguments, still converted to the annotated types where the signature allows.
        timeout_s: this tool's time limit; ``None`` leaves it to the runner's default.

    Raises:
        ConfigError: no usable name, ``*args``, or a parameter type with no JSON schema.

    A sync function whose call is cancelled (barge-in, timeout) cannot be stopped: it runs to its
    end on its thread, and its result is discarded.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if not callable(function):
            raise ConfigError(f"{function!r} is not callable", variable="function")
        self.function = function
        label = name or getattr(function, "__name__", None)
        if not isinstance(label, str) or not TOOL_NAME.fullmatch(label):
            raise ConfigError(
                f"tool name must be 1-64 letters, digits, _ or -, got {label!r}; give the tool a name",
                variable="name",
                example='name = "get_ticket"',
            )
        self.name: str = label
        self.timeout_s: float | None = check_timeout(timeout_s, f"tool {label!r}")
        summary, described = _docstring_parts(inspect.getdoc(function))
        self.description: str = summary if description is None else description
        self._async = _is_async(function)
        try:
            signature = inspect.signature(function, eval_str=True)
        except (NameError, TypeError, ValueError, SyntaxError) as exc:
            raise ConfigError(
                f"tool {label!r}: cannot read the signature of {function!r}: {exc}", variable="function"
            ) from None
        self._params = list(signature.parameters.values())
        self._var_keyword = any(p.kind is p.VAR_KEYWORD for p in self._params)
        self._params = [p for p in self._params if p.kind is not p.VAR_KEYWORD]
        if any(p.kind is p.VAR_POSITIONAL for p in self._params):
            raise ConfigError(
                f"tool {label!r}: *args cannot be given by name; list the parameters one by one",
                variable="function",
            )
        self._model: type[pydantic.BaseModel] | None
        if parameters is not None:
            self.parameters: Mapping[str, Any] = check_schema(parameters, f"tool {label!r}")
            try:
                self._model = self._arguments_model()
            except ConfigError:
                self._model = None  # the explicit schema is the contract: pass arguments as they are
            return
        if self._var_keyword:
            raise ConfigError(
                f"tool {label!r}: **kwargs has no schema; list the parameters, or give parameters = {{...}}",
                variable="parameters",
            )
        self._model = self._arguments_model()
        schema = realtime_schema(self._model)
        for param, text in described.items():
            prop = schema["properties"].get(param)
            if isinstance(prop, dict) and text and "description" not in prop:
                prop["description"] = text
        self.parameters = schema

    def _arguments_model(self) -> type[pydantic.BaseModel]:
        # Fields get neutral names and the parameter names as aliases, so a parameter called
        # ``json``, ``schema`` or ``model_id`` cannot clash with pydantic's own attributes.
        fields: dict[str, Any] = {}
        for index, param in enumerate(self._params):
            annotation = Any if param.annotation is param.empty else param.annotation
            default = ... if param.default is param.empty else param.default
            fields[f"p{index}"] = (Annotated[annotation, pydantic.Field(alias=param.name)], default)
        try:
            return pydantic.create_model(
                f"{self.name}_arguments", __config__=pydantic.ConfigDict(extra="ignore"), **fields
            )
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
            raise ConfigError(
                f"tool {self.name!r}: a parameter's type has no JSON schema ({exc}); use JSON types "
                "(str, int, float, bool, list, dict, Literal, enums, pydantic models) or give parameters",
                variable="parameters",
            ) from None

    def __repr__(self) -> str:
        return f"FunctionTool(name={self.name!r}, function={self.function!r})"

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Call the function with ``arguments`` (already checked against ``parameters``).

        Raises:
            InvalidToolArguments: pydantic refused the arguments (a constraint of a model field).
            Exception: whatever the function raises.
        """
        args, kwargs = self._convert(arguments)
        if self._async:
            result = await self.function(*args, **kwargs)
        else:
            result = await _call_in_thread(self.function, args, kwargs)
        if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
            result = await result
        return result

    def _convert(self, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if self._model is None:
            return [], dict(arguments)
        try:
            model = self._model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise InvalidToolArguments(_validation_message(exc)) from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        given = model.model_fields_set
        for index, param in enumerate(self._params):
            field = f"p{index}"
            if param.kind is param.POSITIONAL_ONLY:
                args.append(getattr(model, field))
            elif field in given:  # unset: the function's own default applies
                kwargs[param.name] = getattr(model, field)
        if self._var_keyword:
            named = {param.name for param in self._params}
            kwargs.update({key: value for key, value in arguments.items() if key not in named})
        return args, kwargs


# -- HttpTool ---------------------------------------------------------------------------------------


def _public_url(url: str) -> str:
    """The URL without credentials or query, for messages and repr."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class HttpTool:
    """A tool that POSTs its arguments as JSON to ``url``; the response body is the result.

    Args:
        name, description, parameters: the tool's definition for the model.
        url: an ``http://`` or ``https://`` endpoint.
        secret: sent in ``secret_header``; for ``Authorization`` as ``Bearer <secret>``, otherwise
            as is. It never appears in ``repr()``, logs or outputs.
        timeout_s: this tool's time limit (the runner enforces it); ``None``: the runner's default.
        client: an ``httpx.AsyncClient`` to use (its own timeouts and proxies apply); by default
            the tool makes one on first use, which ignores proxy variables of the environment and
            is closed by ``aclose()``.
        max_response_bytes: the body is read up to this size; a longer one is cut.

    A JSON body (by its content type) becomes the value, anything else is text; a non-2xx status
    raises ``HttpToolError`` naming the status (with the start of the body, the secret masked).
    """

    def __init__(
        self,
        *,
        name: str,
        url: str,
        description: str,
        parameters: Mapping[str, Any],
        secret: str | None = None,
        secret_header: str = "Authorization",
        timeout_s: float | None = None,
        client: httpx.AsyncClient | None = None,
        max_response_bytes: int = 1_000_000,
    ) -> None:
        if not TOOL_NAME.fullmatch(name):
            raise ConfigError(
                f"tool name must be 1-64 letters, digits, _ or -, got {name!r}",
                variable="name",
                example='name = "book_room"',
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"tool {name!r}: url must be an http:// or https:// URL, got {_public_url(url)!r}",
                variable="url",
                example='url = "https://tools.example.com/book"',
            )
        if not _HEADER_NAME.fullmatch(secret_header):
            raise ConfigError(
                f"tool {name!r}: secret_header {secret_header!r} is not an HTTP header name",
                variable="secret_header",
                example='secret_header = "X-Api-Key"',
            )
        if secret is not None and (not secret or any(ch in secret for ch in "\r\n\0")):
            raise ConfigError(f"tool {name!r}: the secret is empty or holds line breaks", variable="secret")
        self.name = name
        self.url = url
        self.description = description
        self.parameters: Mapping[str, Any] = check_schema(parameters, f"tool {name!r}")
        self.secret_header = secret_header
        self.timeout_s: float | None = check_timeout(timeout_s, f"tool {name!r}")
        self._secret = secret
        self._client = client
        self._own_client: httpx.AsyncClient | None = None
        self._max_bytes = max_response_bytes
        self._where = _public_url(url)

    def __repr__(self) -> str:
        secret = ", secret=<set>" if self._secret is not None else ""
        return (
            f"HttpTool(name={self.name!r}, url={self._where!r}{secret}, secret_header={self.secret_header!r})"
        )

    async def aclose(self) -> None:
        """Close the HTTP client this tool made (never one passed in)."""
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            await client.aclose()

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """POST ``arguments``; the body as JSON or text (``{"status": n}`` when empty).

        Raises:
            HttpToolError: a non-2xx status, or the endpoint could not be reached.
            TimeoutError: the client's own timeout expired.
        """
        client = self._client
        if client is None:
            if self._own_client is None:
                # No proxies from the environment: the client layer reads no environment variables.
                self._own_client = httpx.AsyncClient(timeout=None, trust_env=False)
            client = self._own_client
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
        if self._secret is not None:
            bearer = self.secret_header.lower() == "authorization"
            headers[self.secret_header] = f"Bearer {self._secret}" if bearer else self._secret
        try:
            async with client.stream("POST", self.url, json=arguments, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        del body[self._max_bytes :]
                        break
        except httpx.TimeoutException:
            raise TimeoutError(f"{self._where} did not answer in time") from None
        except httpx.HTTPError as exc:
            # From None: the chained exception holds the request, headers included.
            raise HttpToolError(
                f"could not reach {self._where}: {self._scrub(str(exc)) or type(exc).__name__}"
            ) from None
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        if not response.is_success:
            detail = self._scrub(text.strip())[:_MAX_ERROR_BODY_CHARS]
            status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            raise HttpToolError(f"{self._where} answered {status}" + (f": {detail}" if detail else ""))
        if not text.strip():
            return {"status": response.status_code}
        if "json" in response.headers.get("content-type", ""):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass  # cut, or not JSON after all: pass the text on
        return text


# -- load_tools ------------------------------------------------------------------------------------


def load_tools(
    entries: Sequence[Mapping[str, Any]],
    *,
    base_dir: Path,
    secret: Callable[[str], str | None],
    http_client: httpx.AsyncClient | None = None,
) -> tuple[Tool, ...]:
    """The tools realtalk runs, from a profile's ``tools`` entries (parsed TOML).

    Each entry is one of::

        {function = "package.module:get_ticket", name?, description?, parameters?, timeout_s?}
        {function = "./tools.py:get_ticket", ...}     # a file, relative to base_dir
        {url = "https://...", name, description, parameters?, secret_env?, secret_header?, timeout_s?}

    ``function`` may also name a tool object (a ``FunctionTool``, or anything with ``name``,
    ``description``, ``parameters`` and ``async invoke``); it is used as it is. ``secret_env``
    names an environment variable, resolved through ``secret``. Entries with neither ``function``
    nor ``url`` are plain Realtime function definitions that the client answers: they are skipped.
    ``http_client`` is shared by the URL tools (else each makes its own).

    Raises:
        ConfigError: naming the tool, the key and what to write instead.
    """
    tools: list[Tool] = []
    for index, entry in enumerate(entries):
        where = f"tools[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"{where} must be a table", variable="tools", example='function = "./tools.py:fn"'
            )
        if "name" in entry:
            where = f"{where} ({entry['name']!r})"
        if "function" in entry and "url" in entry:
            raise ConfigError(
                f"{where} has both function and url; a tool is one or the other",
                variable="tools",
                example='function = "./tools.py:get_ticket"',
            )
        if "function" in entry:
            tools.append(_function_tool(entry, where, base_dir))
        elif "url" in entry:
            tools.append(_url_tool(entry, where, secret, http_client))
    return tuple(tools)


def _within(where: str, exc: ConfigError) -> ConfigError:
    """``exc`` again, its message prefixed with which entry it is about."""
    message = str(exc)
    if exc.example:
        message = message.removesuffix(f" Example: {exc.example}")
    return ConfigError(f"{where}: {message}", variable=exc.variable, example=exc.example)


def _check_keys(entry: Mapping[str, Any], known: tuple[str, ...], where: str, example: str) -> None:
    for key in entry:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r}; a tool of this kind takes {', '.join(known)}",
                variable=str(key),
                example=example,
            )
    if entry.get("type", "function") != "function":
        raise ConfigError(f'{where}: type must be "function" (or left out)', variable="type", example=example)


def _function_tool(entry: Mapping[str, Any], where: str, base_dir: Path) -> Tool:
    example = 'function = "./tools.py:get_ticket"'
    _check_keys(entry, _FUNCTION_KEYS, where, example)
    spec = entry["function"]
    module_part, _, attribute = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not module_part or not _DOTTED.fullmatch(attribute):
        raise ConfigError(
            f'{where}: function must be "module:name" or "./file.py:name", got {spec!r}',
            variable="function",
            example=example,
        )
    if "/" in module_part or "\\" in module_part or module_part.endswith(".py"):
        module = _import_file(module_part, base_dir, where)
    elif _DOTTED.fullmatch(module_part):
        module = _import_module(module_part, attribute, where)
    else:
        raise ConfigError(
            f"{where}: {module_part!r} is not a module name", variable="function", example=example
        )
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            available = sorted(
                n
                for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and not inspect.isclass(v)
            )
            hint = f"; it has {', '.join(available[:10])}" if available else ""
            raise ConfigError(
                f"{where}: {module_part} has no attribute {attribute!r}{hint}",
                variable="function",
                example=f'function = "{module_part}:{available[0] if available else "get_ticket"}"',
            )
        target = getattr(target, part)
    overrides = {
        key: entry[key] for key in ("name", "description", "parameters", "timeout_s") if key in entry
    }
    if not inspect.isroutine(target) and all(
        hasattr(target, a) for a in ("name", "description", "parameters", "invoke")
    ):
        if overrides:
            raise ConfigError(
                f"{where}: {spec} is already a tool; set {', '.join(overrides)} where it is made",
                variable=next(iter(overrides)),
                example=example,
            )
        tool: Tool = target
        return tool
    if not callable(target):
        raise ConfigError(
            f"{where}: {spec} is a {type(target).__name__}, not a function",
            variable="function",
            example=example,
        )
    timeout_s = check_timeout(overrides.get("timeout_s"), where)
    name = overrides.get("name")
    description = overrides.get("description")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}: name must be text", variable="name", example='name = "get_ticket"')
    if description is not None and not isinstance(description, str):
        raise ConfigError(
            f"{where}: description must be text",
            variable="description",
            example='description = "Look up a ticket."',
        )
    parameters = check_schema(overrides["parameters"], where) if "parameters" in overrides else None
    try:
        return FunctionTool(
            target, name=name, description=description, parameters=parameters, timeout_s=timeout_s
        )
    except ConfigError as exc:
        raise _within(where, exc) from None


def _import_module(name: str, attribute: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot import {name!r}: {type(exc).__name__}: {exc}. Make it importable (install "
            "the package, or run from the folder that holds it), or name the file instead",
            variable="function",
            example=f'function = "./{name.replace(".", "/")}.py:{attribute}"',
        ) from None


def _stem(path: Path) -> str:
    return re.sub(r"\W", "_", path.stem)


def _import_file(text: str, base_dir: Path, where: str) -> ModuleType:
    path = Path(text).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise ConfigError(
            f"{where}: no file {path} (relative paths start from the profile's folder, {base_dir})",
            variable="function",
            example='function = "./tools.py:get_ticket"',
        )
    # One module per file, under a name no package uses: two entries naming one file share its
    # module (and its state), and dataclasses in it find their module in sys.modules.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    module_name = f"realtalk_tool_file_{digest}_{_stem(path)}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{where}: {path} is not a Python file", variable="function")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ConfigError(
            f"{where}: {path} failed to load: {type(exc).__name__}: {exc}",
            variable="function",
            example='function = "./tools.py:get_ticket"',
        ) from None
    return module


def _url_tool(
    entry: Mapping[str, Any],
    where: str,
    secret: Callable[[str], str | None],
    client: httpx.AsyncClient | None,
) -> Tool:
    example = 'url = "https://tools.example.com/book", name = "book_room", description = "Book a room."'
    _check_keys(entry, _URL_KEYS, where, example)
    for key in ("name", "description"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(f"{where}: a url tool needs {key} (text)", variable=key, example=example)
    url = entry["url"]
    if not isinstance(url, str):
        raise ConfigError(f"{where}: url must be text", variable="url", example=example)
    secret_value: str | None = None
    env = entry.get("secret_env")
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise ConfigError(
                f"{where}: secret_env must name an environment variable, got {env!r}",
                variable="secret_env",
                example='secret_env = "HOTEL_API_TOKEN"',
            )
        secret_value = secret(env)
        if not secret_value:
            raise ConfigError(
                f"{where}: the environment variable {env} (secret_env of tool {entry['name']!r}) is not set",
                variable=env,
                example=f"{env}=<the endpoint's token>",
            )
    header = entry.get("secret_header", "Authorization")
    if not isinstance(header, str):
        raise ConfigError(
            f"{where}: secret_header must be text", variable="secret_header", example='"X-Api-Key"'
        )
    try:
        return HttpTool(
            name=entry["name"],
            url=url,
            description=entry["description"],
            parameters=entry.get("parameters", _EMPTY_OBJECT),
            secret=secret_value,
            secret_header=header,
            timeout_s=entry.get("timeout_s"),
            client=client,
        )
    except ConfigError as exc:
        raise _within(where, exc) from None
