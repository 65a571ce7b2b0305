"""Every service under a mix of requests for ten minutes: no errors, memory that stays put, and
exactly one request-log record per prediction answered.

Run: `make bench-soak` (or `python -m bench.service_soak --out soak.json` after
`python -m services.pin`); `--minutes` long, after `--warmup` seconds. Each service runs
through the real supervisor (`python -m services.serve`) on a free port, its logs in a
temporary `MONITORING_DIR`, with its production settings. One client per service sends, one
request after another, a mix built from the service's OpenAPI document: every POST route,
each request's first list a random length up to `--items`, and one request in ten bad (a
missing field, a body that is not JSON), which must get a 4xx. A thread probes `/readyz` and
`/metrics` of every service meanwhile.

Measured: answers by status; errors (a transport error, a 5xx, a valid request answered 4xx or
a bad one answered 2xx; expected: none); each worker's resident memory (RSS), sampled every
`SAMPLE_EVERY` seconds, from the end of the warm-up to the end (bound: growth under 10 %); and,
once the services have stopped and flushed their logs, the request log against the answers:
every `prediction_id` answered has exactly one record, and no record lacks an answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import psutil
import typer

from bench.service_faults import (
    PREDICTION_ID,
    Supervisor,
    post_requests,
    served_projects,
    supervisor,
)
from bench.service_overload import lengthened
from projects.core import cli
from projects.core.cli import StageError

log = logging.getLogger(__name__)
app = cli.app()

TIMEOUT = 60.0  # a client's: over the services' time limit, so a slow answer is an answer
SAMPLE_EVERY = 10.0
PROBE_EVERY = 1.0
BAD_SHARE = 0.1
BAD_BODIES = (b"{}", b'{"lines": ', b"[1, 2]")  # a missing field, not JSON, not an object


@dataclass
class Mix:
    """One client's mixed requests to one service until `stop` is set."""

    served: Supervisor
    requests: list[tuple[str, Any]]
    items: int
    seed: int
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # prediction ids answered

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        with httpx.Client(base_url=self.served.url, timeout=TIMEOUT) as client:
            while not stop.is_set():
                route, body = rng.choice(self.requests)
                if rng.random() < BAD_SHARE:
                    self.one(client, route, rng.choice(BAD_BODIES), bad=True)
                else:
                    sized = lengthened(body, rng.randint(1, self.items))
                    self.one(client, route, json.dumps(sized).encode(), bad=False)

    def one(self, client: httpx.Client, route: str, content: bytes, bad: bool) -> None:
        headers = {"Content-Type": "application/json"}
        try:
            answer = client.post(route, content=content, headers=headers)
        except httpx.HTTPError as exc:
            self.errors[f"{route}: {type(exc).__name__}"] += 1
            return
        status = answer.status_code
        self.statuses[f"{route} {status}"] += 1
        expected = 400 <= status < 500 if bad else status == 200
        if not expected:
            kind = "bad request" if bad else "request"
            self.errors[f"{route}: {kind} answered {status}: {answer.text[:200]}"] += 1
        elif not bad:
            self.answered.update(PREDICTION_ID.findall(answer.text))


class Probes:
    """`/readyz` and `/metrics` of each service, every `PROBE_EVERY` seconds."""

    def __init__(self, served: list[Supervisor]) -> None:
        self.served = served
        self.failures: Counter[str] = Counter()
        self.count = 0

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.wait(PROBE_EVERY):
                for one in self.served:
                    for path in ("/readyz", "/metrics"):
                        self.count += 1
                        try:
                            ok = client.get(f"{one.url}{path}").status_code == 200
                        except httpx.HTTPError:
                            ok = False
                        if not ok:
                            self.failures[f"{one.project} {path}"] += 1


def rss_mb(served: Supervisor) -> dict[int, float]:
    """Resident memory (MB) of each of a service's workers, by pid."""
    found = {}
    for worker in served.workers():
        with contextlib.suppress(psutil.Error):
            found[worker.pid] = worker.memory_info().rss / 2**20
    return found


def log_check(served: Supervisor, answered: Counter[str]) -> dict[str, int]:
    """The request log against the prediction ids answered: how many records each has."""
    records = served.logged("prediction_id")
    return {
        "predictions_answered": sum(answered.values()),
        "answered_twice": sum(1 for n in answered.values() if n > 1),  # ids must be unique
        "records": sum(records.values()),
        "missing": sum(1 for key in answered if key not in records),
        "duplicated": sum(1 for key, n in records.items() if n > 1),
        "unanswered": sum(1 for key in records if key not in answered),
    }


