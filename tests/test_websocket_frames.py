"""The server-side RFC 6455 codec (``realtalk.websocket_frames``), checked against ``websockets``.

``websockets``' own serializer builds the masked client frames fed to ``FrameReader`` and its own
parser reads what ``encode_frame`` writes, so the two codecs are compared, not one with itself.
Frames ``websockets`` refuses to build (reserved bits, bad opcodes, unmasked client frames...) are
built by hand with an independent, pure-Python mask.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from realtalk.websocket_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_payload,
    encode_frame,
    parse_close,
)

MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, data: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame, serialized by ``websockets`` (random mask, minimal length form)."""
    return Frame(Opcode(opcode), data, fin=fin).serialize(mask=True, extensions=[])


def raw_frame(first_byte: int, data: bytes, *, masked: bool = True, length_form: int | None = None) -> bytes:
    """A frame built by hand: any first byte (FIN, RSV, opcode), optionally unmasked."""
    length = len(data)
    form = (
        length_form
        if length_form is not None
        else (length if length < 126 else 126 if length < 65536 else 127)
    )
    head = bytes((first_byte, (0x80 if masked else 0) | form))
    if form == 126:
        head += struct.pack("!H", length)
    elif form == 127:
        head += struct.pack("!Q", length)
    if not masked:
        return head + data
    return head + MASK + bytes(byte ^ MASK[i % 4] for i, byte in enumerate(data))


