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
tail then admits no other key. The decoded size must be even (whole PCM16 samples). Hence the
frame is a valid JSON object with ``type`` equal to
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

__all__ = [
    "AppendFrame",
    "AudioDelta",
    "append_audio_bytes",
    "b64_decoded_length",
    "match_append",
    "match_audio_delta",
    "readable_event_id",
]

_APPEND_PREFIXES: Final = (
    b'{"type":"input_audio_buffer.append","audio":"',
    b'{"type": "input_audio_buffer.append", "audio": "',
)
_EVENT_ID_PAIR: Final = re.compile(rb'(?<!\\)"event_id"\s*:\s*"([\x20\x21\x23-\x5b\x5d-\x7e]{1,128})"')
_APPEND_TAIL: Final = re.compile(rb'(?:, ?"event_id": ?"([A-Za-z0-9_.:\-]{1,128})")?\}')
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

_UI_START: Final = len(_APPEND_PREFIXES[0])
_SDK_START: Final = len(_APPEND_PREFIXES[1])

_DELTA_PREFIXES: Final = (
    b'{"type":"response.output_audio.delta",',
    b'{"type": "response.output_audio.delta", ',
)
_MAX_ID_BYTES: Final = 128
# The shape the service and the emulator send (compact JSON, fields in the documented order):
# the ids in one match. Any other order or spacing is found by the field scanner below.
_ID: Final = rb"([\x20\x21\x23-\x5b\x5d-\x7e]{1,128})"  # printable ASCII without '"' and '\'
_DELTA_HEAD: Final = re.compile(
    rb'\{"type":"response\.output_audio\.delta",(?:"event_id":"[\x20\x21\x23-\x5b\x5d-\x7e]{0,128}",)?'
    rb'"response_id":"' + _ID + rb'","item_id":"' + _ID + rb'",'
    rb'"output_index":\d{1,9},"content_index":\d{1,9},"delta":"'
)


@dataclass(frozen=True, slots=True)
class AppendFrame:
    """A client ``input_audio_buffer.append`` that passed the strict shape check."""

    audio_bytes: int
    event_id: str | None


# An upstream audio delta's (item_id, response_id, decoded audio bytes): a tuple, made per frame.
AudioDelta = tuple[str, str, int]
_EQUALS: Final = 61  # "="


def b64_decoded_length(text: str | bytes, start: int = 0, end: int | None = None) -> int | None:
    """The decoded size of the standard base64 in ``text[start:end]``, or ``None`` if it is not base64."""
    stop = len(text) if end is None else end
    length = stop - start
    if length % 4:
        return None
    if isinstance(text, str):
        if not text.isascii():
            return None
        text = text.encode("ascii")
    padding = 2 if text.startswith(b"==", stop - 2, stop) else int(text.startswith(b"=", stop - 1, stop))
    # Deleting the alphabet leaves nothing exactly when every byte is in it (non-ASCII included).
    if length < padding or text[start : stop - padding].translate(None, _B64_ALPHABET):
        return None  # a byte outside the alphabet (or "=" before the end)
    return length // 4 * 3 - padding


def append_audio_bytes(data: bytes) -> int:
    """The decoded audio size of the UTF-8 frame ``data`` when it has exactly a fast-path shape,
    else -1. The relay's per-frame check: no allocation beyond the alphabet check."""
    if data.startswith(_APPEND_PREFIXES[0]):
        start = _UI_START
    elif data.startswith(_APPEND_PREFIXES[1]):
        start = _SDK_START
    else:
        return -1
    end = data.find(b'"', start)
    length = end - start
    if end < 0 or length % 4 or _APPEND_TAIL.fullmatch(data, end + 1) is None:
        return -1
    # The byte before the span is the opening quote, so a short span cannot look padded.
    padding = (data[end - 1] == _EQUALS) + (data[end - 2] == _EQUALS) if length else 0
    if data[start : end - padding].translate(None, _B64_ALPHABET):
        return -1  # a byte outside the alphabet (or "=" before the end)
    decoded = length // 4 * 3 - padding
    # An odd size is not whole PCM16 samples: the full check, which knows the session's format
    # (G.711 has 1-byte samples), decides.
    return -1 if decoded & 1 else decoded


def readable_event_id(data: bytes) -> str | None:
    """The ``event_id`` of a frame that will not be parsed (too large, over the rate limit), when
    it can be read plainly: a ``"event_id":"<id>"`` pair (not inside an escaped string), the id
    1-128 bytes of printable ASCII without quotes or backslashes. ``None`` otherwise."""
    found = _EVENT_ID_PAIR.search(data)
    return found.group(1).decode("ascii") if found is not None else None


def match_append(data: bytes) -> AppendFrame | None:
    """``append_audio_bytes`` with the event id too (for tests and tools; the relay needs the size)."""
    audio_bytes = append_audio_bytes(data)
    if audio_bytes < 0:
        return None
    start = _UI_START if data.startswith(_APPEND_PREFIXES[0]) else _SDK_START
    tail = _APPEND_TAIL.fullmatch(data, data.find(b'"', start) + 1)
    assert tail is not None
    event_id = tail.group(1)
    return AppendFrame(audio_bytes, event_id.decode("ascii") if event_id is not None else None)


def match_audio_delta(data: bytes) -> AudioDelta | None:
    """Ids and audio length of an upstream audio delta (UTF-8 frame ``data``), found without a
    parse; ``None`` if not one, or not plainly one (escapes, non-ASCII ids). The upstream is
    trusted: its base64 is not checked byte by byte, only for escapes."""
    head = _DELTA_HEAD.match(data)
    if head is None:
        return _scan_audio_delta(data)
    start = head.end()
    end = data.find(b'"', start)
    if end < 0 or data.find(b"\\", start, end) >= 0:
        return None
    length = end - start
    padding = (data[end - 1] == _EQUALS) + (data[end - 2] == _EQUALS) if length >= 2 else 0
    return head.group(2).decode("ascii"), head.group(1).decode("ascii"), length // 4 * 3 - padding


def _scan_audio_delta(data: bytes) -> AudioDelta | None:
    # Any key order, compact or spaced JSON.
    if data.startswith(_DELTA_PREFIXES[0]):
        spaced = False
    elif data.startswith(_DELTA_PREFIXES[1]):
        spaced = True
    else:
        return None
    key = b'"delta": "' if spaced else b'"delta":"'
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b'"', start)
    if end < 0 or data.find(b"\\", start, end) >= 0:
        return None
    item_id = _string_field(data, b"item_id", spaced, start, end)
    response_id = _string_field(data, b"response_id", spaced, start, end)
    if item_id is None or response_id is None:
        return None
    length = end - start
    padding = (data[end - 1] == _EQUALS) + (data[end - 2] == _EQUALS) if length >= 2 else 0
    return item_id, response_id, length // 4 * 3 - padding


def _string_field(data: bytes, name: bytes, spaced: bool, skip_start: int, skip_end: int) -> str | None:
    # Looked for outside the base64 span, which cannot contain a quote anyway.
    key = b'"' + name + (b'": "' if spaced else b'":"')
    at = data.find(key, 0, skip_start)
    if at < 0:
        at = data.find(key, skip_end)
        if at < 0:
            return None
    at += len(key)
    close = data.find(b'"', at, at + _MAX_ID_BYTES + 1)
    if close < 0 or data.find(b"\\", at, close) >= 0:
        return None
    try:
        return data[at:close].decode("ascii")
    except UnicodeDecodeError:
        return None  # not plainly ASCII: the full parse decides
