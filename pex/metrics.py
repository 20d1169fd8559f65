"""What an operated OpenPEX tells Prometheus (`GET /metrics`): how negotiations are answered and
how long deciding and committing take, how full group commits are, how late the lifecycle timer
fires, HTTP requests, and, read off the view at each scrape, instances and nodes by status and
the log's position; and the last signed tree head's size (set by the Notary). One registry per service, so that several in one process (tests) keep
their own figures."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: a decision takes well under a millisecond to a few; a commit one fsync or more.
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.negotiations = Counter("openpex_negotiations", "Proposals and counters answered, by reply",
                                    ["reply"], registry=registry)
        self.decision_seconds = Histogram("openpex_decision_seconds", "Deciding one proposal or reply (in memory)",
                                          buckets=FAST, registry=registry)
        self.commit_seconds = Histogram("openpex_commit_seconds", "Saving one group commit's events",
                                        buckets=FAST, registry=registry)
        self.batch_calls = Histogram("openpex_batch_calls", "Calls answered by one group commit",
                                     buckets=(1, 2, 4, 8, 16, 32), registry=registry)
        self.timer_lag_seconds = Histogram("openpex_timer_lag_seconds",
                                           "How late the lifecycle timer (lapses, starts, ends) was carried out",
                                           buckets=LAG, registry=registry)
        self.http_requests = Counter("openpex_http_requests", "HTTP requests by route, method and status",
                                     ["route", "method", "status"], registry=registry)
        self.instances = Gauge("openpex_instances", "Instances by status", ["status"], registry=registry)
        self.nodes = Gauge("openpex_nodes", "Nodes by status", ["status"], registry=registry)
        self.log_position = Gauge("openpex_log_position", "The last notification applied to the view",
                                  registry=registry)
        self.tree_head_size = Gauge("openpex_tree_head_size", "Events covered by the last signed tree head",
                                    registry=registry)

    def exposition(self, instances: Mapping[str, int], nodes: Mapping[str, int], position: int) -> bytes:
        """The text format, with the gauges read off the view just now."""
        for gauge, counts in ((self.instances, instances), (self.nodes, nodes)):
            gauge.clear()  # a status nobody is in any more is left out, not kept at its last count
            for status, count in counts.items():
                gauge.labels(status=status).set(count)
        self.log_position.set(position)
        return generate_latest(self.registry)
