"""Each service at four times the load it sustains: do the requests it accepts stay fast, are
the rest refused at once, and do its probes still answer?

Run: `make bench-overload` (or `python -m bench.service_overload --out overload.json` after
`python -m services.pin`); about 80 s per service. Each service runs through the real
supervisor (`python -m services.serve`) on a free port, its logs in a temporary
`MONITORING_DIR`, with the admission bound and time limit it has in production
(`services.http.Admission`; `--max-in-flight` and `--max-running` try others), and without
the supervisor's look for a moved `@champion` (`--no-follow`: its first look imports MLflow,
seconds of a core that would fall in one phase or another). The request is the first route's
example from the service's OpenAPI document, its first list made `--items` long (or
`--body-file`).

Each phase lasts `--seconds`:

1. unloaded: one client, one request after another: the p50 and p99 of a request alone;
2. sustained: as many clients as the bound (closed loop): the requests per second it serves;
3. overload: requests arriving at `--factor` times that rate (open loop: Poisson arrivals,
   whatever became of the earlier ones), with `/readyz` and `/livez` probed every 100 ms.

Measured in 3: the p99 of accepted requests against twice the unloaded p99; how quickly the
refused ones (503) were answered and whether they carried `Retry-After`; any other answer or
error (expected: none); the slowest probe (bound: 1 s); how far behind its schedule the client
fell (if far, the client was measured, not the service).

The load comes from a process of its own on uvloop, sending prepared bytes over keep-alive
connections (`Connections`), or a connection per request with `--new-connections`. Client and
service still share this machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer

from bench.service_faults import checked_request, served_projects, supervisor
from projects.core import cli
from projects.core.cli import StageError
from services.common import MAX_IN_FLIGHT, MAX_RUNNING

log = logging.getLogger(__name__)
app = cli.app()

TIMEOUT = 60.0  # a client's: far over the time limit, so a slow answer is measured, not cut
PROBE_EVERY = 0.1

Sent = tuple[str, float, bool]  # a request's status (or error), latency (s), Retry-After?


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


def http_request(url: str, route: str, body: Any, close: bool = False) -> bytes:
    """The whole HTTP/1.1 request, built once: the load sends these bytes as they are. With
    `close`, it asks for its connection to be closed after the answer."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode() + payload


