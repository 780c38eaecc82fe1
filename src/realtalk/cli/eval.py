"""``realtalk eval``: run evaluation suites against the configured endpoint or the embedded emulator.

With ``AZURE_OPENAI_ENDPOINT`` configured the cases run against that deployment (WAVs paced in real
time); without it, an emulator per suite is started in this process whose recogniser knows that
suite's sentences, and the alphanumeric WAVs are sent faster than real time. Writes results.json
and report.html; ``--compare`` prints two earlier runs side by side instead. Scores are results,
not failures: the exit status is 0 when the run completed, 1 when cases errored (or none could
run), 2 for usage errors.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.cli.embedded import EMULATOR_MODEL, children_ignore_ctrl_c
from realtalk.client.agent_file import load_agent_file
from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.emulator import Emulator, EmulatorConfig
from realtalk.errors import ConfigError
from realtalk.eval.cases import DEFAULT_SUITES, SUITES, Case, builtin_cases, case_phrases, load_cases
from realtalk.eval.compare import compare_runs, load_results, render_comparison
from realtalk.eval.report import write_report
from realtalk.eval.runner import (
    DEFAULT_TRANSCRIPTION_MODEL,
    EMULATOR_ECHO_PREFIX,
    CaseResult,
    RunResult,
    estimate_cost_range,
    results_dict,
    run_cases,
    write_results,
)
from realtalk.eval.suite import METRICS, Grader
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.settings import Settings, environment_secret, resolve_connection

__all__ = ["EXIT_ERRORS", "EXIT_OK", "EXIT_USAGE", "eval_command"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EMULATOR_SPEED = 4.0  # the embedded emulator hears the WAVs 4x faster than real time


class _Progress:
    """A progress bar of cases done (on a terminal), and a line per case that errored."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("running cases"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("cases", total=total)

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def done(self, result: CaseResult) -> None:
        self.bar.advance(self.task)
        if result.status == "error":
            self.console.print(f"[yellow]{result.suite}/{result.case_id}:[/] {result.error}")


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
        typer.Option(
            "--suite",
            help=f"Built-in suites to run, comma-separated ({', '.join(SUITES)}), or 'all'.",
        ),
    ] = ",".join(DEFAULT_SUITES),
    cases_file: Annotated[
        Path | None,
        typer.Option("--cases", help="Your own cases (YAML); run instead of --suite.", dir_okay=False),
    ] = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            metavar="A.json B.json",
            help="Compare two runs' results.json (B against A: deltas, significance); runs nothing.",
            dir_okay=False,
        ),
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
    out: Annotated[
        Path, typer.Option("--out", help="Folder for eval-<date-time>/ (results.json and report.html).")
    ] = Path("."),
    profile_path: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="An agent profile (TOML, as `realtalk talk --profile`): its voice, VAD and transcription "
            "model are used; each suite adds its own instructions. Imports its tools' modules.",
        ),
    ] = None,
    grader: Annotated[
        str | None,
        typer.Option(
            "--grader",
            metavar="DEPLOYMENT",
            help="Also have this model (a deployment on the same resource, through the Responses API) "
            "judge whether each instructions-suite reply follows its instructions.",
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
    """Measure a deployment the way the seeds say to test it, repeatably, with numbers and their cost.

    Suites: alphanumeric (codes read out, heard and read back: exact match and character error
    rate), interruption (talking over the reply: how fast the voice stops, where it was truncated,
    whether the next answer follows), latency (voice to voice, p50/p95, with VAD and first-audio
    components), instructions (rules of the system prompt followed), tools (the right tool with the
    right arguments from a spoken request). Default: alphanumeric, interruption, latency.

    Writes eval-<date-time>/results.json and report.html (charts, one self-contained file).
    --compare A.json B.json prints two runs side by side instead.

    Without AZURE_OPENAI_ENDPOINT, runs against an embedded emulator. Exit status: 0 the run completed
    (whatever the scores); 1 cases errored; 2 a usage or configuration error.
    """
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    if compare is not None:
        _compare(compare, console, errors)
        return
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
    suites = ", ".join(dict.fromkeys(case.suite for case in cases))
    console.print(
        f"{len(cases)} cases ({suites}); estimated cost ${low:.4f} to ${high:.4f} at {model} list prices"
        + (f" (cap ${limit})" if limit is not None else "")
        + (", plus the grader's text tokens" if grader else "")
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
                grader_model=grader,
                console=console,
            )
        )
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    elapsed = time.monotonic() - started
    for table in render_run(run):
        console.print(table)
    for part in render_summary(run, elapsed):
        console.print(part)
    path = write_results(run, out)
    console.print(f"results: {path}")
    report = _write_report(run, path.parent, errors)
    if report is not None:
        console.print(f"report:  {report}")
    if run.errored or (not run.skipped and not any(c.status == "ok" for c in run.cases)):
        raise typer.Exit(EXIT_ERRORS)


def _write_report(run: RunResult, folder: Path, errors: Console) -> Path | None:
    try:
        return write_report(results_dict(run), folder)
    except OSError as exc:
        errors.print(f"[yellow]warning:[/yellow] could not write the HTML report: {exc}")
        return None


def _compare(paths: tuple[Path, Path], console: Console, errors: Console) -> None:
    try:
        a, b = (load_results(path) for path in paths)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    console.print(f"A: {paths[0]}\nB: {paths[1]}")
    for part in render_comparison(compare_runs(a, b)):
        console.print(part)


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
    if names == ["all"]:
        names = list(SUITES)
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
    grader_model: str | None,
    console: Console,
) -> RunResult:
    async with AsyncExitStack() as stack:
        endpoint: ResolvedEndpoint
        credential: Credential
        suite_endpoints: dict[str, ResolvedEndpoint] = {}
        if embedded:
            # One emulator per suite: a recogniser that knows only its suite's sentences hears them
            # as well as a real one would (one that knew every suite's would confuse similar words).
            key = secrets.token_urlsafe(24)
            suites = list(dict.fromkeys(case.suite for case in cases))
            with children_ignore_ctrl_c():
                for name in suites:
                    phrases = case_phrases(case for case in cases if case.suite == name)
                    emulator = Emulator(
                        EmulatorConfig(keys=(key,), pace=None, phrases=phrases, mishear=misheard)
                    )
                    await stack.enter_async_context(emulator)
                    suite_endpoints[name] = resolve_endpoint(emulator.http_base_url, EMULATOR_MODEL)
            endpoint = suite_endpoints[suites[0]]
            credential = ApiKeyCredential(key, style="bearer", source="realtalk, made at random for this run")
            console.print(
                f"No AZURE_OPENAI_ENDPOINT configured: running against the local emulator "
                f"({emulator.engines.description}; echo replies; one instance per suite)"
            )
        else:
            endpoint, credential = resolve_connection(settings)
            stack.push_async_callback(credential.close)
            console.print(f"running against {endpoint.deployment} at {endpoint.host}")
        progress = _Progress(console, len(cases))
        stack.enter_context(progress)
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
            grader=None if grader_model is None else Grader(endpoint, credential, grader_model),
            on_result=progress.done,
            suite_endpoints=suite_endpoints,
        )


