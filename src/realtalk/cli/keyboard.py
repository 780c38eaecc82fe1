"""Keys and typed lines for ``realtalk talk``, read on daemon threads and handed to the event loop.

Two readers, chosen by whether stdin is a terminal:

- ``KeyReader``: a terminal in cbreak mode (``termios``: no echo, no line buffering, Ctrl+C still
  a signal), one key at a time, so the live display owns the screen and the space bar can toggle
  push-to-talk. The terminal's settings are restored by ``stop()``, and by an ``atexit`` hook if
  the program dies first. ``LineEditor`` turns those keys into a line (pure, testable).
- ``LineReader``: stdin is a pipe or a file; each line is a message, EOF ends the reader.

Why toggle and not hold for push-to-talk: a terminal reports key presses, never releases. Holding a
key shows up only as auto-repeat, which starts after the keyboard's repeat delay (250-700 ms,
user-configurable) and whose rate varies too, so a release could only be guessed from a gap
longer than both; a tap and the start of a hold look the same. A guess that cuts the user off or
keeps the microphone open is worse than an honest toggle.

Both readers are daemon threads (never ``asyncio.to_thread``: the loop's executor is joined at
shutdown, and a thread blocked on stdin would hang the exit).
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["KeyReader", "LineEditor", "LineReader", "stdin_is_terminal"]

_CTRL_D = "\x04"
_CTRL_U = "\x15"
_BACKSPACES = ("\x7f", "\x08")
_ENTER = ("\r", "\n")
_ESC = "\x1b"


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached stdin
        return False


class LineEditor:
    """Keys in, actions out: printable keys build a line, Enter sends it, Backspace and Ctrl+U edit.

    With ``on_space`` set (push-to-talk), Space on an empty line calls it instead of typing a space.
    Ctrl+D on an empty line calls ``on_eof``. Escape sequences (arrow keys, ...) are ignored.
    """

    def __init__(
        self,
        on_line: Callable[[str], None],
        *,
        on_space: Callable[[], None] | None = None,
        on_eof: Callable[[], None] | None = None,
        max_chars: int = 2000,
    ) -> None:
        self._on_line = on_line
        self._on_space = on_space
        self._on_eof = on_eof
        self._max_chars = max_chars
        self._chars: list[str] = []
        self._escape: str | None = None  # the escape sequence being skipped

    @property
    def text(self) -> str:
        return "".join(self._chars)

    def feed(self, keys: str) -> None:
        for key in keys:
            self._key(key)

    def _key(self, key: str) -> None:
        if self._escape is not None:
            self._escape += key
            # CSI/SS3 sequences end with a letter or '~'; a lone ESC followed by anything else ends too.
            if len(self._escape) == 2 and key not in "[O":
                self._escape = None
            elif len(self._escape) > 2 and (key.isalpha() or key == "~"):
                self._escape = None
            return
        if key == _ESC:
            self._escape = key
        elif key in _ENTER:
            line = self.text.strip()
            self._chars.clear()
            if line:
                self._on_line(line)
        elif key in _BACKSPACES:
            if self._chars:
                self._chars.pop()
        elif key == _CTRL_U:
            self._chars.clear()
        elif key == _CTRL_D:
            if not self._chars and self._on_eof is not None:
                self._on_eof()
        elif key == " " and not self._chars and self._on_space is not None:
            self._on_space()
        elif key.isprintable() and len(self._chars) < self._max_chars:
            self._chars.append(key)


class KeyReader:
    """Reads a terminal's keys in cbreak mode on a daemon thread; calls ``on_keys`` on the loop."""

    def __init__(self, on_keys: Callable[[str], None], loop: asyncio.AbstractEventLoop, fd: int = 0) -> None:
        self._on_keys = on_keys
        self._loop = loop
        self._fd = fd
        self._saved: list[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import termios
        import tty

        self._saved = termios.tcgetattr(self._fd)
        atexit.register(self._restore)
        tty.setcbreak(self._fd, termios.TCSANOW)
        self._thread = threading.Thread(target=self._run, name="realtalk-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)
        self._restore()
        atexit.unregister(self._restore)

    def _restore(self) -> None:
        if self._saved is None:
            return
        import termios

        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._saved = None

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._fd, 64)
            except OSError:
                return
            if not data:
                return
            keys = decoder.decode(data)
            if keys:
                with contextlib.suppress(RuntimeError):  # the loop closed while we read
                    self._loop.call_soon_threadsafe(self._on_keys, keys)


class LineReader:
    """Reads lines from a non-terminal stdin on a daemon thread; ``on_line`` / ``on_eof`` run on the loop."""

    def __init__(
        self,
        on_line: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
        *,
        on_eof: Callable[[], None] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self._on_line = on_line
        self._on_eof = on_eof
        self._loop = loop
        self._stream = stream if stream is not None else sys.stdin
        self._thread = threading.Thread(target=self._run, name="realtalk-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in self._stream:
                line = raw.strip()
                if line:
                    self._call(self._on_line, line)
        except (OSError, ValueError):  # stdin closed under us
            pass
        if self._on_eof is not None:
            self._call(self._on_eof)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)
