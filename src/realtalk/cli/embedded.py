"""The embedded emulator as the target: what ``talk`` and ``doctor`` connect to when no
``AZURE_OPENAI_ENDPOINT`` is configured (the README's default set-up, like SQLite for a database).

The emulator runs in this process, on 127.0.0.1 and a free port, with a random key so that nothing
else on the machine can use it meanwhile. It may start child processes (its speech recogniser runs
in worker processes). A terminal's Ctrl+C goes to every process of the foreground group, children
included; only this process should act on it (end the conversation, print the summary, shut the
children down), so the children are started with Ctrl+C ignored: see ``children_ignore_ctrl_c``.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.emulator import Emulator, EmulatorConfig
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint

__all__ = [
    "AZURE_HINT",
    "EMULATOR_MODEL",
    "EmbeddedEmulator",
    "children_ignore_ctrl_c",
    "start_embedded_emulator",
]

EMULATOR_MODEL = "gpt-realtime-1.5"

AZURE_HINT = (
    "To use Azure OpenAI: set AZURE_OPENAI_ENDPOINT (the portal's Target URI) and "
    "AZURE_OPENAI_DEPLOYMENT_NAME, in the environment or in .env, and AZURE_OPENAI_API_KEY "
    "(or leave the key unset to sign in with Microsoft Entra ID)."
)


@dataclass(frozen=True)
class EmbeddedEmulator:
    """A running embedded emulator and how to connect to it."""

    endpoint: ResolvedEndpoint
    credential: Credential
    voice_name: str
    """The voice its replies are spoken in (espeak-ng's, or "tone" without espeak-ng)."""
    engines: str
    """Its speech engines, e.g. ``vad=energy asr=pocketsphinx tts=espeak``."""


async def start_embedded_emulator(stack: AsyncExitStack, *, pace: float | None = 1.0) -> EmbeddedEmulator:
    """Start the emulator in-process; ``stack`` stops it."""
    key = secrets.token_urlsafe(24)
    emulator = Emulator(EmulatorConfig(keys=(key,), pace=pace))
    with children_ignore_ctrl_c():
        await stack.enter_async_context(emulator)
    engines = emulator.engines
    return EmbeddedEmulator(
        endpoint=resolve_endpoint(emulator.http_base_url, EMULATOR_MODEL),
        credential=ApiKeyCredential(key, style="bearer", source="realtalk, made at random for this run"),
        voice_name=engines.synthesizer.name,
        engines=engines.description,
    )


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside the block ignore SIGINT, and so do the processes they start.

    "Ignore" is the one disposition a child inherits through exec, and a Python child keeps it
    (it installs its KeyboardInterrupt handler only over the default). Without this, the terminal's
    Ctrl+C interrupts the emulator's recogniser workers: each prints a multiprocessing traceback,
    and a broken worker pool can be left behind. This process ignores Ctrl+C too while the block
    runs (the emulator starting, about a second); its own handler is back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal dispositions can only be changed from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: it could not be put back
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # nobody installed another meanwhile
            signal.signal(signal.SIGINT, previous)
