"""The conversation as the client sees it: items in order, what was heard, and the active response.

Theory of operation
-------------------

The server owns the conversation; this module keeps a faithful local copy, fed with parsed server
events (``apply``) and with the two facts only the client knows: how much audio arrived for an
item (``audio_received``) and how much of it the listener heard (``audio_played``,
``set_played_samples``).

*Items* are kept in server order. An item is placed right after its ``previous_item_id`` (§2.4,
``conversation.item.added``/``.done``, ``input_audio_buffer.committed``); the beta name
``conversation.item.created`` is accepted as a synonym (§2.6). An item first seen in
``response.output_item.added`` (which carries no ``previous_item_id``) is appended and moved when
its ``conversation.item.added`` arrives. Because order comes from the links and not from arrival
time, a user transcript that completes after the reply started (§2.5 B: transcription is
asynchronous) still shows above the reply.

*Cut* items: after a barge-in the client truncates the assistant item to what was played
(truncation.py). The transcript is cut the same way, proportionally: the heard text is the first
``played / received`` of the transcript's characters, backed off to a word boundary. Speech rate
is roughly constant within one item, so characters track samples well; the transcript deltas
cannot be used instead, because they run ahead of the audio. Text arriving after the cut (the
``.done`` events of a cancelled response) is still cut by the same ratio.

*The active response* is a small state machine (below). Client inputs (a ``response.create`` or
``response.cancel`` we sent) must follow the table: a missing entry is our own bug and raises
``LocalProtocolError``. Server inputs (``response.created``, ``response.done``) are authoritative:
a missing entry is logged and the server's view wins, so a surprising server never stops the session.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from openai.types.realtime import (
    ConversationItem,
    ConversationItemAdded,
    ConversationItemCreatedEvent,
    ConversationItemDeletedEvent,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    ConversationItemTruncatedEvent,
    InputAudioBufferCommittedEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from realtalk.errors import LocalProtocolError

from .events import ServerEvent, UnknownServerEvent

__all__ = [
    "Conversation",
    "ItemView",
    "ResponseInput",
    "ResponseState",
    "ResponseView",
    "TranscriptLine",
    "heard_prefix",
]

logger = logging.getLogger(__name__)


class ResponseState(enum.Enum):
    """Where the one default-conversation response stands (§2.2: only one may be active)."""

    IDLE = "idle"  # nothing requested, nothing running
    REQUESTED = "requested"  # we sent response.create; response.created not seen yet
    ACTIVE = "active"  # response.created seen (ours, or the server's own after VAD)
    CANCELLING = "cancelling"  # we sent response.cancel; response.done not seen yet


class ResponseInput(enum.Enum):
    """What moves the response state machine."""

    CREATE_SENT = "create_sent"  # client
    CANCEL_SENT = "cancel_sent"  # client
    CREATE_REJECTED = "create_rejected"  # client: error event answering our response.create
    CREATED = "created"  # server: response.created
    DONE = "done"  # server: response.done (completed, cancelled, failed or incomplete)


_S, _I = ResponseState, ResponseInput
_CLIENT_TRANSITIONS: Final[dict[tuple[ResponseState, ResponseInput], ResponseState]] = {
    (_S.IDLE, _I.CREATE_SENT): _S.REQUESTED,
    (
        _S.REQUESTED,
        _I.CANCEL_SENT,
    ): _S.CANCELLING,  # the server handles events in order: cancel follows create
    (_S.ACTIVE, _I.CANCEL_SENT): _S.CANCELLING,
    (_S.IDLE, _I.CREATE_REJECTED): _S.IDLE,
    (_S.REQUESTED, _I.CREATE_REJECTED): _S.IDLE,
    # §3.4 conversation_already_has_active_response: the response we took for ours was the server's.
    (_S.ACTIVE, _I.CREATE_REJECTED): _S.ACTIVE,
    (_S.CANCELLING, _I.CREATE_REJECTED): _S.CANCELLING,
}
_SERVER_TRANSITIONS: Final[dict[tuple[ResponseState, ResponseInput], ResponseState]] = {
    (_S.IDLE, _I.CREATED): _S.ACTIVE,  # server VAD with create_response: true
    (_S.REQUESTED, _I.CREATED): _S.ACTIVE,
    (_S.CANCELLING, _I.CREATED): _S.CANCELLING,  # our cancel is already queued behind it
    (_S.ACTIVE, _I.DONE): _S.IDLE,
    (_S.CANCELLING, _I.DONE): _S.IDLE,
}
_SERVER_FALLBACK: Final = {_I.CREATED: _S.ACTIVE, _I.DONE: _S.IDLE}


@dataclass(frozen=True)
class ResponseView:
    """The active response: its id (``None`` until ``response.created``), our state, the server's status."""

    response_id: str | None
    state: ResponseState
    status: str | None = None


