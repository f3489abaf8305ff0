"""The server's Prometheus metrics (``GET /metrics``), through ``prometheus_client``.

Named by Prometheus' conventions, with no per-key labels (a fleet's keys would make
unbounded series):

    stream_gru_stream_steps_total              samples stepped (exactly)
    stream_gru_ticks_total                     ticks run
    stream_gru_open_streams                    streams open now
    stream_gru_tick_size                       samples per tick (histogram)
    stream_gru_queue_duration_seconds          a sample's wait for its tick (histogram)
    stream_gru_tick_duration_seconds           a tick, from taken to answered (histogram)
    stream_gru_request_duration_seconds{protocol}   a request, received to answered
    stream_gru_rejected_samples_total{reason}  bad_sample, not_open, too_many_streams,
                                               queue_full, too_large, closing
    stream_gru_expired_streams_total           streams closed for being idle
    stream_gru_resumed_streams_total           expired streams resumed from the archive

The tick and queue histograms take a whole tick's values at once (numpy), so a tick
of 8,192 samples costs one call, not 8,192.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from .batcher import TickReport

__all__ = ["REJECT_REASONS", "BulkHistogram", "ServeMetrics"]

REJECT_REASONS = (
    "bad_sample", "not_open", "too_many_streams", "queue_full", "too_large", "closing",
)  # fmt: skip
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
_TICK_BUCKETS = tuple(float(2**i) for i in range(15))  # 1 .. 16,384 samples
_SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


class BulkHistogram(Collector):
    """A Prometheus histogram fed whole arrays at a time (``observe_many``)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, np.int64)  # the last: above all
        self.total = 0.0

    def observe_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).ravel()
        if values.size:
            self.counts += np.bincount(
                np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
            )
            self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative counts by upper bound, as the exposition format has them."""
        cumulative = np.cumsum(self.counts)
        out = [(f"{b:g}", int(c)) for b, c in zip(self.bounds, cumulative, strict=False)]
        return [*out, ("+Inf", int(cumulative[-1]))]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], self.buckets(), self.total)
        yield family


class ServeMetrics:
    """Every metric of one server, in its own registry."""

    def __init__(self, open_streams: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stream_steps = Counter("stream_gru_stream_steps", "Samples stepped.", registry=r)
        self.ticks = Counter("stream_gru_ticks", "Ticks run.", registry=r)
        self.open_streams = Gauge("stream_gru_open_streams", "Streams open now.", registry=r)
        self.open_streams.set_function(lambda: float(open_streams()))
        self.rejected = Counter(
            "stream_gru_rejected_samples", "Samples refused, by reason.", ["reason"], registry=r
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.expired = Counter(
            "stream_gru_expired_streams", "Streams closed for being idle.", registry=r
        )
        self.resumed = Counter(
            "stream_gru_resumed_streams", "Expired streams resumed from the archive.", registry=r
        )
        self.tick_size = BulkHistogram("stream_gru_tick_size", "Samples per tick.", _TICK_BUCKETS)
        self.queue_duration = BulkHistogram(
            "stream_gru_queue_duration_seconds", "A sample's wait for its tick.", _SECONDS_BUCKETS
        )
        self.tick_duration = BulkHistogram(
            "stream_gru_tick_duration_seconds", "A tick, from taken to answered.",
            _SECONDS_BUCKETS,
        )  # fmt: skip
        for histogram in (self.tick_size, self.queue_duration, self.tick_duration):
            r.register(histogram)
        self.request_duration = {
            protocol: BulkHistogram(
                "stream_gru_request_duration_seconds",
                "A request, from received to answered.",
                _SECONDS_BUCKETS,
            )
            for protocol in ("http", "websocket")
        }
        r.register(_Labelled(self.request_duration, "protocol"))

    def tick(self, report: TickReport) -> None:
        """``Batcher(on_tick=...)``: count a tick."""
        self.ticks.inc()
        self.stream_steps.inc(report.size - report.rejected)
        if report.rejected:
            self.rejected.labels("not_open").inc(report.rejected)
        self.tick_size.observe_many(np.array([report.size]))
        self.queue_duration.observe_many(report.waits)
        self.tick_duration.observe_many(np.array([report.seconds]))

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected.labels(reason).inc(n)

    def request(self, protocol: str, seconds: float) -> None:
        self.request_duration[protocol].observe_many(np.array([seconds]))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _Labelled(Collector):
    """Several ``BulkHistogram``s of one name, told apart by one label."""

    def __init__(self, histograms: dict[str, BulkHistogram], label: str) -> None:
        self.histograms = histograms
        self.label = label

    def collect(self) -> Iterable[HistogramMetricFamily]:
        first = next(iter(self.histograms.values()))
        family = HistogramMetricFamily(first.name, first.documentation, labels=[self.label])
        for value, histogram in self.histograms.items():
            family.add_metric([value], histogram.buckets(), histogram.total)
        yield family
