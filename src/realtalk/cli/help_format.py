"""How realtalk's ``--help`` is laid out (Typer renders it with Rich).

Three things Typer does not do for us, applied to every command of the ``realtalk`` app:

* Prose is wrapped by Rich to the terminal's width. Typer keeps the single line breaks of a
  docstring's later paragraphs, so the source file's wrapping would show at any width: here each
  paragraph is joined into one line first (a blank line still separates paragraphs).
* A flag takes no value, so it shows no value placeholder (Typer prints ``<bool>``, even for
  ``--help``).
* Defaults are stated one way: Typer's ``[default: ...]``. An option whose default is worked out at
  run time (from a setting, or from another option) declares it with ``show_default="..."``,
  which Typer shows in parentheses: ``[default: (REALTALK_LOG_LEVEL, else INFO)]``.

Help texts are Rich markup: a literal ``[`` is written ``\\[`` (``realtalk\\[aec]``).
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperCommand, TyperGroup, TyperOption

__all__ = ["RealtalkCommand", "RealtalkGroup", "unwrap_paragraphs"]


def unwrap_paragraphs(text: str | None) -> str | None:
    """Each paragraph of ``text`` on one line; paragraphs stay separated by a blank line."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _without_value_placeholder(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # Typer shows the metavar instead of the type: an empty one shows nothing
    return params


class RealtalkCommand(TyperCommand):
    """A realtalk command: prose wrapped by Rich, flags without a value placeholder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["help"] = unwrap_paragraphs(kwargs.get("help"))
        super().__init__(*args, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:  # Any: the Context of the click Typer bundles
        return _without_value_placeholder(super().get_params(ctx))


class RealtalkGroup(TyperGroup):
    """The ``realtalk`` app itself: its ``--version`` and ``--help`` as the commands' flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["help"] = unwrap_paragraphs(kwargs.get("help"))
        super().__init__(*args, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:  # Any: the Context of the click Typer bundles
        return _without_value_placeholder(super().get_params(ctx))
