"""The ``realtalk`` command: one Typer app, one module per command.

Commands stay thin: they read settings, wire library objects together and render. Decisions live
in ``realtalk.protocol``; I/O lives in ``realtalk.client`` and ``realtalk.emulator``.
"""

from __future__ import annotations

import typer

from realtalk import __version__
from realtalk.cli.devices import devices
from realtalk.cli.doctor import doctor
from realtalk.cli.emulate import emulate_app
from realtalk.cli.eval import eval_command
from realtalk.cli.help_format import RealtalkCommand, RealtalkGroup
from realtalk.cli.ledger import ledger_app
from realtalk.cli.report import report
from realtalk.cli.serve import serve
from realtalk.cli.talk import talk

app = typer.Typer(
    name="realtalk",
    cls=RealtalkGroup,
    help=(
        "Voice agents on Azure OpenAI gpt-realtime-1.5 (GA Realtime API).\n\n"
        "Configure with AZURE_OPENAI_ENDPOINT (the portal's Target URI), AZURE_OPENAI_DEPLOYMENT_NAME "
        "and AZURE_OPENAI_API_KEY (leave the key unset to sign in with Microsoft Entra ID). "
        "A .env file in the current folder is read too. Run `realtalk doctor` to check the setup."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"realtalk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Voice agents on Azure OpenAI gpt-realtime-1.5."""


app.command(name="talk", cls=RealtalkCommand)(talk)
app.command(name="serve", cls=RealtalkCommand)(serve)
app.command(name="doctor", cls=RealtalkCommand)(doctor)
app.add_typer(emulate_app, name="emulate")
app.command(name="devices", cls=RealtalkCommand)(devices)
app.command(name="report", cls=RealtalkCommand)(report)
app.add_typer(ledger_app, name="ledger")
app.command(name="eval", cls=RealtalkCommand)(eval_command)


def main() -> None:
    app()