@dataclass(frozen=True)
class TranscriptLine:
    """One line of the visible transcript; for a cut item, only the part that was heard."""

    item_id: str
    role: str
    text: str
    final: bool
    cut: bool = False


@dataclass(frozen=True)
class ItemView:
    """A read-only snapshot of one conversation item."""

    item_id: str
    type: str
    role: str | None
    status: str | None
    response_id: str | None
    text: str
    text_final: bool
    heard_text: str
    cut: bool
    audio_received_samples: int
    audio_played_samples: int
    audio_done: bool
    sample_rate_hz: int
    call_id: str | None
    name: str | None
    arguments: str | None

    @property
    def playback_finished(self) -> bool:
        """All of the item's audio arrived and was played."""
        return self.audio_done and self.audio_played_samples >= self.audio_received_samples


@dataclass
class _Item:
    item_id: str
    type: str = "message"
    role: str | None = None
    status: str | None = None
    response_id: str | None = None
    text: str = ""
    text_final: bool = False
    cut: bool = False
    cut_played_samples: int = 0
    audio_received_samples: int = 0
    audio_played_samples: int = 0
    audio_done: bool = False
    sample_rate_hz: int = 24000
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    # The item's transcript line, kept while what it shows is unchanged: the transcript is asked
    # for on every delta, and rebuilding every line made each turn cost more as a talk grew.
    _line: TranscriptLine | None = field(default=None, repr=False, compare=False)
    _line_key: tuple[object, ...] = field(default=(), repr=False, compare=False)

    def line(self) -> TranscriptLine:
        cut = (self.cut_played_samples, self.audio_received_samples) if self.cut else None
        key = (self.role, self.text, self.text_final, cut)
        if self._line is None or key != self._line_key:
            assert self.role is not None
            self._line = TranscriptLine(self.item_id, self.role, self.heard_text(), self.text_final, self.cut)
            self._line_key = key
        return self._line

    def heard_text(self) -> str:
        if not self.cut:
            return self.text
        return heard_prefix(self.text, self.cut_played_samples, self.audio_received_samples)

    def view(self) -> ItemView:
        return ItemView(
            self.item_id,
            self.type,
            self.role,
            self.status,
            self.response_id,
            self.text,
            self.text_final,
            self.heard_text(),
            self.cut,
            self.audio_received_samples,
            self.audio_played_samples,
            self.audio_done,
            self.sample_rate_hz,
            self.call_id,
            self.name,
            self.arguments,
        )


@dataclass
class _Response:
    response_id: str
    out_of_band: bool
    status: str | None = None


def heard_prefix(text: str, played_samples: int, received_samples: int) -> str:
    """The part of ``text`` heard when ``played_samples`` of ``received_samples`` were played.

    Proportional to samples, cut back to the last whole word, never longer than ``text``.
    """
    if received_samples <= 0 or played_samples <= 0:
        return ""
    if played_samples >= received_samples:
        return text
    end = math.floor(len(text) * played_samples / received_samples)
    if 0 < end < len(text) and not text[end].isspace() and not text[end - 1].isspace():
        space = text.rfind(" ", 0, end)
        end = space if space >= 0 else 0
    return text[:end].rstrip()


