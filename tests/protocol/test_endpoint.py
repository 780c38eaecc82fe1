"""Every form of endpoint a user may paste, and the one GA URL (or the one error) it becomes."""

from __future__ import annotations

import dataclasses

import pytest

from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import ResolvedEndpoint, is_loopback_host, resolve_endpoint

GA = "wss://res.openai.azure.com/openai/v1/realtime?model=rt"
RETIRED = "the preview Realtime protocol is retired from April 30, 2026"

# (endpoint, deployment setting, expected url, expected provider)
VALID = [
    ("https://res.openai.azure.com", "rt", GA, "azure"),
    ("https://res.openai.azure.com/", "rt", GA, "azure"),
    ("https://res.openai.azure.com/openai", "rt", GA, "azure"),
    ("https://res.openai.azure.com/openai/v1", "rt", GA, "azure"),
    ("https://res.openai.azure.com/openai/v1/", "rt", GA, "azure"),
    ("https://res.openai.azure.com/openai/v1/realtime?model=rt", None, GA, "azure"),
    ("https://res.openai.azure.com/openai/v1/realtime?model=rt", "rt", GA, "azure"),
    ("wss://res.openai.azure.com/openai/v1/realtime?model=rt", "", GA, "azure"),
    ("wss://res.openai.azure.com/openai/v1", "rt", GA, "azure"),
    ("  https://res.openai.azure.com/openai/v1  ", "rt", GA, "azure"),
    ('"https://res.openai.azure.com/openai/v1"', "rt", GA, "azure"),
    ("'https://res.openai.azure.com'", " rt ", GA, "azure"),
    ("<https://res.openai.azure.com>", "'rt'", GA, "azure"),
    ("HTTPS://RES.OpenAI.Azure.COM/OpenAI/V1", "rt", GA, "azure"),
    ("https://res.openai.azure.com:443/openai/v1", "rt", GA, "azure"),
    (
        "https://res.cognitiveservices.azure.com/openai/v1",
        "rt",
        "wss://res.cognitiveservices.azure.com/openai/v1/realtime?model=rt",
        "azure",
    ),
    (
        "https://my-res-01.services.ai.azure.com/",
        "gpt-realtime-1.5",
        "wss://my-res-01.services.ai.azure.com/openai/v1/realtime?model=gpt-realtime-1.5",
        "azure",
    ),
    (
        "https://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt",
        None,
        GA,
        "azure",
    ),
    (
        "https://res.openai.azure.com/openai/deployments/rt/chat/completions?api-version=2025-01-01-preview",
        None,
        GA,
        "azure",
    ),
    ("https://res.openai.azure.com/openai/v1?api-version=preview", "rt", GA, "azure"),
    ("https://res.openai.azure.com/openai/v1/responses", "rt", GA, "azure"),
    (
        "https://api.openai.com/v1",
        "gpt-realtime-1.5",
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        "openai",
    ),
    (
        "https://api.openai.com",
        "gpt-realtime-1.5",
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        "openai",
    ),
    (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        None,
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        "openai",
    ),
    ("http://127.0.0.1:8765", "rt", "ws://127.0.0.1:8765/openai/v1/realtime?model=rt", "local"),
    ("http://127.0.0.1:8765/openai/v1", "rt", "ws://127.0.0.1:8765/openai/v1/realtime?model=rt", "local"),
    (
        "ws://127.0.0.1:8765/openai/v1/realtime?model=rt",
        None,
        "ws://127.0.0.1:8765/openai/v1/realtime?model=rt",
        "local",
    ),
    ("http://127.0.0.1:8765/v1", "rt", "ws://127.0.0.1:8765/v1/realtime?model=rt", "local"),
    ("http://localhost:9000/gateway/v1/", "rt", "ws://localhost:9000/gateway/v1/realtime?model=rt", "local"),
    ("http://127.1.2.3:80", "rt", "ws://127.1.2.3/openai/v1/realtime?model=rt", "local"),
    ("http://[::1]:8765/openai/v1", "rt", "ws://[::1]:8765/openai/v1/realtime?model=rt", "local"),
    ("https://localhost:8443", "rt", "wss://localhost:8443/openai/v1/realtime?model=rt", "local"),
    (
        "http://127.0.0.1:8765/openai/realtime?api-version=2025-04-01-preview&deployment=rt",
        None,
        "ws://127.0.0.1:8765/openai/v1/realtime?model=rt",
        "local",
    ),
]


