"""``ClientProtocol``: the sans-I/O client side of a Realtime session.

Inputs are method calls (a text frame arrived, samples were played, the user interrupted, the app
wants a response); outputs are drained: ``messages_to_send()`` gives JSON text frames for the
socket, ``events_received()`` gives ``AppEvent`` objects for the application. Time arrives as
``now_s`` arguments on one client clock; nothing here reads a clock, a socket or the environment.

Decisions made here, so that every front end behaves the same:

* It is the single owner of ``response.create``/``response.cancel`` (§2.2: one active response per
  conversation). A create while a response is requested, running or being cancelled, or while the
  user is speaking, is deferred; deferred creates are folded into one, sent when the conversation
  is idle. Tool outputs for one response are folded into one follow-up create, sent once every
  function call of that response has its output and the response is done (§2.5 D).
* Tool calls (§2.5 D, lessons.md "no dead air", "calls left pending after a barge-in"): a barge-in
  supersedes the calls still running (``ToolCallsCancelled``; their late outputs are dropped and no
  follow-up is created, the user's new turn gets the reply). When the app reports a call as slow
  (``tool_call_slow``), one short filler response is spoken while the conversation is idle:
  in-band, so it is heard, truncated and billed like any reply, with ``tool_choice: "none"`` so it
  cannot call again; the follow-up waits for it like any deferred create.
* Barge-in (§2.5 E): on ``speech_started`` (or ``interrupt()``) the latest assistant audio still
  playing is flushed; once the app reports what was played, ``conversation.item.truncate`` is
  sent with ``audio_end_ms`` from truncation.py and the transcript is cut. ``response.cancel`` is
  sent only when the server will not cancel by itself (``interrupt_response: false``, or a local
  interrupt).
* Usage is priced on every ``response.done``, cancelled ones included (they are billed, §6.2).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, cast, get_type_hints

from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionFailedEvent,
    ConversationItemTruncatedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent,
    RealtimeResponseCreateParamsParam,
    RealtimeSessionCreateRequest,
    ResponseAudioDeltaEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)

from realtalk.errors import LocalProtocolError, RemoteProtocolError, ServerError

from . import events as wire
from .app_events import (
    AppEvent,
    AudioChunk,
    AudioCut,
    FlushPlayback,
    LatencyMeasured,
    ProtocolViolation,
    RawServerEvent,
    ResponseFinished,
    ResponseStarted,
    ServerErrorEvent,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolCallsCancelled,
    TranscriptUpdated,
)
from .conversation import Conversation, ResponseState, TranscriptLine
from .cost import CostTracker, Prices, TurnCost, Usage, prices_for
from .events import ServerEvent, UnknownServerEvent
from .latency import TurnLatency
from .session_config import AUDIO_FORMATS, AgentProfile, AudioFormatSpec, audio_format_from_wire
from .truncation import truncate_audio_end_ms

__all__ = ["ClientProtocol"]

logger = logging.getLogger(__name__)

_RESPONSE_CREATE_FIELDS: Final = frozenset(get_type_hints(RealtimeResponseCreateParamsParam))
_BUSY: Final = (ResponseState.REQUESTED, ResponseState.ACTIVE, ResponseState.CANCELLING)
DEFAULT_TOOL_FILLER: Final = "One moment, I am checking that."
_MAX_REMEMBERED: Final = 64  # cancelled calls and fillers said: only a handful are ever in flight


def filler_instructions(text: str) -> str:
    """The per-response instructions that make the model say ``text`` and nothing else."""
    return f'Say exactly this, and nothing else: "{text}"'


REPLAY_MAX_CHARS: Final = 16_000
REPLAY_MAX_LINES: Final = 200


@dataclass
class _ToolCall:
    response_id: str
    name: str = ""
    output_submitted: bool = False


class ClientProtocol:
    """The client side of one Realtime session, without I/O. See the module docstring."""

    def __init__(
        self,
        *,
        profile: AgentProfile | None = None,
        prices: Prices | None = None,
        include_raw_events: bool = False,
        max_items: int = 1000,
        latency_window_chunks: int = 4096,
        tool_filler: str | None = DEFAULT_TOOL_FILLER,
        answered_tools: frozenset[str] | None = None,
    ) -> None:
        """Create the protocol; with a ``profile``, ``session.update`` is sent on ``session.created``.

        ``tool_filler`` is what the agent says when a tool call is reported slow (``None``: nothing).
        ``answered_tools`` names the tools whose calls the app answers (``None``: all of them); calls
        of other tools are neither reported nor waited for (a gateway's client answers those).

        ``latency_window_chunks`` bounds how many recent input chunks are kept to map the server's
        ``speech_stopped.audio_end_ms`` to the client clock (a relay serving many sessions keeps fewer).
        """
        self.conversation = Conversation(max_items=max_items)
        """The conversation as received so far (read it; do not feed it directly)."""
        self.costs = CostTracker(prices or prices_for("gpt-realtime-1.5"))
        """Per-turn and running cost totals."""
        self.stale_playback_reports = 0
        """Playback reports dropped because their item is not in this core (a previous connection's)."""
        self._profile = profile
        self._include_raw = include_raw_events
        self._outgoing: deque[str] = deque()
        self._events: deque[AppEvent] = deque()
        self._event_seq = 0
        self._ready = False
        self._session_id: str | None = None
        self._input_format = AUDIO_FORMATS[profile.input_format if profile else "pcm24k"]
        self._output_format = AUDIO_FORMATS[profile.output_format if profile else "pcm24k"]
        self._interrupt_response = profile.interrupt_response if profile else True
        self._server_creates_responses = profile is None or (
            profile.turn_detection is not None and profile.turn_detection.create_response
        )
        # Response ownership: one deferred create (overrides merged), and our in-flight requests by event_id.
        self._pending_create: dict[str, Any] | None = None
        self._user_speaking = False
        self._sent_creates: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tool_calls: dict[str, _ToolCall] = {}
        self._done_responses: OrderedDict[str, None] = OrderedDict()
        self._tool_filler = tool_filler
        self._answered_tools = answered_tools
        self._cancelled_calls: OrderedDict[str, None] = OrderedDict()
        self._fillers_said: OrderedDict[str, None] = OrderedDict()  # by the response that made the calls
        self._filler_creates: OrderedDict[str, None] = OrderedDict()  # event ids of filler creates
        # Barge-in: items the app was told to flush, and responses whose remaining audio is dropped.
        self._flush_pending: set[str] = set()
        self._silenced: OrderedDict[str, None] = OrderedDict()
        # Latency: when each input sample was sent, and the user's turn end on the client clock.
        self._latency = TurnLatency(max_chunks=latency_window_chunks)
        # History to replay into a new server session after a reconnect (see carry_over).
        self._replay: list[TranscriptLine] = []

    def carry_over(self, previous: ClientProtocol) -> None:
        """Continue ``previous`` on a new connection: same costs, its conversation replayed as text.

        A reconnect opens a new server session with an empty conversation (§1.4). What was said is
        replayed as text items right after ``session.created`` (and our ``session.update``): the
        user's lines as ``input_text``, the assistant's as ``output_text`` cut to what was heard.
        Only the most recent lines are replayed, within ``REPLAY_MAX_CHARS`` (about 4,000 tokens,
        well inside the 28,672-token input window), so a long session does not fill the new context.
        """
        self.costs = previous.costs
        # History ``previous`` was itself still to replay (its connection died first) is older.
        lines = [*previous._replay]
        lines.extend(line for line in previous.conversation.transcript_lines() if line.text.strip())
        kept: list[TranscriptLine] = []
        budget = REPLAY_MAX_CHARS
        for line in reversed(lines):
            budget -= len(line.text)
            if budget < 0 or len(kept) >= REPLAY_MAX_LINES:
                break
            kept.append(line)
        self._replay = kept[::-1]

    def _send_replay(self) -> None:
        for line in self._replay:
            text = line.text
            item = wire.user_text_item(text) if line.role == "user" else wire.assistant_text_item(text)
            self._send(wire.conversation_item_create(item, event_id=self._next_event_id()))
        self._replay = []

    # -- outputs ---------------------------------------------------------------------------------

    def messages_to_send(self) -> list[str]:
        """JSON text frames to send, in order (drained)."""
        messages = list(self._outgoing)
        self._outgoing.clear()
        return messages

    def events_received(self) -> list[AppEvent]:
        """Events for the application, in order (drained)."""
        received = list(self._events)
        self._events.clear()
        return received

    @property
    def total_cost_usd(self) -> Decimal:
        """Running cost of the session."""
        return self.costs.total_usd

    @property
    def session_id(self) -> str | None:
        """The server's session id, once ``session.created`` arrived."""
        return self._session_id

    def _send(self, event: Mapping[str, Any]) -> None:
        self._outgoing.append(wire.serialize_client_event(event))

    def _next_event_id(self) -> str:
        self._event_seq += 1
        return f"evt_rt_{self._event_seq}"

    # -- app inputs ------------------------------------------------------------------------------

    def append_audio(self, pcm: bytes, now_s: float) -> None:
        """Send microphone audio (session input format) captured up to ``now_s``."""
        spec = self._input_format
        if len(pcm) % spec.bytes_per_sample:
            raise LocalProtocolError(
                f"{spec.name} audio has {spec.bytes_per_sample} bytes per sample; got {len(pcm)}"
            )
        samples = len(pcm) // spec.bytes_per_sample
        self._send(wire.input_audio_buffer_append(pcm))
        self._latency.audio_sent(samples, spec.sample_rate_hz, now_s)

    def commit_audio(self) -> None:
        """Commit the input buffer as a user turn (manual turns); then call ``create_response()``."""
        self._send(wire.input_audio_buffer_commit(event_id=self._next_event_id()))
        self._latency.committed_manually()

    def clear_audio(self) -> None:
        """Drop the uncommitted input audio."""
        self._send(wire.input_audio_buffer_clear(event_id=self._next_event_id()))

    def send_text(self, text: str) -> None:
        """Add a typed user message and ask for a reply (deferred if the agent is busy)."""
        self._send(wire.conversation_item_create(wire.user_text_item(text), event_id=self._next_event_id()))
        self.create_response()

    def submit_tool_output(self, call_id: str, output: str, *, cost_usd: Decimal = Decimal(0)) -> bool:
        """Answer a ``ToolCallRequested``; the follow-up response is created once all calls are answered.

        ``cost_usd`` is what the call itself cost (a delegated question); it is added to the session's
        total even when the output is dropped. Returns ``False`` when the call was cancelled
        (``ToolCallsCancelled``): its output is stale and nothing is sent.
        """
        if cost_usd:
            self.costs.add_tool_cost(cost_usd)
        if call_id in self._cancelled_calls:
            logger.info("dropped the output of cancelled function call %s", call_id)
            return False
        call = self._tool_calls.get(call_id)
        if call is None:
            raise LocalProtocolError(f"no function call {call_id!r} is waiting for output")
        if call.output_submitted:
            raise LocalProtocolError(f"function call {call_id!r} already has an output")
        call.output_submitted = True
        self._send(
            wire.conversation_item_create(
                wire.function_call_output_item(call_id, output), event_id=self._next_event_id()
            )
        )
        self._follow_up_tools(call.response_id)
        self._flush_pending_create()
        return True

    def tool_call_slow(self, call_id: str) -> bool:
        """Report that ``call_id`` has been running for a while; returns whether a filler was sent.

        One filler per batch of calls, and only into silence: not while the user speaks, a response
        is requested or running (its audio already fills the gap), or a create is waiting.
        """
        call = self._tool_calls.get(call_id)
        if (
            self._tool_filler is None
            or call is None
            or call.output_submitted
            or call.response_id not in self._done_responses
            or call.response_id in self._fillers_said
            or self._user_speaking
            or self._pending_create is not None
            or self.conversation.response_state in _BUSY
        ):
            return False
        self._remember(self._fillers_said, call.response_id)
        event_id = self._next_event_id()
        self._remember(self._filler_creates, event_id)
        filler: RealtimeResponseCreateParamsParam = {
            "instructions": filler_instructions(self._tool_filler),
            "tool_choice": "none",
        }
        self._send(wire.response_create(filler, event_id=event_id))
        self.conversation.response_create_sent()
        return True

    @property
    def pending_tool_calls(self) -> tuple[str, ...]:
        """Call ids of function calls still waiting for their output."""
        return tuple(call_id for call_id, call in self._tool_calls.items() if not call.output_submitted)

    def cancel_tool_calls(self, reason: str) -> tuple[str, ...]:
        """Cancel every call still waiting for output (see ``ToolCallsCancelled``); returns their ids."""
        pending = self.pending_tool_calls
        if not pending:
            return ()
        responses = {self._tool_calls[call_id].response_id for call_id in pending}
        for call_id in [c for c, call in self._tool_calls.items() if call.response_id in responses]:
            del self._tool_calls[call_id]
            self._remember(self._cancelled_calls, call_id)
        for response_id in responses:
            self._done_responses.pop(response_id, None)
        self._events.append(ToolCallsCancelled(pending, reason))
        return pending

    @staticmethod
    def _remember(memory: OrderedDict[str, None], key: str) -> None:
        memory[key] = None
        while len(memory) > _MAX_REMEMBERED:
            memory.popitem(last=False)

    def create_response(self, **overrides: Any) -> None:
        """Ask for a response, with optional per-response overrides (``instructions=...`` etc.).

        Sent now if the conversation is idle, otherwise deferred and folded with other deferred
        requests into one ``response.create``. ``conversation="none"`` (out-of-band) is sent at once.
        """
        unknown = set(overrides) - _RESPONSE_CREATE_FIELDS
        if unknown:
            raise LocalProtocolError(f"response.create does not take {', '.join(sorted(unknown))}")
        if overrides.get("conversation") == "none":
            self._send(
                wire.response_create(
                    cast(RealtimeResponseCreateParamsParam, overrides), event_id=self._next_event_id()
                )
            )
            return
        self._pending_create = {**(self._pending_create or {}), **overrides}
        self._flush_pending_create()

    def cancel_response(self) -> None:
        """Cancel the active response (nothing is sent when none is active); drops a deferred create."""
        self._pending_create = None
        self._cancel_active()

    def interrupt(self) -> None:
        """Local barge-in (a key press, typed text): flush the playing audio, cancel the response and
        any tool call still running."""
        self._pending_create = None
        self._barge_in(cancel=True, reason="interrupted")

    def update_session(self, profile: AgentProfile) -> None:
        """Send a new session configuration."""
        if (
            self._profile is not None
            and profile.voice != self._profile.voice
            and self.conversation.has_assistant_audio
        ):
            # §3.2: the voice cannot change after the first audio output of the session.
            raise LocalProtocolError(
                "the voice cannot change once the model has produced audio in this session"
            )
        self._profile = profile
        self._input_format = AUDIO_FORMATS[profile.input_format]
        self._send_session_update()

    def _send_session_update(self) -> None:
        assert self._profile is not None
        self._send(wire.session_update(self._profile.to_session(), event_id=self._next_event_id()))

    def audio_played(self, item_id: str, samples: int, now_s: float) -> None:
        """Report ``samples`` more of ``item_id`` played at ``now_s`` (from the player, in increments).

        A report for an item this core does not hold is dropped (counted in
        ``stale_playback_reports``): see ``_known``."""
        if not self._known(item_id):
            return
        self.conversation.audio_played(item_id, samples)
        item = self.conversation.item(item_id)
        if samples > 0 and item is not None and item.response_id is not None:
            sample = self._latency.audio_played(item.response_id, now_s)
            if sample is not None:
                self._events.append(
                    LatencyMeasured(
                        sample.response_id, sample.voice_to_voice_ms, sample.first_audio_received_ms
                    )
                )

    def playback_flushed(self, item_id: str, played_samples_total: int) -> None:
        """Report that playback of ``item_id`` stopped after ``played_samples_total`` samples (after a flush).

        Queues ``conversation.item.truncate`` with what was heard, unless nothing was heard or the item
        had already been played to its end, and cuts the transcript to match. A report for an item
        this core does not hold is dropped, as in ``audio_played``.
        """
        if not self._known(item_id):
            return
        self._flush_pending.discard(item_id)
        version = self.conversation.transcript_version
        self.conversation.set_played_samples(item_id, played_samples_total)
        item = self.conversation.item(item_id)
        assert item is not None
        audio_end_ms = truncate_audio_end_ms(
            played_samples=item.audio_played_samples,
            received_samples=item.audio_received_samples,
            sample_rate_hz=item.sample_rate_hz,
            playback_finished=item.playback_finished,
        )
        if audio_end_ms is not None:
            self._send(
                wire.conversation_item_truncate(
                    item_id, audio_end_ms=audio_end_ms, event_id=self._next_event_id()
                )
            )
        if not item.playback_finished:
            self.conversation.cut(item_id)
            self._price_cut(item_id)
        self._emit_transcript_if_changed(version)

    def _price_cut(self, item_id: str) -> None:
        """Price the unheard part of a cut item's response and say so (``AudioCut``)."""
        item = self.conversation.item(item_id)
        if item is None or item.response_id is None or item.audio_received_samples <= 0:
            return
        turn = self.costs.record_playback(
            item.response_id,
            played_samples=item.audio_played_samples,
            received_samples=item.audio_received_samples,
        )
        rate = item.sample_rate_hz
        self._events.append(
            AudioCut(
                item.response_id,
                item_id,
                heard_ms=item.audio_played_samples * 1000 // rate,
                generated_ms=item.audio_received_samples * 1000 // rate,
                turn_cost=turn,
            )
        )

    def _known(self, item_id: str) -> bool:
        # The player reports from its own clock, behind the wire: after a reconnect it still drains
        # audio of the previous connection's items (a new core, new item ids), and an old item may
        # have left the conversation window. Neither can be truncated or billed here any more, so
        # such a report is not a misuse to raise on (it once ended `realtalk talk` after a second
        # reconnect): it is counted and dropped.
        if self.conversation.item(item_id) is not None:
            return True
        self.stale_playback_reports += 1
        return False

    # -- barge-in and response ownership -------------------------------------------------------

    def _barge_in(self, *, cancel: bool, reason: str) -> None:
        # The user's new turn supersedes calls still running: their outputs would answer a question
        # the conversation has moved past, and the follow-up would talk over the user.
        self.cancel_tool_calls(reason)
        target = self.conversation.last_unheard_audio_item()
        if target is not None and target.item_id not in self._flush_pending:
            self._flush_pending.add(target.item_id)
            self._events.append(FlushPlayback(target.item_id))
            if target.response_id is not None:
                self._silence(target.response_id)
        active = self.conversation.active_response
        if active is not None and active.response_id is not None:
            # Audio still in flight for an interrupted response must not reach the speaker.
            self._silence(active.response_id)
        if cancel:
            self._cancel_active()

    def _silence(self, response_id: str) -> None:
        self._silenced[response_id] = None
        while len(self._silenced) > 64:
            self._silenced.popitem(last=False)

    def _cancel_active(self) -> None:
        if self.conversation.response_state in (ResponseState.REQUESTED, ResponseState.ACTIVE):
            self._send(wire.response_cancel(event_id=self._next_event_id()))
            self.conversation.response_cancel_sent()

    def _flush_pending_create(self) -> None:
        if self._pending_create is None or self._user_speaking or self.conversation.response_state in _BUSY:
            return
        overrides, self._pending_create = self._pending_create, None
        event_id = self._next_event_id()
        self._sent_creates[event_id] = overrides
        while len(self._sent_creates) > 16:
            self._sent_creates.popitem(last=False)
        self._send(
            wire.response_create(
                cast(RealtimeResponseCreateParamsParam, overrides) or None, event_id=event_id
            )
        )
        self.conversation.response_create_sent()

    def _follow_up_tools(self, response_id: str) -> None:
        # §2.5 D: the server does not continue after a tool output; one response.create must follow,
        # and only after the response that made the calls is done and every call is answered.
        if response_id not in self._done_responses:
            return
        calls = [call_id for call_id, call in self._tool_calls.items() if call.response_id == response_id]
        if not calls or not all(self._tool_calls[call_id].output_submitted for call_id in calls):
            return
        for call_id in calls:
            del self._tool_calls[call_id]
        self._done_responses.pop(response_id, None)
        self._pending_create = self._pending_create or {}

    # -- server input ----------------------------------------------------------------------------

    def receive_message(self, text: str, now_s: float) -> None:
        """Feed one text frame received from the server at ``now_s``. Never raises for bad frames."""
        try:
            event = wire.parse_server_event(text)
        except RemoteProtocolError as exc:
            logger.warning("%s", exc)
            self._events.append(ProtocolViolation(exc))
            return
        self._receive(event, now_s)

    def receive_event(self, data: Mapping[str, Any], now_s: float) -> None:
        """Feed one server frame that the caller already decoded with ``json.loads`` (a relay that
        inspects frames itself parses them once). Never raises for bad frames."""
        try:
            event = wire.parse_server_data(data)
        except RemoteProtocolError as exc:
            logger.warning("%s", exc)
            self._events.append(ProtocolViolation(exc))
            return
        self._receive(event, now_s)

    def receive_audio_delta(self, item_id: str, response_id: str, audio_bytes: int, now_s: float) -> bool:
        """Count a ``response.output_audio.delta`` of ``audio_bytes`` decoded bytes, without its audio.

        For relays that forward audio frames untouched: the conversation, the truncation bounds and
        the latency timeline are updated exactly as ``receive_message`` would, but nothing is decoded
        and no ``AudioChunk`` is emitted. Returns whether the audio should be heard: ``False`` for
        audio of a response silenced by a barge-in, or of an item flushed or cut.
        """
        samples = audio_bytes // self._output_format.bytes_per_sample
        return self._count_audio(item_id, response_id, samples, now_s)

    @property
    def input_format(self) -> AudioFormatSpec:
        """The session's input audio format (the profile's, then what ``session.updated`` says)."""
        return self._input_format

    def audio_appended(self, audio_bytes: int, now_s: float) -> None:
        """Record that ``audio_bytes`` of input audio (session input format) went to the server at
        ``now_s``, for a relay that forwards ``input_audio_buffer.append`` frames itself (the
        latency timeline maps the server's ``audio_end_ms`` back to this clock)."""
        spec = self._input_format
        self._latency.audio_sent(audio_bytes // spec.bytes_per_sample, spec.sample_rate_hz, now_s)

    def _receive(self, event: ServerEvent | UnknownServerEvent, now_s: float) -> None:
        if self._include_raw:
            self._events.append(RawServerEvent(event))
        version = self.conversation.transcript_version
        try:
            self._handle(event, now_s)
        except RemoteProtocolError as exc:
            self._events.append(ProtocolViolation(exc))
        self._emit_transcript_if_changed(version)

    def _emit_transcript_if_changed(self, version: int) -> None:
        if self.conversation.transcript_version != version:
            self._events.append(TranscriptUpdated(self.conversation.transcript_lines()))

    def _handle(self, event: ServerEvent | UnknownServerEvent, now_s: float) -> None:
        if isinstance(event, ResponseAudioDeltaEvent):
            self._on_audio_delta(event, now_s)  # counted here: the conversation does not decode audio
            return
        if isinstance(event, ConversationItemTruncatedEvent):
            # Truncated by someone else (a gateway's client sends its own truncate): the
            # conversation takes the server's word for what was heard; price what was not.
            cut_before = self.conversation.is_cut(event.item_id)
            self.conversation.apply(event)
            if not cut_before and self.conversation.is_cut(event.item_id):
                self._price_cut(event.item_id)
            return
        self.conversation.apply(event)
        match event:
            case SessionCreatedEvent():
                self._session_id = getattr(event.session, "id", None)
                if self._profile is not None:
                    # §2.5 A: our update replaces the defaults; its formats hold from now on, and the
                    # server's echo in session.updated confirms them.
                    self._send_session_update()
                else:
                    self._apply_session(event.session)
                    self._session_ready(event.session)
                self._send_replay()
            case SessionUpdatedEvent():
                self._apply_session(event.session)
                if not self._ready:
                    self._session_ready(event.session)
            case InputAudioBufferSpeechStartedEvent():
                self._user_speaking = True
                self._events.append(SpeechStarted(event.item_id, event.audio_start_ms))
                self._barge_in(cancel=not self._interrupt_response, reason="barge_in")
            case InputAudioBufferSpeechStoppedEvent():
                self._events.append(SpeechStopped(event.item_id, event.audio_end_ms))
                self._latency.speech_ended(event.audio_end_ms)
                if not self._server_creates_responses:
                    self._user_speaking = False
                    self._flush_pending_create()
            case ResponseCreatedEvent():
                self._on_response_created(event)
            case ResponseFunctionCallArgumentsDoneEvent():
                if self._answered_tools is not None and event.name not in self._answered_tools:
                    return
                if event.response_id in self._silenced:
                    # The user spoke over the response that made this call: it is not run.
                    self._remember(self._cancelled_calls, event.call_id)
                    self._events.append(ToolCallsCancelled((event.call_id,), "barge_in"))
                    return
                self._tool_calls[event.call_id] = _ToolCall(event.response_id, event.name)
                self._events.append(
                    ToolCallRequested(
                        event.call_id, event.name, event.arguments, event.item_id, event.response_id
                    )
                )
            case ResponseDoneEvent():
                self._on_response_done(event)
            case RealtimeErrorEvent():
                self._on_error(event)
            case ConversationItemInputAudioTranscriptionFailedEvent():
                logger.info("input transcription failed for %s: %s", event.item_id, event.error.message)
            case _:
                pass

    def _apply_session(self, session: object) -> None:
        if not isinstance(session, RealtimeSessionCreateRequest) or session.audio is None:
            return
        audio_in, audio_out = session.audio.input, session.audio.output
        if audio_in is not None:
            if audio_in.format is not None:
                self._input_format = audio_format_from_wire(audio_in.format)
            if "turn_detection" in audio_in.model_fields_set:
                detection = audio_in.turn_detection
                # Unset flags mean the GA defaults (true), §2.2.
                self._interrupt_response = detection is not None and detection.interrupt_response is not False
                self._server_creates_responses = (
                    detection is not None and detection.create_response is not False
                )
        if audio_out is not None and audio_out.format is not None:
            self._output_format = audio_format_from_wire(audio_out.format)

    def _session_ready(self, session: object) -> None:
        self._ready = True
        expires_at = getattr(session, "expires_at", None)
        model = getattr(session, "model", None)
        self._events.append(
            SessionReady(
                self._session_id,
                model if isinstance(model, str) else None,
                expires_at if isinstance(expires_at, int) else None,
            )
        )

    def _on_audio_delta(self, event: ResponseAudioDeltaEvent, now_s: float) -> None:
        try:
            audio = base64.b64decode(event.delta, validate=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(
                f"response.output_audio.delta for {event.item_id} is not base64"
            ) from None
        spec: AudioFormatSpec = self._output_format
        samples = len(audio) // spec.bytes_per_sample
        if self._count_audio(event.item_id, event.response_id, samples, now_s):
            self._events.append(
                AudioChunk(event.item_id, event.response_id, audio, samples, spec.sample_rate_hz)
            )

    def _count_audio(self, item_id: str, response_id: str, samples: int, now_s: float) -> bool:
        cut = self.conversation.audio_received(
            item_id, samples, sample_rate_hz=self._output_format.sample_rate_hz, response_id=response_id
        )
        self._latency.audio_received(response_id, now_s)
        return not (cut or response_id in self._silenced or item_id in self._flush_pending)

    def _on_response_created(self, event: ResponseCreatedEvent) -> None:
        response_id = event.response.id
        if response_id is None:
            return
        self._user_speaking = False  # the server answered the user's turn; deferred creates wait for this one
        self._latency.response_started(response_id)
        if self.conversation.response_state is ResponseState.CANCELLING:
            self._silence(response_id)  # a cancel we sent before it was created is on its way
        self._events.append(ResponseStarted(response_id))

    def _on_response_done(self, event: ResponseDoneEvent) -> None:
        response = event.response
        turn: TurnCost | None = None
        try:
            turn = self.costs.add_turn(
                response.id, response.status, Usage.from_response_usage(response.usage)
            )
        except RemoteProtocolError as exc:
            self._events.append(ProtocolViolation(exc))
        details = response.status_details
        # A failed response has no reason, but its error code says why (e.g. insufficient_quota).
        reason = None
        if details is not None:
            reason = details.reason or (details.error.code if details.error else None)
        self._events.append(ResponseFinished(response.id, response.status, reason, turn))
        if response.id is not None:
            self._done_responses[response.id] = None
            while len(self._done_responses) > 64:
                self._done_responses.popitem(last=False)
            self._follow_up_tools(response.id)
        self._flush_pending_create()

    def _on_error(self, event: RealtimeErrorEvent) -> None:
        err = event.error
        error = ServerError(err.message, code=err.code, type=err.type, param=err.param, event_id=err.event_id)
        harmless = False
        if err.code == "response_cancel_not_active":
            harmless = True  # §2.5 E: the response finished before our cancel arrived
        elif err.event_id is not None and err.event_id in self._filler_creates:
            # A filler that lost a race with another response is not worth retrying: that response
            # is already filling the silence.
            del self._filler_creates[err.event_id]
            self.conversation.response_create_rejected()
            harmless = err.code == "conversation_already_has_active_response"
        elif err.event_id is not None and err.event_id in self._sent_creates:
            overrides = self._sent_creates.pop(err.event_id)
            self.conversation.response_create_rejected()
            if err.code == "conversation_already_has_active_response":
                # Lost a race with a response the server started itself: try again after it.
                harmless = True
                self._pending_create = {**overrides, **(self._pending_create or {})}
        if harmless:
            logger.info("harmless server error: %s", error)
        else:
            logger.warning("server error: %s", error)
        self._events.append(ServerErrorEvent(error, harmless))
        self._flush_pending_create()
