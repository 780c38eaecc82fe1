from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio.playback import PlaybackBuffer


def ramp(n: int, start: int = 1) -> bytes:
    return np.arange(start, start + n, dtype="<i2").tobytes()


def test_read_returns_exactly_one_block_padded_with_silence() -> None:
    buf = PlaybackBuffer()
    buf.write("item_a", ramp(100))
    block = buf.read(480)
    assert len(block.pcm) == 960
    assert block.pcm[:200] == ramp(100)
    assert block.pcm[200:] == bytes(760)
    assert block.played == (("item_a", 100),)


def test_samples_are_counted_per_item_in_play_order() -> None:
    buf = PlaybackBuffer()
    buf.write("item_a", ramp(300))
    buf.write("item_b", ramp(300, 1000))
    block = buf.read(480)
    assert block.played == (("item_a", 300), ("item_b", 180))
    assert buf.played_samples("item_a") == 300
    assert buf.played_samples("item_b") == 180


def test_flush_drops_what_was_not_played_and_reports_what_was() -> None:
    buf = PlaybackBuffer()
    buf.write("item_a", ramp(2400))
    buf.read(480)
    result = buf.flush()
    assert result.dropped_samples == 1920
    assert result.played_samples == {"item_a": 480}
    assert buf.read(480).audio_samples == 0
    assert not buf.is_playing


def test_the_buffer_is_bounded_and_counts_what_it_had_to_drop() -> None:
    buf = PlaybackBuffer(capacity_s=0.01)  # 240 samples
    assert buf.write("item_a", ramp(200)) == 200
    assert buf.write("item_a", ramp(100)) == 40
    assert buf.overflow_samples == 60
    assert buf.queued_samples == 240


@given(
    chunks=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20),
    block=st.integers(min_value=1, max_value=2000),
    reads=st.integers(min_value=0, max_value=40),
)
def test_played_plus_queued_always_equals_received(chunks: list[int], block: int, reads: int) -> None:
    buf = PlaybackBuffer()
    for i, n in enumerate(chunks):
        buf.write(f"item_{i % 3}", ramp(n % 1000 + 1))
    total = sum(n % 1000 + 1 for n in chunks)
    played = sum(buf.read(block).audio_samples for _ in range(reads))
    assert played == min(total, block * reads)
    assert played + buf.queued_samples == total
    assert sum(buf.played_samples(f"item_{i}") for i in range(3)) == played
