"""The conversation: ordered items with their audio, as one session's server holds them.

Items are kept as the JSON objects the server sends (without audio) plus the audio bytes, in the
format they arrived or were produced in. Event payloads never include audio except
``conversation.item.retrieved`` (§2.4), so :meth:`Item.wire` leaves it out unless asked.

The conversation is bounded in items (``max_items``; oldest dropped, as the service's
``truncation: auto`` eventually drops the oldest items from the context) and in audio bytes
(``max_audio_bytes``, ``EmulatorConfig.max_conversation_audio_bytes``): the latest items keep their
audio, whole, while it fits; older ones release theirs and keep their text, transcript and audio
*length*. The length is all the protocol needs of an old item (§2.5 E: ``conversation.item.truncate``
checks ``audio_end_ms`` against it and cuts it; usage counts audio tokens from it); only
``conversation.item.retrieve`` would return the bytes, and for an item past the budget it returns
the item without its ``audio`` field. Without this bound, a long voice conversation kept every
turn's audio for as long as the connection lasted (a soak grew ~2.4 MB a minute per session).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import Any

from realtalk.emulator.audio_input import BYTES_PER_MS
from realtalk.emulator.events import new_id
from realtalk.emulator.session_config import FormatType
from realtalk.emulator.usage import Segment, assistant_audio_tokens, text_tokens, user_audio_tokens

__all__ = ["Conversation", "Item"]

ROOT = "root"


class Item:
    """One conversation item and its audio (if any)."""

    # A session holds up to max_items of these for as long as it lasts: no per-instance __dict__.
    __slots__ = (
        "_audio",
        "_audio_bytes",
        "_key",
        "_key_version",
        "audio_format",
        "data",
        "has_audio",
        "version",
    )

    def __init__(
        self, data: dict[str, Any], *, audio: bytes | None = None, audio_format: FormatType = "audio/pcm"
    ):
        self.data = data
        self.has_audio = audio is not None  # an audio item, whether or not its bytes are still held
        self._audio = bytearray(audio) if audio is not None else None
        self._audio_bytes = len(self._audio) if self._audio is not None else 0
        self.audio_format: FormatType = audio_format
        self.version = 0  # changes whenever the content does (the usage cache keys on it)
        self._key = ""  # the segment key last built, for _key_version
        self._key_version = -1

    @property
    def id(self) -> str:
        item_id: str = self.data["id"]
        return item_id

    @property
    def type(self) -> str:
        kind: str = self.data["type"]
        return kind

    @property
    def role(self) -> str | None:
        return self.data.get("role")

    @property
    def audio_ms(self) -> int:
        """The audio's length, known even when its bytes were released."""
        return self._audio_bytes // BYTES_PER_MS[self.audio_format]

    @property
    def audio_bytes_held(self) -> int:
        return len(self._audio) if self._audio is not None else 0

    def add_audio(self, chunk: bytes) -> None:
        self._audio_bytes += len(chunk)
        if self._audio is not None:
            self._audio += chunk

    def cut_audio(self, end_ms: int) -> None:
        """Keep the audio up to ``end_ms`` (truncation); the caller checked it is within the length."""
        end = end_ms * BYTES_PER_MS[self.audio_format]
        self._audio_bytes = min(self._audio_bytes, end)
        if self._audio is not None:
            del self._audio[end:]

    def release_audio(self) -> None:
        """Forget the audio's bytes, keep its length (the conversation's audio budget)."""
        self._audio = None

    @property
    def has_output_audio(self) -> bool:
        return self.role == "assistant" and any(
            part.get("type") == "output_audio" for part in self.data.get("content", [])
        )

    def text(self) -> str | None:
        """The item's words: typed text, or the transcript of its audio when known."""
        pieces: list[str] = []
        for part in self.data.get("content", []):
            for key in ("text", "transcript"):
                value = part.get(key)
                if isinstance(value, str) and value:
                    pieces.append(value)
        return " ".join(pieces) if pieces else None

    def wire(self, *, with_audio: bool = False, with_object: bool = False) -> dict[str, Any]:
        """The item as sent in events (a copy)."""
        data = copy.deepcopy(self.data)
        if with_object:
            data = {
                "id": data["id"],
                "object": "realtime.item",
                **{k: v for k, v in data.items() if k != "id"},
            }
        if with_audio and self._audio is not None:
            encoded = base64.b64encode(bytes(self._audio)).decode("ascii")
            for part in data.get("content", []):
                if part.get("type") in ("input_audio", "output_audio"):
                    part["audio"] = encoded
        return data

    def segment(self) -> Segment:
        """This item's share of a response's input context."""
        # One key string per version, shared by every context that holds it (the usage cache keeps
        # recent contexts: a fresh string per item per response grew ~1.7 KiB a turn).
        if self._key_version != self.version:
            self._key, self._key_version = f"{self.id}:{self.version}", self.version
        key = self._key
        text = 0
        audio = 0
        if self.type == "function_call":
            text = text_tokens(self.data.get("name", "") + self.data.get("arguments", ""))
        elif self.type == "function_call_output":
            text = text_tokens(self.data.get("output", ""))
        else:
            for part in self.data.get("content", []):
                kind = part.get("type")
                if kind in ("input_text", "output_text"):
                    text += text_tokens(part.get("text") or "")
                elif kind == "input_audio":
                    audio += user_audio_tokens(self.audio_ms)
                elif kind == "output_audio":
                    audio += assistant_audio_tokens(self.audio_ms)
                # input_image is not modelled: image_tokens stay 0.
        return Segment(key, text, audio)