def parse_server_frame(data: bytes) -> Frame:
    """``websockets``' client-side parser (unmasked frames) on exactly one whole frame."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("websockets wants more bytes than the frame has")
    assert not reader.buffer, "bytes after the frame"
    return frame


def feed_all(reader: FrameReader, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def assert_frame_error(code: int, reader: FrameReader, *chunks: bytes) -> FrameError:
    with pytest.raises(FrameError) as caught:
        for chunk in chunks:
            reader.feed(chunk)
    assert caught.value.code == code, caught.value
    assert caught.value.reason
    assert str(caught.value) == f"{code} {caught.value.reason}"
    return caught.value


# -- the hand-built frames are real frames -------------------------------------------------------


@pytest.mark.parametrize("length", [0, 5, 125, 126, 65535, 65536])
def test_the_hand_built_frames_parse_in_websockets_server_parser(length: int) -> None:
    data = bytes(i % 251 for i in range(length))
    reader = StreamReader()
    reader.feed_data(raw_frame(0x80 | OP_BINARY, data))
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    assert done.value.value == Frame(Opcode.BINARY, data)


# -- whole messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "length_byte"),
    [(0, 0), (1, 1), (125, 125), (126, 126), (127, 126), (65535, 126), (65536, 127), (200_000, 127)],
)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_one_frame_of_each_length_form(opcode: int, length: int, length_byte: int) -> None:
    data = bytes(i % 251 for i in range(length))
    frame = client_frame(opcode, data)
    assert frame[1] == 0x80 | length_byte  # the 7-bit, 16-bit or 64-bit form is really exercised
    reader = FrameReader(1 << 20)
    out = reader.feed(frame)
    assert out == [(opcode, data)]
    assert type(out[0][1]) is bytes
    assert reader.buffered_bytes == 0


@pytest.mark.parametrize("length", [0, 3, 125, 126, 300])
def test_byte_by_byte(length: int) -> None:
    data = bytes(range(256)) * 2
    frames = [
        client_frame(OP_TEXT, data[:length]),
        client_frame(OP_PING, b"ping!"),
        client_frame(OP_BINARY, data[:length][::-1]),
    ]
    stream = b"".join(frames)
    reader = FrameReader(1000)
    out = []
    for i in range(len(stream)):
        got = reader.feed(stream[i : i + 1])
        # A frame comes out with its last byte, not before.
        ends = {len(b"".join(frames[: k + 1])) - 1 for k in range(len(frames))}
        assert bool(got) == (i in ends), (i, got)
        out.extend(got)
    assert out == [(OP_TEXT, data[:length]), (OP_PING, b"ping!"), (OP_BINARY, data[:length][::-1])]
    assert reader.buffered_bytes == 0


@pytest.mark.parametrize("length", [125, 126, 65535, 65536])
def test_every_split_in_the_header_of_a_long_frame(length: int) -> None:
    data = bytes(i % 13 for i in range(length))
    frame = client_frame(OP_BINARY, data)
    for cut in range(16):
        reader = FrameReader(1 << 17)
        assert reader.feed(frame[:cut]) == []
        assert reader.buffered_bytes == cut
        assert reader.feed(frame[cut:]) == [(OP_BINARY, data)]
        assert reader.buffered_bytes == 0


def test_a_64_bit_length_frame_in_chunks() -> None:
    data = bytes(i % 199 for i in range(70_001))
    stream = client_frame(OP_BINARY, data) + client_frame(OP_TEXT, b"after")
    reader = FrameReader(1 << 17)
    out = feed_all(reader, [stream[i : i + 1009] for i in range(0, len(stream), 1009)])
    assert out == [(OP_BINARY, data), (OP_TEXT, b"after")]


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    stream = (
        client_frame(OP_TEXT, b"one")
        + client_frame(OP_PONG, b"")
        + client_frame(OP_BINARY, b"\x00\x01")
        + client_frame(OP_CLOSE, b"\x03\xe8bye")
    )
    assert FrameReader(100).feed(stream) == [
        (OP_TEXT, b"one"),
        (OP_PONG, b""),
        (OP_BINARY, b"\x00\x01"),
        (OP_CLOSE, b"\x03\xe8bye"),
    ]


def test_a_partial_frame_is_kept_for_the_next_feed() -> None:
    reader = FrameReader(100)
    first = client_frame(OP_TEXT, b"hello")
    second = client_frame(OP_TEXT, b"world")
    assert reader.feed(first + second[:4]) == [(OP_TEXT, b"hello")]
    assert reader.buffered_bytes == 4
    assert reader.feed(b"") == []
    assert reader.feed(second[4:]) == [(OP_TEXT, b"world")]
    assert reader.buffered_bytes == 0


# -- fragmented messages ---------------------------------------------------------------------------


def test_fragments_are_reassembled_with_control_frames_between_them() -> None:
    stream = b"".join(
        [
            client_frame(OP_TEXT, b"Hel", fin=False),
            client_frame(OP_PING, b"p1"),
            client_frame(OP_CONT, b"lo ", fin=False),
            client_frame(OP_PONG, b"p2"),
            client_frame(OP_CONT, b"", fin=False),
            client_frame(OP_CONT, b"world"),
            client_frame(OP_BINARY, b"next"),
        ]
    )
    assert FrameReader(100).feed(stream) == [
        (OP_PING, b"p1"),
        (OP_PONG, b"p2"),
        (OP_TEXT, b"Hello world"),
        (OP_BINARY, b"next"),
    ]


def test_a_close_frame_between_fragments_comes_out_at_once() -> None:
    reader = FrameReader(100)
    assert reader.feed(client_frame(OP_BINARY, b"ab", fin=False)) == []
    assert reader.buffered_bytes == 2
    assert reader.feed(client_frame(OP_CLOSE, b"\x03\xe8")) == [(OP_CLOSE, b"\x03\xe8")]
    assert reader.feed(client_frame(OP_CONT, b"cd")) == [(OP_BINARY, b"abcd")]
    assert reader.buffered_bytes == 0


def test_a_message_may_start_with_an_empty_fragment() -> None:
    stream = client_frame(OP_TEXT, b"", fin=False) + client_frame(OP_CONT, b"x")
    assert FrameReader(10).feed(stream) == [(OP_TEXT, b"x")]
    stream = client_frame(OP_BINARY, b"", fin=False) + client_frame(OP_CONT, b"")
    assert FrameReader(10).feed(stream) == [(OP_BINARY, b"")]


def test_a_fragmented_message_of_exactly_the_limit_is_accepted() -> None:
    stream = client_frame(OP_TEXT, b"a" * 60, fin=False) + client_frame(OP_CONT, b"b" * 40)
    assert FrameReader(100).feed(stream) == [(OP_TEXT, b"a" * 60 + b"b" * 40)]


@st.composite
def client_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Messages (some fragmented, with pings/pongs between fragments) and control frames."""
    frames: list[bytes] = []
    expected: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            opcode = draw(st.sampled_from([OP_PING, OP_PONG]))
            data = draw(st.binary(max_size=125))
            frames.append(client_frame(opcode, data))
            expected.append((opcode, data))
            continue
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        data = draw(st.binary(max_size=400))
        pieces = split_at(data, draw(st.lists(st.integers(0, len(data)), max_size=3)))
        for i, piece in enumerate(pieces):
            frames.append(client_frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1))
            if i < len(pieces) - 1 and draw(st.booleans()):
                ping = draw(st.binary(max_size=20))
                frames.append(client_frame(OP_PING, ping))
                expected.append((OP_PING, ping))
        expected.append((opcode, data))
    return b"".join(frames), expected


