"""The fast path: recognise audio frames without parsing them, so they are forwarded as the same text.

Audio is nearly every frame of a voice session (10-50 appends a second each way), and a JSON parse
plus re-serialisation of 6 KiB of base64 costs more than the rest of the hop. Two shapes are
recognised here; every other frame goes through the full parse (``json.loads``, then the policy).

**Client → gateway** (``match_append``): the frame must be *exactly* one of

* ``{"type":"input_audio_buffer.append","audio":"<b64>"}`` (our browser UI, compact JSON), or
* ``{"type": "input_audio_buffer.append", "audio": "<b64>"}`` (the official SDK: ``json.dumps``
  with default separators, keys in this order, measured on openai 3.x),

each optionally followed, before the closing brace, by ``,"event_id":"<id>"`` (either separator
style) where ``<id>`` is 1-128 of ``[A-Za-z0-9_.:-]``. ``<b64>`` must be standard base64: only
``A-Z a-z 0-9 + /``, ``=`` padding at the end only, a length that is a multiple of 4. Nothing may
precede the opening brace or follow the closing one. Why this is safe: the base64 alphabet has no
``"`` and no ``\\``, so the first ``"`` after the prefix ends the string for every JSON parser; the
tail then admits no other key. Hence the frame is a valid JSON object with ``type`` equal to
``input_audio_buffer.append`` and no other field than ``audio`` and ``event_id``: it cannot carry a
second ``type`` (duplicate keys), another event, or an escaped quote. Anything else, including valid
appends in another key order or with whitespace, is parsed and checked like every other event.

**Upstream → gateway** (``match_audio_delta``): a frame that starts with
``{"type":"response.output_audio.delta",`` and has a ``"delta":"..."`` string without escapes.
The server is trusted; this only finds the item id, the response id and the audio length for the
protocol core without decoding anything. A frame that does not fit is parsed in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["AppendFrame", "AudioDeltaFrame", "b64_decoded_length", "match_append", "match_audio_delta"]

_APPEND_PREFIXES: Final = (
    '{"type":"input_audio_buffer.append","audio":"',
    '{"type": "input_audio_buffer.append", "audio": "',
)
_APPEND_TAIL: Final = re.compile(r'(?:, ?"event_id": ?"([A-Za-z0-9_.:\-]{1,128})")?\}')
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

_DELTA_PREFIXES: Final = (
    '{"type":"response.output_audio.delta",',
    '{"type": "response.output_audio.delta", ',
)
_MAX_ID_CHARS: Final = 128


@dataclass(slots=True)  # not frozen: one per audio frame, and a frozen init costs 2.5x
class AppendFrame:
    """A client ``input_audio_buffer.append`` that passed the strict shape check."""

    audio_bytes: int
    event_id: str | None


@dataclass(slots=True)
class AudioDeltaFrame:
    """The ids and audio length of an upstream ``response.output_audio.delta``."""

    item_id: str
    response_id: str
    audio_bytes: int


def b64_decoded_length(text: str, start: int = 0, end: int | None = None) -> int | None:
    """The decoded size of the standard base64 in ``text[start:end]``, or ``None`` if it is not base64."""
    stop = len(text) if end is None else end
    length = stop - start
    if length % 4 or not text.isascii():
        return None
    padding = 2 if text.startswith("==", stop - 2, stop) else 1 if text.startswith("=", stop - 1, stop) else 0
    if length < padding or text[start : stop - padding].encode("ascii").translate(None, _B64_ALPHABET):
        return None  # a character outside the alphabet (or "=" before the end)
    return length // 4 * 3 - padding


def match_append(text: str) -> AppendFrame | None:
    """The append's audio size and event id when ``text`` has exactly a fast-path shape, else ``None``."""
    if text.startswith(_APPEND_PREFIXES[0]):
        start = len(_APPEND_PREFIXES[0])
    elif text.startswith(_APPEND_PREFIXES[1]):
        start = len(_APPEND_PREFIXES[1])
    else:
        return None
    end = text.find('"', start)
    if end < 0:
        return None
    tail = _APPEND_TAIL.fullmatch(text, end + 1)
    if tail is None:
        return None
    audio_bytes = b64_decoded_length(text, start, end)
    if audio_bytes is None:
        return None
    return AppendFrame(audio_bytes, tail.group(1))


def match_audio_delta(text: str) -> AudioDeltaFrame | None:
    """Ids and audio length of an upstream audio delta, found without a parse; ``None`` if not one."""
    if text.startswith(_DELTA_PREFIXES[0]):
        spaced = False
    elif text.startswith(_DELTA_PREFIXES[1]):
        spaced = True
    else:
        return None
    key = '"delta": "' if spaced else '"delta":"'
    start = text.find(key)
    if start < 0:
        return None
    start += len(key)
    end = text.find('"', start)
    if end < 0 or text.find("\\", start, end) >= 0:
        return None
    item_id = _string_field(text, "item_id", spaced, start, end)
    response_id = _string_field(text, "response_id", spaced, start, end)
    if item_id is None or response_id is None:
        return None
    length = end - start
    padding = 2 if text.endswith("==", start, end) else 1 if text.endswith("=", start, end) else 0
    return AudioDeltaFrame(item_id, response_id, length // 4 * 3 - padding)


def _string_field(text: str, name: str, spaced: bool, skip_start: int, skip_end: int) -> str | None:
    # Looked for outside the base64 span, which cannot contain a quote anyway.
    key = f'"{name}": "' if spaced else f'"{name}":"'
    at = text.find(key, 0, skip_start)
    if at < 0:
        at = text.find(key, skip_end)
        if at < 0:
            return None
    at += len(key)
    close = text.find('"', at, at + _MAX_ID_CHARS + 1)
    if close < 0 or text.find("\\", at, close) >= 0:
        return None
    return text[at:close]
