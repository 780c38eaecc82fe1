"""Turn whatever a user pasted as the endpoint into the one GA Realtime WebSocket URL.

Pure: no environment, no I/O. The caller passes the two configured strings and gets back a
``ResolvedEndpoint`` or a ``ConfigError`` that names the variable, says what is wrong and shows a
correct example.

Theory of operation. The Azure portal shows the "Target URI" in several shapes depending on the
deployment and the portal's age: the bare resource URL, the GA base ``/openai/v1``, the GA realtime
URL ``/openai/v1/realtime?model=<deployment>``, the preview ``/openai/realtime?api-version=...
&deployment=<deployment>`` and dated per-deployment URLs ``/openai/deployments/<deployment>/...``.
All of them name one resource, and the GA protocol has exactly one URL for it (protocol reference
§1.1): ``wss://<host>/openai/v1/realtime?model=<deployment>``, with no ``api-version``. Preview and
dated forms are converted with a warning because the preview protocol is retired from April 30,
2026 (§1.2). The OpenAI platform (``api.openai.com/v1``, §1.3) and a loopback server (the local
emulator or gateway, which may use ``ws://``) are the only other accepted targets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qs, quote, urlsplit

from realtalk.errors import ConfigError

__all__ = [
    "AZURE_HOST_SUFFIXES",
    "DEPLOYMENT_EXAMPLE",
    "DEPLOYMENT_VARIABLE",
    "ENDPOINT_EXAMPLE",
    "ENDPOINT_VARIABLE",
    "OPENAI_HOST",
    "Provider",
    "ResolvedEndpoint",
    "is_loopback_host",
    "resolve_endpoint",
]

ENDPOINT_VARIABLE = "AZURE_OPENAI_ENDPOINT"
DEPLOYMENT_VARIABLE = "AZURE_OPENAI_DEPLOYMENT_NAME"
ENDPOINT_EXAMPLE = "https://my-resource.openai.azure.com/openai/v1"
DEPLOYMENT_EXAMPLE = "gpt-realtime-1.5"

AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
OPENAI_HOST = "api.openai.com"

Provider = Literal["azure", "openai", "local"]

# Query parameters that carry a credential: a URL is logged and shown, a key must not be in it.
_SECRET_QUERY_KEYS = ("api-key", "api_key", "key", "access_token")
# Azure resource names are DNS labels; OpenAI model names may also contain ':' (fine-tuned models).
_RESOURCE_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_DEFAULT_PORTS = {"wss": 443, "ws": 80}
_RETIREMENT = "the preview Realtime protocol is retired from April 30, 2026"

_PathKind = Literal["ga", "ga_other_api", "preview", "deployments"]


@dataclass(frozen=True)
class ResolvedEndpoint:
    """Where to open the Realtime WebSocket, derived from the configured endpoint and deployment.

    ``url`` is the full GA URL (``wss://<host>/openai/v1/realtime?model=<deployment>``);
    ``websocket_base_url`` is what the official SDK's ``websocket_base_url`` wants
    (``wss://<host>/openai/v1``); ``host`` is the URL's authority (``host`` or ``host:port``);
    ``warnings`` are sentences for the user about what was converted.
    """

    url: str
    websocket_base_url: str
    host: str
    deployment: str
    provider: Provider
    warnings: tuple[str, ...] = ()

    @property
    def rest_base_url(self) -> str:
        """The HTTP base for REST calls on the same resource, e.g. ``https://<host>/openai/v1``."""
        scheme, rest = self.websocket_base_url.split("://", 1)
        return f"{'https' if scheme == 'wss' else 'http'}://{rest}"


def is_loopback_host(hostname: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: the only hosts allowed plain ws:// or http://."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def resolve_endpoint(endpoint: str | None, deployment: str | None = None) -> ResolvedEndpoint:
    """Normalise any accepted endpoint form into the GA Realtime URL.

    ``endpoint`` is ``AZURE_OPENAI_ENDPOINT`` as the user wrote it, ``deployment`` is
    ``AZURE_OPENAI_DEPLOYMENT_NAME`` (``None`` or empty when unset). A deployment named inside the
    URL is used only when the setting is absent; if both are given they must agree.

    Raises ``ConfigError`` naming the variable at fault, with a correct example.
    """
    text = _clean(endpoint)
    if not text:
        raise _endpoint_error(
            "is not set. Set it to the Target URI of your Azure OpenAI resource.", ENDPOINT_EXAMPLE
        )
    if any(ch.isspace() for ch in text):
        raise _endpoint_error("contains a space; paste the URL without spaces.", ENDPOINT_EXAMPLE)
    if "://" not in text:
        raise _endpoint_error("has no scheme; start it with https://.", ENDPOINT_EXAMPLE)

    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "wss", "http", "ws"):
        raise _endpoint_error(f"has the scheme '{scheme}'; use https:// (or wss://).", ENDPOINT_EXAMPLE)
    if "@" in parts.netloc:
        raise _endpoint_error("must not contain a user name or password.", ENDPOINT_EXAMPLE)
    hostname = (parts.hostname or "").rstrip(".")
    if not hostname:
        raise _endpoint_error("has no host name.", ENDPOINT_EXAMPLE)
    try:
        port = parts.port
    except ValueError:
        raise _endpoint_error("has an invalid port.", ENDPOINT_EXAMPLE) from None

    provider = _provider_of(hostname)
    if provider is None:
        raise _endpoint_error(
            f"has the host '{hostname}', which is not an Azure OpenAI host "
            "(<resource>.openai.azure.com, <resource>.cognitiveservices.azure.com or "
            "<resource>.services.ai.azure.com), api.openai.com, or a loopback address "
            "(127.0.0.1, localhost, ::1).",
            ENDPOINT_EXAMPLE,
        )
    secure = scheme in ("https", "wss")
    if not secure and provider != "local":
        raise _endpoint_error(
            f"uses {scheme}:// on the public host '{hostname}'; only a local server on a loopback "
            "address may use http:// or ws://, so use https://.",
            f"https://{hostname}{'/v1' if provider == 'openai' else '/openai/v1'}",
        )

    query = parse_qs(parts.query, keep_blank_values=True)
    for name in query:
        if name.lower() in _SECRET_QUERY_KEYS:
            raise _endpoint_error(
                f"contains a key in its query string ('{name}'); remove it and put the key in "
                "AZURE_OPENAI_API_KEY (OPENAI_API_KEY for the OpenAI platform).",
                ENDPOINT_EXAMPLE,
            )

    ws_scheme = "wss" if secure else "ws"
    netloc = _netloc(hostname, port, ws_scheme)
    base_path, kind, path_deployment = _classify_path(parts.path, provider, netloc, scheme)

    url_deployment = _deployment_from_url(query, path_deployment)
    chosen = _choose_deployment(url_deployment, _clean(deployment))

    websocket_base_url = f"{ws_scheme}://{netloc}{base_path}"
    url = f"{websocket_base_url}/realtime?model={quote(chosen, safe='')}"
    resolved = ResolvedEndpoint(
        url=url,
        websocket_base_url=websocket_base_url,
        host=netloc,
        deployment=chosen,
        provider=provider,
    )
    warnings = _warnings(resolved, kind, parts.path.rstrip("/"), "api-version" in query)
    return replace(resolved, warnings=warnings)


def _clean(value: str | None) -> str:
    # Values pasted from the portal or a chat often carry whitespace, quotes or <angle brackets>.
    if value is None:
        return ""
    return value.strip().strip("\"'`<>").strip()


def _endpoint_error(problem: str, example: str) -> ConfigError:
    return ConfigError(f"{ENDPOINT_VARIABLE} {problem}", variable=ENDPOINT_VARIABLE, example=example)


def _provider_of(hostname: str) -> Provider | None:
    host = hostname.lower()
    if is_loopback_host(host):
        return "local"
    if host == OPENAI_HOST:
        return "openai"
    for suffix in AZURE_HOST_SUFFIXES:
        if host.endswith(suffix) and _RESOURCE_LABEL.match(host.removesuffix(suffix)):
            return "azure"
    return None


def _netloc(hostname: str, port: int | None, ws_scheme: str) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname.lower()
    if port is None or port == _DEFAULT_PORTS[ws_scheme]:
        return host
    return f"{host}:{port}"


def _classify_path(
    path: str, provider: Provider, netloc: str, scheme: str
) -> tuple[str, _PathKind, str | None]:
    """Return (GA base path, what kind of URL it was, deployment named in the path)."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    example_scheme = "https" if scheme in ("https", "wss") else "http"

    if provider == "openai":
        if lowered in ([], ["v1"], ["v1", "realtime"]):
            return "/v1", "ga", None
        if lowered[:1] == ["v1"]:
            return "/v1", "ga_other_api", None
        raise _endpoint_error(
            f"has the path '{path}', which realtalk does not recognise; for the OpenAI platform "
            "use https://api.openai.com/v1.",
            "https://api.openai.com/v1",
        )

    if provider == "local":
        kept = segments[:-1] if lowered[-1:] == ["realtime"] and len(lowered) > 1 else segments
        if not segments:
            return "/openai/v1", "ga", None
        if kept[-1].lower() == "v1":
            return "/" + "/".join(kept), "ga", None

    if lowered in ([], ["openai"]) and provider == "azure":
        return "/openai/v1", "ga", None
    if lowered[:2] == ["openai", "v1"] and provider == "azure":
        kind: _PathKind = "ga" if lowered[2:] in ([], ["realtime"]) else "ga_other_api"
        return "/openai/v1", kind, None
    if lowered == ["openai", "realtime"]:
        return "/openai/v1", "preview", None
    if lowered[:2] == ["openai", "deployments"] and len(segments) >= 3:
        return "/openai/v1", "deployments", segments[2]
    if lowered[:2] == ["api", "projects"]:
        raise _endpoint_error(
            "is an Azure AI Foundry project endpoint ('/api/projects/...'); use the resource's "
            "Azure OpenAI endpoint, ending in /openai/v1.",
            f"https://{netloc}/openai/v1",
        )
    if provider == "local":
        raise _endpoint_error(
            f"has the path '{path}', which realtalk does not recognise; a local server's path "
            "must end in /v1 or /openai/v1.",
            f"{example_scheme}://{netloc}/openai/v1",
        )
    raise _endpoint_error(
        f"has the path '{path}', which realtalk does not recognise; use the resource URL, "
        "ending in /openai/v1.",
        f"https://{netloc}/openai/v1",
    )


def _deployment_from_url(query: dict[str, list[str]], path_deployment: str | None) -> str | None:
    # The GA URL names the deployment `model=`, the preview one `deployment=`; both may appear.
    named = [path_deployment] if path_deployment else []
    for key in ("model", "deployment"):
        named += [_clean(v) for v in query.get(key, []) if _clean(v)]
    distinct = list(dict.fromkeys(named))
    if len(distinct) > 1:
        raise _endpoint_error(
            f"names two deployments ('{distinct[0]}' and '{distinct[1]}'); keep one.", ENDPOINT_EXAMPLE
        )
    if distinct:
        _check_deployment_name(distinct[0], ENDPOINT_VARIABLE, f"{ENDPOINT_VARIABLE} names the deployment")
        return distinct[0]
    return None


def _choose_deployment(from_url: str | None, from_setting: str) -> str:
    if from_setting:
        _check_deployment_name(from_setting, DEPLOYMENT_VARIABLE, f"{DEPLOYMENT_VARIABLE} is")
        if from_url is not None and from_url != from_setting:
            raise ConfigError(
                f"{DEPLOYMENT_VARIABLE} is '{from_setting}', but {ENDPOINT_VARIABLE} names the "
                f"deployment '{from_url}'; make them match, or remove the deployment from the endpoint.",
                variable=DEPLOYMENT_VARIABLE,
                example=from_url,
            )
        return from_setting
    if from_url is not None:
        return from_url
    raise ConfigError(
        f"{DEPLOYMENT_VARIABLE} is not set and {ENDPOINT_VARIABLE} names no deployment; set it to "
        "the name of your realtime deployment (on the OpenAI platform, the model name).",
        variable=DEPLOYMENT_VARIABLE,
        example=DEPLOYMENT_EXAMPLE,
    )


def _check_deployment_name(name: str, variable: str, subject: str) -> None:
    if any(ch.isspace() for ch in name):
        problem = "contains a space"
    elif not _DEPLOYMENT_NAME.match(name):
        problem = "is not a valid deployment name (use letters, digits, '.', '_' and '-')"
    else:
        return
    raise ConfigError(f"{subject} '{name}', which {problem}.", variable=variable, example=DEPLOYMENT_EXAMPLE)


def _warnings(
    resolved: ResolvedEndpoint, kind: _PathKind, path: str, had_api_version: bool
) -> tuple[str, ...]:
    fix = f"Set {ENDPOINT_VARIABLE}={resolved.rest_base_url}"
    if kind == "preview":
        return (
            f"{ENDPOINT_VARIABLE} is a preview Realtime URL ('/openai/realtime?api-version=...'); "
            f"{_RETIREMENT}, so realtalk uses the GA URL {resolved.url} instead. "
            f"{fix} to silence this warning.",
        )
    if kind == "deployments":
        return (
            f"{ENDPOINT_VARIABLE} is a dated deployment URL "
            f"('/openai/deployments/{resolved.deployment}/...'); "
            f"realtalk took the deployment '{resolved.deployment}' and uses the GA URL {resolved.url} "
            f"({_RETIREMENT}). {fix} and {DEPLOYMENT_VARIABLE}={resolved.deployment} to silence "
            "this warning.",
        )
    found: list[str] = []
    if kind == "ga_other_api":
        found.append(
            f"{ENDPOINT_VARIABLE} points at '{path}', another API of the resource; realtalk uses "
            f"{resolved.url}. {fix} to silence this warning."
        )
    if had_api_version:
        found.append(
            f"{ENDPOINT_VARIABLE} has an api-version, which the GA API does not use; realtalk dropped it."
        )
    return tuple(found)
