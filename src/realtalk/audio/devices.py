"""Sound cards through PortAudio (``sounddevice``): the only module that imports it, lazily.

Theory of operation. PortAudio calls our function from its own audio thread once per block, with
the captured samples and a buffer to fill for the speaker. That function only copies and counts:
it takes one block from the ``PlaybackBuffer`` (which counts every reply sample handed to the
device, the figure barge-in truncation reports as heard), fills the output, and hands the
microphone block plus that ``BlockRead`` to the client's callback, which queues it for the event
loop (``loop.call_soon_threadsafe``). No logging, no locks beyond the playback buffer's, no waiting.

The client sees 24 kHz (the wire rate) whatever the device runs at. A device that does not offer
24 kHz runs at its default rate, and ``DeviceRateAdapter`` converts both ways with streaming soxr.
Its clock is the device's frame count: after ``n`` device frames exactly ``n * 24000 // rate``
wire samples have been read from the playback buffer and delivered from the microphone, so counts
never drift; the resamplers' few milliseconds of filter delay are absorbed by small FIFOs that
start with silence.

The same input and output device run as one full-duplex stream (one clock, one callback); two
different devices run as two streams, each delivering its side of ``DuplexBlock`` on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import soxr

from realtalk.audio.duplex import DuplexBlock, OnBlock
from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ, pcm16_to_int16
from realtalk.audio.playback import BlockRead, PlaybackBuffer
from realtalk.errors import ConfigError

__all__ = [
    "DeviceInfo",
    "DeviceRateAdapter",
    "SoundDeviceDuplex",
    "list_devices",
    "select_device",
]

DeviceKind = Literal["input", "output"]

_NO_PORTAUDIO = (
    "The PortAudio library is not installed, so realtalk cannot use a sound card. Install it "
    "(Debian/Ubuntu: `sudo apt-get install libportaudio2`; macOS: `brew install portaudio`), "
    "or run without a sound card: `--input-wav question.wav --output-wav reply.wav`."
)
_CHOOSE = (
    "List the devices with `realtalk devices` and choose with --input-device/--output-device "
    "(an index or part of the name), or run without a sound card: --input-wav/--output-wav."
)
_EMPTY_BLOCK = BlockRead(b"", ())


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as ``realtalk devices`` shows it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate_hz: int
    is_default_input: bool
    is_default_output: bool

    def channels(self, kind: DeviceKind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def _import_sounddevice() -> Any:
    """Import ``sounddevice`` on first use, turning a missing PortAudio into a ``ConfigError``."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises "PortAudio library not found" at import time
        raise ConfigError(f"{_NO_PORTAUDIO} ({exc})") from None
    except ImportError as exc:
        raise ConfigError(
            f"The sounddevice package is missing ({exc}): reinstall realtalk, or use "
            "--input-wav/--output-wav."
        ) from None
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    """Every input and output device PortAudio sees (empty on a machine without a sound card)."""
    sd = _import_sounddevice()
    hostapis = sd.query_hostapis()
    default_input, default_output = (int(i) if i is not None else -1 for i in sd.default.device)
    return [
        DeviceInfo(
            index=int(raw["index"]),
            name=str(raw["name"]),
            hostapi=str(hostapis[raw["hostapi"]]["name"]),
            max_input_channels=int(raw["max_input_channels"]),
            max_output_channels=int(raw["max_output_channels"]),
            default_sample_rate_hz=round(raw["default_samplerate"]),
            is_default_input=int(raw["index"]) == default_input,
            is_default_output=int(raw["index"]) == default_output,
        )
        for raw in sd.query_devices()
    ]


