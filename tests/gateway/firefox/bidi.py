"""A small WebDriver BiDi client for Debian's stock ``firefox-esr``, headless, offline.

Why not Playwright: its Firefox is a patched build that has to be downloaded, and nothing can be
downloaded here. Stock Firefox speaks WebDriver BiDi natively (https://w3c.github.io/webdriver-bidi/)
when started with ``--remote-debugging-port``: it prints ``WebDriver BiDi listening on ws://...``
and accepts a session on ``<that URL>/session``. The few commands these tests need are plain JSON
over that WebSocket: ``session.new``, ``browsingContext.getTree``/``navigate``,
``script.addPreloadScript``/``evaluate``, ``input.performActions`` (a real click, so the page gets
a user activation) and the ``log.entryAdded`` event (console errors and uncaught exceptions).

Offline by construction: the temporary profile's ``user.js`` turns off everything that phones
home (updates, telemetry, studies, remote settings, safe browsing, captive portal and
connectivity checks, DNS prefetch, DNS over HTTPS, push, region, new-tab feeds, plug-in
downloads), ``MOZ_DISABLE_NONLOCAL_CONNECTIONS=1`` makes the network layer refuse non-local
addresses, and every non-loopback HTTP(S) request is routed to a *sentinel proxy* on 127.0.0.1
that records it and answers nothing: :func:`firefox_page` fails the test if anything reached it,
shutdown included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FIREFOX = Path("/usr/bin/firefox-esr")
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
STARTUP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0


def profile_prefs(proxy_port: int) -> dict[str, bool | int | str]:
    """The temporary profile's preferences: media for the voice UI, and no network beyond 127.0.0.1."""
    dead = "data:,"  # a URL that needs no network: requests to it fail at once
    return {
        # The voice UI: no permission prompt, audio may start without a click (the test clicks
        # anyway), and if the page ever reached the real getUserMedia it would get Firefox's
        # fake device rather than fail (the preload script replaces it; see fake_microphone.js).
        "media.navigator.permission.disabled": True,
        "media.navigator.streams.fake": True,
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        # With no sound card Firefox's AudioContext never starts: the graph falls back to a system
        # clock driver, but the context stays "suspended" (resume() never settles) while cubeb
        # finds no output device, and currentTime does not move. Firefox's built-in mock audio
        # backend gives the graph an output stream whose thread pulls audio in 10 ms blocks, so
        # the page's real playback worklet runs (3-15 % slower than the wall clock, more under load).
        "media.cubeb.force_mock_context": True,
        # Every non-loopback HTTP(S) request goes to the sentinel (loopback is never proxied).
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": proxy_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": proxy_port,
        "network.proxy.share_proxy_settings": True,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": False,
        "network.proxy.socks_remote_dns": True,
        # Name resolution and speculative connections.
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": True,
        "network.dns.disablePrefetchFromHTTPS": True,
        "network.prefetch-next": False,
        "network.predictor.enabled": False,
        "network.http.speculative-parallel-limit": 0,
        "browser.urlbar.speculativeConnect.enabled": False,
        "doh-rollout.enabled": False,
        "doh-rollout.disable-heuristics": True,
        "network.captive-portal-service.enabled": False,
        "captivedetect.canonicalURL": "",
        "network.connectivity-service.enabled": False,
        "network.manage-offline-status": False,
        # Updates of the browser, add-ons, search engines, certificates and block lists.
        "app.update.disabledForTesting": True,
        "app.update.auto": False,
        "extensions.update.enabled": False,
        "extensions.systemAddon.update.enabled": False,
        "extensions.getAddons.cache.enabled": False,
        "extensions.blocklist.enabled": False,
        "browser.search.update": False,
        "media.gmp-manager.url": "",
        "media.gmp-manager.updateEnabled": False,
        "media.gmp-gmpopenh264.enabled": False,
        "media.gmp-widevinecdm.enabled": False,
        "security.remote_settings.crlite_filters.enabled": False,
        "security.remote_settings.intermediates.enabled": False,
        "security.OCSP.enabled": 0,
        # Honoured on a release build only with MOZ_DISABLE_NONLOCAL_CONNECTIONS=1 (set by firefox_page),
        # and then this exact value turns Remote Settings' sync off altogether.
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        # Telemetry, studies, experiments.
        "toolkit.telemetry.enabled": False,
        "toolkit.telemetry.unified": False,
        "toolkit.telemetry.archive.enabled": False,
        "toolkit.telemetry.server": dead,
        "toolkit.telemetry.newProfilePing.enabled": False,
        "toolkit.telemetry.shutdownPingSender.enabled": False,
        "toolkit.telemetry.firstShutdownPing.enabled": False,
        "toolkit.telemetry.updatePing.enabled": False,
        "toolkit.telemetry.bhrPing.enabled": False,
        "datareporting.healthreport.uploadEnabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.usage.uploadEnabled": False,
        "app.normandy.enabled": False,
        "app.normandy.api_url": "",
        "app.shield.optoutstudies.enabled": False,
        "messaging-system.rsexperimentloader.enabled": False,
        "browser.discovery.enabled": False,
        "browser.tabs.crashReporting.sendReport": False,
        "breakpad.reportURL": "",
        # Safe browsing and tracking-protection list downloads.
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "browser.safebrowsing.downloads.enabled": False,
        "browser.safebrowsing.downloads.remote.enabled": False,
        "browser.safebrowsing.blockedURIs.enabled": False,
        "browser.safebrowsing.provider.google.updateURL": "",
        "browser.safebrowsing.provider.google4.updateURL": "",
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "privacy.trackingprotection.enabled": False,
        "privacy.trackingprotection.pbmode.enabled": False,
        # Everything else a fresh profile fetches on its own.
        "browser.region.network.url": "",
        "browser.region.update.enabled": False,
        "geo.provider.network.url": "",
        "dom.push.connection.enabled": False,
        "browser.newtabpage.enabled": False,
        "browser.startup.page": 0,
        "browser.startup.homepage": "about:blank",
        "startup.homepage_welcome_url": "about:blank",
        "startup.homepage_welcome_url.additional": "",
        "browser.startup.homepage_override.mstone": "ignore",
        "browser.newtabpage.activity-stream.feeds.system.topstories": False,
        "browser.newtabpage.activity-stream.feeds.section.topstories": False,
        "browser.newtabpage.activity-stream.feeds.topsites": False,
        "browser.newtabpage.activity-stream.feeds.snippets": False,
        "browser.topsites.contile.enabled": False,
        "browser.urlbar.suggest.searches": False,
        "browser.search.suggest.enabled": False,
        "extensions.pocket.enabled": False,
        "identity.fxaccounts.enabled": False,
        "browser.ml.enable": False,
        "browser.translations.enable": False,
        "browser.shell.checkDefaultBrowser": False,
        "browser.sessionstore.resume_from_crash": False,
        "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    }


def write_profile(directory: Path, proxy_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"user_pref({json.dumps(name)}, {json.dumps(value)});"
        for name, value in profile_prefs(proxy_port).items()
    ]
    (directory / "user.js").write_text("\n".join(lines) + "\n")
    return directory


class SentinelProxy:
    """The profile's HTTP(S) proxy: records the first line of every request and closes the socket.

    Loopback addresses are never proxied, so the page, the gateway and BiDi are unaffected; anything
    else Firefox tries to reach (an update check, telemetry, a list download) shows up here.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> SentinelProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            self.requests.append(line.decode("latin-1").strip() or "<connection without a request>")
        except (TimeoutError, ConnectionError):
            self.requests.append("<connection without a request>")
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class BiDiError(RuntimeError):
    """A command the browser answered with an error."""


class BiDiSession:
    """One WebDriver BiDi session: numbered commands matched to their answers, events to listeners."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._reader = asyncio.create_task(self._read(), name="bidi-reader")

    def on(self, event: str, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.setdefault(event, []).append(listener)

    async def command(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        command_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        try:
            await self._websocket.send(
                json.dumps({"id": command_id, "method": method, "params": params or {}})
            )
            message = await asyncio.wait_for(answer, timeout_s)
        finally:
            self._pending.pop(command_id, None)
        if message.get("type") == "error":
            raise BiDiError(f"{method}: {message.get('error')}: {message.get('message')}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def _read(self) -> None:
        try:
            async for raw in self._websocket:
                message = json.loads(raw)
                if message.get("type") == "event":
                    for listener in self._listeners.get(message.get("method", ""), []):
                        listener(message.get("params", {}))
                    continue
                answer = self._pending.get(message.get("id"))
                if answer is not None and not answer.done():
                    answer.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(BiDiError("the BiDi connection closed"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _describe(entry: dict[str, Any]) -> str:
    frames = entry.get("stackTrace", {}).get("callFrames", [])
    where = "".join(
        f"\n    at {f.get('functionName') or '<anonymous>'} ({f.get('url')}:{f.get('lineNumber')})"
        for f in frames[:5]
    )
    return f"{entry.get('level')} ({entry.get('type')}): {entry.get('text')}{where}"


class Page:
    """The one top-level browsing context, with what the tests do to a page."""

    def __init__(self, session: BiDiSession, context: str) -> None:
        self.session = session
        self.context = context
        #: every ``log.entryAdded`` entry: console calls and uncaught exceptions
        self.log: list[dict[str, Any]] = []
        session.on("log.entryAdded", self.log.append)

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions, as text."""
        return [_describe(entry) for entry in self.log if entry.get("level") == "error"]

    async def navigate(self, url: str) -> None:
        await self.session.command(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def evaluate(self, expression: str, *, user_activation: bool = False) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), through JSON."""
        result = await self.session.command(
            "script.evaluate",
            {
                "expression": f"(async () => JSON.stringify((await ({expression})) ?? null))()",
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
                "userActivation": user_activation,
            },
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise BiDiError(f"{expression!r} threw: {details.get('text')}")
        return json.loads(result["result"]["value"])

    async def wait_for(self, expression: str, timeout_s: float, poll_s: float = 0.05) -> None:
        """Poll until ``expression`` is truthy in the page."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.evaluate(f"!!({expression})"):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not true after {timeout_s} s: {expression}")
            await asyncio.sleep(poll_s)

    async def click(self, selector: str, timeout_s: float = 5) -> None:
        """A real mouse click at the element's centre (the page gets a user activation), once the
        element is there, shown and enabled, as Playwright's click waits: a click on a disabled
        button does nothing, and the test would then wait for an effect that never comes (the
        voice UI's Start stays disabled until the gateway has answered on sign-in)."""
        await self.wait_for(
            f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
                return e !== null && !e.disabled && e.getClientRects().length > 0; }})()""",
            timeout_s,
        )
        found = await self.session.command(
            "script.evaluate",
            {
                "expression": f"document.querySelector({json.dumps(selector)})",
                "target": {"context": self.context},
                "awaitPromise": False,
            },
        )
        node = found.get("result", {})
        if node.get("type") != "node":
            raise BiDiError(f"no element matches {selector!r}")
        element = {"type": "element", "element": {"sharedId": node["sharedId"]}}
        await self.session.command(
            "input.performActions",
            {
                "context": self.context,
                "actions": [
                    {
                        "type": "pointer",
                        "id": "mouse",
                        "parameters": {"pointerType": "mouse"},
                        "actions": [
                            {"type": "pointerMove", "x": 0, "y": 0, "origin": element},
                            {"type": "pointerDown", "button": 0},
                            {"type": "pointerUp", "button": 0},
                        ],
                    }
                ],
            },
        )


async def _listening_url(output: asyncio.StreamReader, lines: deque[str]) -> str:
    while True:
        raw = await output.readline()
        if not raw:
            raise RuntimeError("firefox-esr exited before listening:\n" + "\n".join(lines))
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        match = LISTENING.search(line)
        if match:
            return match.group(1)


async def _drain(output: asyncio.StreamReader, lines: deque[str]) -> None:
    while raw := await output.readline():
        lines.append(raw.decode(errors="replace").rstrip())


async def _stop(process: asyncio.subprocess.Process, closing: bool) -> None:
    """Let a closing browser exit; otherwise (a failed test) terminate it, and kill it if it hangs."""
    if process.returncode is None and closing:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def firefox_page(
    executable: Path = FIREFOX, preload_scripts: Sequence[str] = ()
) -> AsyncIterator[Page]:
    """A fresh headless Firefox with a temporary profile, and its one page.

    ``preload_scripts`` are BiDi function declarations run in every document of the page before
    its own scripts. On the way out (after a successful test body) it asserts that the page logged
    no error and that nothing tried to leave 127.0.0.1.
    """
    output_lines: deque[str] = deque(maxlen=400)
    sentinel = await SentinelProxy().start()
    home = Path(tempfile.mkdtemp(prefix="realtalk-firefox-"))
    environment = {
        **{name: value for name, value in os.environ.items() if "proxy" not in name.lower()},
        "HOME": str(home),
        "MOZ_HEADLESS": "1",
        "MOZ_CRASHREPORTER_DISABLE": "1",
        # Mozilla's own test switch: the network layer refuses connections to non-local addresses.
        "MOZ_DISABLE_NONLOCAL_CONNECTIONS": "1",
    }
    environment.pop("DISPLAY", None)
    environment.pop("WAYLAND_DISPLAY", None)
    process = await asyncio.create_subprocess_exec(
        str(executable),
        "--headless",
        "--no-remote",
        "--remote-debugging-port",
        "0",
        "--profile",
        str(write_profile(home / "profile", sentinel.port)),
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    assert process.stdout is not None
    drain: asyncio.Task[None] | None = None
    closing = False  # browser.close was sent: the process is exiting by itself
    page: Page | None = None
    try:
        url = await asyncio.wait_for(_listening_url(process.stdout, output_lines), STARTUP_TIMEOUT_S)
        drain = asyncio.create_task(_drain(process.stdout, output_lines), name="firefox-output")
        async with connect(url + "/session", max_size=None, open_timeout=STARTUP_TIMEOUT_S) as websocket:
            session = BiDiSession(websocket)
            try:
                await session.command("session.new", {"capabilities": {}})
                await session.command("session.subscribe", {"events": ["log.entryAdded"]})
                tree = await session.command("browsingContext.getTree", {"maxDepth": 0})
                page = Page(session, tree["contexts"][0]["context"])
                for script in preload_scripts:
                    await session.command(
                        "script.addPreloadScript", {"functionDeclaration": script, "contexts": [page.context]}
                    )
                yield page
                closing = True
                with contextlib.suppress(BiDiError, TimeoutError, ConnectionClosed):
                    await session.command("browser.close", timeout_s=10)
            finally:
                await session.close()
        await _stop(process, closing)  # a shutdown ping would be caught too
        assert not page.errors, f"errors in the page: {page.errors}"
        assert not sentinel.requests, f"firefox tried to leave 127.0.0.1: {sentinel.requests}"
    except BaseException:
        # Shown with a failure: the browser's own output and everything the page logged.
        print("firefox-esr output (last lines):\n" + "\n".join(output_lines))
        if page is not None:
            print("page log:\n" + "\n".join(_describe(entry) for entry in page.log))
        raise
    finally:
        await _stop(process, closing)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        await sentinel.close()
        shutil.rmtree(home, ignore_errors=True)
