from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from realtalk.audio.echo import EchoGate, GateState
from realtalk.audio.pcm import pcm16_to_int16, read_wav, rms_dbfs

BLOCK = 480  # 20 ms at 24 kHz, one device block

Signal = npt.NDArray[np.float64]


def load(fixtures_dir: Path, name: str) -> Signal:
    return pcm16_to_int16(read_wav(fixtures_dir / f"{name}.wav")[0]).astype(np.float64)


def manifest(fixtures_dir: Path) -> dict[str, dict[str, int | None]]:
    data: dict[str, dict[str, int | None]] = json.loads((fixtures_dir / "manifest.json").read_text())
    return data


def active_dbfs(signal: Signal) -> float:
    """Level of the speech only (blocks above -50 dBFS), as a person would call it 'the level'."""
    blocks = signal[: len(signal) // BLOCK * BLOCK].reshape(-1, BLOCK)
    levels = np.array([rms_dbfs(b.astype("<i2")) for b in blocks])
    speech = blocks[levels > -50]
    return float(10 * np.log10(np.mean(np.square(speech)) / 32768.0**2))


def loop_back(reply: Signal, gain_db: float, delay_ms: int) -> Signal:
    delayed = np.concatenate([np.zeros(delay_ms * 24), reply])[: len(reply)]
    return delayed * 10 ** (gain_db / 20)


def pcm(signal: Signal) -> bytes:
    return np.clip(np.round(signal), -32768, 32767).astype("<i2").tobytes()


def run_gate(gate: EchoGate, mic: Signal, played: Signal) -> tuple[list[GateState], bytes]:
    states: list[GateState] = []
    out: list[bytes] = []
    for start in range(0, len(played) // BLOCK * BLOCK, BLOCK):
        out.append(gate.process(pcm(mic[start : start + BLOCK]), pcm(played[start : start + BLOCK])))
        states.append(gate.last_decision.state)
    return states, b"".join(out)


@pytest.mark.parametrize("delay_ms", [0, 50, 150])
@pytest.mark.parametrize("reply_name", ["question", "ticket", "long_turn"])
def test_the_agents_own_reply_looped_back_at_minus_6_db_never_passes(
    fixtures_dir: Path, reply_name: str, delay_ms: int
) -> None:
    reply = load(fixtures_dir, reply_name)
    echo = loop_back(reply, -6.0, delay_ms)
    gate = EchoGate()
    states, out = run_gate(gate, echo, reply)
    echo_blocks = [i for i in range(len(states)) if rms_dbfs(pcm(echo[i * BLOCK : (i + 1) * BLOCK])) > -70]
    assert len(echo_blocks) > 100  # the test really contains echo
    assert [i for i in echo_blocks if states[i] is not GateState.ECHO] == []
    assert gate.muted_samples >= len(echo_blocks) * BLOCK
    assert len(out) == len(states) * BLOCK * 2  # muted, never dropped


@pytest.mark.parametrize("reply_name", ["question", "long_turn"])
def test_a_user_6_db_louder_than_the_reply_passes_within_a_few_blocks_of_speaking(
    fixtures_dir: Path, reply_name: str
) -> None:
    reply = load(fixtures_dir, reply_name)
    user = load(fixtures_dir, "stop")
    user *= 10 ** ((active_dbfs(reply) + 6 - active_dbfs(user)) / 20)
    user_dbfs = active_dbfs(user)
    speech_start_ms = manifest(fixtures_dir)["stop"]["speech_start_ms"]
    speech_end_ms = manifest(fixtures_dir)["stop"]["speech_end_ms"]
    assert speech_start_ms is not None and speech_end_ms is not None
    # Barge in at several moments of the reply: the reply's own loudness there varies.
    for barge_in_ms in range(1_000, 3_500, 250):
        mic = loop_back(reply, -6.0, 50)
        at = barge_in_ms * 24
        mic[at : at + len(user)] += user[: len(mic) - at]
        states, _ = run_gate(EchoGate(), mic, reply)
        first = (at + speech_start_ms * 24) // BLOCK
        last = (at + speech_end_ms * 24) // BLOCK
        speaking = states[first:last]
        assert all(s is GateState.ECHO for s in states[: at // BLOCK] if s is not GateState.IDLE)
        # "stop" opens with 120 ms of quiet fricative and a stop consonant; its vowel is loud by
        # block 6. The gate must be open by block 8 (160 ms) and then pass the user's voice
        # (blocks within 10 dB of its level; the pauses between words may be gated again).
        opened = next(i for i, s in enumerate(speaking) if s is not GateState.ECHO)
        assert opened <= 8, f"barge-in at {barge_in_ms} ms: gate opened only at block {opened}"
        voiced = [
            states[i] is not GateState.ECHO
            for i in range(first + opened, last)
            if rms_dbfs(pcm(user[i * BLOCK - at : (i + 1) * BLOCK - at])) > user_dbfs - 10
        ]
        assert len(voiced) > 20
        assert sum(voiced) / len(voiced) >= 0.95


def test_the_microphone_passes_unchanged_while_the_agent_is_silent(fixtures_dir: Path) -> None:
    user = load(fixtures_dir, "question")
    gate = EchoGate()
    states, out = run_gate(gate, user, np.zeros(len(user)))
    assert set(states) == {GateState.IDLE}
    assert out == pcm(user)[: len(out)]
    assert gate.is_open
    assert gate.last_decision.threshold_dbfs is None


def test_gated_blocks_are_replaced_by_silence_of_the_same_length() -> None:
    gate = EchoGate()
    loud = pcm(np.full(BLOCK, 8_000.0))
    quiet = pcm(np.full(BLOCK, 1_000.0))
    out = gate.process(quiet, loud)
    assert out == bytes(len(quiet))
    assert not gate.is_open
    decision = gate.last_decision
    assert decision.state is GateState.ECHO
    assert decision.threshold_dbfs == pytest.approx(decision.reference_dbfs - 6 + 4)
    assert decision.mic_dbfs == pytest.approx(rms_dbfs(quiet))


def test_the_hold_keeps_the_gate_open_between_a_users_words_then_closes() -> None:
    gate = EchoGate(hold_ms=100)  # 5 blocks
    agent = pcm(np.full(BLOCK, 8_000.0))
    user = pcm(np.full(BLOCK, 16_000.0))
    pause = pcm(np.full(BLOCK, 500.0))
    states: list[GateState] = []
    outputs: list[bytes] = []
    for mic in [user, *[pause] * 6]:
        outputs.append(gate.process(mic, agent))
        states.append(gate.last_decision.state)
    assert states == [GateState.USER, *[GateState.HOLD] * 5, GateState.ECHO]
    assert outputs == [user, *[pause] * 5, bytes(len(pause))]


def test_the_reference_history_covers_echo_that_arrives_after_the_agent_stopped() -> None:
    gate = EchoGate(history_ms=200)  # 10 blocks
    agent = pcm(np.full(BLOCK, 8_000.0))
    echo = pcm(np.full(BLOCK, 4_000.0))
    silent = bytes(2 * BLOCK)
    gate.process(echo, agent)
    tail = [gate.process(echo, silent) == silent for _ in range(9)]
    assert tail == [True] * 9  # 180 ms later the echo is still muted
    assert gate.process(echo, silent) == echo  # past the window the agent counts as silent again
    assert gate.last_decision.state is GateState.IDLE


def test_blocks_from_separate_input_and_output_streams_are_gated_the_same_way() -> None:
    gate = EchoGate()
    agent = pcm(np.full(BLOCK, 8_000.0))
    echo = pcm(np.full(BLOCK, 4_000.0))
    assert gate.process(b"", agent) == b""  # an output-only block: history advances
    assert gate.process(echo, b"") == bytes(len(echo))  # an input-only block: gated on that history
    assert gate.reference_dbfs == pytest.approx(rms_dbfs(agent))