def _metric(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    info = METRICS.get(name)
    if info is not None and info.unit == "ms":
        return f"{value:.0f}"
    if info is not None and info.unit == "count":
        return f"{value:g}"
    return f"{value:.2f}"


def _check(verdict: bool | None) -> str:
    return "—" if verdict is None else ("yes" if verdict else "[red]no[/]")


def _label(name: str) -> str:
    info = METRICS.get(name)
    return name if info is None else f"{info.label}" + (" (ms)" if info.unit == "ms" else "")


def render_run(run: RunResult) -> list[Table]:
    """One table per suite, a row per case: expected, heard, the reply, then the suite's metrics
    and checks."""
    tables = []
    for suite in run.suites:
        cases = [case for case in run.cases if case.suite == suite]
        metrics = list(dict.fromkeys(name for case in cases for name in case.metrics))
        checks = list(dict.fromkeys(name for case in cases for name in case.checks))
        table = Table(title=f"{suite}: {run.deployment} ({run.endpoint_kind})", show_lines=False)
        for name in ("case", "expected", "heard", "reply"):
            table.add_column(name, overflow="fold")
        for name in metrics:
            table.add_column(name.removesuffix("_ms").replace("_", " "), justify="right")
        for name in checks:
            table.add_column(name.replace("_", " "), justify="center")
        for case in cases:
            if case.status != "ok" and not case.metrics and not case.checks:
                table.add_row(
                    case.case_id,
                    case.expected,
                    f"[yellow]{case.status}[/]: {case.error}",
                    *[""] * (1 + len(metrics) + len(checks)),
                )
                continue
            table.add_row(
                case.case_id,
                case.expected,
                _cell(case.transcript),
                _cell(case.reply) + (f" [yellow]({case.error})[/]" if case.error else ""),
                *[_metric(name, case.metrics.get(name)) for name in metrics],
                *[_check(case.checks.get(name)) for name in checks],
            )
        tables.append(table)
    return tables


def _cell(value: str | None) -> str:
    return "—" if value is None else value


def render_summary(run: RunResult, elapsed_s: float) -> list[Table | str]:
    """Per suite: each metric's p50 and p95, each check's pass rate; then counts, cost and time."""
    totals = run.totals()
    table = Table(title="summary", show_lines=False)
    for name, justify in (
        ("suite", "left"),
        ("figure", "left"),
        ("p50 / rate", "right"),
        ("p95", "right"),
        ("n", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for suite, summary in totals["suites"].items():
        first = True
        for name, figures in summary["metrics"].items():
            table.add_row(
                suite if first else "",
                _label(name),
                _metric(name, figures["p50"]),
                _metric(name, figures["p95"]),
                str(figures["n"]),
            )
            first = False
        for name, figures in summary["checks"].items():
            rate = figures["rate"]
            table.add_row(
                suite if first else "",
                name.replace("_", " "),
                "—" if rate is None else f"{rate:.0%} ({figures['passed']}/{figures['n']})",
                "",
                str(figures["n"]),
            )
            first = False
    footer = (
        (f"model version (from the server): {run.model_version}\n" if run.model_version else "")
        + f"{totals['ok']} ok, {totals['errors']} errored, {totals['skipped']} skipped; "
        f"cost ${run.cost_usd:.4f}; {elapsed_s:.1f} s"
    )
    return [table, footer]
