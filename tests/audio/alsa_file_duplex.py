"""Drive ``SoundDeviceDuplex`` through an ALSA ``file`` device; run by test_devices.py in a subprocess.

Usage: ``python alsa_file_duplex.py WORKDIR DEVICE_RATE_HZ``. The parent has already written
WORKDIR/asoundrc and WORKDIR/mic_in.raw and set ``ALSA_CONFIG_PATH`` (it must be set before
PortAudio is loaded, which is why this runs in a fresh interpreter). Prints one JSON object.

The file device is not paced, so this waits on sample counts, never on the clock (the deadline
only keeps a broken device from hanging the test).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np

from realtalk.audio.devices import SoundDeviceDuplex
from realtalk.audio.duplex import DuplexBlock
from realtalk.audio.playback import PlaybackBuffer

REPLY_SAMPLES = 24_000  # one second of reply: a ramp that no resampler or silence could fake


def main() -> None:
    workdir = Path(sys.argv[1])
    device_rate_hz = int(sys.argv[2])
    reply = (np.arange(REPLY_SAMPLES, dtype=np.int64) % 20_000 - 10_000).astype("<i2")
    if device_rate_hz != 24_000:
        # A ramp's wraps are broadband clicks; a chirp (200 Hz to 4 kHz) survives resampling and
        # has one unambiguous alignment.
        t = np.arange(REPLY_SAMPLES) / 24_000
        reply = np.round(12_000 * np.sin(2 * np.pi * (200 * t + 1_900 * t * t))).astype("<i2")
    playback = PlaybackBuffer()
    playback.write("item_1", reply.tobytes())

    blocks: list[DuplexBlock] = []
    done = threading.Event()
    wanted = REPLY_SAMPLES + 10 * 480

    def on_block(block: DuplexBlock) -> None:
        blocks.append(block)
        if sum(len(b.played.pcm) for b in blocks) // 2 >= wanted:
            done.set()

    device = SoundDeviceDuplex(playback, device_sample_rate_hz=device_rate_hz)
    device.start(on_block)
    finished = done.wait(timeout=30)
    device.stop()  # returns once PortAudio's thread has stopped calling us
    played = b"".join(b.played.pcm for b in blocks)
    mic = b"".join(b.mic for b in blocks)
    result = {
        "finished": finished,
        "duplex": device.duplex,
        "input_rate_hz": device.input_sample_rate_hz,
        "output_rate_hz": device.output_sample_rate_hz,
        "blocks": len(blocks),
        "block_lengths": sorted({(len(b.mic), len(b.played.pcm)) for b in blocks}),
        "played_item_samples": sum(n for b in blocks for _, n in b.played.played),
        "buffer_played_samples": playback.played_samples("item_1"),
        "counts": device.counts,
        "callback_error": repr(device.callback_error),
    }
    (workdir / "played_24k.raw").write_bytes(played)
    (workdir / "mic_24k.raw").write_bytes(mic)
    (workdir / "reply_24k.raw").write_bytes(reply.tobytes())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
