"""One service at four times the load it sustains: do the requests it accepts stay fast, are
the rest refused at once, and do its probes still answer?

Run: `make bench-overload` (or `python -m bench.service_overload --out overload.json` after
`python -m services.pin`); about two minutes. The service runs through the real supervisor
(`python -m services.serve`) on a free port, its logs in a temporary `MONITORING_DIR`, with the
admission bound and time limit it has in production (`services.http.Admission`). The request is
the first route's example from the service's OpenAPI document, its first list made `--items`
long so that a request costs the service more than the client (or `--body-file`).

1. unloaded: one client, one request after another: the p50 and p99 of a request alone;
2. sustained: as many clients as the bound (closed loop): the requests per second it serves;
3. overload: requests arriving at `--factor` times that rate (open loop: Poisson arrivals,
   each on a connection of its own, whatever became of the earlier ones), with `/readyz` and
   `/livez` probed every 100 ms.

Measured in 3: the p99 of accepted requests against twice the unloaded p99; how quickly the
refused ones (503) were answered and whether they carried `Retry-After`; any other answer or
error (expected: none); the slowest probe (bound: 1 s). Client and service share this machine's
cores, so the client's own work is in every figure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from bench.service_faults import checked_request, served_project, supervisor
from projects.core import cli
from projects.core.cli import StageError
from services.common import MAX_IN_FLIGHT

log = logging.getLogger(__name__)
app = cli.app()

TIMEOUT = 60.0  # a client's: far over the time limit, so a slow answer is measured, not cut
PROBE_EVERY = 0.1


def percentile(values: list[float], share: float) -> float | None:
    """The `share` quantile (0..1) of `values`, nearest rank; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def lengthened(body: Any, items: int) -> Any:
    """`body` with its first list made `items` long, by repeating its elements."""
    if not isinstance(body, dict):
        return body
    for name, value in body.items():
        if isinstance(value, list) and value:
            return body | {name: (value * (items // len(value) + 1))[:items]}
    return body


def unloaded(url: str, route: str, body: Any, seconds: float) -> list[float]:
    """Latencies (s) of requests sent one after another for `seconds`."""
    latencies = []
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            answer = client.post(route, json=body)
            if answer.status_code != 200:
                raise StageError(f"unloaded: {route} answered {answer.status_code}")
            latencies.append(time.perf_counter() - start)
    return latencies


def sustained(url: str, route: str, body: Any, clients: int, seconds: float) -> float:
    """Requests per second answered 200 by `clients` closed-loop clients over `seconds`."""
    counts = [0] * clients
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            while time.monotonic() < deadline:
                if client.post(route, json=body).status_code == 200:
                    counts[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


class Probes:
    """`/readyz` and `/livez`, each every `PROBE_EVERY` seconds, from a thread of their own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: dict[str, list[float]] = {"/readyz": [], "/livez": []}
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.wait(PROBE_EVERY):
                for path, latencies in self.latencies.items():
                    start = time.perf_counter()
                    try:
                        ok = client.get(path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    latencies.append(time.perf_counter() - start)
                    if not ok:
                        self.failures[path] += 1


async def _open_loop(
    url: str, route: str, body: Any, rate: float, seconds: float, seed: int
) -> list[tuple[str, float, bool]]:
    """Requests arriving at `rate` per second (Poisson) for `seconds`: for each, its outcome
    (the status, or the error's name), its latency and whether a 503 carried `Retry-After`."""
    outcomes: list[tuple[str, float, bool]] = []
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    rng = random.Random(seed)

    async def one(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        try:
            answer = await client.post(route, content=payload, headers=headers)
            outcome = str(answer.status_code)
            retry = "retry-after" in answer.headers
        except httpx.HTTPError as exc:
            outcome, retry = type(exc).__name__, False
        outcomes.append((outcome, time.perf_counter() - start, retry))

    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        due = 0.0
        while due < seconds:
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
            due += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    return outcomes


def overload(
    url: str, route: str, body: Any, rate: float, seconds: float, seed: int
) -> dict[str, Any]:
    """What became of requests at `rate` per second, and how the probes fared meanwhile."""
    with Probes(url) as probes:
        outcomes = asyncio.run(_open_loop(url, route, body, rate, seconds, seed))
    by_outcome = Counter(outcome for outcome, _, _ in outcomes)
    accepted = [latency for outcome, latency, _ in outcomes if outcome == "200"]
    refused = [latency for outcome, latency, _ in outcomes if outcome == "503"]
    return {
        "sent": len(outcomes),
        "rate": rate,
        "outcomes": dict(by_outcome),
        "accepted_p50_ms": _ms(percentile(accepted, 0.5)),
        "accepted_p99_ms": _ms(percentile(accepted, 0.99)),
        "refused_p99_ms": _ms(percentile(refused, 0.99)),
        "refused_without_retry_after": sum(
            1 for outcome, _, retry in outcomes if outcome == "503" and not retry
        ),
        "other": sum(n for outcome, n in by_outcome.items() if outcome not in ("200", "503")),
        "probe_max_ms": {path: _ms(max(v, default=0.0)) for path, v in probes.latencies.items()},
        "probe_failures": dict(probes.failures),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@app.command()
def main(
    project: Annotated[
        str | None, typer.Option(help="The project whose service is measured; the first served.")
    ] = None,
    items: Annotated[int, typer.Option(help="The length of the request's first list.")] = 50,
    factor: Annotated[float, typer.Option(help="The overload, times the sustained rate.")] = 4.0,
    seconds: Annotated[float, typer.Option(help="How long each phase lasts.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seeds the arrival times.")] = 0,
    body_file: Annotated[
        Path | None, typer.Option(help="A JSON request body to send instead.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the figures go, as JSON.")] = None,
) -> None:
    """Measure one service unloaded, at the rate it sustains, and at `factor` times that."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    project = served_project(project)
    with tempfile.TemporaryDirectory() as tmp, supervisor(project, Path(tmp)) as running:
        route, body = checked_request(running, body_file)
        body = body if body_file else lengthened(body, items)
        alone = unloaded(running.url, route, body, seconds / 2)
        rate = sustained(running.url, route, body, MAX_IN_FLIGHT, seconds / 2)
        loaded = overload(running.url, route, body, factor * rate, seconds, seed)
    figures = {
        "project": project,
        "route": route,
        "items": None if body_file else items,
        "unloaded_p50_ms": _ms(percentile(alone, 0.5)),
        "unloaded_p99_ms": _ms(percentile(alone, 0.99)),
        "sustained_per_s": round(rate, 1),
        "overload": loaded,
    }
    bound = 2 * (figures["unloaded_p99_ms"] or 0)
    figures["accepted_p99_within_twice_unloaded"] = (
        loaded["accepted_p99_ms"] is not None and loaded["accepted_p99_ms"] <= bound
    )
    print(json.dumps(figures, indent=2))
    if out:
        out.write_text(json.dumps(figures, indent=2) + "\n")
    log.info(
        "%s: unloaded p99 %s ms; %.0f/s sustained; at %.0f/s: accepted p99 %s ms (bound %.1f), "
        "%d refused (p99 %s ms), %d other, slowest probe %s ms",
        project, figures["unloaded_p99_ms"], rate, factor * rate, loaded["accepted_p99_ms"],
        bound, loaded["outcomes"].get("503", 0), loaded["refused_p99_ms"], loaded["other"],
        max(loaded["probe_max_ms"].values()),
    )  # fmt: skip


if __name__ == "__main__":
    cli.run(app)