class Connections:
    """Keep-alive connections to one server, each lent to one request at a time and opened
    when none is idle, as a client's pool (or a load balancer's) does: the load is then many
    clients that reuse their connections, not a connection made and closed per request, which
    would measure the kernel's and the client's connection handling (and run this machine out
    of ephemeral ports at a few thousand requests a second)."""

    def __init__(self, url: str) -> None:
        where = urlsplit(url)
        self.host, self.port = where.hostname, where.port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, request: bytes) -> Sent:
        """One request: (its status or error, latency, Retry-After?)."""
        start = time.perf_counter()
        while True:
            reused = bool(self.idle)
            connection = self.idle.pop() if reused else None
            try:
                if connection is None:
                    connection = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), TIMEOUT
                    )
                status, retry, keep = await asyncio.wait_for(
                    self._exchange(*connection, request), TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                if connection is not None:
                    connection[1].close()
                if reused and isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
                    continue  # the server closed an idle connection: as clients do, retry
                return type(exc).__name__, time.perf_counter() - start, False
            if keep:
                self.idle.append(connection)
            else:
                connection[1].close()
            return status, time.perf_counter() - start, retry

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[str, bool, bool]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        await reader.readexactly(int(headers.get("content-length", 0)))
        keep = headers.get("connection") != "close"
        return lines[0].split(" ", 2)[1], "retry-after" in headers, keep

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _closed_loop(
    url: str, request: bytes, clients: int, seconds: float
) -> tuple[list[Sent], float]:
    """`clients` clients, each sending its next request when its last is answered, for
    `seconds`: what became of each request, and the seconds it took."""
    connections = Connections(url)
    outcomes: list[Sent] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            outcomes.append(await connections.send(request))

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    connections.close()
    return outcomes, time.perf_counter() - start


async def _open_loop(
    url: str, request: bytes, rate: float, seconds: float, seed: int
) -> tuple[list[Sent], list[float]]:
    """Requests arriving at `rate` per second (Poisson) for `seconds`, whatever became of the
    earlier ones: what became of each, and how late (s) the client sent each one."""
    connections = Connections(url)
    outcomes: list[Sent] = []
    late: list[float] = []
    rng = random.Random(seed)

    async def one() -> None:
        outcomes.append(await connections.send(request))

    tasks = []
    start = time.perf_counter()
    due = 0.0
    while due < seconds:
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        late.append(max(0.0, -delay))
        tasks.append(asyncio.create_task(one()))
        due += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    connections.close()
    return outcomes, late


def _load(phase: str, *args: Any) -> Any:
    """Run a load phase on uvloop, in the process this is called in."""
    import uvloop

    return uvloop.run({"closed": _closed_loop, "open": _open_loop}[phase](*args))


class Client:
    """The load, sent from a process of its own: the bench's threads (the probes) and the
    client's event loop do not take turns on one interpreter lock, and the client's loop is
    uvloop's, the cheapest this machine has, so that the service, not the client, is measured."""

    def __enter__(self) -> Client:
        context = multiprocessing.get_context("spawn")  # not fork: this process has threads
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown()

    def closed(
        self, url: str, request: bytes, clients: int, seconds: float
    ) -> tuple[list[Sent], float]:
        """`_closed_loop` in the client's process."""
        return self._pool.submit(_load, "closed", url, request, clients, seconds).result()

    def open(
        self, url: str, request: bytes, rate: float, seconds: float, seed: int
    ) -> tuple[list[Sent], list[float]]:
        """`_open_loop` in the client's process."""
        return self._pool.submit(_load, "open", url, request, rate, seconds, seed).result()


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


def overload(
    client: Client, url: str, request: bytes, rate: float, seconds: float, seed: int
) -> dict[str, Any]:
    """What became of requests at `rate` per second, and how the probes fared meanwhile."""
    with Probes(url) as probes:
        outcomes, late = client.open(url, request, rate, seconds, seed)
    by_outcome = Counter(outcome for outcome, _, _ in outcomes)
    accepted = [latency for outcome, latency, _ in outcomes if outcome == "200"]
    refused = [latency for outcome, latency, _ in outcomes if outcome == "503"]
    return {
        "rate_per_s": round(rate, 1),
        "sent": len(outcomes),
        "outcomes": dict(by_outcome),
        "accepted_p50_ms": _ms(percentile(accepted, 0.5)),
        "accepted_p99_ms": _ms(percentile(accepted, 0.99)),
        "refused_p50_ms": _ms(percentile(refused, 0.5)),
        "refused_p99_ms": _ms(percentile(refused, 0.99)),
        "refused_without_retry_after": sum(
            1 for outcome, _, retry in outcomes if outcome == "503" and not retry
        ),
        "other": sum(n for outcome, n in by_outcome.items() if outcome not in ("200", "503")),
        # how far behind its schedule the client fell: large, and the client was measured
        "client_late_p99_ms": _ms(percentile(late, 0.99)),
        "probe_max_ms": {path: _ms(max(v, default=0.0)) for path, v in probes.latencies.items()},
        "probe_failures": dict(probes.failures),
    }


def measure(
    client: Client, project: str, items: int, body_file: Path | None, limit: int,
    max_running: int, factor: float, seconds: float, seed: int, close: bool,
) -> dict[str, Any]:  # fmt: skip
    """One project's service: unloaded, at the rate it sustains, at `factor` times that."""
    env = {"SERVICE_MAX_IN_FLIGHT": str(limit), "SERVICE_MAX_RUNNING": str(max_running)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        supervisor(project, Path(tmp), env=env, follow=False) as served,
    ):
        route, body = checked_request(served, body_file)
        body = body if body_file else lengthened(body, items)
        request = http_request(served.url, route, body, close)
        client.closed(served.url, request, 1, 2.0)  # warm both ends up; not measured
        alone, _ = client.closed(served.url, request, 1, seconds)
        busy, took = client.closed(served.url, request, limit, seconds)
        rate = sum(1 for outcome, _, _ in busy if outcome == "200") / took
        loaded = overload(client, served.url, request, factor * rate, seconds, seed)
    failed = [outcome for outcome, _, _ in alone + busy if outcome != "200"]
    if failed:
        raise StageError(f"{project}: {len(failed)} requests failed unloaded: {Counter(failed)}")
    unloaded_p99 = _ms(percentile([latency for _, latency, _ in alone], 0.99))
    return {
        "project": project,
        "route": route,
        "items": None if body_file else items,
        "body_bytes": len(request),
        "connection_per_request": close,
        "max_in_flight": limit,
        "max_running": max_running,
        "unloaded_p50_ms": _ms(percentile([latency for _, latency, _ in alone], 0.5)),
        "unloaded_p99_ms": unloaded_p99,
        "sustained_per_s": round(rate, 1),
        "sustained_p99_ms": _ms(percentile([latency for _, latency, _ in busy], 0.99)),
        "overload": loaded,
        "accepted_p99_within_twice_unloaded": loaded["accepted_p99_ms"] is not None
        and loaded["accepted_p99_ms"] <= 2 * unloaded_p99,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@app.command()
def main(
    project: Annotated[
        list[str] | None, typer.Option(help="A project whose service is measured; all served.")
    ] = None,
    items: Annotated[int, typer.Option(help="The length of the request's first list.")] = 200,
    max_in_flight: Annotated[
        int, typer.Option(help="The admission bound per worker (SERVICE_MAX_IN_FLIGHT).")
    ] = MAX_IN_FLIGHT,
    max_running: Annotated[
        int, typer.Option(help="Of those, how many run at once (SERVICE_MAX_RUNNING).")
    ] = MAX_RUNNING,
    factor: Annotated[float, typer.Option(help="The overload, times the sustained rate.")] = 4.0,
    # equal phases, so that each p99 spans as many of the pauses (a collection, a log flush)
    seconds: Annotated[float, typer.Option(help="How long each phase lasts.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seeds the arrival times.")] = 0,
    body_file: Annotated[
        Path | None, typer.Option(help="A JSON request body to send instead.")
    ] = None,
    new_connections: Annotated[
        bool, typer.Option(help="A connection per request (`Connection: close`), not reused.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Where the figures go, as JSON.")] = None,
) -> None:
    """Measure each service unloaded, at the rate it sustains, and at `factor` times that."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    if not 1 <= max_running <= max_in_flight:
        raise StageError(
            f"--max-running ({max_running}) must be at least 1 and at most --max-in-flight "
            f"({max_in_flight})"
        )
    projects = served_projects(project)
    figures = []
    with Client() as client:
        for name in projects:
            found = measure(
                client, name, items, body_file, max_in_flight, max_running, factor, seconds,
                seed, new_connections,
            )  # fmt: skip
            figures.append(found)
            loaded = found["overload"]
            log.info(
                "%s: unloaded p99 %s ms; %.0f/s sustained; at %.0f/s: accepted p99 %s ms "
                "(bound %.1f), %d refused (p99 %s ms), %d other, slowest probe %s ms",
                name, found["unloaded_p99_ms"], found["sustained_per_s"], loaded["rate_per_s"],
                loaded["accepted_p99_ms"], 2 * found["unloaded_p99_ms"],
                loaded["outcomes"].get("503", 0), loaded["refused_p99_ms"], loaded["other"],
                max(loaded["probe_max_ms"].values()),
            )  # fmt: skip
    print(json.dumps(figures, indent=2))
    if out:
        out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(app)
