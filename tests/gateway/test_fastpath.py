"""The compiled fast path (fastpath.pyx) against the Python it stands in for (framing.py).

It may only ever take a frame that Python's checks take too, with the same result; everything else it
leaves to Python. Under CI the module must have been built (a skip is a failure there).
"""

from __future__ import annotations

import base64
import itertools
import json
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.emulator.events import audio_delta
from realtalk.gateway import framing


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    try:
        from realtalk.gateway import fastpath
    except ImportError:
        pytest.skip("the compiled fast path was not built: `pip install -e .` needs Cython and a C compiler")
    return fastpath


def test_the_compiled_fast_path_is_built_and_the_gateway_uses_it(compiled: ModuleType) -> None:
    from realtalk.gateway.relay import COMPILED_FAST_PATH

    assert COMPILED_FAST_PATH


AUDIO = base64.b64encode(bytes(range(256)) * 3 + b"\x01\x02").decode()
APPEND_PREFIXES = [
    '{"type":"input_audio_buffer.append","audio":"',
    '{"type": "input_audio_buffer.append", "audio": "',
    '{"type":"input_audio_buffer.appendx","audio":"',
    '{"type":"input_audio_buffer.commit","audio":"',
    ' {"type":"input_audio_buffer.append","audio":"',
]
APPEND_TAILS = [
    '"}',
    '","event_id":"e1"}',
    '", "event_id": "e_2.x:y-z"}',
    '", "event_id":"e3"}',
    '","event_id": "e4"}',
    '","event_id":""}',
    '","event_id":"' + "a" * 128 + '"}',
    '","event_id":"' + "a" * 129 + '"}',
    '","event_id":"a b"}',
    '","event_id":"a\\"b"}',
    '","event_id":1}',
    '","type":"session.update"}',
    '"} ',
    '"}}',
    '"',
    "",
    '","audio":"AAAA"}',
    '","event_id":"e1","session":{}}',
]


@pytest.mark.parametrize("prefix", APPEND_PREFIXES)
@pytest.mark.parametrize("tail", APPEND_TAILS)
@pytest.mark.parametrize("audio", ["", "AAAA", "AAA=", "AA==", "A===", "====", "AAA", "A=AA", "AA-_", AUDIO])
def test_the_append_check_agrees_with_python_on_every_shape(
    compiled: ModuleType, prefix: str, tail: str, audio: str
) -> None:
    data = (prefix + audio + tail).encode()
    assert compiled.append_audio_bytes(data) == framing.append_audio_bytes(data)


@given(
    st.sampled_from(APPEND_PREFIXES[:2]),
    st.binary(max_size=40),
    st.text(alphabet='"\\,:{}= aA/+é\x00', max_size=5),
    st.sampled_from(APPEND_TAILS),
    st.integers(min_value=0, max_value=200),
)
def test_the_append_check_agrees_with_python_on_any_frame(
    compiled: ModuleType, prefix: str, audio: bytes, noise: str, tail: str, cut: int
) -> None:
    data = (prefix + base64.b64encode(audio).decode() + noise + tail).encode()
    for frame in (data, data[:cut], data[: len(data) - cut]):
        assert compiled.append_audio_bytes(frame) == framing.append_audio_bytes(frame)


def delta_frame(**fields: object) -> bytes:
    event = {"type": "response.output_audio.delta", **fields}
    return json.dumps(event, separators=(",", ":")).encode()


def test_the_delta_check_takes_the_documented_shape_exactly_as_python(compiled: ModuleType) -> None:
    for audio in (AUDIO, "", "AA==", "AAA=", "AAAA"):
        sent = json.dumps(audio_delta("resp_A", "item_B", 3, audio), separators=(",", ":")).encode()
        assert compiled.match_audio_delta(sent) == framing.match_audio_delta(sent) is not None
    no_event_id = delta_frame(response_id="r", item_id="i", output_index=0, content_index=0, delta="AAAA")
    assert compiled.match_audio_delta(no_event_id) == ("i", "r", 3)


@pytest.mark.parametrize(
    "data",
    [
        # Other orders and spacing: Python's scanner decides, the compiled check declines.
        json.dumps(
            {"type": "response.output_audio.delta", "item_id": "i", "response_id": "r", "delta": "AA=="}
        ).encode(),
        delta_frame(item_id="i", response_id="r", output_index=0, content_index=0, delta="AAAA"),
        delta_frame(
            event_id="e" * 129, response_id="r", item_id="i", output_index=0, content_index=0, delta="A"
        ),
        # Not plainly a delta: the full parse decides.
        b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,'
        b'"content_index":0,"delta":"AA\\u002BA"}',
        b'{"type":"response.output_audio.delta","response_id":"r","item_id":"\xc3\xa9","output_index":0,'
        b'"content_index":0,"delta":"AAAA"}',
        b'{"type":"response.output_audio.delta","response_id":"","item_id":"i","output_index":0,'
        b'"content_index":0,"delta":"AAAA"}',
        b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":1234567890,'
        b'"content_index":0,"delta":"AAAA"}',
        b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,'
        b'"content_index":0,"delta":"AAAA',
        b'{"type":"response.output_audio.done","response_id":"r","item_id":"i"}',
    ],
)
def test_the_delta_check_declines_what_it_does_not_know_for_sure(compiled: ModuleType, data: bytes) -> None:
    assert compiled.match_audio_delta(data) is None


