"""The emulator's configuration: one frozen value, built by the CLI or by tests.

Nothing here reads the environment (``realtalk.settings`` does that, for ``cli/`` only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from realtalk.emulator.faults import Faults
from realtalk.emulator.scenario import Scenario, check_mishear
from realtalk.emulator.webhook_signing import signing_key

__all__ = ["DEFAULT_DEPLOYMENTS", "EmulatorConfig"]

# Deployment names accepted by default: the usual Azure deployment names of the realtime models.
DEFAULT_DEPLOYMENTS: tuple[str, ...] = (
    "gpt-realtime-1.5",
    "gpt-realtime-1.5-2026-02-23",
    "gpt-realtime",
    "gpt-realtime-2025-08-28",
    "gpt-realtime-mini",
    "gpt-realtime-mini-2025-12-15",
)

VadEngineName = Literal["auto", "energy", "silero"]
AsrEngineName = Literal["auto", "pocketsphinx", "none"]
TtsEngineName = Literal["auto", "espeak", "tone"]

# base64 of the documented 15 MiB per-append limit, plus room for the JSON envelope.
DEFAULT_MAX_EVENT_BYTES = 21 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How an emulator instance behaves.

    ``keys``: accepted API keys; empty accepts any non-empty credential (a missing one is still a
    401). Ephemeral ``ek_`` keys it mints itself are always accepted until they expire.
    ``deployments``: accepted ``model=`` values; empty accepts any.
    ``pace``: real-time speed factor for streamed replies (2.0 sends audio twice as fast as it
    plays); ``None`` sends everything as fast as possible.
    ``scenario``: scripted replies and faults (see ``realtalk.emulator.scenario``); without one, the
    emulator answers with a spoken echo of what it understood.
    ``max_conversation_audio_bytes``: the audio bytes one session's conversation keeps for
    ``conversation.item.retrieve``, for its latest items (default 2 MiB: about 22 s of 24 kHz PCM16);
    older items keep their text, transcript and audio length (see ``conversation.py``). 0 keeps none.
    ``mishear``: scripted recognition errors, ``(heard, written)`` pairs applied in order to what
    the emulator recognised in each committed user turn (``asr.apply_mishear``: whole words,
    case-insensitive, a number also matching its spoken digits). The error reaches the
    ``conversation.item.input_audio_transcription.*`` transcript and the words the responder hears
    (the echo reads the misheard text back). A scenario's ``mishear`` applies after these.
    ``webhook_url``, ``webhook_secret``: where simulated phone calls send their signed
    ``realtime.call.incoming`` webhook, and its signing secret (``whsec_...``), when a call placed
    with ``POST /_emulator/calls`` names none (``sip.py``). The secret is left out of ``repr``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    keys: tuple[str, ...] = ()
    deployments: tuple[str, ...] = DEFAULT_DEPLOYMENTS
    session_limit_s: float = 30 * 60
    pace: float | None = 1.0
    vad: VadEngineName = "auto"
    asr: AsrEngineName = "auto"
    tts: TtsEngineName = "auto"
    phrases: tuple[str, ...] = ()
    mishear: tuple[tuple[str, str], ...] = ()
    scenario: Scenario | None = None
    faults: Faults = field(default_factory=Faults)
    client_secret_ttl_s: int = 600
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    audio_chunk_ms: int = 100
    max_conversation_audio_bytes: int = 2 * 1024 * 1024
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.session_limit_s <= 0:
            raise ValueError(f"session_limit_s must be > 0, got {self.session_limit_s}")
        if self.pace is not None and self.pace <= 0:
            raise ValueError(f"pace must be > 0 (or None for no pacing), got {self.pace}")
        if not 10 <= self.audio_chunk_ms <= 1000:
            raise ValueError(f"audio_chunk_ms must be within 10..1000, got {self.audio_chunk_ms}")
        if self.max_event_bytes < 1024:
            raise ValueError(f"max_event_bytes must be >= 1024, got {self.max_event_bytes}")
        if self.max_conversation_audio_bytes < 0:
            raise ValueError(
                f"max_conversation_audio_bytes must be >= 0, got {self.max_conversation_audio_bytes}"
            )
        if self.webhook_url is not None and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError(
                f"the webhook URL must start with http:// or https:// (got {self.webhook_url!r}), "
                "e.g. http://127.0.0.1:8000/webhooks/realtime"
            )
        if self.webhook_secret is not None:
            signing_key(self.webhook_secret)  # its ValueError names the problem, never the value
        if any(not key for key in self.keys):
            raise ValueError("keys must not contain an empty string")
        check_mishear(self.mishear)

    @property
    def effective_faults(self) -> Faults:
        """The instance's faults with the scenario's on top."""
        return self.scenario.apply_faults(self.faults) if self.scenario is not None else self.faults

    @property
    def effective_mishear(self) -> tuple[tuple[str, str], ...]:
        """The instance's substitutions, then the scenario's."""
        return self.mishear + (self.scenario.mishear if self.scenario is not None else ())

    @property
    def effective_session_limit_s(self) -> float:
        if self.scenario is not None and self.scenario.session_limit_s is not None:
            return self.scenario.session_limit_s
        return self.session_limit_s

    def accepts_deployment(self, name: str) -> bool:
        return not self.deployments or name in self.deployments

    def replace(self, **changes: Any) -> EmulatorConfig:
        return dataclasses.replace(self, **changes)
