from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soxr

from realtalk.audio.devices import DeviceInfo, DeviceRateAdapter, list_devices, select_device
from realtalk.audio.playback import PlaybackBuffer
from realtalk.errors import ConfigError

DUPLEX_SCRIPT = Path(__file__).parent / "alsa_file_duplex.py"


def device(index: int, name: str, inputs: int, outputs: int, *, default: bool = False) -> DeviceInfo:
    return DeviceInfo(
        index=index,
        name=name,
        hostapi="ALSA",
        max_input_channels=inputs,
        max_output_channels=outputs,
        default_sample_rate_hz=48_000,
        is_default_input=default and inputs > 0,
        is_default_output=default and outputs > 0,
    )


DEVICES = [
    device(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", 2, 2),
    device(1, "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 8),
    device(2, "USB Headset: Audio (hw:1,0)", 1, 2),
    device(3, "pulse", 32, 32),
    device(4, "default", 32, 32, default=True),
]


def test_no_device_choice_selects_the_system_default() -> None:
    assert select_device(DEVICES, None, "input").index == 4
    assert select_device(DEVICES, None, "output").index == 4


def test_a_device_is_selected_by_index_given_as_a_number_or_as_text() -> None:
    assert select_device(DEVICES, 2, "input").name.startswith("USB Headset")
    assert select_device(DEVICES, "1", "output").name.startswith("HDA Intel PCH: HDMI")


def test_a_device_is_selected_by_a_case_insensitive_part_of_its_name() -> None:
    assert select_device(DEVICES, "usb headset", "input").index == 2


def test_a_name_matching_several_devices_is_refused_with_the_candidates_listed() -> None:
    with pytest.raises(ConfigError, match=r"matches several output devices: 0 \(HDA.*1 \(HDA") as info:
        select_device(DEVICES, "HDA Intel", "output")
    assert info.value.variable == "--output-device"


def test_an_exact_name_wins_over_other_names_containing_it() -> None:
    devices = [*DEVICES, device(5, "pulse monitor", 2, 0)]
    assert select_device(devices, "pulse", "input").index == 3


def test_a_device_without_channels_of_the_wanted_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="no input channels"):
        select_device(DEVICES, 1, "input")
    with pytest.raises(ConfigError, match="No input device has 'hdmi'"):
        select_device(DEVICES, "hdmi", "input")


def test_no_devices_at_all_gives_a_message_saying_how_to_choose_or_do_without() -> None:
    with pytest.raises(ConfigError, match=r"No sound input device found.*realtalk devices.*--input-wav"):
        select_device([], None, "input")


def test_an_unknown_index_is_refused() -> None:
    with pytest.raises(ConfigError, match="no sound device with index 9"):
        select_device(DEVICES, 9, "output")


def test_without_portaudio_the_error_says_to_install_it_or_use_wav_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sounddevice looks the library up with ctypes.util.find_library when it is imported.
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(ConfigError) as info:
        list_devices()
    message = str(info.value)
    assert "apt-get install libportaudio2" in message
    assert "brew install portaudio" in message
    assert "--input-wav" in message
    assert "PortAudio library not found" in message


def chirp(samples: int, rate_hz: int) -> np.ndarray:
    t = np.arange(samples) / rate_hz
    return np.round(12_000 * np.sin(2 * np.pi * (200 * t + 1_900 * t * t))).astype("<i2")


def aligned_snr_db(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    """Best alignment of ``want`` inside ``got`` and the signal-to-error ratio there."""
    got_f, want_f = got.astype(np.float64), want.astype(np.float64)
    size = 1 << (len(got_f) + len(want_f)).bit_length()
    correlation = np.fft.irfft(np.fft.rfft(got_f, size) * np.conj(np.fft.rfft(want_f, size)), size)
    lag = int(np.argmax(correlation[: len(got_f) - len(want_f) + 1]))
    error = got_f[lag : lag + len(want_f)] - want_f
    return lag, float(10 * np.log10(np.mean(want_f**2) / np.mean(error**2)))


def test_at_24khz_the_adapter_passes_audio_through_bit_exactly() -> None:
    playback = PlaybackBuffer()
    reply = chirp(2_000, 24_000).tobytes()
    playback.write("item_a", reply)
    adapter = DeviceRateAdapter(playback, 24_000, 480)
    out = [adapter.output(480) for _ in range(5)]
    assert b"".join(pcm for pcm, _ in out)[: len(reply)] == reply
    assert adapter.input(reply[:960]) == reply[:960]
    assert adapter.latency_samples == (0, 0)


@pytest.mark.parametrize("device_rate_hz", [48_000, 44_100, 16_000, 22_050])
def test_a_device_at_another_rate_gets_exact_block_sizes_and_exact_24khz_counts(device_rate_hz: int) -> None:
    playback = PlaybackBuffer()
    reply = chirp(24_000, 24_000)
    playback.write("item_a", reply.tobytes())
    frames = device_rate_hz * 20 // 1_000
    adapter = DeviceRateAdapter(playback, device_rate_hz, frames)
    out: list[bytes] = []
    played = 0
    for _ in range(80):
        pcm, block = adapter.output(frames)
        assert len(pcm) == 2 * frames
        out.append(pcm)
        played += block.audio_samples
    assert adapter.played_wire_samples == 80 * frames * 24_000 // device_rate_hz
    assert played == playback.played_samples("item_a") == 24_000
    # The speaker gets the reply, resampled, after a constant delay and without gaps.
    want = soxr.resample(reply, 24_000, device_rate_hz, quality="VHQ")
    lag, snr_db = aligned_snr_db(np.frombuffer(b"".join(out), "<i2"), want)
    assert lag == adapter.latency_samples[1]
    assert snr_db > 50
    assert adapter.padded_samples == (0, 0)

    mic_in = np.concatenate(
        [soxr.resample(reply, 24_000, device_rate_hz, quality="VHQ"), np.zeros(frames * 40)]
    )
    mic = [adapter.input(mic_in[i * frames : (i + 1) * frames].astype("<i2").tobytes()) for i in range(80)]
    assert adapter.mic_wire_samples == sum(len(m) // 2 for m in mic) == 80 * frames * 24_000 // device_rate_hz
    lag, snr_db = aligned_snr_db(np.frombuffer(b"".join(mic), "<i2"), reply)
    assert lag == adapter.latency_samples[0]
    assert snr_db > 50


ASOUNDRC = """\
pcm.!default {{ type asym  playback.pcm "fakespk"  capture.pcm "fakemic" }}
pcm.fakespk {{ type file  slave.pcm "null"  file "{speaker}"  format "raw" }}
pcm.fakemic {{ type file  slave.pcm "null"  file "/dev/null"  infile "{mic}"  format "raw" }}
ctl.!default {{ type hw card 0 }}
"""


@pytest.mark.system_package("libportaudio2")
@pytest.mark.parametrize("device_rate_hz", [24_000, 48_000])
def test_the_sounddevice_backend_plays_and_records_exactly_through_an_alsa_file_device(
    tmp_path: Path, device_rate_hz: int
) -> None:
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("needs system package 'libportaudio2': apt-get install libportaudio2")
    mic_in = tmp_path / "mic_in.raw"
    speaker = tmp_path / "spk_out.raw"
    # Longer than the run can take (the device is not paced, so blocks go on until stop()); past
    # its end the file device records what its "null" slave gives, which is not ours to check.
    mic_audio = chirp(10 * device_rate_hz, device_rate_hz)
    if device_rate_hz == 24_000:
        mic_audio = (np.arange(240_000) % 30_000).astype("<i2")  # a ramp: any change shows
    mic_audio.tofile(mic_in)
    (tmp_path / "asoundrc").write_text(ASOUNDRC.format(speaker=speaker, mic=mic_in))
    env = {**os.environ, "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{tmp_path / 'asoundrc'}"}
    # A fresh interpreter: ALSA reads its configuration once, when PortAudio is loaded.
    run = subprocess.run(
        [sys.executable, str(DUPLEX_SCRIPT), str(tmp_path), str(device_rate_hz)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["finished"], result
    assert result["callback_error"] == "None"
    assert result["duplex"] and result["output_rate_hz"] == device_rate_hz
    assert result["block_lengths"] == [[960, 960]]  # 20 ms at 24 kHz on both sides, every block

    reply = np.fromfile(tmp_path / "reply_24k.raw", "<i2")
    played = np.fromfile(tmp_path / "played_24k.raw", "<i2")
    mic = np.fromfile(tmp_path / "mic_24k.raw", "<i2")
    counts = result["counts"]
    # Every reply sample was counted once, by the buffer and in the blocks the client received.
    assert result["played_item_samples"] == result["buffer_played_samples"] == len(reply) == 24_000
    assert counts["played_wire_samples"] == len(played) == counts["output_frames"] * 24_000 // device_rate_hz
    assert counts["mic_wire_samples"] == len(mic) == counts["input_frames"] * 24_000 // device_rate_hz
    assert np.array_equal(played[: len(reply)], reply)

    speaker_audio = np.fromfile(speaker, "<i2")
    if device_rate_hz == 24_000:
        # What the device wrote is what we handed it, bit for bit, after PortAudio's priming silence.
        assert np.array_equal(speaker_audio[-len(played) :], played)
        assert not speaker_audio[: -len(played)].any()
        compared = min(len(mic), len(mic_audio))
        assert compared >= 24_000
        assert np.array_equal(mic[:compared], mic_audio[:compared])
    else:
        _, snr_db = aligned_snr_db(speaker_audio, soxr.resample(reply, 24_000, device_rate_hz, quality="VHQ"))
        assert snr_db > 50
        _, snr_db = aligned_snr_db(
            mic, soxr.resample(mic_audio, device_rate_hz, 24_000, quality="VHQ")[:12_000]
        )
        assert snr_db > 50