def checked_requests(served: Supervisor) -> tuple[list[tuple[str, Any]], list[str]]:
    """Every POST route of the service with a body it has answered 200, and the prediction ids
    of those answers (they are in the request log too)."""
    document = httpx.get(f"{served.url}/docs.json", timeout=TIMEOUT).json()
    found, ids = post_requests(document), []
    if not found:
        raise StageError(f"{served.project}: the OpenAPI document has no POST route with JSON")
    for route, body in found:
        answer = httpx.post(f"{served.url}{route}", json=body, timeout=TIMEOUT)
        if answer.status_code != 200:
            raise StageError(
                f"{served.project}: POST {route} {json.dumps(body)[:200]} was answered "
                f"{answer.status_code}: {answer.text[:300]}"
            )
        ids += PREDICTION_ID.findall(answer.text)
    return found, ids


def soak(
    served: list[Supervisor], items: int, warmup: float, seconds: float, seed: int
) -> dict[str, Any]:
    """A mix of requests to every service for `warmup` + `seconds`; the figures, logs aside."""
    mixes = []
    for number, one in enumerate(served):
        requests, ids = checked_requests(one)
        mixes.append(Mix(one, requests, items, seed + number, answered=Counter(ids)))
    probes = Probes(served)
    stop = threading.Event()
    threads = [threading.Thread(target=t.run, args=(stop,), daemon=True) for t in mixes]
    threads.append(threading.Thread(target=probes.run, args=(stop,), daemon=True))
    for thread in threads:
        thread.start()
    start = time.monotonic()
    first = {one.project: rss_mb(one) for one in served}  # before the warm-up: for the record
    time.sleep(warmup)
    samples = [{one.project: rss_mb(one) for one in served}]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(SAMPLE_EVERY, max(0.0, deadline - time.monotonic())))
        samples.append({one.project: rss_mb(one) for one in served})
    stop.set()
    for thread in threads:
        thread.join()
    took = time.monotonic() - start
    figures: dict[str, Any] = {"seconds": round(took, 1), "services": {}}
    for one, sent in zip(served, mixes, strict=True):
        memory = {}
        for pid, at_start in samples[0][one.project].items():
            series = [sample[one.project].get(pid) for sample in samples]
            if None in series:
                memory[pid] = {"replaced": True}  # a worker that died: an error of its own
                sent.errors["a worker was replaced"] += 1
                continue
            memory[pid] = {
                "before_warmup_mb": round(first[one.project].get(pid, 0.0), 1),
                "after_warmup_mb": round(at_start, 1),
                "max_mb": round(max(series), 1),
                "end_mb": round(series[-1], 1),
                "growth_percent": round(100 * (series[-1] - at_start) / at_start, 2),
            }
        figures["services"][one.project] = {
            "requests": sum(sent.statuses.values()),
            "statuses": dict(sent.statuses),
            "errors": dict(sent.errors),
            "memory": memory,
            "answered": sent.answered,
        }
    figures["probes"] = {"sent": probes.count, "failed": dict(probes.failures)}
    return figures


@app.command()
def main(
    project: Annotated[
        list[str] | None, typer.Option(help="A project whose service is soaked; all served.")
    ] = None,
    minutes: Annotated[float, typer.Option(help="How long the soak lasts, after warm-up.")] = 10,
    warmup: Annotated[float, typer.Option(help="Seconds of requests before memory counts.")] = 60,
    items: Annotated[int, typer.Option(help="The longest a request's first list gets.")] = 50,
    seed: Annotated[int, typer.Option(help="Seeds the mix.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Where the figures go, as JSON.")] = None,
) -> None:
    """Soak every service (or those named) with a mix of requests; fail if any bound is broken."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    if minutes <= 0 or warmup < 0 or items < 1:
        raise StageError("--minutes must be above 0, --warmup at least 0 and --items at least 1")
    projects = served_projects(project)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        served = []
        for name in projects:
            (Path(tmp) / name).mkdir()
            served.append(stack.enter_context(supervisor(name, Path(tmp) / name)))
        figures = soak(served, items, warmup, minutes * 60, seed)
        stack.close()  # the services stop and flush their request logs
        for one in served:
            service = figures["services"][one.project]
            service["request_log"] = log_check(one, service.pop("answered"))
    broken = []
    for name, service in figures["services"].items():
        growth = max((m.get("growth_percent", 0.0) for m in service["memory"].values()), default=0)
        checked = service["request_log"]
        wrong = checked["missing"] + checked["duplicated"] + checked["unanswered"]
        if service["errors"] or growth >= 10 or wrong or checked["answered_twice"]:
            broken.append(name)
        log.info(
            "%s: %d requests, %d errors, memory growth %.1f %%, %d predictions answered, "
            "%d records (%d missing, %d duplicated, %d unanswered)",
            name, service["requests"], sum(service["errors"].values()), growth,
            checked["predictions_answered"], checked["records"], checked["missing"],
            checked["duplicated"], checked["unanswered"],
        )  # fmt: skip
    figures["held"] = not broken and not figures["probes"]["failed"]
    print(json.dumps(figures, indent=2))
    if out:
        out.write_text(json.dumps(figures, indent=2) + "\n")
    if not figures["held"]:
        raise StageError(f"the soak broke a bound: {', '.join(broken) or 'probes'}; see above")


if __name__ == "__main__":
    cli.run(app)
