"""The two ends of a ``realtalk talk`` conversation, opened before it starts: the audio (a sound
card, or WAV files standing in for it) and the target (the configured deployment, or the embedded
emulator when none is configured). Everything opened is registered on the caller's exit stack,
so whatever happens next, it is closed in reverse order.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from realtalk.audio.devices import SoundDeviceDuplex
from realtalk.audio.duplex import DuplexDevice, VirtualDuplex
from realtalk.audio.echo import EchoGate, EchoProcessor
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import AudioSource, SilenceSource, StereoRecorder, WavSink, WavSource
from realtalk.cli.embedded import start_embedded_emulator
from realtalk.cli.talk_options import TalkOptions, Transport
from realtalk.cli.views import Notice, render_notice
from realtalk.client.credentials import Credential
from realtalk.client.session import RealtimeSession
from realtalk.client.voice import PacedDriver
from realtalk.client.webrtc import CallSetupFailed, WebRTCSession
from realtalk.errors import ConfigError, ConnectionClosed, HandshakeRejected, RealtalkError
from realtalk.protocol.endpoint import ResolvedEndpoint
from realtalk.settings import Settings, resolve_connection

__all__ = ["Audio", "Target", "open_audio", "open_target", "start_failure"]


@dataclass(frozen=True)
class Target:
    """Where the conversation goes, with what credential, and how to name it on screen."""

    endpoint: ResolvedEndpoint
    credential: Credential
    description: str
    # The session class for --transport: both take the same arguments (WebRTCSession is a
    # RealtimeSession whose audio goes over media tracks).
    session_class: type[RealtimeSession] = RealtimeSession


@dataclass
class Audio:
    """The audio side: the device (sound card or WAV files) and what processes its signal."""

    playback: PlaybackBuffer
    device: DuplexDevice
    driver: PacedDriver | None
    sink: WavSink | None
    echo_gate: EchoGate | None
    recorder: StereoRecorder | None
    echo_canceller: EchoProcessor | None = None


# -- the audio ---------------------------------------------------------------------------------------


def _check_writable(*paths: Path | None) -> None:
    # Opened here first: a file that cannot be created fails with a plain OSError, before the wave
    # module (whose half-built writer then fails again in __del__) or any connection is involved.
    for path in paths:
        if path is not None:
            with path.open("ab"):
                pass


def open_audio(options: TalkOptions, stack: AsyncExitStack) -> Audio:
    """The sound card, or the WAV files; raises ``OSError`` for an output file that cannot be
    written and ``ConfigError`` for an input WAV that cannot be used."""
    _check_writable(options.output_wav, options.record, options.events)
    playback = PlaybackBuffer()
    recorder = StereoRecorder.to_wav(options.record) if options.record is not None else None
    if recorder is not None:
        stack.callback(recorder.close)  # VoiceLoop.stop closes it too; closing twice is harmless
    if options.virtual_device:
        source: AudioSource = SilenceSource()
        if options.input_wav is not None:
            try:
                source = WavSource(options.input_wav)
            except ValueError as exc:
                raise ConfigError(str(exc), variable="--input-wav") from None
        sink = WavSink(options.output_wav) if options.output_wav is not None else None
        if sink is not None:
            stack.callback(sink.close)
        device = VirtualDuplex(source, sink, playback)
        return Audio(playback, device, PacedDriver(device, speed=options.speed), sink, None, recorder)
    sound_card = SoundDeviceDuplex(
        playback, input_device=options.input_device, output_device=options.output_device
    )
    if options.headphones:
        return Audio(playback, sound_card, None, None, None, recorder)
    if options.aec:
        return Audio(playback, sound_card, None, None, None, recorder, _echo_canceller())
    return Audio(playback, sound_card, None, None, EchoGate(), recorder)


def _echo_canceller() -> EchoProcessor:
    from realtalk.audio.aec import EchoCanceller  # optional dependency: imported only for --aec

    return EchoCanceller()


# -- the target --------------------------------------------------------------------------------------


async def open_target(
    options: TalkOptions, settings: Settings, stack: AsyncExitStack, console: Console
) -> Target:
    """The configured deployment, or (none configured) the embedded emulator, started here."""
    if settings.azure_openai_endpoint is None:
        return await _start_emulator(options, settings, stack, console)
    endpoint, credential = resolve_connection(settings)
    stack.push_async_callback(credential.close)
    for warning in endpoint.warnings:
        console.print(render_notice(Notice("warning", warning)), soft_wrap=True)
    return Target(
        endpoint,
        credential,
        f"{endpoint.deployment} at {endpoint.host}{_over(options)}",
        _session_class(options),
    )


def _session_class(options: TalkOptions) -> type[RealtimeSession]:
    return WebRTCSession if options.transport is Transport.webrtc else RealtimeSession


def _over(options: TalkOptions) -> str:
    return " over WebRTC" if options.transport is Transport.webrtc else ""


async def _start_emulator(
    options: TalkOptions, settings: Settings, stack: AsyncExitStack, console: Console
) -> Target:
    emulator = await start_embedded_emulator(stack, pace=options.speed)
    console.print(
        render_notice(
            Notice(
                "info",
                "No AZURE_OPENAI_ENDPOINT configured: talking to the local emulator "
                f"({emulator.voice_name} voice, echo replies)",
            )
        ),
        soft_wrap=True,
    )
    if settings.openai_api_key is not None:
        console.print(
            render_notice(
                Notice(
                    "info",
                    "OPENAI_API_KEY is set; to talk to the OpenAI platform instead, set "
                    "AZURE_OPENAI_ENDPOINT=https://api.openai.com/v1 and "
                    "AZURE_OPENAI_DEPLOYMENT_NAME=gpt-realtime",
                )
            ),
            soft_wrap=True,
        )
    endpoint = emulator.endpoint
    return Target(
        endpoint,
        emulator.credential,
        f"local emulator at {endpoint.host}{_over(options)}",
        _session_class(options),
    )


def start_failure(exc: RealtalkError, endpoint: ResolvedEndpoint) -> str:
    """One line: why the first connection failed and what to do about it."""
    if isinstance(exc, HandshakeRejected):
        message = f"{endpoint.host} refused the session: {exc.reason}"
    elif isinstance(exc, CallSetupFailed):
        message = f"the WebRTC call to {endpoint.host} could not be set up ({exc.step}): {exc.reason}"
    elif isinstance(exc, ConnectionClosed) and exc.code is None:
        message = (
            f"cannot connect to {endpoint.host}: {exc.reason}. Check AZURE_OPENAI_ENDPOINT, "
            "or run `realtalk doctor`"
        )
    else:
        message = f"the session could not start: {exc}"
    return " ".join(message.split())