def select_device(devices: Sequence[DeviceInfo], spec: int | str | None, kind: DeviceKind) -> DeviceInfo:
    """The device for ``--input-device``/``--output-device``: an index, a name substring, or the default.

    A substring matching several devices is accepted only if one name matches exactly (case
    aside); otherwise the error lists the candidates. Raises ``ConfigError`` when nothing fits.
    """
    option = f"--{kind}-device"
    capable = [d for d in devices if d.channels(kind) > 0]
    if not capable:
        raise ConfigError(
            f"No sound {kind} device found (PortAudio sees {len(devices)} device(s), none with "
            f"{kind} channels). {_CHOOSE}",
            variable=option,
        )
    if spec is None:
        defaults = [d for d in capable if (d.is_default_input if kind == "input" else d.is_default_output)]
        return defaults[0] if defaults else capable[0]
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        for device in devices:
            if device.index == index:
                if device.channels(kind) == 0:
                    raise ConfigError(f"Device {index} ({device.name}) has no {kind} channels. {_CHOOSE}")
                return device
        raise ConfigError(f"There is no sound device with index {index}. {_CHOOSE}", variable=option)
    wanted = spec.strip().lower()
    matches = [d for d in capable if wanted in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == wanted]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise ConfigError(f"No {kind} device has {spec!r} in its name. {_CHOOSE}", variable=option)
    names = ", ".join(f"{d.index} ({d.name})" for d in matches)
    raise ConfigError(
        f"{spec!r} matches several {kind} devices: {names}. Give the index or more of the name.",
        variable=option,
        example=f"{option} {matches[0].index}",
    )


