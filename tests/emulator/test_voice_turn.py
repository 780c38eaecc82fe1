"""A spoken turn end to end: real audio in, VAD, commit, transcription, a spoken reply (§2.5 B)."""

from __future__ import annotations

import base64

import pytest

from realtalk.audio.g711 import G711_SAMPLE_RATE_HZ, ulaw_encode
from realtalk.audio.pcm import silence
from realtalk.audio.resample import resample

from .conftest import MANIFEST, fixture_pcm

TOLERANCE_MS = 100

TURN_ORDER = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]
DONE_ORDER = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def _without_transcription(types: list[str]) -> list[str]:
    return [t for t in types if not t.startswith("conversation.item.input_audio_transcription")]


async def test_a_committed_speech_fixture_gives_vad_events_a_transcript_and_a_spoken_reply(
    emulator, session, speech_engines
) -> None:
    truth = MANIFEST["question"]
    async with emulator(engines=speech_engines) as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
                },
            }
        )
        await stream.until("session.updated")
        start = len(stream.events)
        await stream.append_audio(fixture_pcm("question"), chunk_ms=40)
        done = await stream.until("response.done")
        types = _without_transcription(stream.types(start))
        assert types[: len(TURN_ORDER)] == TURN_ORDER
        assert types[-len(DONE_ORDER) :] == DONE_ORDER
        middle = set(types[len(TURN_ORDER) : -len(DONE_ORDER)])
        assert middle == {"response.output_audio.delta", "response.output_audio_transcript.delta"}

        started, stopped, committed = (stream.events[start + i] for i in range(3))
        assert abs(started["audio_start_ms"] - (truth["speech_start_ms"] - 300)) <= TOLERANCE_MS
        assert abs(stopped["audio_end_ms"] - truth["speech_end_ms"]) <= TOLERANCE_MS
        user_item = started["item_id"]
        assert stopped["item_id"] == committed["item_id"] == user_item
        added = stream.events[start + 3]["item"]
        assert added == {
            "id": user_item,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }

        completed = next(
            e for e in stream.events if e["type"] == "conversation.item.input_audio_transcription.completed"
        )
        assert completed["item_id"] == user_item
        assert completed["transcript"] == truth["text"]
        assert (
            completed["usage"]["type"] == "tokens"
            and completed["usage"]["input_token_details"]["audio_tokens"] > 0
        )

        response = done["response"]
        assert response["status"] == "completed"
        transcript = response["output"][0]["content"][0]
        assert transcript == {"type": "output_audio", "transcript": f"You said: {truth['text']}"}
        deltas = [e for e in stream.events if e["type"] == "response.output_audio.delta"]
        sizes = [len(base64.b64decode(e["delta"])) for e in deltas]
        assert all(size == 4800 for size in sizes[:-1])  # 100 ms of 24 kHz PCM16 per delta
        audio_ms = sum(sizes) // 48
        usage = response["usage"]
        assert usage["output_token_details"]["audio_tokens"] == pytest.approx(audio_ms / 50, abs=1)
        assert usage["input_token_details"]["audio_tokens"] == pytest.approx(
            (stopped["audio_end_ms"] - started["audio_start_ms"]) / 100, abs=1
        )


async def test_without_a_recogniser_the_echo_reports_how_much_audio_it_heard(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                },
            }
        )
        await stream.until("session.updated")
        await stream.append_audio(fixture_pcm("stop"))
        failed = await stream.until("conversation.item.input_audio_transcription.failed")
        assert failed["error"]["type"] == "transcription_error" and failed["error"]["code"]
        done = await stream.until("response.done")
        spoken = done["response"]["output"][0]["content"][0]["transcript"]
        assert spoken.startswith("I heard ") and spoken.endswith(" seconds of audio.")


async def test_silence_gives_no_vad_events(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.append_audio(fixture_pcm("silence"))
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")
        assert stream.types()[1:] == ["input_audio_buffer.cleared"]


async def test_create_response_off_commits_the_turn_but_waits_for_response_create(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        detection = {"type": "server_vad", "create_response": False}
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}},
            }
        )
        await stream.until("session.updated")
        await stream.append_audio(fixture_pcm("stop") + silence(500))
        await stream.until("conversation.item.done")
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")
        assert "response.created" not in stream.types()
        await stream.send({"type": "response.create"})
        assert (await stream.until("response.done"))["response"]["status"] == "completed"


async def test_g711_input_is_decoded_for_the_vad_and_g711_output_is_streamed(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        # Telephone-band audio has weaker consonants: bridge the gaps between words.
                        "input": {
                            "format": {"type": "audio/pcmu"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        },
                        "output": {"format": {"type": "audio/pcmu"}},
                    },
                },
            }
        )
        assert (await stream.until("session.updated"))["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcmu"
        }
        ulaw = ulaw_encode(resample(fixture_pcm("question"), 24_000, G711_SAMPLE_RATE_HZ))
        await stream.append_audio(ulaw, bytes_per_ms=8)
        started = await stream.until("input_audio_buffer.speech_started")
        stopped = await stream.until("input_audio_buffer.speech_stopped")
        assert (
            abs(started["audio_start_ms"] - (MANIFEST["question"]["speech_start_ms"] - 300)) <= TOLERANCE_MS
        )
        assert abs(stopped["audio_end_ms"] - MANIFEST["question"]["speech_end_ms"]) <= TOLERANCE_MS
        delta = await stream.until("response.output_audio.delta")
        assert len(base64.b64decode(delta["delta"])) == 800  # 100 ms of 8 kHz G.711
        done = await stream.until("response.done")
        assert done["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        retrieved_id = done["response"]["output"][0]["id"]
        await stream.send({"type": "conversation.item.retrieve", "item_id": stopped["item_id"]})
        user = (await stream.until("conversation.item.retrieved"))["item"]
        user_audio = base64.b64decode(user["content"][0]["audio"])
        assert len(user_audio) == (stopped["audio_end_ms"] - started["audio_start_ms"]) * 8
        assert retrieved_id != user["id"]


async def test_semantic_vad_is_approximated_with_a_silence_wait(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        detection = {"type": "semantic_vad", "eagerness": "high"}
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}},
            }
        )
        updated = (await stream.until("session.updated"))["session"]["audio"]["input"]["turn_detection"]
        assert updated == {
            "type": "semantic_vad",
            "eagerness": "high",
            "create_response": True,
            "interrupt_response": True,
        }
        await stream.append_audio(fixture_pcm("stop"))
        stopped = await stream.until("input_audio_buffer.speech_stopped")
        assert abs(stopped["audio_end_ms"] - MANIFEST["stop"]["speech_end_ms"]) <= TOLERANCE_MS
        await stream.until("response.done")


async def test_the_idle_timeout_commits_an_empty_turn_and_prompts_the_user(emulator, session) -> None:
    async with emulator(pace=200.0) as emu, session(emu) as stream:
        detection = {"type": "server_vad", "idle_timeout_ms": 5000}
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}},
            }
        )
        await stream.until("session.updated")
        await stream.send({"type": "response.create"})
        await stream.until("response.done")
        triggered = await stream.until("input_audio_buffer.timeout_triggered")
        committed = await stream.until("input_audio_buffer.committed")
        assert committed["item_id"] == triggered["item_id"]
        await stream.until("response.done")
