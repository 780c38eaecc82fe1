"""``realtalk ledger``: the usage ledger's database (``upgrade`` runs its migrations, ``where`` says
which database is in use).

The URL comes from ``--url``, else ``REALTALK_LEDGER_URL``, else the default SQLite file
(``realtalk.settings.default_ledger_url()``). It is only ever shown with its password hidden.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.cli.help_format import RealtalkCommand, RealtalkGroup
from realtalk.errors import ConfigError
from realtalk.ledger import UpgradeResult, ledger_url, redact_url, upgrade
from realtalk.settings import default_ledger_url

__all__ = ["ledger_app", "render_upgrade"]

ledger_app = typer.Typer(
    name="ledger",
    cls=RealtalkGroup,
    help=(
        "The usage ledger: one row per session and per response (tokens, exact cost, audio heard), "
        "in a SQLite file by default or in PostgreSQL (REALTALK_LEDGER_URL)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

_URL_HELP = "The ledger's database URL, e.g. postgresql+asyncpg://user:password@host:5432/realtalk."


def _url_in_use(url: str | None) -> str:
    """``--url``, else REALTALK_LEDGER_URL, else the default SQLite file; checked."""
    if url is None:
        url = load_checked_settings().ledger_url or default_ledger_url()
    return ledger_url(url).render_as_string(hide_password=False)


def _fail(console: Console, error: ConfigError) -> typer.Exit:
    console.print(Text.assemble(("✗ ledger: ", "bold red"), str(error)))
    return typer.Exit(1)


@ledger_app.command(name="upgrade", cls=RealtalkCommand)
def upgrade_command(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            show_default="REALTALK_LEDGER_URL, else the SQLite file `realtalk ledger where` shows",
            help=_URL_HELP,
        ),
    ] = None,
) -> None:
    """Create the ledger's tables, or migrate them to this version of realtalk (safe to repeat).

    A SQLite ledger is also upgraded on its first use; a PostgreSQL ledger, shared by every
    gateway replica, only by this command: run it once before starting a new version. Exits with
    status 1 when the database cannot be reached or was migrated by a newer realtalk.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        result = asyncio.run(upgrade(_url_in_use(url)))
    except ConfigError as exc:
        raise _fail(console, exc) from None
    console.print(render_upgrade(result))


@ledger_app.command(name="where", cls=RealtalkCommand)
def where_command() -> None:
    """Print the ledger's database URL (password hidden): REALTALK_LEDGER_URL, else the default
    SQLite file, $XDG_DATA_HOME/realtalk/ledger.db (~/.local/share/realtalk/ledger.db)."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        url = _url_in_use(None)
    except ConfigError as exc:
        raise _fail(console, exc) from None
    # Plain output, one line, so scripts can use it.
    typer.echo(redact_url(url))


def render_upgrade(result: UpgradeResult) -> Text:
    """One line: what the upgrade did to which database."""
    if not result.changed:
        return Text.assemble(
            ("✓ ", "bold green"), f"ledger {result.url} is up to date (revision {result.to_revision})"
        )
    before = "an empty database" if result.from_revision is None else f"revision {result.from_revision}"
    return Text.assemble(
        ("✓ ", "bold green"), f"ledger {result.url} upgraded from {before} to revision {result.to_revision}"
    )