class Conversation:
    """The client's copy of the conversation; see the module docstring for how it works."""

    def __init__(self, *, max_items: int = 1000) -> None:
        self._items: dict[str, _Item] = {}
        self._order: list[str] = []
        self._max_items = max_items
        self._responses: OrderedDict[str, _Response] = OrderedDict()
        self._state = ResponseState.IDLE
        self._active_id: str | None = None
        self._any_audio = False
        # Input transcripts may name an item we have not seen yet; held until it arrives.
        self._early_transcripts: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self.transcript_version = 0
        """Incremented whenever the visible transcript changes (cheap change detection)."""

    # -- the response state machine ------------------------------------------------------------

    @property
    def response_state(self) -> ResponseState:
        """The state of the default-conversation response."""
        return self._state

    @property
    def active_response(self) -> ResponseView | None:
        """The response being requested, generated or cancelled; ``None`` when idle."""
        if self._state is ResponseState.IDLE:
            return None
        record = self._responses.get(self._active_id) if self._active_id else None
        return ResponseView(self._active_id, self._state, record.status if record else None)

    def response_create_sent(self) -> None:
        """Record that we sent ``response.create`` (raises if one is already active)."""
        self._client_input(ResponseInput.CREATE_SENT)

    def response_cancel_sent(self) -> None:
        """Record that we sent ``response.cancel`` (raises if nothing is active)."""
        self._client_input(ResponseInput.CANCEL_SENT)

    def response_create_rejected(self) -> None:
        """Record that the server refused our ``response.create`` with an ``error`` event."""
        self._client_input(ResponseInput.CREATE_REJECTED)

    def _client_input(self, inp: ResponseInput) -> None:
        new_state = _CLIENT_TRANSITIONS.get((self._state, inp))
        if new_state is None:
            raise LocalProtocolError(
                f"cannot {inp.value.replace('_', ' ')} while the response is {self._state.value}"
            )
        if new_state is ResponseState.IDLE:
            self._active_id = None
        self._state = new_state

    def _server_input(self, inp: ResponseInput, response_id: str | None) -> None:
        new_state = _SERVER_TRANSITIONS.get((self._state, inp))
        if new_state is None:
            logger.warning(
                "server sent %s while the response was %s; following the server", inp.value, self._state.value
            )
            new_state = _SERVER_FALLBACK[inp]
        self._state = new_state
        self._active_id = None if new_state is ResponseState.IDLE else response_id

    def response_item_ids(self, response_id: str) -> tuple[str, ...]:
        """Ids of the items a response produced, in conversation order."""
        return tuple(item_id for item_id in self._order if self._items[item_id].response_id == response_id)

    # -- items ---------------------------------------------------------------------------------

    def items(self) -> tuple[ItemView, ...]:
        """All items, in conversation order."""
        return tuple(self._items[item_id].view() for item_id in self._order)

    def item(self, item_id: str) -> ItemView | None:
        """One item, or ``None`` if unknown."""
        item = self._items.get(item_id)
        return item.view() if item else None

    def items_of_response(self, response_id: str) -> list[ItemView]:
        """The items a response produced that are still in the conversation window."""
        return [item.view() for item in self._items.values() if item.response_id == response_id]

    def is_cut(self, item_id: str) -> bool:
        """Whether the item was cut by a barge-in (cheap: called for every audio delta)."""
        item = self._items.get(item_id)
        return item is not None and item.cut

    def transcript_lines(self) -> tuple[TranscriptLine, ...]:
        """User and assistant message lines in conversation order, cut items showing what was heard."""
        lines = []
        for item_id in self._order:
            item = self._items[item_id]
            if item.type == "message" and item.role in ("user", "assistant"):
                lines.append(item.line())
        return tuple(lines)

    @property
    def has_assistant_audio(self) -> bool:
        """Whether the model has produced any audio in this session (the voice is then fixed)."""
        return self._any_audio

    def audio_received(
        self, item_id: str, samples: int, *, sample_rate_hz: int, response_id: str | None = None
    ) -> bool:
        """Count ``samples`` of output audio received for ``item_id``; returns whether the item was
        cut by a barge-in (called for every audio delta: one lookup for both)."""
        item = self._items.get(item_id)
        if item is None or (response_id is not None and item.response_id is None):
            item = self._ensure(item_id, role="assistant", response_id=response_id)
        item.audio_received_samples += samples
        if samples > 0:
            self._any_audio = True
        item.sample_rate_hz = sample_rate_hz
        return item.cut

    def audio_played(self, item_id: str, samples: int) -> int:
        """Count ``samples`` more played for ``item_id``; returns the total (clamped to received)."""
        item = self._require(item_id)
        if samples < 0:
            raise LocalProtocolError(f"played samples must be >= 0, got {samples}")
        if not item.cut:
            item.audio_played_samples = min(item.audio_received_samples, item.audio_played_samples + samples)
        return item.audio_played_samples

    def set_played_samples(self, item_id: str, played_samples_total: int) -> int:
        """Set the total played for ``item_id`` (after a flush); returns it clamped to received."""
        item = self._require(item_id)
        if played_samples_total < 0:
            raise LocalProtocolError(f"played samples must be >= 0, got {played_samples_total}")
        item.audio_played_samples = min(item.audio_received_samples, played_samples_total)
        return item.audio_played_samples

    def cut(self, item_id: str) -> ItemView:
        """Mark an assistant item as cut at what has been played so far (after a barge-in)."""
        item = self._require(item_id)
        if not item.cut:
            item.cut = True
            item.cut_played_samples = item.audio_played_samples
            self.transcript_version += 1
        return item.view()

    def last_unheard_audio_item(self) -> ItemView | None:
        """The latest assistant audio item still arriving or playing, if any (the barge-in target).

        Only the latest one is considered: an older item whose player under-reported a few samples
        must not be truncated when the user speaks minutes later.
        """
        for item_id in reversed(self._order):
            item = self._items[item_id]
            if item.role != "assistant" or item.audio_received_samples == 0:
                continue
            if item.cut or (item.audio_done and item.audio_played_samples >= item.audio_received_samples):
                return None
            return item.view()
        return None

    def _require(self, item_id: str) -> _Item:
        item = self._items.get(item_id)
        if item is None:
            raise LocalProtocolError(f"unknown item {item_id!r}")
        return item

    def _ensure(self, item_id: str, *, role: str | None = None, response_id: str | None = None) -> _Item:
        item = self._items.get(item_id)
        if item is None:
            item = _Item(item_id, role=role)
            self._items[item_id] = item
            self._order.append(item_id)
            self._evict()
            self.transcript_version += 1
            early = self._early_transcripts.pop(item_id, None)
            if early is not None:
                item.text, item.text_final = early
        if response_id is not None and item.response_id is None:
            item.response_id = response_id
        return item

    def _evict(self) -> None:
        while len(self._order) > self._max_items:
            del self._items[self._order.pop(0)]

    def _place(self, item_id: str, previous_item_id: str | None) -> None:
        # null previous_item_id is treated as "append": only a client insert at "root" puts an item
        # first, which realtalk never does, and appending is the safe reading of a missing link.
        if previous_item_id is None or previous_item_id not in self._items:
            return
        self._order.remove(item_id)
        self._order.insert(self._order.index(previous_item_id) + 1, item_id)
        self.transcript_version += 1

    def _update_from_wire(self, item: _Item, wire: ConversationItem, *, final: bool) -> None:
        item.type = wire.type
        item.status = getattr(wire, "status", None)  # MCP items have no status
        if isinstance(
            wire,
            RealtimeConversationItemAssistantMessage
            | RealtimeConversationItemUserMessage
            | RealtimeConversationItemSystemMessage,
        ):
            item.role = wire.role
            texts = [
                text for part in wire.content if (text := part.text or getattr(part, "transcript", None))
            ]
            # Never let a later, emptier copy (e.g. after the server dropped a truncated item's
            # transcript, §2.5 E) erase text we already have.
            if texts and len("".join(texts)) >= len(item.text):
                item.text = "".join(texts)
                item.text_final = item.text_final or final or item.role != "assistant"
                self.transcript_version += 1
            elif final and item.role == "assistant" and not item.text_final:
                item.text_final = True
                self.transcript_version += 1
        elif isinstance(wire, RealtimeConversationItemFunctionCall):
            item.call_id, item.name, item.arguments = wire.call_id, wire.name, wire.arguments

    # -- applying server events ----------------------------------------------------------------

    def apply(self, event: ServerEvent | UnknownServerEvent) -> None:
        """Update the conversation from one parsed server event (events it does not track are ignored)."""
        match event:
            case ConversationItemAdded() | ConversationItemCreatedEvent() | ConversationItemDone():
                wire = event.item
                if wire.id is None:
                    return
                item = self._ensure(wire.id)
                self._update_from_wire(item, wire, final=isinstance(event, ConversationItemDone))
                self._place(wire.id, event.previous_item_id)
            case InputAudioBufferCommittedEvent():
                self._ensure(event.item_id, role="user")
                self._place(event.item_id, event.previous_item_id)
            case ConversationItemDeletedEvent():
                if self._items.pop(event.item_id, None) is not None:
                    self._order.remove(event.item_id)
                    self.transcript_version += 1
            case ConversationItemTruncatedEvent():
                truncated = self._items.get(event.item_id)
                if truncated is not None and not truncated.cut:
                    # Truncated by someone else (another client of a shared session): trust the server.
                    truncated.audio_played_samples = min(
                        truncated.audio_received_samples,
                        event.audio_end_ms * truncated.sample_rate_hz // 1000,
                    )
                    self.cut(event.item_id)
            case ResponseOutputItemAddedEvent() | ResponseOutputItemDoneEvent():
                if event.item.id is not None:
                    item = self._ensure(event.item.id, response_id=event.response_id)
                    self._update_from_wire(
                        item, event.item, final=isinstance(event, ResponseOutputItemDoneEvent)
                    )
            case ResponseAudioTranscriptDeltaEvent() | ResponseTextDeltaEvent():
                item = self._ensure(event.item_id, role="assistant", response_id=event.response_id)
                item.text += event.delta
                self.transcript_version += 1
            case ResponseAudioTranscriptDoneEvent() | ResponseTextDoneEvent():
                item = self._ensure(event.item_id, role="assistant", response_id=event.response_id)
                full = event.transcript if isinstance(event, ResponseAudioTranscriptDoneEvent) else event.text
                if len(full) >= len(item.text):
                    item.text = full
                item.text_final = True
                self.transcript_version += 1
            case ResponseAudioDoneEvent():
                self._ensure(event.item_id, role="assistant", response_id=event.response_id).audio_done = True
            case ResponseFunctionCallArgumentsDoneEvent():
                item = self._ensure(event.item_id, response_id=event.response_id)
                item.type, item.call_id, item.name, item.arguments = (
                    "function_call",
                    event.call_id,
                    event.name,
                    event.arguments,
                )
            case ConversationItemInputAudioTranscriptionDeltaEvent():
                self._user_transcript(event.item_id, event.delta or "", append=True, final=False)
            case ConversationItemInputAudioTranscriptionCompletedEvent():
                self._user_transcript(event.item_id, event.transcript, append=False, final=True)
            case ConversationItemInputAudioTranscriptionFailedEvent():
                self._user_transcript(event.item_id, "", append=False, final=True)
            case ResponseCreatedEvent():
                self._response_created(event)
            case ResponseDoneEvent():
                self._response_done(event)
            case _:
                pass

    def _user_transcript(self, item_id: str, text: str, *, append: bool, final: bool) -> None:
        item = self._items.get(item_id)
        if item is None:
            previous = self._early_transcripts.get(item_id, ("", False))[0]
            self._early_transcripts[item_id] = (previous + text if append else text, final)
            while len(self._early_transcripts) > 32:
                self._early_transcripts.popitem(last=False)
            return
        item.text = item.text + text if append else text
        item.text_final = final
        self.transcript_version += 1

    def _response_created(self, event: ResponseCreatedEvent) -> None:
        response_id = event.response.id
        if response_id is None:
            logger.warning("server sent response.created without a response id; ignored")
            return
        # §2.2: conversation "none" responses run beside the default one; the server says so with a
        # null conversation_id. They never occupy the one-active-response slot.
        out_of_band = (
            "conversation_id" in event.response.model_fields_set and event.response.conversation_id is None
        )
        self._responses[response_id] = _Response(response_id, out_of_band, event.response.status)
        while len(self._responses) > 64:
            self._responses.popitem(last=False)
        if not out_of_band:
            self._server_input(ResponseInput.CREATED, response_id)

    def _response_done(self, event: ResponseDoneEvent) -> None:
        response_id = event.response.id
        record = self._responses.get(response_id) if response_id else None
        if record is not None:
            record.status = event.response.status
        for wire in event.response.output or ():
            if wire.id is not None:
                self._update_from_wire(self._ensure(wire.id, response_id=response_id), wire, final=True)
        # No more audio will come for any item of a finished response, cancelled ones included.
        if response_id is not None:
            for item_id in self.response_item_ids(response_id):
                self._items[item_id].audio_done = True
        if record is not None and record.out_of_band:
            return
        if response_id is not None and self._active_id not in (None, response_id):
            logger.warning(
                "response.done for %s while %s is active; ignored for the active state",
                response_id,
                self._active_id,
            )
            return
        self._server_input(ResponseInput.DONE, response_id)
