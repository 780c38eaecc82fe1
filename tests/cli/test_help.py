"""``realtalk --help`` and each command's ``--help``, as the installed ``realtalk`` app renders them.

Rich renders the help: Rich markup in a description must not eat literal text, Rich (not the source
file's line breaks) wraps the prose, flags take no value so they show no value placeholder, and
every default is stated one way, ``[default: ...]``.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from realtalk.cli.app import app

COMMANDS = ("talk", "serve", "doctor", "emulate", "devices")
OURS = ("talk", "serve", "doctor", "devices")  # emulate's option texts belong to its own module


def help_of(*args: str, width: int = 200) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def flat(output: str) -> str:
    """The help without its box drawing, one line, single spaces."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def options_panel(output: str) -> str:
    return flat(output[output.index("Options") :])


def test_an_extra_in_square_brackets_is_shown_not_taken_for_markup() -> None:
    assert "pip install 'realtalk[aec]'" in flat(help_of("talk"))


@pytest.mark.parametrize("command", [(), *((name,) for name in COMMANDS)])
def test_flags_show_no_value_placeholder(command: tuple[str, ...]) -> None:
    output = help_of(*command)
    assert "<bool>" not in output
    assert "--help" in output


def test_the_description_is_wrapped_by_the_terminal_width_not_the_source_lines() -> None:
    output = help_of("talk", width=200)
    # In the source the docstring breaks after "Type a"; at 200 columns the sentence goes on.
    assert re.search(r"says so\. Type a line and press Enter", output), output


@pytest.mark.parametrize("command", OURS)
def test_each_default_is_stated_one_way(command: str) -> None:
    panel = options_panel(help_of(command))
    stated = re.findall(r"\[default: [^\]]*\]", panel)
    rest = re.sub(r"\[default: [^\]]*\]", "", panel)
    assert "default" not in rest.lower(), rest
    if command == "talk":
        for expected in ("[default: marin]", "[default: (auto)]", "[default: (0.5)]", "[default: (500)]"):
            assert expected in stated, stated


def test_serve_states_the_log_level_default_it_uses() -> None:
    panel = options_panel(help_of("serve"))
    assert "[default: (REALTALK_LOG_LEVEL, else INFO)]" in panel, panel
