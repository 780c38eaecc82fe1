"""The barge-in truncation rule: how much of an assistant item the user actually heard.

Over WebSocket the server cannot know what was played (§2.5 E), so after a barge-in the client
sends ``conversation.item.truncate`` with ``audio_end_ms`` computed from *samples played*, never
from wall-clock time. The server then cuts the item's audio there and drops its transcript, so the
model's context holds only what the user heard.

Rules (§2.5 E, §3.4):

* clamp to the audio received: truncating past the item's length is an error
  ("Audio content of 3700ms is already shorter than 3760ms");
* floor to whole milliseconds, so rounding can never push the value past the audio received;
* never send 0 ms: if nothing was heard, skip the truncate (the doc: "If nothing was played,
  do not truncate");
* skip it once playback had finished: the whole item was heard, there is nothing to cut.
"""

from __future__ import annotations

__all__ = ["samples_to_ms", "truncate_audio_end_ms"]


def samples_to_ms(samples: int, sample_rate_hz: int) -> int:
    """Whole milliseconds covered by ``samples`` at ``sample_rate_hz``, rounded down.

    PCM16 at 24 kHz is 24 samples per ms; G.711 at 8 kHz is 8 samples per ms.
    """
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    # Integer arithmetic: a float division could round 23.999.. up to the next millisecond.
    return samples * 1000 // sample_rate_hz


def truncate_audio_end_ms(
    *,
    played_samples: int,
    received_samples: int,
    sample_rate_hz: int,
    playback_finished: bool,
) -> int | None:
    """The ``audio_end_ms`` to send in ``conversation.item.truncate``, or ``None`` to send nothing.

    Args:
        played_samples: samples of the item the listener actually heard (counted by the player).
        received_samples: samples of the item received from the server so far.
        sample_rate_hz: the output format's rate (24000 for PCM16, 8000 for G.711).
        playback_finished: the item had been played to its end before the interruption.

    Returns:
        Milliseconds heard, at least 1 and never more than the audio received; ``None`` when the
        truncate must be skipped (nothing heard, or everything heard).
    """
    if played_samples < 0 or received_samples < 0:
        raise ValueError(
            f"sample counts must be >= 0, got played={played_samples}, received={received_samples}"
        )
    if playback_finished:
        return None
    heard_samples = min(played_samples, received_samples)
    audio_end_ms = samples_to_ms(heard_samples, sample_rate_hz)
    if audio_end_ms == 0:
        return None
    return audio_end_ms