@settings(max_examples=200, deadline=None)
@given(case=client_streams(), data=st.data())
def test_any_split_gives_the_same_messages(
    case: tuple[bytes, list[tuple[int, bytes]]], data: st.DataObject
) -> None:
    stream, expected = case
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    reader = FrameReader(400)
    out = feed_all(reader, split_at(stream, cuts))
    assert out == expected
    assert all(type(payload) is bytes for _, payload in out)
    assert reader.buffered_bytes == 0


@settings(max_examples=50, deadline=None)
@given(case=client_streams())
def test_byte_by_byte_gives_the_same_messages(case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    stream, expected = case
    reader = FrameReader(400)
    assert feed_all(reader, [stream[i : i + 1] for i in range(len(stream))]) == expected
    assert reader.buffered_bytes == 0


# -- protocol errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_an_unmasked_frame_is_1002(opcode: int) -> None:
    frame = Frame(Opcode(opcode), b"hi").serialize(mask=False, extensions=[])
    assert frame[1] & 0x80 == 0
    error = assert_frame_error(1002, FrameReader(100), frame)
    assert "mask" in error.reason


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_reserved_bits_are_1002(rsv: int) -> None:
    assert_frame_error(1002, FrameReader(100), raw_frame(0x80 | rsv | OP_TEXT, b"hi"))


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_an_unknown_opcode_is_1002(opcode: int) -> None:
    error = assert_frame_error(1002, FrameReader(100), raw_frame(0x80 | opcode, b"hi"))
    assert str(opcode) in error.reason


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_fragmented_control_frame_is_1002(opcode: int) -> None:
    assert_frame_error(1002, FrameReader(100), raw_frame(opcode, b"\x03\xe8"))  # FIN clear


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_control_frame_over_125_bytes_is_1002(opcode: int) -> None:
    data = b"\x03\xe8" + b"x" * 124  # 126 bytes: the 16-bit length form
    assert_frame_error(1002, FrameReader(1000), raw_frame(0x80 | opcode, data))
    # Refused from its header alone: the payload is never waited for.
    assert_frame_error(1002, FrameReader(1000), raw_frame(0x80 | opcode, data)[:4])


def test_a_control_frame_of_125_bytes_is_fine() -> None:
    assert FrameReader(10).feed(client_frame(OP_PING, b"x" * 125)) == [(OP_PING, b"x" * 125)]


@pytest.mark.parametrize("fin", [True, False])
def test_a_continuation_with_nothing_to_continue_is_1002(fin: bool) -> None:
    assert_frame_error(1002, FrameReader(100), client_frame(OP_CONT, b"x", fin=fin))


def test_a_continuation_after_a_finished_message_is_1002() -> None:
    reader = FrameReader(100)
    assert reader.feed(client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_CONT, b"b")) == [
        (OP_TEXT, b"ab")
    ]
    assert_frame_error(1002, reader, client_frame(OP_CONT, b"c"))


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second_fin", [True, False])
def test_a_new_message_inside_a_fragmented_one_is_1002(first: int, second: int, second_fin: bool) -> None:
    reader = FrameReader(100)
    assert reader.feed(client_frame(first, b"abc", fin=False)) == []
    error = assert_frame_error(1002, reader, client_frame(second, b"def", fin=second_fin))
    assert "message" in error.reason


