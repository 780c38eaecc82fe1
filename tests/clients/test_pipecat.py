"""pipecat's ``AzureRealtimeLLMService``, configured for Azure, through the gateway, headless.

The service is the one pipecat documents for Azure OpenAI: ``base_url`` the resource's
``/openai/v1/realtime``, the deployment as the settings' ``model`` (pipecat appends ``?model=``),
the key sent in an ``api-key`` header. It runs in a minimal pipeline (the service, then a frame
collector) driven by an ``LLMContextFrame`` holding a user message: no transport, no audio device.
pipecat sends its settings on ``session.created`` (with the no-ops ``model`` and ``tools: []``) and
``output_modalities`` on every ``response.create``; it treats any ``error`` event as fatal.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from realtalk.gateway import Gateway

from .conftest import API_KEY, DEPLOYMENT, OPEN_FORMATS, TURN_TIMEOUT_S, session_updates

with warnings.catch_warnings():
    # pipecat imports the standard library's audioop, deprecated in 3.11 (its warning is not ours).
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import (
        ErrorFrame,
        Frame,
        LLMContextFrame,
        LLMFullResponseEndFrame,
        TTSAudioRawFrame,
        TTSTextFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.azure.realtime.llm import AzureRealtimeLLMService
    from pipecat.services.openai.realtime import events
    from pipecat.workers.runner import WorkerRunner

VOICE = "cedar"
SILENCE_MS = 700


class Collector(FrameProcessor):
    """Keeps every frame that passes, says when a response ended or an error came. One sits after
    the service (its output), one before it (errors travel upstream, towards the transport)."""

    def __init__(self, finished: asyncio.Event) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.finished = finished

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        if isinstance(frame, LLMFullResponseEndFrame | ErrorFrame):
            self.finished.set()
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]


def azure_service(gw: Gateway) -> AzureRealtimeLLMService:
    return AzureRealtimeLLMService(
        api_key=API_KEY,
        base_url=f"{gw.websocket_base_url}/realtime",
        settings=AzureRealtimeLLMService.Settings(
            model=DEPLOYMENT,
            session_properties=events.SessionProperties(
                audio=events.AudioConfiguration(
                    input=events.AudioInput(
                        turn_detection=events.TurnDetection(silence_duration_ms=SILENCE_MS)
                    ),
                    output=events.AudioOutput(voice=VOICE),
                )
            ),
        ),
    )


@asynccontextmanager
async def running_pipeline(
    gw: Gateway, messages: Sequence[dict[str, Any]]
) -> AsyncIterator[tuple[Collector, Collector]]:
    """The Azure service between two collectors, given ``messages`` as its context:
    (what came upstream, what came downstream)."""
    finished = asyncio.Event()
    upstream, downstream = Collector(finished), Collector(finished)
    worker = PipelineWorker(
        Pipeline([upstream, azure_service(gw), downstream]), enable_rtvi=False, idle_timeout_secs=None
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        await worker.queue_frames([LLMContextFrame(LLMContext(messages=list(messages)))])
        yield upstream, downstream
    finally:
        await worker.cancel()
        await asyncio.wait_for(running, TURN_TIMEOUT_S)


async def _a_turn(
    stack_args: dict[str, Any], stack: Any
) -> tuple[Collector, Collector, list[dict[str, Any]]]:
    async with stack(**stack_args) as (emu, gw):
        async with running_pipeline(gw, [{"role": "user", "content": "Hello there!"}]) as (up, down):
            await asyncio.wait_for(up.finished.wait(), TURN_TIMEOUT_S)
        return up, down, session_updates(emu)


def _assert_a_whole_turn(upstream: Collector, collector: Collector, updates: list[dict[str, Any]]) -> None:
    errors = [str(frame.error) for frame in upstream.of(ErrorFrame) + collector.of(ErrorFrame)]
    assert errors == []
    # Its session.update was accepted and applied upstream, without the no-ops model and tools: [].
    client_update = updates[1]["session"]  # the first is the gateway's profile
    assert client_update["audio"]["output"]["voice"] == VOICE
    assert client_update["audio"]["input"]["turn_detection"]["silence_duration_ms"] == SILENCE_MS
    assert "model" not in client_update and "tools" not in client_update
    # The reply as pipecat reports it: audio frames and the transcript as text frames.
    assert collector.of(LLMFullResponseEndFrame)
    audio = b"".join(frame.audio for frame in collector.of(TTSAudioRawFrame))
    assert len(audio) > 24_000
    assert {frame.sample_rate for frame in collector.of(TTSAudioRawFrame)} == {24_000}
    assert "".join(frame.text for frame in collector.of(TTSTextFrame)).strip()


async def test_pipecat_azure_service_runs_a_turn_where_the_profile_opens_output_modalities(stack) -> None:
    _assert_a_whole_turn(*await _a_turn({"client_adjustable": OPEN_FORMATS}, stack))


async def test_pipecat_azure_service_runs_a_turn_with_the_default_profile(stack) -> None:
    _assert_a_whole_turn(*await _a_turn({}, stack))
