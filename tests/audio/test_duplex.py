from __future__ import annotations

import numpy as np
import pytest

from realtalk.audio.duplex import DuplexBlock, DuplexDevice, VirtualDuplex
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import MemorySink, MemorySource, SilenceSource


def ramp(n: int, start: int = 1) -> bytes:
    return (np.arange(start, start + n, dtype=np.int64) % 30_000).astype("<i2").tobytes()


def test_each_step_moves_exactly_one_block_from_the_source_and_one_from_the_buffer() -> None:
    playback = PlaybackBuffer()
    playback.write("item_a", ramp(1_000, 10_000))
    device = VirtualDuplex(MemorySource(ramp(2_000)), MemorySink(), playback, block_samples=480)
    first = device.step()
    assert first.mic == ramp(480)
    assert first.played.pcm == ramp(480, 10_000)
    assert first.played.played == (("item_a", 480),)
    second = device.step()
    assert second.mic == ramp(480, 481)
    assert playback.queued_samples == 1_000 - 960
    assert device.blocks_stepped == 2


def test_the_sink_receives_exactly_what_the_playback_buffer_handed_out() -> None:
    playback = PlaybackBuffer()
    sink = MemorySink()
    device = VirtualDuplex(SilenceSource(), sink, playback, block_samples=480)
    rng = np.random.default_rng(7)
    handed_out: list[bytes] = []
    audio_parts: list[bytes] = []
    written: dict[str, bytes] = {}
    for step in range(200):
        if step % 7 == 0 and step < 150:  # replies arrive in uneven chunks, between device blocks
            item = f"item_{step // 35}"
            chunk = rng.integers(-20_000, 20_000, int(rng.integers(1, 2_000)), dtype=np.int16)
            playback.write(item, chunk.astype("<i2").tobytes())
            written[item] = written.get(item, b"") + chunk.astype("<i2").tobytes()
        block = device.step()
        handed_out.append(block.played.pcm)
        audio = block.played.audio_samples * 2
        audio_parts.append(block.played.pcm[:audio])
        assert block.played.pcm[audio:] == bytes(len(block.played.pcm) - audio)  # padding is silence
    assert sink.pcm == b"".join(handed_out)
    assert sink.samples_written == 200 * 480
    assert b"".join(audio_parts) == b"".join(written.values())  # every reply sample, in order
    for item, pcm in written.items():
        assert playback.played_samples(item) == len(pcm) // 2


def test_played_counts_per_item_add_up_to_the_samples_written_to_the_sink() -> None:
    playback = PlaybackBuffer()
    playback.write("item_a", ramp(700))
    playback.write("item_b", ramp(300))
    device = VirtualDuplex(SilenceSource(), MemorySink(), playback, block_samples=480)
    blocks = [device.step() for _ in range(3)]
    assert [b.played.played for b in blocks] == [
        (("item_a", 480),),
        (("item_a", 220), ("item_b", 260)),
        (("item_b", 40),),
    ]


def test_a_virtual_duplex_without_a_sink_still_counts_what_was_played() -> None:
    playback = PlaybackBuffer()
    playback.write("item_a", ramp(500))
    device = VirtualDuplex(SilenceSource(), None, playback)
    device.step()
    device.step()
    assert playback.played_samples("item_a") == 500


def test_start_and_stop_only_store_the_callback_for_the_pacing_task() -> None:
    delivered: list[DuplexBlock] = []
    device: DuplexDevice = VirtualDuplex(SilenceSource(), None, PlaybackBuffer())
    assert (device.sample_rate_hz, device.block_samples) == (24_000, 480)
    assert isinstance(device, VirtualDuplex)
    device.start(delivered.append)
    assert device.running
    assert device.on_block is not None
    device.on_block(device.step())  # what the pacing task does on each tick
    device.step()  # a step alone does not deliver
    assert len(delivered) == 1
    device.stop()
    device.stop()
    assert device.on_block is None


def test_a_block_size_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="block_samples"):
        VirtualDuplex(SilenceSource(), None, PlaybackBuffer(), block_samples=0)