def test_a_new_message_inside_a_fragmented_one_is_1002_even_when_together_they_exceed_the_limit() -> None:
    # Each message is under the limit: the fault is the protocol's, not the size's.
    reader = FrameReader(100)
    assert reader.feed(client_frame(OP_TEXT, b"a" * 60, fin=False)) == []
    assert_frame_error(1002, reader, client_frame(OP_TEXT, b"b" * 60))


@pytest.mark.parametrize("length", [101, 126, 65536])
def test_a_frame_over_the_limit_is_1009(length: int) -> None:
    frame = client_frame(OP_BINARY, b"z" * length)
    error = assert_frame_error(1009, FrameReader(100), frame)
    assert "100" in error.reason
    assert FrameReader(length).feed(frame) == [(OP_BINARY, b"z" * length)]


def test_a_frame_over_the_limit_is_refused_from_its_header() -> None:
    header = struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, 1 << 62)
    assert_frame_error(1009, FrameReader(1 << 20), header)  # no mask key, no payload yet
    header16 = struct.pack("!BBH", 0x80 | OP_TEXT, 0x80 | 126, 1000)
    assert_frame_error(1009, FrameReader(999), header16)


def test_a_fragmented_message_over_the_limit_is_1009() -> None:
    reader = FrameReader(100)
    assert reader.feed(client_frame(OP_TEXT, b"a" * 60, fin=False)) == []
    assert reader.feed(client_frame(OP_CONT, b"b" * 30, fin=False)) == []
    assert reader.buffered_bytes == 90
    assert_frame_error(1009, reader, client_frame(OP_CONT, b"c" * 11))


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (raw_frame(0x80 | OP_TEXT, b"hello", masked=False), 1002),
        (raw_frame(0xC0 | OP_TEXT, b"hello"), 1002),
        (raw_frame(0x80 | 0x3, b"hello"), 1002),
        (raw_frame(OP_PING, b"hello"), 1002),
        (raw_frame(0x80 | OP_PING, b"h" * 126), 1002),
        (raw_frame(OP_CONT, b"hello"), 1002),
        (raw_frame(OP_TEXT, b"he") + raw_frame(0x80 | OP_BINARY, b"llo"), 1002),
        (raw_frame(0x80 | OP_TEXT, b"h" * 300), 1009),
        (raw_frame(OP_TEXT, b"h" * 200) + raw_frame(0x80 | OP_CONT, b"h" * 100), 1009),
    ],
)
def test_errors_fed_byte_by_byte(stream: bytes, code: int) -> None:
    reader = FrameReader(256)
    assert_frame_error(code, reader, *[stream[i : i + 1] for i in range(len(stream))])


def test_messages_before_an_error_in_the_same_feed_are_not_returned_twice() -> None:
    reader = FrameReader(100)
    good = client_frame(OP_TEXT, b"ok")
    assert reader.feed(good) == [(OP_TEXT, b"ok")]
    assert_frame_error(1002, reader, raw_frame(0x80 | OP_TEXT, b"no", masked=False))


# -- encode_frame ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"), [(0, 2), (1, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70_000, 10)]
)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_encode_frame_is_parsed_back_by_websockets(opcode: int, length: int, header: int) -> None:
    data = bytes(i % 253 for i in range(length))
    encoded = encode_frame(opcode, data)
    assert len(encoded) == header + length
    assert encoded[0] == 0x80 | opcode  # final, no reserved bit
    assert encoded[1] & 0x80 == 0  # a server never masks
    assert parse_server_frame(encoded) == Frame(Opcode(opcode), data, fin=True)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
@pytest.mark.parametrize("length", [0, 2, 125])
def test_encode_frame_for_control_frames(opcode: int, length: int) -> None:
    data = b"\x03\xe8" + b"r" * (length - 2) if length else b""
    encoded = encode_frame(opcode, data)
    assert encoded == bytes((0x80 | opcode, length)) + data
    assert parse_server_frame(encoded) == Frame(Opcode(opcode), data)


