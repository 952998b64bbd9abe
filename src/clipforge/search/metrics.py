"""Request metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Three families are enough to run the server behind a load balancer and alert on it: request
counts by route, method and status; a latency histogram by route; and gauges of what is served
(vectors and width per index). The format is small enough that a dependency would cost more
than the fifty lines here.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

# Upper bounds in seconds, from a cached thumbnail (~1 ms) to a cold image query on a large model.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """Thread-safe counters and histograms of served requests."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        # Per route: non-cumulative counts per bucket (+1 slot for +Inf), sum and count.
        self._bucket_counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._queries: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        slot = bisect.bisect_left(self.buckets, seconds)  # first bound >= seconds
        with self._lock:
            self._requests[(route, method, str(status))] += 1
            counts = self._bucket_counts.setdefault(route, [0] * (len(self.buckets) + 1))
            counts[slot] += 1
            self._sums[route] += seconds

    def observe_query(self, index: str, kind: str) -> None:
        with self._lock:
            self._queries[(index, kind)] += 1

    def render(self, indices: dict[str, dict[str, int]]) -> str:
        """The exposition text; ``indices`` maps index name -> {"vectors": n, "dim": d}."""
        with self._lock:
            requests = dict(self._requests)
            buckets = {route: list(counts) for route, counts in self._bucket_counts.items()}
            sums = dict(self._sums)
            queries = dict(self._queries)
        lines: list[str] = []
        _family(lines, "clipforge_http_requests_total", "counter", "HTTP requests served.")
        for (route, method, status), n in sorted(requests.items()):
            lines.append(_sample("clipforge_http_requests_total", n,
                                 route=route, method=method, status=status))  # fmt: skip
        name = "clipforge_http_request_duration_seconds"
        _family(lines, name, "histogram", "Time from request to response, by route.")
        for route, counts in sorted(buckets.items()):
            running = 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                lines.append(_sample(f"{name}_bucket", running, route=route, le=_number(bound)))
            lines.append(_sample(f"{name}_sum", sums[route], route=route))
            lines.append(_sample(f"{name}_count", running, route=route))
        _family(lines, "clipforge_search_queries_total", "counter", "Searches by index and kind.")
        for (index, kind), n in sorted(queries.items()):
            lines.append(_sample("clipforge_search_queries_total", n, index=index, kind=kind))
        for field, help_text in (("vectors", "Vectors in the index."), ("dim", "Vector width.")):
            _family(lines, f"clipforge_index_{field}", "gauge", help_text)
            for index, sizes in sorted(indices.items()):
                lines.append(_sample(f"clipforge_index_{field}", sizes[field], index=index))
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _sample(name: str, value: float, **labels: str) -> str:
    text = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return f"{name}{{{text}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(value) if isinstance(value, float) else str(value)
