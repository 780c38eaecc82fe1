"""``LineEditor``: keys from a terminal in cbreak mode → typed lines and push-to-talk toggles."""

from __future__ import annotations

import asyncio
import io

from realtalk.cli.keyboard import LineEditor, LineReader


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.spaces = 0
        self.eofs = 0

    def editor(self, *, push_to_talk: bool = False) -> LineEditor:
        return LineEditor(
            self.lines.append,
            on_space=self.space if push_to_talk else None,
            on_eof=self.eof,
        )

    def space(self) -> None:
        self.spaces += 1

    def eof(self) -> None:
        self.eofs += 1


def test_enter_sends_the_typed_line_and_clears_it() -> None:
    keys = Recorder()
    editor = keys.editor()
    editor.feed("hello there\r")
    assert keys.lines == ["hello there"] and editor.text == ""


def test_backspace_and_ctrl_u_edit_the_line_and_an_empty_line_is_not_sent() -> None:
    keys = Recorder()
    editor = keys.editor()
    editor.feed("helo\x7flo\n")
    editor.feed("typo\x15\n")
    assert keys.lines == ["hello"]


def test_arrow_keys_and_other_escape_sequences_are_ignored() -> None:
    keys = Recorder()
    editor = keys.editor()
    editor.feed("a\x1b[Ab\x1b[1;5Cc\x1bOPd\r")
    assert keys.lines == ["abcd"]


def test_space_on_an_empty_line_toggles_push_to_talk_and_is_typed_otherwise() -> None:
    keys = Recorder()
    editor = keys.editor(push_to_talk=True)
    editor.feed("  ")
    assert keys.spaces == 2 and editor.text == ""
    editor.feed("a b\r")
    assert keys.spaces == 2 and keys.lines == ["a b"]


def test_without_push_to_talk_space_is_just_a_character() -> None:
    keys = Recorder()
    editor = keys.editor()
    editor.feed(" x\r")
    assert keys.spaces == 0 and keys.lines == ["x"]


def test_ctrl_d_ends_the_conversation_only_on_an_empty_line() -> None:
    keys = Recorder()
    editor = keys.editor()
    editor.feed("ab\x04")
    assert keys.eofs == 0
    editor.feed("\x15\x04")
    assert keys.eofs == 1


async def test_the_line_reader_sends_each_non_empty_stdin_line_then_eof() -> None:
    loop = asyncio.get_running_loop()
    lines: list[str] = []
    done = asyncio.Event()
    LineReader(lines.append, loop, on_eof=done.set, stream=io.StringIO("one\n\n  two  \n")).start()
    await asyncio.wait_for(done.wait(), 5)
    assert lines == ["one", "two"]
