"""Faults of one service under load, through the real supervisor (`python -m services.serve`):
a SIGTERM to its process group (the drain), and a worker killed with SIGKILL (a crash).

Run: `make bench-faults` (or `python -m bench.service_faults --out faults.json` after
`python -m services.pin`); about two minutes. The service runs on a free port, its request and
access logs in a temporary `MONITORING_DIR`. `--clients` threads send the same valid request in a
closed loop over keep-alive connections (the body is built from the service's OpenAPI document,
or read from `--body-file`). Every request records when its body was fully sent (httpcore's
trace), so "accepted before the signal" means a connection established and the request sent.

- drain: load, then SIGTERM to the supervisor's group. Counted: requests sent before the signal
  that failed (a transport error or a 5xx other than the admission bound's 503, which refuses a
  request rather than failing one it accepted; expected 0), those sent after it and how they ended,
  how long the stop took, and whether the request log and the access log hold a record for every
  answered request.
- crash (`--crashes` times, one supervisor; the service with `--workers` workers): under load,
  SIGKILL a worker that serves HTTP (a child of the arbiter). Measured: seconds until circus
  starts its replacement and until that has loaded the model, until `/readyz` answers 200 again
  and until a request sent after the kill succeeds; failed requests; request-log records and
  access-log lines lost against answered requests, with the bound expected (what was answered in
  the flush interval before the kill: the most a worker's buffer held). Each lost record is
  found by its request id (every answer carries it) and timed against the kill that lost it.

A table is printed; `--out` gets the figures as JSON. Traffic goes to 127.0.0.1 only, and every
loop is bounded in time and count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import psutil  # a dependency of bentoml
import typer

from projects.core import cli, paths
from projects.core.cli import StageError
from projects.core.project import Project, choose
from services.serve import STOP_SECONDS, die_with_parent

app = cli.app()

READY_SECONDS = 180.0
LOAD_SECONDS = 3.0  # steady load before each fault
AFTER_SECONDS = 2.0  # load kept up after a crash's recovery
RECOVER_SECONDS = 60.0  # a crash not recovered by then is reported as such
FLUSH_INTERVAL = 1.0  # services.common.BatchedLog's
# a kill's time is taken just before the signal: an answer the client reads this long after it
# was still sent by the killed worker, and belongs to that kill
KILL_SLACK = 0.1
TIMEOUT = 30.0  # a client's; longer than a recovery, so queued requests wait rather than fail
MAX_REQUESTS = 200_000  # per phase, a bound besides time
WORKER_MODULE = "_bentoml_impl.worker.service"
# every answer carries its predictions' ids, `<request id>-<index>`; the request log keeps them
REQUEST_ID = re.compile(r'"prediction_id"\s*:\s*"([0-9a-f]{32})-')
PREDICTION_ID = re.compile(r'"prediction_id"\s*:\s*"([0-9a-f]{32}-\d+)"')


# --- one request, and its body from the OpenAPI document (pure) ----------------------------------


def example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A small value valid for a JSON schema: its example, its default, else the least value its
    type and limits allow (`schemas`: the document's components, for `$ref`)."""
    if "$ref" in schema:
        return example(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("allOf", "anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0], schemas)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(properties[name], schemas) for name in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items", {}), schemas)] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "boolean":
        return False
    return None