def test_encode_frame_matches_websockets_serializer() -> None:
    for length in (0, 125, 126, 65535, 65536):
        data = b"\xab" * length
        expected = Frame(Opcode.BINARY, data).serialize(mask=False, extensions=[])
        assert encode_frame(OP_BINARY, data) == expected


# -- close payloads --------------------------------------------------------------------------------


def test_close_payload_short_reasons() -> None:
    assert close_payload(1000, "") == b"\x03\xe8"
    assert close_payload(4002, "bye") == b"\x0f\xa2bye"
    assert close_payload(1011, "é") == b"\x03\xf3\xc3\xa9"


def test_close_payload_cuts_a_long_ascii_reason_to_123_bytes() -> None:
    reason = "".join(chr(ord("a") + i % 26) for i in range(300))
    payload = close_payload(1008, reason)
    assert len(payload) == 125
    assert payload == b"\x03\xf0" + reason[:123].encode()
    assert parse_server_frame(encode_frame(OP_CLOSE, payload)).data == payload  # a valid control frame


@pytest.mark.parametrize("char", ["é", "€", "😀"])  # 2, 3 and 4 bytes
@pytest.mark.parametrize("prefix", range(4))
def test_close_payload_never_splits_a_character(char: str, prefix: int) -> None:
    reason = "a" * prefix + char * 100
    payload = close_payload(1001, reason)
    width = len(char.encode())
    kept = (123 - prefix) // width
    assert payload == b"\x03\xe9" + ("a" * prefix + char * kept).encode()
    assert len(payload) <= 125
    assert len(payload) > 125 - width  # as many whole characters as fit
    assert Close.parse(payload) == Close(1001, "a" * prefix + char * kept)


def test_close_payload_keeps_exactly_123_bytes_that_end_on_a_character() -> None:
    reason = "a" * 121 + "é" + "tail"
    assert close_payload(1000, reason) == b"\x03\xe8" + ("a" * 121 + "é").encode()


@settings(max_examples=300, deadline=None)
@given(reason=st.text(max_size=200), code=st.sampled_from([1000, 1001, 1008, 1011, 3000, 4999]))
def test_close_payload_is_the_longest_prefix_that_fits(reason: str, code: int) -> None:
    payload = close_payload(code, reason)
    assert len(payload) <= 125
    kept = payload[2:].decode("utf-8")  # strict: never a split character
    assert reason.startswith(kept)
    if kept != reason:
        assert len(payload) - 2 + len(reason[len(kept)].encode()) > 123
    assert parse_close(payload) == (code, kept)
    assert Close.parse(payload) == Close(code, kept)


# -- parse_close -----------------------------------------------------------------------------------


def test_parse_close_of_an_empty_payload_is_1005() -> None:
    assert parse_close(b"") == (1005, "")


def test_parse_close_of_one_byte_is_1002() -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(b"\x03")
    assert caught.value.code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 3999, 4000, 4999])
def test_parse_close_of_valid_codes(code: int) -> None:
    assert parse_close(struct.pack("!H", code)) == (code, "")
    assert parse_close(struct.pack("!H", code) + "héllo 😀".encode()) == (code, "héllo 😀")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_parse_close_of_invalid_codes_is_1002(code: int) -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(struct.pack("!H", code) + b"reason")
    assert caught.value.code == 1002
    assert str(code) in caught.value.reason


def test_parse_close_accepts_exactly_the_codes_websockets_accepts() -> None:
    for code in range(1 << 16):
        payload = struct.pack("!H", code)
        try:
            Close.parse(payload)
        except ProtocolError:
            with pytest.raises(FrameError):
                parse_close(payload)
        else:
            assert parse_close(payload) == (code, ""), code


@pytest.mark.parametrize(
    "reason", [b"\xff", b"ok\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]
)
def test_parse_close_of_a_reason_that_is_not_utf8_is_1007(reason: bytes) -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(b"\x03\xe8" + reason)
    assert caught.value.code == 1007


def test_frame_error_carries_its_code_and_reason() -> None:
    error = FrameError(1009, "too big")
    assert (error.code, error.reason, str(error)) == (1009, "too big", "1009 too big")
    assert isinstance(error, Exception)