class _RateConverter:
    """Streaming soxr from one rate to another, behind a FIFO primed with silence.

    soxr emits its output in bursts: fed 20 ms at a time, it holds back up to a block (quality
    "LQ") or two ("HQ") before releasing them together. A device callback must fill its buffer every
    time, so the FIFO starts with as much silence as the worst hold-back, measured once by a dry
    run on silence with the same chunk size: after that every ``convert`` is served in full, and
    the stream is delayed by a constant, never gapped. "LQ" (about 20 ms of hold-back, round trip
    52 dB SNR against the best quality) instead of "HQ" (about 38 ms, 78 dB): voice needs the latency
    more than the last 26 dB.
    """

    QUALITY = "LQ"

    def __init__(self, from_hz: int, to_hz: int, chunk_samples: int) -> None:
        self.from_hz = from_hz
        self.to_hz = to_hz
        self._stream = soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16", quality=self.QUALITY)
        self.latency_samples = self._worst_hold_back(chunk_samples)
        self._fifo = bytearray(self.latency_samples * BYTES_PER_SAMPLE)
        # Beyond one second something is wrong (the consumer stopped taking); bounded regardless.
        self._limit_bytes = (self.latency_samples + to_hz) * BYTES_PER_SAMPLE
        self.padded_samples = 0
        self.dropped_samples = 0

    def _worst_hold_back(self, chunk_samples: int) -> int:
        probe = soxr.ResampleStream(self.from_hz, self.to_hz, 1, dtype="int16", quality=self.QUALITY)
        silence = np.zeros(max(chunk_samples, 1), dtype=np.int16)
        fed = produced = worst = 0
        for _ in range(200):
            produced += len(probe.resample_chunk(silence))
            fed += len(silence)
            worst = max(worst, -(-fed * self.to_hz // self.from_hz) - produced)
        # +2: the callers' floor/ceil of the rate ratio may ask one or two samples ahead of soxr.
        return worst + 2

    def convert(self, pcm: bytes, out_samples: int) -> bytes:
        """Feed ``pcm``; return exactly ``out_samples`` of converted audio."""
        out = self._stream.resample_chunk(pcm16_to_int16(pcm))
        self._fifo += np.asarray(out, dtype="<i2").tobytes()
        excess = len(self._fifo) - self._limit_bytes
        if excess > 0:
            del self._fifo[:excess]
            self.dropped_samples += excess // BYTES_PER_SAMPLE
        want = out_samples * BYTES_PER_SAMPLE
        short = want - len(self._fifo)
        if short > 0:  # only if PortAudio's block sizes stray far from the nominal one
            self._fifo += bytes(short)
            self.padded_samples += short // BYTES_PER_SAMPLE
        taken = bytes(self._fifo[:want])
        del self._fifo[:want]
        return taken


class DeviceRateAdapter:
    """The per-callback work of a device running at ``device_sample_rate_hz``, in 24 kHz terms.

    ``output(frames)`` reads the playback buffer and returns device-rate PCM of exactly ``frames``
    samples plus the 24 kHz ``BlockRead``; ``input(pcm)`` returns the 24 kHz microphone audio for
    the same period. Each side keeps its own frame clock (so it also serves separate streams):
    after ``n`` device frames exactly ``n * 24000 // rate`` wire samples have moved on that side.
    ``block_frames`` is the nominal device block, used to size the resamplers' priming.
    """

    def __init__(self, playback: PlaybackBuffer, device_sample_rate_hz: int, block_frames: int) -> None:
        self.playback = playback
        self.device_sample_rate_hz = device_sample_rate_hz
        self._to_device: _RateConverter | None = None
        self._from_device: _RateConverter | None = None
        if device_sample_rate_hz != WIRE_SAMPLE_RATE_HZ:
            wire_block = max(1, self._wire_samples(block_frames))
            self._to_device = _RateConverter(WIRE_SAMPLE_RATE_HZ, device_sample_rate_hz, wire_block)
            self._from_device = _RateConverter(device_sample_rate_hz, WIRE_SAMPLE_RATE_HZ, block_frames)
        self.output_frames = 0  # device frames handed to the speaker
        self.input_frames = 0  # device frames received from the microphone
        self.played_wire_samples = 0  # 24 kHz samples read from the playback buffer
        self.mic_wire_samples = 0  # 24 kHz samples delivered from the microphone

    def _wire_samples(self, device_frames: int) -> int:
        return device_frames * WIRE_SAMPLE_RATE_HZ // self.device_sample_rate_hz

    def output(self, frames: int) -> tuple[bytes, BlockRead]:
        self.output_frames += frames
        wire = self._wire_samples(self.output_frames) - self.played_wire_samples
        self.played_wire_samples += wire
        block = self.playback.read(wire)
        if self._to_device is None:
            return block.pcm, block
        return self._to_device.convert(block.pcm, frames), block

    def input(self, pcm: bytes) -> bytes:
        self.input_frames += len(pcm) // BYTES_PER_SAMPLE
        wire = self._wire_samples(self.input_frames) - self.mic_wire_samples
        self.mic_wire_samples += wire
        if self._from_device is None:
            return pcm
        return self._from_device.convert(pcm, wire)

    @property
    def latency_samples(self) -> tuple[int, int]:
        """(input at 24 kHz, output at the device rate): constant delay added by resampling."""
        if self._to_device is None or self._from_device is None:
            return 0, 0
        return self._from_device.latency_samples, self._to_device.latency_samples

    @property
    def padded_samples(self) -> tuple[int, int]:
        """(input, output) samples of silence inserted after start (0 unless block sizes stray)."""
        if self._to_device is None or self._from_device is None:
            return 0, 0
        return self._from_device.padded_samples, self._to_device.padded_samples


class SoundDeviceDuplex:
    """A real sound card (PortAudio through ``sounddevice``), mono PCM16, 24 kHz towards the client.

    ``input_device``/``output_device``: an index, part of a name, or None for the system default.
    ``device_sample_rate_hz`` forces a device rate (default: 24 kHz when the device offers it,
    else its default rate). Raises ``ConfigError`` when PortAudio is missing, there is no device,
    or a device does not fit.
    """

    def __init__(
        self,
        playback: PlaybackBuffer,
        *,
        input_device: int | str | None = None,
        output_device: int | str | None = None,
        block_ms: int = 20,
        device_sample_rate_hz: int | None = None,
        latency: float | str | None = None,
    ) -> None:
        if block_ms <= 0:
            raise ValueError(f"block_ms must be > 0, got {block_ms}")
        if playback.sample_rate_hz != WIRE_SAMPLE_RATE_HZ:
            raise ValueError(f"the playback buffer must run at {WIRE_SAMPLE_RATE_HZ} Hz")
        self._sd = _import_sounddevice()
        devices = list_devices()
        if not devices:
            raise ConfigError(f"No sound devices found: PortAudio sees none on this machine. {_CHOOSE}")
        self.input_device = select_device(devices, input_device, "input")
        self.output_device = select_device(devices, output_device, "output")
        self.playback = playback
        self.block_ms = block_ms
        self.latency = latency
        self.duplex = self.input_device.index == self.output_device.index
        self.input_sample_rate_hz = device_sample_rate_hz or self._rate_for(self.input_device, "input")
        self.output_sample_rate_hz = device_sample_rate_hz or self._rate_for(self.output_device, "output")
        if self.duplex and self.input_sample_rate_hz != self.output_sample_rate_hz:
            self.input_sample_rate_hz = self.output_sample_rate_hz = self.output_device.default_sample_rate_hz
        self._input = DeviceRateAdapter(
            playback, self.input_sample_rate_hz, self._frames(self.input_sample_rate_hz)
        )
        self._output = DeviceRateAdapter(
            playback, self.output_sample_rate_hz, self._frames(self.output_sample_rate_hz)
        )
        self._streams: list[Any] = []
        self._on_block: OnBlock | None = None
        self.callback_error: BaseException | None = None
        self.input_overflows = 0
        self.output_underflows = 0

    @property
    def sample_rate_hz(self) -> int:
        return WIRE_SAMPLE_RATE_HZ

    @property
    def block_samples(self) -> int:
        return WIRE_SAMPLE_RATE_HZ * self.block_ms // 1000

    @property
    def counts(self) -> dict[str, int]:
        """Frames and wire samples moved so far, per side (for tests and diagnostics)."""
        return {
            "input_frames": self._input.input_frames,
            "mic_wire_samples": self._input.mic_wire_samples,
            "output_frames": self._output.output_frames,
            "played_wire_samples": self._output.played_wire_samples,
        }

    def _rate_for(self, device: DeviceInfo, kind: DeviceKind) -> int:
        check = self._sd.check_input_settings if kind == "input" else self._sd.check_output_settings
        try:
            check(device=device.index, channels=1, dtype="int16", samplerate=WIRE_SAMPLE_RATE_HZ)
        except Exception:  # PortAudioError or ValueError: 24 kHz is not offered
            return device.default_sample_rate_hz
        return WIRE_SAMPLE_RATE_HZ

    def _frames(self, rate_hz: int) -> int:
        return rate_hz * self.block_ms // 1000

    def start(self, on_block: OnBlock) -> None:
        if self._streams:
            raise RuntimeError("the device is already started")
        sd = self._sd
        self._on_block = on_block
        common = {"channels": 1, "dtype": "int16", "latency": self.latency}
        try:
            if self.duplex:
                self._streams.append(
                    sd.RawStream(
                        device=(self.input_device.index, self.output_device.index),
                        samplerate=self.output_sample_rate_hz,
                        blocksize=self._frames(self.output_sample_rate_hz),
                        callback=self._duplex_callback,
                        **common,
                    )
                )
            else:
                self._streams.append(
                    sd.RawInputStream(
                        device=self.input_device.index,
                        samplerate=self.input_sample_rate_hz,
                        blocksize=self._frames(self.input_sample_rate_hz),
                        callback=self._input_callback,
                        **common,
                    )
                )
                self._streams.append(
                    sd.RawOutputStream(
                        device=self.output_device.index,
                        samplerate=self.output_sample_rate_hz,
                        blocksize=self._frames(self.output_sample_rate_hz),
                        callback=self._output_callback,
                        **common,
                    )
                )
            for stream in self._streams:
                stream.start()
        except sd.PortAudioError as exc:
            self.stop()
            raise ConfigError(
                f"Could not open the sound device ({self.input_device.name} → {self.output_device.name}): "
                f"{exc}. {_CHOOSE}"
            ) from None

    def stop(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.stop()
            stream.close()
        self._on_block = None

    # The three callbacks run on PortAudio's thread: copy, count, hand over; nothing else.

    def _deliver(self, block: DuplexBlock) -> None:
        on_block = self._on_block
        if on_block is None:
            return
        try:
            on_block(block)
        except Exception as exc:  # a broken consumer must not kill the audio thread silently
            self.callback_error = exc
            raise self._sd.CallbackAbort from exc

    def _duplex_callback(self, indata: Any, outdata: Any, frames: int, time: Any, status: Any) -> None:
        self._count(status)
        pcm, played = self._output.output(frames)
        outdata[:] = pcm
        self._deliver(DuplexBlock(self._input.input(bytes(indata)), played))

    def _input_callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        self._count(status)
        self._deliver(DuplexBlock(self._input.input(bytes(indata)), _EMPTY_BLOCK))

    def _output_callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        self._count(status)
        pcm, played = self._output.output(frames)
        outdata[:] = pcm
        self._deliver(DuplexBlock(b"", played))

    def _count(self, status: Any) -> None:
        if status:
            self.input_overflows += bool(status.input_overflow)
            self.output_underflows += bool(status.output_underflow)