def post_requests(document: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every POST route of an OpenAPI document that takes JSON, each with a body built for it."""
    schemas = document.get("components", {}).get("schemas", {})
    found = []
    for route, item in document.get("paths", {}).items():
        content = item.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in content:
            found.append((route, example(content["application/json"].get("schema", {}), schemas)))
    return found


def first_request(document: dict[str, Any]) -> tuple[str, Any]:
    """The first POST route of an OpenAPI document and a body built for it."""
    found = post_requests(document)
    if not found:
        raise StageError("the service's OpenAPI document has no POST route with a JSON body")
    return found[0]


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request: when it began, when its body was fully sent (None: never), when it ended,
    and its status or the error that ended it."""

    started: float
    sent: float | None
    ended: float
    status: int | None
    error: str | None
    request_id: str | None = None  # the service's, from a successful answer

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def refused(self) -> bool:
        """Refused at once by the admission bound: not accepted, so not a failure."""
        return self.status == 503

    @property
    def failed(self) -> bool:
        return self.status is None or (self.status >= 500 and not self.refused)


@dataclass
class Load:
    """`clients` threads sending `body` to `route` over keep-alive connections until stopped."""

    url: str
    route: str
    body: Any
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number in range(self.clients):
            thread = threading.Thread(target=self._send, name=f"client-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return sorted(self.outcomes, key=lambda o: o.started)

    def _send(self) -> None:
        with httpx.Client(base_url=self.url, timeout=TIMEOUT) as client:
            while not self._stop.is_set() and len(self.outcomes) < MAX_REQUESTS:
                outcome = self.one(client)
                self.outcomes.append(outcome)  # list.append is atomic
                if outcome.error or outcome.refused:
                    time.sleep(0.05)  # a refusal must not become a busy loop

    def one(self, client: httpx.Client) -> Outcome:
        sent: list[float] = []

        def trace(event: str, _info: dict) -> None:
            if event == "http11.send_request_body.complete":
                sent.append(time.monotonic())

        started = time.monotonic()
        try:
            answer = client.post(self.route, json=self.body, extensions={"trace": trace})
        except httpx.HTTPError as exc:
            return Outcome(started, sent[0] if sent else None, time.monotonic(), None,
                           type(exc).__name__)  # fmt: skip
        found = REQUEST_ID.search(answer.text) if answer.is_success else None
        return Outcome(started, sent[0] if sent else None, time.monotonic(), answer.status_code,
                       None, found.group(1) if found else None)  # fmt: skip


@dataclass
class Probe:
    """`/readyz` polled every 0.1 s from its own connection: (when asked, when answered, ok)."""

    url: str
    answers: list[tuple[float, float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def ready_after(self, moment: float) -> float | None:
        """When the first probe asked after `moment` was answered 200."""
        return next((end for start, end, ok in self.answers if start > moment and ok), None)

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            start = time.monotonic()
            try:
                ok = httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.answers.append((start, time.monotonic(), ok))


# --- the supervisor ------------------------------------------------------------------------------


@dataclass
class Supervisor:
    """One `python -m services.serve` for one project, and where its logs go."""

    project: str
    port: int
    monitoring: Path
    process: subprocess.Popen
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        """The processes that serve HTTP: the arbiter's workers."""
        found = psutil.Process(self.process.pid).children(recursive=True)
        return [p for p in found if WORKER_MODULE in " ".join(_cmdline(p))]

    def workers_started(self) -> int:
        """How many workers have loaded their service so far (BentoML logs a line for each)."""
        lines = self.output.read_text(errors="replace").splitlines()
        return sum("] Service " in line and line.endswith(" initialized") for line in lines)

    def logged(self, key: str) -> Counter[str]:
        """How many request-log records carry each value of `key` (skipping unreadable lines)."""
        found: Counter[str] = Counter()
        for path in paths.requests_dir(self.project, self.monitoring).glob("*.jsonl"):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    found[json.loads(line)[key]] += 1
        return found

    def request_ids(self) -> set[str]:
        return set(self.logged("request_id"))

    def access_lines(self, route: str) -> int:
        mark = f'"POST {route} '
        directory = self.monitoring / self.project / "access"
        return sum(p.read_text().count(mark) for p in directory.glob("*.log"))

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def served_projects(projects: list[str] | None) -> list[str]:
    """Those of `projects` that have a service, else (None) every project that has one.

    Raises:
        StageError: one of them has none, or no project has one.
    """
    chosen = choose(projects or None)
    served = [p.name for p in chosen if p.has_service()]
    if projects and len(served) < len(chosen):
        missing = ", ".join(p.name for p in chosen if not p.has_service())
        raise StageError(f"{missing}: no service (services/<name>/bentofile.yaml)")
    if not served:
        raise StageError("no project has a service (services/<name>/bentofile.yaml)")
    return served


def served_project(project: str | None) -> str:
    """`project` if it has a service, else (None) the first project that has one."""
    return served_projects([project] if project else None)[0]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def supervisor(
    project: str, directory: Path, workers: int = 1, env: dict[str, str] | None = None,
    follow: bool = True,
) -> Iterator[Supervisor]:  # fmt: skip
    """`python -m services.serve` for `project` on a free port with `workers` workers and
    `env` added to its environment, ready; stopped however this ends (SIGTERM to its group,
    then SIGKILL to it and what it started). Without `follow`, the supervisor does not look for
    a moved `@champion` (its first look imports MLflow: seconds of a core, once)."""
    port = free_port()
    output = directory / "serve.log"
    env = os.environ | (env or {}) | {"MONITORING_DIR": str(directory)}
    if workers != 1:  # BentoML's configuration, overridden for this service only
        service = Project(project).service.rsplit(":", 1)[-1]
        env["BENTOML_CONFIG_OPTIONS"] = f"services.{service}.workers={workers}"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.serve", "--project", project,
             "--port", f"{project}={port}", *([] if follow else ["--no-follow"])],
            cwd=paths.ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
    running = Supervisor(project, port, directory, process, output)
    started: list[psutil.Process] = []
    try:
        _wait_ready(running)
        started = psutil.Process(process.pid).children(recursive=True)
        yield running
    finally:
        running.signal_group(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS + 5)
        except subprocess.TimeoutExpired:
            running.signal_group(signal.SIGKILL)
            process.wait()
        for child in started:
            with contextlib.suppress(psutil.Error):
                child.kill()


def _wait_ready(running: Supervisor) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            tail = running.output.read_text(errors="replace")[-2000:]
            raise StageError(f"python -m services.serve exited before it was ready:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise StageError(f"the {running.project} service was not ready in {READY_SECONDS:.0f} s")


def checked_request(running: Supervisor, body_file: Path | None) -> tuple[str, Any]:
    """The route and body the load sends, answered 2xx once (that answer is logged too)."""
    document = httpx.get(f"{running.url}/docs.json", timeout=TIMEOUT).json()
    route, body = first_request(document)
    if body_file is not None:
        try:
            body = json.loads(body_file.read_text())
        except (OSError, ValueError) as exc:
            raise StageError(f"--body-file {body_file}: not a readable JSON file ({exc})") from None
    answer = httpx.post(f"{running.url}{route}", json=body, timeout=TIMEOUT)
    if not answer.is_success:
        raise StageError(
            f"POST {route} {json.dumps(body)[:200]} was answered {answer.status_code}: "
            f"{answer.text[:300]}; give a valid body with --body-file"
        )
    return route, body


# --- the two faults ------------------------------------------------------------------------------


def drain(project: str, clients: int, body_file: Path | None, directory: Path) -> dict[str, Any]:
    """Load, SIGTERM to the supervisor's group, and what became of every request."""
    with supervisor(project, directory) as running:
        route, body = checked_request(running, body_file)
        load = Load(running.url, route, body, clients)
        load.start()
        time.sleep(LOAD_SECONDS)
        signalled = time.monotonic()
        running.signal_group(signal.SIGTERM)
        status = running.process.wait(STOP_SECONDS + 5)
        stopped = time.monotonic()
        outcomes = load.stop()
    before = [o for o in outcomes if o.sent is not None and o.sent < signalled]
    after = [o for o in outcomes if o not in before]
    answered = sum(o.answered for o in outcomes) + 1  # and the checked request
    ids = {o.request_id for o in outcomes if o.request_id}
    lines = running.access_lines(route)
    return {
        "project": project,
        "route": route,
        "clients": clients,
        "supervisor_exit_status": status,
        "stop_seconds": round(stopped - signalled, 3),
        "sent_before_signal": len(before),
        "refused_before_signal": sum(o.refused for o in before),
        "failed_before_signal": sum(o.failed for o in before),
        "errors_before_signal": dict(Counter(o.error or str(o.status) for o in before if o.failed)),
        "in_flight_at_signal": sum(o.ended > signalled for o in before),
        "sent_after_signal": len(after),
        "answered_after_signal": sum(o.answered for o in after),
        "errors_after_signal": dict(Counter(o.error for o in after if o.error)),
        "answered_2xx": len(ids),
        "request_log_missing": len(ids - running.request_ids()),
        "answered": answered,
        "access_log_lines": lines,
        "access_log_missing": answered - lines,
    }


def crashes(
    project: str, clients: int, body_file: Path | None, directory: Path, count: int, workers: int
) -> list[dict[str, Any]]:
    """`count` times under load: SIGKILL a worker, then time the recovery."""
    results, outcomes, kills = [], [], []
    with supervisor(project, directory, workers) as running:
        route, body = checked_request(running, body_file)
        for _ in range(count):
            result, answers, killed = one_crash(running, route, body, clients)
            results.append(result)
            outcomes += answers
            kills.append(killed)
    # the last records are flushed when the supervisor stops the service: count them after
    answered_at = {o.request_id: o.ended for o in outcomes if o.request_id}
    lost = set(answered_at) - running.request_ids()
    # how long before its kill each lost record was answered: within the flush interval, if
    # only the killed worker's buffer was lost
    ages = [
        min((k - answered_at[i] for k in kills if k >= answered_at[i] - KILL_SLACK), default=0.0)
        for i in lost
    ]
    answered = sum(o.answered for o in outcomes) + 1  # and the checked request
    lines = running.access_lines(route)
    summary = {
        "answered_2xx": len(answered_at),
        "request_log_lost": len(lost),
        "request_log_lost_bound": sum(r["buffered_at_kill"] for r in results),
        "request_log_lost_oldest_seconds": round(max(ages), 3) if ages else None,
        "answered": answered,
        "access_log_lines": lines,
        "access_log_lost": answered - lines,
        "access_log_lost_bound": sum(r["answered_at_kill"] for r in results),
    }
    return [*results, summary]


def one_crash(
    running: Supervisor, route: str, body: Any, clients: int
) -> tuple[dict[str, Any], list[Outcome], float]:
    """One worker killed under load: the figures, every request's outcome, and the kill's time."""
    before = running.workers()
    probe, load = Probe(running.url), Load(running.url, route, body, clients)
    probe.start()
    load.start()
    time.sleep(LOAD_SECONDS)
    booted = running.workers_started()
    killed = time.monotonic()
    before[0].kill()
    deadline, respawned, replaced = killed + RECOVER_SECONDS, None, None
    while replaced is None and time.monotonic() < deadline:
        if respawned is None and set(running.workers()) - set(before):
            respawned = time.monotonic()  # circus started the replacement
        if replaced is None and running.workers_started() > booted:
            replaced = time.monotonic()  # ... and it has loaded the model
        time.sleep(0.1)
    ready = probe.ready_after(killed)
    time.sleep(AFTER_SECONDS)
    outcomes = load.stop()
    probe.stop()
    again = next(
        (o.ended for o in outcomes if o.started > killed and o.answered and o.status < 400), None
    )
    figures = {
        "workers": len(before),
        "worker_killed": before[0].pid,
        "respawned_seconds": None if respawned is None else round(respawned - killed, 3),
        "replacement_ready_seconds": None if replaced is None else round(replaced - killed, 3),
        "ready_seconds": None if ready is None else round(ready - killed, 3),
        "succeeding_again_seconds": None if again is None else round(again - killed, 3),
        "requests": len(outcomes),
        "failed": sum(o.failed for o in outcomes),
        "refused": sum(o.refused for o in outcomes),
        "errors": dict(Counter(o.error or str(o.status) for o in outcomes if o.failed)),
        "answered": sum(o.answered for o in outcomes),
        "answered_2xx": sum(o.answered and o.status < 400 for o in outcomes),
        # what the killed worker answered in its last flush interval, the most its logs can
        # lose: predictions (the request log) and every answer, refusals too (the access log)
        "buffered_at_kill": sum(
            o.answered
            and o.status < 400
            and killed - FLUSH_INTERVAL <= o.ended <= killed + KILL_SLACK
            for o in outcomes
        ),
        "answered_at_kill": sum(
            o.answered and killed - FLUSH_INTERVAL <= o.ended <= killed + KILL_SLACK
            for o in outcomes
        ),
    }
    return figures, outcomes, killed


# --- report --------------------------------------------------------------------------------------


def table(figures: dict[str, Any]) -> str:
    """The figures as a small text table."""
    d = figures["drain"]
    rows = [
        ("drain: sent before SIGTERM / refused (503) / failed", f"{d['sent_before_signal']} / "
         f"{d['refused_before_signal']} / {d['failed_before_signal']}"),
        ("drain: in flight at SIGTERM", d["in_flight_at_signal"]),
        ("drain: sent after / answered", f"{d['sent_after_signal']} / "
         f"{d['answered_after_signal']}"),
        ("drain: stop took (s)", d["stop_seconds"]),
        ("drain: request log missing / answered", f"{d['request_log_missing']} / "
         f"{d['answered_2xx']}"),
        ("drain: access log missing / answered", f"{d['access_log_missing']} / {d['answered']}"),
    ]  # fmt: skip
    *each, summary = figures["crash"]
    for number, c in enumerate(each, 1):
        rows += [
            (f"crash {number}: new worker started after (s)", c["respawned_seconds"]),
            (f"crash {number}: new worker ready after (s)", c["replacement_ready_seconds"]),
            (f"crash {number}: /readyz 200 again after (s)", c["ready_seconds"]),
            (f"crash {number}: requests succeed again after (s)", c["succeeding_again_seconds"]),
            (
                f"crash {number}: failed / refused (503) / requests",
                f"{c['failed']} / {c['refused']} / {c['requests']}",
            ),
        ]
    rows += [
        ("crashes: request log lost / bound / answered", f"{summary['request_log_lost']} / "
         f"{summary['request_log_lost_bound']} / {summary['answered_2xx']}"),
        ("crashes: oldest lost record, before its kill (s)",
         summary["request_log_lost_oldest_seconds"]),
        ("crashes: access log lost / bound / answered", f"{summary['access_log_lost']} / "
         f"{summary['access_log_lost_bound']} / {summary['answered']}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


@app.command()
def main(
    project: Annotated[
        str | None, typer.Option(help="The project whose service is faulted; the first served.")
    ] = None,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Client threads of the load.")] = 3,
    crash_count: Annotated[
        int, typer.Option("--crashes", min=1, max=10, help="Workers killed, one after another.")
    ] = 3,
    workers: Annotated[
        int, typer.Option(min=1, max=8, help="Workers of the service in the crash phase.")
    ] = 1,
    body_file: Annotated[
        Path | None, typer.Option(help="A JSON file: the request body (else one from the API).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the figures here as JSON.")] = None,
) -> None:
    """Measure a service's drain on SIGTERM and its recovery from a killed worker."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    project = served_project(project)
    with tempfile.TemporaryDirectory(prefix="service-faults-") as scratch:
        root = Path(scratch)
        (root / "drain").mkdir()
        (root / "crash").mkdir()
        figures = {
            "drain": drain(project, clients, body_file, root / "drain"),
            "crash": crashes(project, clients, body_file, root / "crash", crash_count, workers),
        }
    print(table(figures), flush=True)
    if out is not None:
        out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(app)
