"""``realtalk eval``: run evaluation suites against the configured endpoint or the embedded emulator.

With ``AZURE_OPENAI_ENDPOINT`` configured the cases run against that deployment (WAVs paced in real
time); without it, an emulator is started in this process whose recogniser knows the cases'
sentences, and the WAVs are sent faster than real time. Scores are results, not failures: the exit
status is 0 when the run completed, 1 when cases errored (or none could run), 2 for usage errors.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import AsyncExitStack
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.cli.embedded import EMULATOR_MODEL, children_ignore_ctrl_c
from realtalk.client.agent_file import load_agent_file
from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.emulator import Emulator, EmulatorConfig
from realtalk.errors import ConfigError
from realtalk.eval.cases import SUITES, Case, builtin_cases, case_phrases, load_cases
from realtalk.eval.runner import (
    DEFAULT_TRANSCRIPTION_MODEL,
    EMULATOR_ECHO_PREFIX,
    RunResult,
    estimate_cost_range,
    run_cases,
    write_results,
)
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.settings import Settings, environment_secret, resolve_connection

__all__ = ["EXIT_ERRORS", "EXIT_OK", "EXIT_USAGE", "eval_command"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EMULATOR_SPEED = 4.0  # the embedded emulator hears the WAVs 4x faster than real time


def _parse_mishear(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        heard, sep, written = value.partition("=")
        if not sep or not heard.strip():
            raise ConfigError(
                f"--mishear {value!r} is not HEARD=WRITTEN", variable="--mishear", example="--mishear eight=a"
            )
        pairs.append((heard.strip(), written.strip()))
    return tuple(pairs)


def eval_command(
    suite: Annotated[
        str,
        typer.Option("--suite", help=f"Built-in suites to run, comma-separated: {', '.join(SUITES)}."),
    ] = "alphanumeric",
    cases_file: Annotated[
        Path | None,
        typer.Option("--cases", help="Your own cases (YAML); run instead of --suite.", dir_okay=False),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Cases run at once.")] = 4,
    max_usd: Annotated[
        str | None,
        typer.Option(
            "--max-usd", metavar="USD", help="Start no case that would take the run's cost past this (USD)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the estimated cost and exit; opens no session.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for eval-<date-time>/results.json.")] = Path("."),
    profile_path: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="An agent profile (TOML, as `realtalk talk --profile`): its voice, VAD and transcription "
            "model are used; the read-back instructions are added. Imports its tools' modules.",
        ),
    ] = None,
    mishear: Annotated[
        list[str] | None,
        typer.Option(
            "--mishear",
            metavar="HEARD=WRITTEN",
            help="Embedded emulator only: make it mishear HEARD as WRITTEN (repeatable), to see the "
            "scores catch recognition errors.",
        ),
    ] = None,
    transcription_model: Annotated[
        str,
        typer.Option(
            "--transcription-model",
            help="Model (on Azure: deployment) that transcribes the input, unless --profile names one.",
        ),
    ] = DEFAULT_TRANSCRIPTION_MODEL,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per case.")] = 30.0,
) -> None:
    """Measure how well the deployment hears codes: each case's WAV is spoken to a fresh session whose
    instructions ask for the code read back; the input transcript and the read-back are scored (exact
    match and character error rate after normalisation). Writes eval-<date-time>/results.json.

    Without AZURE_OPENAI_ENDPOINT, runs against an embedded emulator. Exit status: 0 the run completed
    (whatever the scores); 1 cases errored; 2 a usage or configuration error.
    """
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        limit = _parse_usd(max_usd)
        misheard = _parse_mishear(mishear or [])
        cases = _select_cases(suite, cases_file)
        settings = load_checked_settings()
        profile = None
        if profile_path is not None:
            profile = load_agent_file(profile_path, secret=environment_secret).agent
        embedded = settings.azure_openai_endpoint is None
        if misheard and not embedded:
            raise ConfigError(
                "--mishear scripts the embedded emulator's recogniser, not a configured endpoint's",
                variable="--mishear",
                example="unset AZURE_OPENAI_ENDPOINT to run against the embedded emulator",
            )
        model = EMULATOR_MODEL if embedded else (settings.pricing_model or EMULATOR_MODEL)
        prices = prices_for(model, settings.prices)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None

    low, high = estimate_cost_range(cases, prices)
    console.print(
        f"{len(cases)} cases; estimated cost ${low:.4f} to ${high:.4f} at {model} list prices"
        + (f" (cap ${limit})" if limit is not None else "")
    )
    if dry_run:
        return

    started = time.monotonic()
    try:
        run = asyncio.run(
            _run(
                cases,
                settings=settings,
                embedded=embedded,
                profile=profile,
                prices=prices,
                model=model,
                concurrency=concurrency,
                max_usd=limit,
                misheard=misheard,
                timeout_s=timeout,
                transcription_model=transcription_model,
                console=console,
            )
        )
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    elapsed = time.monotonic() - started
    console.print(render_run(run))
    console.print(render_totals(run, elapsed))
    path = write_results(run, out)
    console.print(f"results: {path}")
    if run.errored or (not run.skipped and not any(c.status == "ok" for c in run.cases)):
        raise typer.Exit(EXIT_ERRORS)


def _parse_usd(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount <= 0:
        raise ConfigError(
            f"--max-usd must be a positive amount, got {value!r}", variable="--max-usd", example="0.50"
        )
    return amount


def _select_cases(suite: str, cases_file: Path | None) -> tuple[Case, ...]:
    if cases_file is not None:
        return load_cases(cases_file)
    names = [name.strip() for name in suite.split(",") if name.strip()]
    if not names:
        raise ConfigError("--suite names no suite", variable="--suite", example="--suite alphanumeric")
    return tuple(case for name in names for case in builtin_cases(name))


async def _run(
    cases: tuple[Case, ...],
    *,
    settings: Settings,
    embedded: bool,
    profile: AgentProfile | None,
    prices: Prices,
    model: str,
    concurrency: int,
    max_usd: Decimal | None,
    misheard: tuple[tuple[str, str], ...],
    timeout_s: float,
    transcription_model: str,
    console: Console,
) -> RunResult:
    async with AsyncExitStack() as stack:
        endpoint: ResolvedEndpoint
        credential: Credential
        if embedded:
            key = secrets.token_urlsafe(24)
            emulator = Emulator(
                EmulatorConfig(keys=(key,), pace=None, phrases=case_phrases(cases), mishear=misheard)
            )
            with children_ignore_ctrl_c():
                await stack.enter_async_context(emulator)
            endpoint = resolve_endpoint(emulator.http_base_url, EMULATOR_MODEL)
            credential = ApiKeyCredential(key, style="bearer", source="realtalk, made at random for this run")
            console.print(
                f"No AZURE_OPENAI_ENDPOINT configured: running against the local emulator "
                f"({emulator.engines.description}; echo replies)"
            )
        else:
            endpoint, credential = resolve_connection(settings)
            stack.push_async_callback(credential.close)
            console.print(f"running against {endpoint.deployment} at {endpoint.host}")
        return await run_cases(
            cases,
            endpoint=endpoint,
            credential=credential,
            profile=profile,
            prices=prices,
            concurrency=concurrency,
            max_usd=max_usd,
            speed=EMULATOR_SPEED if embedded else 1.0,
            timeout_s=timeout_s,
            endpoint_kind="emulator" if embedded else "azure",
            model=model,
            reply_prefix=EMULATOR_ECHO_PREFIX if embedded else None,
            transcription_model=transcription_model,
        )


def _cell(value: str | None) -> str:
    return "—" if value is None else value


def render_run(run: RunResult) -> Table:
    """One row per case: expected, heard, read back, exact (transcript/read-back) and CER."""
    table = Table(title=f"realtalk eval: {run.deployment} ({run.endpoint_kind})", show_lines=False)
    for name in ("case", "expected", "heard", "read back", "exact", "CER heard", "CER read back"):
        table.add_column(name, overflow="fold")
    for case in run.cases:
        ts, rs = case.transcript_score, case.readback_score
        if case.status != "ok" and ts is None:
            table.add_row(
                case.case_id, case.expected, f"[yellow]{case.status}[/]: {case.error}", "", "", "", ""
            )
            continue
        exact = " / ".join("—" if s is None else ("yes" if s.exact else "[red]no[/]") for s in (ts, rs))
        table.add_row(
            case.case_id,
            case.expected,
            _cell(case.transcript),
            _cell(case.readback),
            exact,
            "—" if ts is None else f"{ts.cer:.2f}",
            "—" if rs is None else f"{rs.cer:.2f}",
        )
    return table


def render_totals(run: RunResult, elapsed_s: float) -> str:
    totals = run.totals()

    def rate(name: str) -> str:
        exact, cer = totals[f"{name}_exact_rate"], totals[f"{name}_mean_cer"]
        return "—" if exact is None else f"{exact:.0%} exact, mean CER {cer:.3f}"

    return (
        f"transcript: {rate('transcript')}; read-back: {rate('readback')}\n"
        f"{totals['ok']} ok, {totals['errors']} errored, {totals['skipped']} skipped; "
        f"cost ${run.cost_usd:.4f}; {elapsed_s:.1f} s"
    )
