"""Prometheus metrics of one gateway (``GET /metrics``), in a registry of its own.

Each app has its own ``CollectorRegistry`` (nothing process-global: two gateways in one process,
as in the tests, never mix their counts). Label values come from bounded sets: event types the
SDK knows (others count as ``other``), a capped set of error codes.

The per-frame figures (events and bytes each way, the added-latency histogram) are counted by each
session in plain integers (:class:`Traffic`: a few additions per frame, no lock) and summed when
``/metrics`` is scraped; prometheus_client's own counters, which take a lock per update, are used
for everything else.

The usage ledger's writer counts what it could not write; ``watch_ledger`` adds those counts
(``realtalk_ledger_*``), read from the ``Ledger`` at each scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from realtalk.gateway.policy import ALLOWED_EVENT_TYPES
from realtalk.ledger import Ledger
from realtalk.ledger.leases import SessionLeases
from realtalk.protocol import TurnCost
from realtalk.protocol.events import KNOWN_SERVER_EVENT_TYPES

__all__ = ["CLIENT_TO_UPSTREAM", "CONTENT_TYPE_LATEST", "UPSTREAM_TO_CLIENT", "GatewayMetrics", "Traffic"]

CLIENT_TO_UPSTREAM: Final = "client_to_upstream"
UPSTREAM_TO_CLIENT: Final = "upstream_to_client"
_DIRECTIONS: Final = (CLIENT_TO_UPSTREAM, UPSTREAM_TO_CLIENT)
_EVENT_TYPES: Final = (
    frozenset(KNOWN_SERVER_EVENT_TYPES)
    | frozenset(ALLOWED_EVENT_TYPES)
    | {
        "realtalk.playback",
        "realtalk.flushed",
    }
)
_MAX_CODES: Final = 64
LATENCY_BUCKETS_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Traffic:
    """One session's frame counts, bytes and added-latency buckets (index 0: inbound, 1: outbound)."""

    __slots__ = ("appends", "bytes", "deltas", "events", "latency_buckets", "latency_sum_s")

    def __init__(self) -> None:
        self.appends = 0  # fast-path client appends
        self.deltas = 0  # fast-path upstream audio deltas
        self.events: dict[tuple[str, str], int] = {}  # everything else, by (direction, type)
        self.bytes = [0, 0]
        self.latency_buckets = [[0] * (len(LATENCY_BUCKETS_S) + 1), [0] * (len(LATENCY_BUCKETS_S) + 1)]
        self.latency_sum_s = [0.0, 0.0]

    def event(self, direction: str, event_type: object) -> None:
        label = event_type if isinstance(event_type, str) and event_type in _EVENT_TYPES else "other"
        key = (direction, label)
        self.events[key] = self.events.get(key, 0) + 1

    def latency(self, index: int, seconds: float) -> None:
        self.latency_buckets[index][bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s[index] += seconds

    def append(self, size: int, seconds: float) -> None:
        """A fast-path client append of ``size`` bytes, forwarded ``seconds`` after it arrived."""
        self.appends += 1
        self.bytes[0] += size
        self.latency_buckets[0][bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s[0] += seconds

    def delta(self, size: int, seconds: float | None) -> None:
        """A fast-path upstream audio delta of ``size`` bytes; ``seconds`` to forward it, or ``None``
        when it was not forwarded (audio of a reply the UI already cut)."""
        self.deltas += 1
        self.bytes[1] += size
        if seconds is not None:
            self.latency_buckets[1][bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            self.latency_sum_s[1] += seconds

    def merge_into(self, total: Traffic) -> None:
        total.appends += self.appends
        total.deltas += self.deltas
        for key, count in self.events.items():
            total.events[key] = total.events.get(key, 0) + count
        for index in (0, 1):
            total.bytes[index] += self.bytes[index]
            total.latency_sum_s[index] += self.latency_sum_s[index]
            buckets = total.latency_buckets[index]
            for bucket, count in enumerate(self.latency_buckets[index]):
                buckets[bucket] += count


class _TrafficCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        total = Traffic()
        self._metrics.retired.merge_into(total)
        for traffic in self._metrics.live:
            traffic.merge_into(total)
        events = CounterMetricFamily(
            "realtalk_gateway_events",
            "Events forwarded or handled, by direction and type.",
            labels=["direction", "type"],
        )
        counts = dict(total.events)
        for key, fast in (
            ((CLIENT_TO_UPSTREAM, "input_audio_buffer.append"), total.appends),
            ((UPSTREAM_TO_CLIENT, "response.output_audio.delta"), total.deltas),
        ):
            if fast:
                counts[key] = counts.get(key, 0) + fast
        for (direction, event_type), count in sorted(counts.items()):
            events.add_metric([direction, event_type], count)
        yield events
        sent = CounterMetricFamily(
            "realtalk_gateway_bytes", "Bytes of frames relayed, by direction.", labels=["direction"]
        )
        for index, direction in enumerate(_DIRECTIONS):
            sent.add_metric([direction], total.bytes[index])
        yield sent
        latency = HistogramMetricFamily(
            "realtalk_gateway_added_latency_seconds",
            "Time from a frame's arrival at the gateway to its forwarding, by direction.",
            labels=["direction"],
        )
        for index, direction in enumerate(_DIRECTIONS):
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*LATENCY_BUCKETS_S, float("inf")), total.latency_buckets[index], strict=True
            ):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([direction], buckets, total.latency_sum_s[index])
        yield latency


class _LedgerCollector(Collector):
    """The ledger writer's own counts, read when ``/metrics`` is scraped (they are plain
    integers the writer keeps; nothing is counted twice)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        ledger = self._metrics.ledger
        yield GaugeMetricFamily(
            "realtalk_ledger_enabled",
            "1 when sessions are written to the usage ledger, 0 when it is off or could not be opened.",
            value=0 if ledger is None else 1,
        )
        if ledger is None:
            return
        yield CounterMetricFamily(
            "realtalk_ledger_rows_written",
            "Ledger rows committed (sessions, responses and their updates).",
            value=ledger.written_rows,
        )
        yield GaugeMetricFamily(
            "realtalk_ledger_queue_capacity",
            "Rows the ledger writer's queue holds before it drops new ones.",
            value=ledger.max_queue,
        )
        yield CounterMetricFamily(
            "realtalk_ledger_rows_dropped",
            "Ledger rows dropped because the writer's queue was full (or the ledger was closing).",
            value=ledger.dropped_rows,
        )
        yield CounterMetricFamily(
            "realtalk_ledger_rows_rejected",
            "Ledger rows the database refused (a constraint or data error), logged and skipped.",
            value=ledger.rejected_rows,
        )
        yield GaugeMetricFamily(
            "realtalk_ledger_rows_pending",
            "Ledger rows accepted but not committed yet (queued, or being written or retried).",
            value=ledger.pending_rows,
        )
        leases = self._metrics.leases
        if leases is not None:
            yield GaugeMetricFamily(
                "realtalk_ledger_session_leases_held",
                "Open sessions this replica holds a lease for in the ledger (the shared per-user count).",
                value=leases.held,
            )


class GatewayMetrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.live: set[Traffic] = set()
        self.retired = Traffic()
        self.sessions_active = Gauge("realtalk_gateway_sessions_active", "Open client sessions.", registry=r)
        self.sessions = Counter("realtalk_gateway_sessions", "Client sessions accepted.", registry=r)
        self.session_ends = Counter(
            "realtalk_gateway_session_ends", "Sessions ended, by why.", ["reason"], registry=r
        )
        self.tokens = Counter(
            "realtalk_gateway_tokens",
            "Tokens billed, by modality and kind (input, cached_input, output).",
            ["modality", "kind"],
            registry=r,
        )
        self.cost_usd = Counter(
            "realtalk_gateway_cost_usd", "Dollars billed, by modality.", ["modality"], registry=r
        )
        self.upstream_errors = Counter(
            "realtalk_gateway_upstream_errors", "Error events from upstream, by code.", ["code"], registry=r
        )
        self.refusals = Counter(
            "realtalk_gateway_refusals", "Refused connections and events, by reason.", ["reason"], registry=r
        )
        self.voice_to_voice = Histogram(
            "realtalk_gateway_voice_to_voice_seconds",
            "Voice-to-voice latency of UI sessions.",
            buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        # WebRTC and SIP calls (the audio does not pass through the gateway; it watches them).
        self.calls = Counter(
            "realtalk_gateway_calls",
            "Calls the gateway started or answered, by transport (webrtc, sip).",
            ["transport"],
            registry=r,
        )
        self.sip_decisions = Counter(
            "realtalk_gateway_sip_decisions",
            "Incoming SIP calls, by decision (accepted, rejected, referred) and reason.",
            ["decision", "reason"],
            registry=r,
        )
        self.dtmf_digits = Counter(
            "realtalk_gateway_dtmf_digits", "DTMF digits received on SIP calls.", registry=r
        )
        r.register(_TrafficCollector(self))
        self.ledger: Ledger | None = None
        self.leases: SessionLeases | None = None
        r.register(_LedgerCollector(self))
        self._codes: set[str] = set()

    def watch_ledger(self, ledger: Ledger | None, leases: SessionLeases | None = None) -> None:
        """Report ``ledger``'s writer counts and the session leases held (``realtalk_ledger_*``)
        from now on; ``None``: the gateway has no ledger (``realtalk_ledger_enabled 0``)."""
        self.ledger = ledger
        self.leases = leases

    def open_traffic(self) -> Traffic:
        """A session's counters, summed into the metrics until ``close_traffic``."""
        traffic = Traffic()
        self.live.add(traffic)
        return traffic

    def close_traffic(self, traffic: Traffic) -> None:
        self.live.discard(traffic)
        traffic.merge_into(self.retired)

    def refused(self, reason: str) -> None:
        self.refusals.labels(self._bounded(reason)).inc()

    def upstream_error(self, code: str | None) -> None:
        self.upstream_errors.labels(self._bounded(code or "none")).inc()

    def _bounded(self, code: str) -> str:
        if code in self._codes:
            return code
        if len(self._codes) >= _MAX_CODES:
            return "other"
        self._codes.add(code)
        return code

    def turn(self, turn: TurnCost) -> None:
        usage, cost = turn.usage, turn.cost
        for modality in ("text", "audio", "image"):
            cached = getattr(usage, f"cached_{modality}_in")
            self.tokens.labels(modality, "input").inc(getattr(usage, f"{modality}_in") - cached)
            self.tokens.labels(modality, "cached_input").inc(cached)
            spent: Decimal = getattr(cost, f"{modality}_in_usd") + getattr(cost, f"{modality}_cached_usd")
            if modality != "image":
                self.tokens.labels(modality, "output").inc(getattr(usage, f"{modality}_out"))
                spent += getattr(cost, f"{modality}_out_usd")
            self.cost_usd.labels(modality).inc(float(spent))

    def render(self) -> bytes:
        return generate_latest(self.registry)