@given(
    st.text(alphabet='ab_"\\é ', max_size=6),
    st.text(alphabet="cd:-", min_size=0, max_size=130),
    st.integers(min_value=0, max_value=10**10),
    st.binary(max_size=30),
    st.integers(min_value=0, max_value=300),
)
def test_whatever_the_compiled_delta_check_takes_python_takes_the_same(
    compiled: ModuleType, event_id: str, item_id: str, index: int, audio: bytes, cut: int
) -> None:
    head = '{"type":"response.output_audio.delta",' + (f'"event_id":"{event_id}",' if event_id else "")
    text = (
        f'{head}"response_id":"resp_1","item_id":"{item_id}","output_index":{index},"content_index":0,'
        f'"delta":"{base64.b64encode(audio).decode()}"}}'
    )
    for data in (text.encode(), text.encode()[:cut]):
        found = compiled.match_audio_delta(data)
        if found is not None:
            assert found == framing.match_audio_delta(data)


@pytest.mark.parametrize("compiled_on", [True, False])
async def test_a_voice_turn_relays_its_audio_in_the_compiled_path_unless_it_is_off(
    compiled: ModuleType, tmp_path, fast_engines, emulator, client, compiled_on: bool
) -> None:
    from realtalk.gateway import Gateway, create_app

    from .conftest import b64, fixture_pcm, gateway_settings

    pcm = fixture_pcm("question")
    async with emulator() as emu:
        app = create_app(gateway_settings(emu), static_dir=tmp_path, emulator_engines=fast_engines)
        app.state.gateway.compiled_fast_path = compiled_on
        async with Gateway(app) as gw, client(gw) as c:
            await c.until("session.updated")
            chunks = [pcm[offset : offset + 4800] for offset in range(0, len(pcm), 4800)]  # 100 ms
            for chunk in chunks:
                await c.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(chunk)}))
            await c.until("response.done")
            deltas = [e for e in c.events if e["type"] == "response.output_audio.delta"]
            (session,) = gw.state.sessions
            fast = session.fast_path
            if compiled_on:
                assert fast is not None
                assert (fast.appends, fast.deltas) == (len(chunks), len(deltas))
            else:
                assert fast is None
            assert len(deltas) > 10
    # Either way, every append reached the emulator as it was sent.
    assert len(emu.stats.events_received("input_audio_buffer.append")) == len(chunks)


class _Recorder:
    """The session, core, limiter, counters, client and upstream a FastPath talks to, recording."""

    def __init__(self) -> None:
        self.relayed: list[tuple[str, bytes]] = []
        self.appended_bytes: list[int] = []
        self.last_client_s = 0.0
        self.is_close_frame_sent = False

    def send(self, kind: object, data: bytes) -> None:  # the upstream transport
        self.relayed.append(("compiled", data))

    def audio_appended(self, audio_bytes: int, now_s: float) -> None:  # the core
        self.appended_bytes.append(audio_bytes)

    def receive_audio_delta(self, item_id: str, response_id: str, audio_bytes: int, now_s: float) -> bool:
        return True

    def allow(self, now_s: float) -> bool:  # the limiter
        return True

    def append(self, size: int, seconds: float) -> None:  # the counters
        pass

    def delta(self, size: int, seconds: float | None) -> None:
        pass

    def send_text(self, data: bytes) -> None:  # the client
        pass

    def refuse_rate_limited(self) -> None:  # the session
        raise AssertionError("not rate limited here")

    def failed(self, exc: Exception) -> None:
        raise exc

    def upstream_text(self, data: bytes) -> None:
        pass


def masked_frame(payload: bytes, key: bytes) -> bytes:
    from websockets.speedups import apply_mask

    length = len(payload)
    head = bytes([0x81, 0xFE]) + length.to_bytes(2, "big") if length >= 126 else bytes([0x81, 0x80 | length])
    return head + key + apply_mask(payload, key)


@given(st.lists(st.integers(min_value=1, max_value=9000), max_size=8), st.binary(min_size=4, max_size=4))
def test_reads_split_anywhere_lose_and_reorder_nothing(
    compiled: ModuleType, cuts: list[int], key: bytes
) -> None:
    from realtalk.websocket_frames import FrameReader

    messages = [
        json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO}).encode(),
        b'{"type":"input_audio_buffer.commit"}',
        json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO[:400], "event_id": "e1"}).encode(),
        json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO[:-4] + "A==="}).encode(),  # no
        json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO}).encode(),
    ]
    stream = b"".join(masked_frame(m, key) for m in messages)
    recorder = _Recorder()
    fast = compiled.FastPath(recorder, recorder, recorder, recorder, recorder, ui=False, max_bytes=1 << 20)
    fast.set_state(True, False, False)
    fast.set_upstream(recorder)
    reader = FrameReader(1 << 20)  # what embedded_server does around it
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        data = stream[start:end]
        if reader.buffered_bytes == 0:
            data = fast.client_read(data)
        for _opcode, payload in reader.feed(data):
            recorder.relayed.append(("python", payload))
    assert [payload for _, payload in recorder.relayed] == messages
    assert recorder.relayed[1][0] == "python" and recorder.relayed[3][0] == "python"
    assert (
        fast.appends
        == len(recorder.appended_bytes)
        == sum(1 for kind, _ in recorder.relayed if kind == "compiled")
    )
    assert recorder.relayed[0][0] == "compiled"  # the first append, at a frame boundary, always
