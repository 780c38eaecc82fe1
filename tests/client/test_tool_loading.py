"""load_tools: profile entries become tools; each mistake is a ConfigError saying what to write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from realtalk.client.tools import FunctionTool, HttpTool, ToolRunner, load_tools, tool_definition
from realtalk.errors import ConfigError

FIXTURES = Path(__file__).parent / "tool_fixtures"
HOTEL_TOKEN = "hotel-token-0123456789abcdef"


class Secrets:
    """The ``secret`` callable: a dict of environment variables, and the names asked for."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.asked: list[str] = []

    def __call__(self, name: str) -> str | None:
        self.asked.append(name)
        return self.values.get(name)


def load(
    entries: list[dict[str, Any]], base_dir: Path = FIXTURES, secrets: Secrets | None = None
) -> tuple[Any, ...]:
    return load_tools(entries, base_dir=base_dir, secret=secrets or Secrets())


@pytest.fixture
def fixtures_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture folder on sys.path, as an installed package of the user's would be."""
    monkeypatch.syspath_prepend(str(FIXTURES))


async def run(tool: Any, arguments: dict[str, Any]) -> Any:
    outcome = await ToolRunner([tool]).run("call_1", tool.name, json.dumps(arguments))
    assert outcome.status == "ok", outcome.output
    return json.loads(outcome.output)


async def test_a_module_path_entry_loads_the_function(fixtures_importable: None) -> None:
    [tool] = load([{"function": "helpdesk:get_ticket", "timeout_s": 3}])

    assert isinstance(tool, FunctionTool)
    assert tool.name == "get_ticket"
    assert tool.timeout_s == 3.0
    assert tool_definition(tool) == {
        "type": "function",
        "name": "get_ticket",
        "description": "Look up a support ticket by its ID.",
        "parameters": {
            "type": "object",
            "properties": {
                "ticket_id": {
                    "type": "string",
                    "description": "the ticket's ID as the caller spelled it, like XR-4892.",
                }
            },
            "required": ["ticket_id"],
        },
    }
    assert await run(tool, {"ticket_id": "XR-4892"}) == {"ticket_id": "XR-4892", "status": "open"}


async def test_an_entry_may_rename_describe_and_give_the_schema(fixtures_importable: None) -> None:
    parameters = {"type": "object", "properties": {"status": {"enum": ["open"]}}, "required": ["status"]}

    [tool] = load(
        [
            {
                "type": "function",
                "function": "helpdesk:search_tickets",
                "name": "open_tickets",
                "description": "List open tickets.",
                "parameters": parameters,
            }
        ]
    )

    assert (tool.name, tool.description, tool.parameters) == (
        "open_tickets",
        "List open tickets.",
        parameters,
    )
    assert await run(tool, {"status": "open"}) == ["XR-4892"]


async def test_a_file_path_entry_is_relative_to_the_profiles_folder(tmp_path: Path) -> None:
    profile_dir = tmp_path / "agent"
    profile_dir.mkdir()
    (profile_dir / "tools.py").write_text(
        (FIXTURES / "hotel.py").read_text(encoding="utf-8"), encoding="utf-8"
    )

    [tool] = load([{"function": "./tools.py:desk.book_room"}], base_dir=profile_dir)

    assert tool.name == "book_room"
    assert tool.description == "Book a room for a guest; ask the guest to confirm first."
    assert tool.parameters["properties"]["guest"]["properties"]["name"] == {
        "type": "string",
        "description": "The guest's full name.",
    }
    result = await run(tool, {"room": "double", "guest": {"name": "Ann"}})
    assert result == {"booked": "double", "guest": "Ann", "nights": 1, "guest_type": "Guest"}


async def test_entries_naming_one_file_share_its_module() -> None:
    get_ticket, lookups = load(
        [{"function": "helpdesk.py:get_ticket"}, {"function": str(FIXTURES / "helpdesk.py") + ":lookups"}],
        base_dir=FIXTURES,
    )
    before = await run(lookups, {})

    await run(get_ticket, {"ticket_id": "AB-1234"})

    assert await run(lookups, {}) == before + 1


async def test_a_tool_object_in_a_module_is_used_as_it_is(fixtures_importable: None) -> None:
    [tool] = load([{"function": "helpdesk:ticket_status"}])

    assert isinstance(tool, FunctionTool)
    assert (tool.name, tool.timeout_s) == ("ticket_status", 2.0)


def test_a_url_entry_resolves_its_secret_through_the_callable() -> None:
    secrets = Secrets({"HOTEL_API_TOKEN": HOTEL_TOKEN})

    [tool] = load(
        [
            {
                "url": "https://hotel.example.com/rates",
                "name": "room_rate",
                "description": "The nightly rate of a room.",
                "parameters": {"type": "object", "properties": {"room": {"type": "string"}}},
                "secret_env": "HOTEL_API_TOKEN",
                "secret_header": "X-Api-Key",
                "timeout_s": 4,
            }
        ],
        secrets=secrets,
    )

    assert isinstance(tool, HttpTool)
    assert secrets.asked == ["HOTEL_API_TOKEN"]
    assert (tool.name, tool.url, tool.secret_header, tool.timeout_s) == (
        "room_rate",
        "https://hotel.example.com/rates",
        "X-Api-Key",
        4.0,
    )
    assert HOTEL_TOKEN not in repr(tool)