class Conversation:
    """The default conversation of one session."""

    def __init__(self, max_items: int = 4096, max_audio_bytes: int = 2 * 1024 * 1024) -> None:
        self.id = new_id("conv")
        self._items: list[Item] = []
        self._max_items = max_items
        self._max_audio_bytes = max_audio_bytes

    def __iter__(self) -> Iterator[Item]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self._items if item.id == item_id), None)

    def last(self) -> Item | None:
        return self._items[-1] if self._items else None

    def previous_id(self, item_id: str) -> str | None:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                return self._items[index - 1].id if index > 0 else None
        return None

    def append(self, item: Item) -> str | None:
        """Add at the end; return the previous item's id (None when first)."""
        previous = self._items[-1].id if self._items else None
        self._items.append(item)
        self._bound()
        return previous

    def insert_after(self, item: Item, previous_item_id: str) -> str | None:
        """Insert after ``previous_item_id`` (``"root"``: first); the caller checked it exists."""
        if previous_item_id == ROOT:
            self._items.insert(0, item)
            self._bound()
            return None
        index = next(i for i, existing in enumerate(self._items) if existing.id == previous_item_id)
        self._items.insert(index + 1, item)
        self._bound()
        return previous_item_id

    def delete(self, item_id: str) -> bool:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                del self._items[index]
                return True
        return False

    def segments(self) -> list[Segment]:
        return [item.segment() for item in self._items]

    @property
    def audio_bytes_held(self) -> int:
        return sum(item.audio_bytes_held for item in self._items)

    def bound_audio(self) -> None:
        """Release the audio of the items past the budget, oldest first (call after adding audio)."""
        held = 0
        full = False
        for item in reversed(self._items):
            size = item.audio_bytes_held
            if not size:
                continue
            # Whole items only (a retrieve never returns part of one), and once one does not fit,
            # every older one goes too: the audio kept is always that of the latest items.
            full = full or held + size > self._max_audio_bytes
            if full:
                item.release_audio()
            else:
                held += size

    def _bound(self) -> None:
        if len(self._items) > self._max_items:
            del self._items[: len(self._items) - self._max_items]
        self.bound_audio()