@pytest.mark.parametrize(("endpoint", "deployment", "url", "provider"), VALID)
def test_every_accepted_form_becomes_the_one_ga_url(
    endpoint: str, deployment: str | None, url: str, provider: str
) -> None:
    resolved = resolve_endpoint(endpoint, deployment)
    assert resolved.url == url
    assert resolved.provider == provider
    assert "api-version" not in resolved.url
    assert resolved.url == f"{resolved.websocket_base_url}/realtime?model={resolved.deployment}"


EXAMPLE = " Example: https://my-resource.openai.azure.com/openai/v1"
HOSTS = (
    "which is not an Azure OpenAI host (<resource>.openai.azure.com, <resource>.cognitiveservices.azure.com "
    "or <resource>.services.ai.azure.com), api.openai.com, or a loopback address (127.0.0.1, localhost, ::1)."
)
MISSING_DEPLOYMENT = (
    "AZURE_OPENAI_DEPLOYMENT_NAME is not set and AZURE_OPENAI_ENDPOINT names no deployment; set it to the "
    "name of your realtime deployment (on the OpenAI platform, the model name). Example: gpt-realtime-1.5"
)

# (endpoint, deployment setting, variable at fault, exact message)
INVALID = [
    (
        None,
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT is not set. Set it to the Target URI of your Azure OpenAI resource." + EXAMPLE,
    ),
    (
        "  ''  ",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT is not set. Set it to the Target URI of your Azure OpenAI resource." + EXAMPLE,
    ),
    (
        "res.openai.azure.com",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has no scheme; start it with https://." + EXAMPLE,
    ),
    (
        "https://res.openai.azure.com/openai/ v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT contains a space; paste the URL without spaces." + EXAMPLE,
    ),
    (
        "ftp://res.openai.azure.com",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has the scheme 'ftp'; use https:// (or wss://)." + EXAMPLE,
    ),
    (
        "https://example.com/openai/v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        f"AZURE_OPENAI_ENDPOINT has the host 'example.com', {HOSTS}" + EXAMPLE,
    ),
    (
        "https://openai.azure.com",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        f"AZURE_OPENAI_ENDPOINT has the host 'openai.azure.com', {HOSTS}" + EXAMPLE,
    ),
    (
        "https://res.openai.azure.com.evil.example/openai/v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        f"AZURE_OPENAI_ENDPOINT has the host 'res.openai.azure.com.evil.example', {HOSTS}" + EXAMPLE,
    ),
    (
        "http://10.0.0.5:8765/openai/v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        f"AZURE_OPENAI_ENDPOINT has the host '10.0.0.5', {HOSTS}" + EXAMPLE,
    ),
    (
        "http://res.openai.azure.com/openai/v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT uses http:// on the public host 'res.openai.azure.com'; only a local "
        "server on a loopback address may use http:// or ws://, so use https://. "
        "Example: https://res.openai.azure.com/openai/v1",
    ),
    (
        "ws://api.openai.com/v1",
        "gpt-realtime-1.5",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT uses ws:// on the public host 'api.openai.com'; only a local server on "
        "a loopback address may use http:// or ws://, so use https://. Example: https://api.openai.com/v1",
    ),
    (
        "https://res.openai.azure.com/openai/v2",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has the path '/openai/v2', which realtalk does not recognise; use the "
        "resource URL, ending in /openai/v1. Example: https://res.openai.azure.com/openai/v1",
    ),
    (
        "https://res.openai.azure.com/v1",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has the path '/v1', which realtalk does not recognise; use the resource "
        "URL, ending in /openai/v1. Example: https://res.openai.azure.com/openai/v1",
    ),
    (
        "https://res.services.ai.azure.com/api/projects/my-project",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT is an Azure AI Foundry project endpoint ('/api/projects/...'); use the "
        "resource's Azure OpenAI endpoint, ending in /openai/v1. "
        "Example: https://res.services.ai.azure.com/openai/v1",
    ),
    (
        "https://api.openai.com/v2/realtime",
        "gpt-realtime-1.5",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has the path '/v2/realtime', which realtalk does not recognise; for the "
        "OpenAI platform use https://api.openai.com/v1. Example: https://api.openai.com/v1",
    ),
    (
        "http://127.0.0.1:8765/api",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has the path '/api', which realtalk does not recognise; a local server's "
        "path must end in /v1 or /openai/v1. Example: http://127.0.0.1:8765/openai/v1",
    ),
    (
        "https://user:pass@res.openai.azure.com",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT must not contain a user name or password." + EXAMPLE,
    ),
    (
        "https://res.openai.azure.com:99999",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT has an invalid port." + EXAMPLE,
    ),
    (
        "https://res.openai.azure.com/openai/v1?api-key=0123456789abcdef",
        "rt",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT contains a key in its query string ('api-key'); remove it and put the key in "
        "AZURE_OPENAI_API_KEY (OPENAI_API_KEY for the OpenAI platform)." + EXAMPLE,
    ),
    (
        "https://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=a&model=b",
        None,
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT names two deployments ('b' and 'a'); keep one." + EXAMPLE,
    ),
    ("https://res.openai.azure.com/openai/v1", None, "AZURE_OPENAI_DEPLOYMENT_NAME", MISSING_DEPLOYMENT),
    ("https://res.openai.azure.com/openai/v1", "   ", "AZURE_OPENAI_DEPLOYMENT_NAME", MISSING_DEPLOYMENT),
    ("https://api.openai.com/v1", None, "AZURE_OPENAI_DEPLOYMENT_NAME", MISSING_DEPLOYMENT),
    (
        "https://res.openai.azure.com/openai/v1/realtime?model=prod",
        "test",
        "AZURE_OPENAI_DEPLOYMENT_NAME",
        "AZURE_OPENAI_DEPLOYMENT_NAME is 'test', but AZURE_OPENAI_ENDPOINT names the deployment 'prod'; make "
        "them match, or remove the deployment from the endpoint. Example: prod",
    ),
    (
        "https://res.openai.azure.com",
        "my deployment",
        "AZURE_OPENAI_DEPLOYMENT_NAME",
        "AZURE_OPENAI_DEPLOYMENT_NAME is 'my deployment', which contains a space. Example: gpt-realtime-1.5",
    ),
    (
        "https://res.openai.azure.com",
        "rt/../x",
        "AZURE_OPENAI_DEPLOYMENT_NAME",
        "AZURE_OPENAI_DEPLOYMENT_NAME is 'rt/../x', which is not a valid deployment name (use letters, "
        "digits, '.', '_' and '-'). Example: gpt-realtime-1.5",
    ),
    (
        "https://res.openai.azure.com/openai/v1/realtime?model=a%26b",
        None,
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT names the deployment 'a&b', which is not a valid deployment name (use "
        "letters, digits, '.', '_' and '-'). Example: gpt-realtime-1.5",
    ),
]


@pytest.mark.parametrize(("endpoint", "deployment", "variable", "message"), INVALID)
def test_every_rejected_form_names_the_variable_and_shows_an_example(
    endpoint: str | None, deployment: str | None, variable: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_endpoint(endpoint, deployment)
    assert str(caught.value) == message
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)


def test_the_table_covers_at_least_thirty_forms() -> None:
    assert len(VALID) + len(INVALID) >= 30


def test_a_key_in_the_endpoint_query_is_never_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_endpoint("https://res.openai.azure.com/openai/v1?api-key=0123456789abcdef", "rt")
    assert "0123456789abcdef" not in str(caught.value)


def test_the_preview_url_is_converted_with_a_warning_naming_the_retirement_date() -> None:
    resolved = resolve_endpoint(
        "https://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt", None
    )
    assert resolved.warnings == (
        "AZURE_OPENAI_ENDPOINT is a preview Realtime URL ('/openai/realtime?api-version=...'); "
        f"{RETIRED}, so realtalk uses the GA URL {GA} instead. "
        "Set AZURE_OPENAI_ENDPOINT=https://res.openai.azure.com/openai/v1 to silence this warning.",
    )


def test_a_dated_deployment_url_gives_its_deployment_and_a_warning() -> None:
    resolved = resolve_endpoint(
        "https://res.openai.azure.com/openai/deployments/rt/chat/completions?api-version=2024-10-21", ""
    )
    assert resolved.deployment == "rt"
    assert len(resolved.warnings) == 1
    assert "took the deployment 'rt'" in resolved.warnings[0]
    assert RETIRED in resolved.warnings[0]
    assert "AZURE_OPENAI_DEPLOYMENT_NAME=rt" in resolved.warnings[0]


def test_an_api_version_on_a_ga_url_is_dropped_with_a_warning() -> None:
    resolved = resolve_endpoint("https://res.openai.azure.com/openai/v1?api-version=preview", "rt")
    assert resolved.warnings == (
        "AZURE_OPENAI_ENDPOINT has an api-version, which the GA API does not use; realtalk dropped it.",
    )


def test_the_ga_forms_give_no_warning() -> None:
    for endpoint in (
        "https://res.openai.azure.com",
        "https://res.openai.azure.com/openai/v1/realtime?model=rt",
    ):
        assert resolve_endpoint(endpoint, "rt").warnings == ()


def test_a_deployment_in_the_url_is_used_when_the_setting_is_absent() -> None:
    resolved = resolve_endpoint("https://res.openai.azure.com/openai/v1/realtime?model=from-url", None)
    assert resolved.deployment == "from-url"


def test_the_setting_and_the_url_may_name_the_same_deployment() -> None:
    resolved = resolve_endpoint("https://res.openai.azure.com/openai/v1/realtime?model=rt", "rt")
    assert resolved.deployment == "rt"


def test_the_resolved_endpoint_gives_the_sdk_websocket_base_and_the_rest_base() -> None:
    resolved = resolve_endpoint("https://res.openai.azure.com/", "rt")
    assert resolved == ResolvedEndpoint(
        url=GA,
        websocket_base_url="wss://res.openai.azure.com/openai/v1",
        host="res.openai.azure.com",
        deployment="rt",
        provider="azure",
        warnings=(),
    )
    assert resolved.rest_base_url == "https://res.openai.azure.com/openai/v1"


def test_a_loopback_endpoint_keeps_its_port_and_uses_plain_http_for_rest() -> None:
    resolved = resolve_endpoint("http://127.0.0.1:8765", "rt")
    assert resolved.host == "127.0.0.1:8765"
    assert resolved.websocket_base_url == "ws://127.0.0.1:8765/openai/v1"
    assert resolved.rest_base_url == "http://127.0.0.1:8765/openai/v1"


def test_the_openai_platform_rest_base_is_v1() -> None:
    assert resolve_endpoint("https://api.openai.com/v1", "gpt-realtime-1.5").rest_base_url == (
        "https://api.openai.com/v1"
    )


def test_the_resolved_endpoint_is_frozen() -> None:
    resolved = resolve_endpoint("https://res.openai.azure.com", "rt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.url = "wss://elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("res.openai.azure.com", False),
    ],
)
def test_only_localhost_127_slash_8_and_ipv6_one_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