def test_a_url_entry_without_parameters_takes_no_arguments() -> None:
    [tool] = load([{"url": "http://127.0.0.1:9/ping", "name": "ping", "description": "Ping."}])

    assert tool.parameters == {"type": "object", "properties": {}}


def test_plain_function_definitions_are_left_to_the_client(fixtures_importable: None) -> None:
    tools = load(
        [
            {
                "type": "function",
                "name": "show_map",
                "description": "Show a map.",
                "parameters": {"type": "object"},
            },
            {"function": "helpdesk:get_ticket"},
        ]
    )

    assert [tool.name for tool in tools] == ["get_ticket"]


# -- mistakes ---------------------------------------------------------------------------------------


def config_error(
    entries: list[dict[str, Any]], base_dir: Path = FIXTURES, secrets: Secrets | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(entries, base_dir, secrets)
    return info.value


def test_a_module_that_cannot_be_imported_is_named_with_the_import_error() -> None:
    error = config_error([{"function": "no_such_agent.tools:get_ticket"}])

    assert "tools[0]: cannot import 'no_such_agent.tools'" in str(error)
    assert "No module named 'no_such_agent'" in str(error)
    assert error.variable == "function"
    assert error.example == 'function = "./no_such_agent/tools.py:get_ticket"'


def test_a_file_that_fails_to_load_is_named_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text("import no_such_dependency\n", encoding="utf-8")

    error = config_error([{"function": "./tools.py:get_ticket"}], base_dir=tmp_path)

    assert "tools.py failed to load: ModuleNotFoundError: No module named 'no_such_dependency'" in str(error)


def test_a_missing_file_is_named_with_the_folder_it_was_looked_for_in(tmp_path: Path) -> None:
    error = config_error([{"function": "./missing.py:get_ticket"}], base_dir=tmp_path)

    assert f"no file {tmp_path / 'missing.py'}" in str(error)
    assert "profile's folder" in str(error)


def test_a_missing_attribute_names_what_the_module_has(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:get_tiket"}])

    assert "helpdesk has no attribute 'get_tiket'" in str(error)
    assert "get_ticket" in str(error)
    assert error.variable == "function"


def test_an_attribute_that_is_not_callable_is_refused(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:NOT_A_FUNCTION"}])

    assert "helpdesk:NOT_A_FUNCTION is a int, not a function" in str(error)


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"function": "helpdesk:get_ticket", "timeout": 5}, "timeout"),
        ({"url": "https://x.example.com", "name": "x", "description": "X.", "secret": "inline"}, "secret"),
    ],
)
def test_an_unknown_key_is_refused_with_the_known_ones(
    entry: dict[str, Any], key: str, fixtures_importable: None
) -> None:
    error = config_error([entry])

    assert f"unknown key {key!r}" in str(error)
    assert "timeout_s" in str(error)
    assert error.variable == key


@pytest.mark.parametrize("timeout_s", [0, -1, "5", True, float("nan")])
@pytest.mark.parametrize("kind", ["function", "url"])
def test_timeout_s_must_be_a_positive_number(timeout_s: object, kind: str, fixtures_importable: None) -> None:
    entry: dict[str, Any] = (
        {"function": "helpdesk:get_ticket"}
        if kind == "function"
        else {"url": "https://x.example.com", "name": "x", "description": "X."}
    )

    error = config_error([{**entry, "timeout_s": timeout_s}])

    assert "timeout_s must be a number of seconds > 0" in str(error)
    assert error.variable == "timeout_s"
    assert error.example == "timeout_s = 5.0"


@pytest.mark.parametrize("url", ["ftp://x.example.com/rates", "x.example.com/rates", "https://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    error = config_error([{"url": url, "name": "room_rate", "description": "Rates."}])

    assert "tools[0] ('room_rate')" in str(error)
    assert "url must be an http:// or https:// URL" in str(error)
    assert error.variable == "url"


def test_a_missing_secret_names_the_variable_and_the_tool() -> None:
    entry = {
        "url": "https://x.example.com",
        "name": "room_rate",
        "description": "X.",
        "secret_env": "HOTEL_API_TOKEN",
    }

    error = config_error([entry], secrets=Secrets({"OTHER": "x"}))

    assert "HOTEL_API_TOKEN" in str(error) and "'room_rate'" in str(error)
    assert error.variable == "HOTEL_API_TOKEN"


def test_a_url_entry_needs_a_name_and_a_description() -> None:
    error = config_error([{"url": "https://x.example.com", "name": "room_rate"}])

    assert "needs description" in str(error)


def test_an_entry_with_both_function_and_url_is_refused(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:get_ticket", "url": "https://x.example.com"}])

    assert "both function and url" in str(error)


@pytest.mark.parametrize("spec", ["helpdesk", "helpdesk:", ":get_ticket", "help desk:get_ticket", 42])
def test_a_malformed_function_reference_is_refused(spec: object) -> None:
    error = config_error([{"function": spec}])

    assert error.variable == "function"


def test_invalid_parameters_are_refused(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:get_ticket", "parameters": {"type": "array"}}])

    assert "parameters must describe an object" in str(error)
    assert error.variable == "parameters"


def test_overrides_on_a_tool_object_are_refused(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:ticket_status", "timeout_s": 9}])

    assert "already a tool" in str(error)


def test_an_invalid_name_is_refused(fixtures_importable: None) -> None:
    error = config_error([{"function": "helpdesk:get_ticket", "name": "get ticket"}])

    assert "1-64 letters" in str(error)
    assert error.variable == "name"
