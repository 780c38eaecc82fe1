"""The fast path's shape checks (pure): exact shapes pass, anything else goes to the full parse."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.emulator.events import audio_delta
from realtalk.gateway import framing
from realtalk.gateway.framing import b64_decoded_length, match_append, match_audio_delta

AUDIO = base64.b64encode(bytes(range(256)) * 18 + b"\x01\x02").decode()  # 4,610 bytes: "=" padding


def sdk_frame(**event: str) -> str:
    return json.dumps({"type": "input_audio_buffer.append", **event})  # what the SDK sends


def test_the_sdk_shape_and_the_ui_shape_take_the_fast_path() -> None:
    ui = '{"type":"input_audio_buffer.append","audio":"' + AUDIO + '"}'
    for text in (ui, sdk_frame(audio=AUDIO), sdk_frame(audio=AUDIO, event_id="evt_1")):
        frame = match_append(text.encode())
        assert frame is not None and frame.audio_bytes == 4610
    # Half a PCM16 sample is not for the fast path: the full check knows the session's format.
    odd = base64.b64encode(bytes(4609)).decode()
    for text in ('{"type":"input_audio_buffer.append","audio":"' + odd + '"}', sdk_frame(audio=odd)):
        assert match_append(text.encode()) is None
    assert match_append(sdk_frame(audio=AUDIO, event_id="evt_1").encode()).event_id == "evt_1"  # type: ignore[union-attr]
    compact = '{"type":"input_audio_buffer.append","audio":"' + AUDIO + '","event_id":"e.1:x-y_z"}'
    assert match_append(compact.encode()) is not None


@pytest.mark.parametrize(
    "text",
    [
        '{"audio":"AAAAAAAA","type":"input_audio_buffer.append"}',  # another key order
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAA","type":"session.update"}',  # a second type
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAA","session":{}}',  # another field
        '{"type":"input_audio_buffer.append","audio":"AA\\"A"}',  # an escape inside the string
        '{"type":"input_audio_buffer.append","audio":"AAA"}',  # not a multiple of 4
        '{"type":"input_audio_buffer.append","audio":"A=AA"}',  # padding in the middle
        '{"type":"input_audio_buffer.append","audio":"AA-_"}',  # base64url, not base64
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAAAAAA"} ',  # trailing whitespace
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAAAAAA"}{"type":"session.update"}',  # two objects
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAA","event_id":"a\\"b"}',  # escaped event id
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAA","event_id":1}',  # a number as event id
        '{"type":"input_audio_buffer.append","audio":"AAAAAAAA"',  # unterminated
        '{"type":"input_audio_buffer.append","audio":"ÄAAA"}',  # non-ASCII
        ' {"type":"input_audio_buffer.append","audio":"AAAAAAAAAAAA"}',  # leading whitespace
        '{"type":"input_audio_buffer.commit"}',
    ],
)
def test_anything_but_the_exact_shapes_goes_to_the_full_parse(text: str) -> None:
    assert match_append(text.encode()) is None


PREFIXES = [
    '{"type":"input_audio_buffer.append","audio":"',
    '{"type": "input_audio_buffer.append", "audio": "',
]
TAILS = [
    '"}',
    '","event_id":"e1"}',
    '", "event_id": "e_2"}',
    '","type":"session.update"}',
    '","event_id":"a\\"b"}',
    '"} ',
    '","audio":"AAAAAAAAAAAA"}',
    '","event_id":"e1","session":{}}',
]


@given(
    st.sampled_from(PREFIXES),
    st.binary(max_size=60),
    st.text(alphabet='"\\,:{}= aA/+', max_size=4),
    st.sampled_from(TAILS),
)
def test_whatever_the_fast_path_accepts_is_exactly_one_append_with_audio_and_maybe_an_event_id(
    prefix: str, audio: bytes, noise: str, tail: str
) -> None:
    text = prefix + base64.b64encode(audio).decode() + noise + tail
    frame = match_append(text.encode())
    if frame is None:
        return
    event = json.loads(text)  # valid JSON, one object
    assert event["type"] == "input_audio_buffer.append"
    assert set(event) <= {"type", "audio", "event_id"}
    assert len(base64.b64decode(event["audio"], validate=True)) == frame.audio_bytes
    assert event.get("event_id") == frame.event_id
    assert text.count('"type"') == 1 and text.count('"audio"') == 1  # no duplicate key behind the parse


def test_the_property_above_sees_accepted_frames_too() -> None:
    assert match_append((PREFIXES[1] + "AAAAAAAA" + TAILS[2]).encode()) is not None


@given(st.binary(max_size=300))
def test_the_decoded_length_matches_base64_for_any_audio(raw: bytes) -> None:
    assert b64_decoded_length(base64.b64encode(raw).decode()) == len(raw)


def test_an_upstream_audio_delta_gives_its_ids_and_length_without_a_parse() -> None:
    delta = base64.b64encode(bytes(4800)).decode()
    compact = json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": "event_1",
            "response_id": "resp_A",
            "item_id": "item_B",
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
        },
        separators=(",", ":"),
    )
    frame = match_audio_delta(compact.encode())
    assert frame == (
        "item_B",
        "resp_A",
        4800,
    )
    spaced = json.dumps(
        {
            "type": "response.output_audio.delta",
            "delta": delta[:-4] + "AA==",
            "item_id": "i",
            "response_id": "r",
        }
    )
    frame = match_audio_delta(spaced.encode())
    assert frame == ("i", "r", 4798)
    assert match_audio_delta(b'{"type":"response.output_audio.delta","delta":"AAAA","item_id":"i"}') is None
    assert match_audio_delta(b'{"type":"response.output_audio.done","item_id":"i","response_id":"r"}') is None
    assert match_audio_delta(b'{"event_id":"e","type":"response.output_audio.delta","delta":"AAAA"}') is None


def test_an_escaped_or_non_ascii_delta_goes_to_the_full_parse() -> None:
    # A JSON encoder may escape "+" or "/" (System.Text.Json writes "\\u002B"): the length must then
    # come from the parse, not from the raw text.
    escaped = b'{"type":"response.output_audio.delta","item_id":"i","response_id":"r","delta":"AA\\u002BA"}'
    assert match_audio_delta(escaped) is None
    accented = '{"type":"response.output_audio.delta","item_id":"é","response_id":"r","delta":"AAAA"}'
    assert match_audio_delta(accented.encode()) is None


@given(st.binary(max_size=300))
def test_the_decoded_length_of_base64_bytes_matches_too(raw: bytes) -> None:
    encoded = base64.b64encode(raw)
    assert b64_decoded_length(encoded) == len(raw)
    assert b64_decoded_length(b"x" + encoded + b"y", 1, len(encoded) + 1) == len(raw)


def test_the_emulators_delta_takes_the_one_match_path_and_any_other_order_the_scanner() -> None:
    audio = base64.b64encode(bytes(4801)).decode()
    sent = json.dumps(audio_delta("resp_A", "item_B", 0, audio), separators=(",", ":")).encode()
    assert framing._DELTA_HEAD.match(sent) is not None  # the shape the emulator (and Azure) send
    assert match_audio_delta(sent) == ("item_B", "resp_A", 4801)
    reordered = json.dumps(
        {"type": "response.output_audio.delta", "item_id": "item_B", "delta": audio, "response_id": "resp_A"},
        separators=(",", ":"),
    ).encode()
    assert framing._DELTA_HEAD.match(reordered) is None
    assert match_audio_delta(reordered) == ("item_B", "resp_A", 4801)
    quoted_id = sent.replace(b'"item_B"', b'"item\\"B"')
    assert match_audio_delta(quoted_id) is None  # an escaped quote in an id: the full parse decides
