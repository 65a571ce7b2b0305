"""Speed of the BentoML services against the models in process and a plain FastAPI baseline.

Run: `python -m bench.services_speed` (after `python -m services.pin`, which `make serve` runs);
it takes about two minutes. Client and servers share this machine's cores, as they would in
a small deployment, so every figure is for the whole box. It measures:

- spam `/classify` with one text: the scorer called in process; `bench/fastapi_spam.py` (the
  hand-written FastAPI app) under uvicorn; and `services.spam.service:SpamClassifier` under
  `bentoml serve`. For each server: one client sending requests one after another over one
  keep-alive connection, then `--clients` connections at once for `--duration` seconds.
- recommend `/recommend` (k = 10) with one client, and the recommender in process; skipped,
  saying why, when `services/recommend/service.py` is missing or does not become ready.

Every server runs in a session of its own on a free port and is stopped however the bench ends
(its process group, then any of its descendants that outlive it). Request logs go to a
temporary `MONITORING_DIR`, not into the repository. The last line printed is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from projects.core import cli, paths
from projects.core.cli import StageError

app = cli.app()

ROOT = paths.ROOT
SPAM_SERVICE = "services.spam.service:SpamClassifier"
RECOMMEND_SERVICE = "services.recommend.service:MovieRecommender"
RECOMMEND_FILE = ROOT / "services" / "recommend" / "service.py"
# what `python -m services.pin` writes: {project: {"model", "version", "tag"}}
N_USERS = 943  # MovieLens 100K
K = 10
WARMUP = 200
READY_SECONDS = 120.0
STOP_SECONDS = 15.0
REQUEST_SECONDS = 10.0
BUSY_CORES = 0.2  # other work on the machine beyond this spoils a run

TARGET_P99_MS = 10.0
TARGET_RECOMMEND_P50_MS = 2.5

# Short realistic SMS, ham and spam, so the server tokenises different texts.
MESSAGES = (
    "Hey, are we still on for lunch tomorrow at 1?",
    "Ok lar... I'll be home in 20 mins, want anything from the shop?",
    "Sorry, can't talk right now. I'll call you later.",
    "Did you get the notes from today's lecture? Can you send them over",
    "Happy birthday!! Hope you have an amazing day x",
    "I'm running late, traffic is terrible. Start without me",
    "Mum says dinner is at 7, don't forget to bring the wine",
    "Can you pick up milk and bread on your way back please",
    "Thanks for last night, had a great time. Same again next week?",
    "Where are you? We're waiting outside the cinema",
    "Just landed, will text when I'm through passport control",
    "WINNER!! As a valued customer you have been selected to receive a £900 prize reward! "
    "Call 09061701461 to claim. Valid 12 hours only.",
    "FREE entry in 2 a weekly comp to win FA Cup final tkts. Text FA to 87121 to receive "
    "entry question. T&C apply 18+",
    "URGENT! Your mobile number has won £2000 bonus caller prize. Call 09058094507 now",
    "Congratulations! You've been awarded a free holiday to Tenerife. Reply YES to 80062 "
    "to claim, £1.50/msg",
    "You have 1 new voicemail. Please call 08719181513 to listen. Stop? txt STOP",
    "Had your mobile 11 months or more? U R entitled to update to the latest colour camera "
    "mobile for FREE! Call The Mobile Update Co FREE on 08002986030",
    "SIX chances to win CASH! From 100 to 20,000 pounds txt> CSH11 and send to 87575. "
    "Cost 150p/day, 6days, 16+ TsandCs apply",
    "Your account has been suspended. Verify your details at secure-login-bank.co.uk "
    "within 24 hours",
    "Get the latest ringtones FREE! Text TONE to 85555 now. 18+ only, £3/wk",
)


# ---------------------------------------------------------------------------------------------
# Measurements and their summary


@dataclass
class Phase:
    """What one phase of requests measured."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    machine_cpu_seconds: float | None = None  # every process on the machine, for `other_cores`

    def summary(self) -> dict[str, float | int | None]:
        """p50, p99 and max latency (ms), errors, requests/s and CPU ms per request."""
        ok = len(self.latencies_ms)
        times = np.asarray(self.latencies_ms) if ok else np.asarray([np.nan])
        per_request = 1000 / max(ok, 1)
        return {
            "requests": ok + self.errors,
            "errors": self.errors,
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "max_ms": round(float(times.max()), 3),
            "requests_per_s": round(ok / self.seconds, 1) if self.seconds else None,
            "client_cpu_ms_per_request": round(self.client_cpu_seconds * per_request, 3),
            "server_cpu_ms_per_request": None
            if self.server_cpu_seconds is None
            else round(self.server_cpu_seconds * per_request, 3),
            "other_cores": self.other_cores(),
        }

    def other_cores(self) -> float | None:
        """Cores that neither the client nor the server used meanwhile: other work on the
        machine, which makes the figures of this phase worse than they should be."""
        if self.machine_cpu_seconds is None:
            return None
        mine = (self.server_cpu_seconds or 0.0) + self.client_cpu_seconds
        other = self.machine_cpu_seconds - mine
        # over a phase shorter than a second, a single stray tick would read as a busy machine
        return round(max(other, 0.0) / self.seconds, 2) if self.seconds >= 1 else None


def in_process(call: Callable[[int], object], n: int) -> Phase:
    """Time `call(i)` for i in 0..n-1, one at a time."""
    phase = Phase()
    start_cpu, start, machine = time.process_time(), time.perf_counter(), _machine_cpu_seconds()
    for i in range(n):
        begin = time.perf_counter()
        call(i)
        phase.latencies_ms.append((time.perf_counter() - begin) * 1000)
    phase.seconds = time.perf_counter() - start
    phase.client_cpu_seconds = time.process_time() - start_cpu
    phase.machine_cpu_seconds = _machine_cpu_seconds() - machine
    return phase


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client: raw keep-alive requests over asyncio streams, so that the client
# spends as little as possible of the cores it shares with the server. The same client measures
# every server.


def post_request(port: int, path: str, body: dict[str, Any]) -> bytes:
    """The bytes of one `POST path` with a JSON body, keep-alive (built once, sent many times)."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class Connection:
    """One keep-alive connection; reconnects after the server closes it or after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send `request`; return the response's status and body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = self.reader
        assert reader is not None
        self.writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            body = await self._chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        else:  # no length: the body runs to the end of the connection
            body, close = await reader.read(), True
        if close:
            await self.close()
        return status, body

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final blank line
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)


async def _one(connection: Connection, request: bytes, expect: bytes | None, phase: Phase) -> None:
    """Send one request and record its latency, or an error (non-200, wrong body, exception)."""
    begin = time.perf_counter()
    try:
        async with asyncio.timeout(REQUEST_SECONDS):
            status, body = await connection.send(request)
    except Exception:  # refused, reset, timed out, malformed: all count, none stops the bench
        phase.errors += 1
        await connection.close()
        return
    elapsed = (time.perf_counter() - begin) * 1000
    if status != 200 or (expect is not None and expect not in body):
        phase.errors += 1
    else:
        phase.latencies_ms.append(elapsed)


async def _sequential(port: int, requests: Sequence[bytes], n: int, expect: bytes | None) -> Phase:
    phase, connection = Phase(), Connection(port)
    start = time.perf_counter()
    for i in range(n):
        await _one(connection, requests[i % len(requests)], expect, phase)
    phase.seconds = time.perf_counter() - start
    await connection.close()
    return phase


async def _concurrent(
    port: int, requests: Sequence[bytes], clients: int, seconds: float, expect: bytes | None
) -> Phase:
    phase = Phase()
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        connection, i = Connection(port), offset
        while time.perf_counter() < deadline:
            await _one(connection, requests[i % len(requests)], expect, phase)
            i += 1
        await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c * 7) for c in range(clients)))
    phase.seconds = time.perf_counter() - start
    return phase


def _run(coroutine: Any) -> Any:
    """Run a coroutine on uvloop when it is there (less client CPU), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _measured(pids: Callable[[], list[int]], run: Callable[[], Phase]) -> Phase:
    """`run()`, with the client's CPU time and the server processes' CPU time added."""
    server_before, client_before = _cpu_seconds(pids()), time.process_time()
    machine_before = _machine_cpu_seconds()
    phase = run()
    phase.client_cpu_seconds = time.process_time() - client_before
    phase.server_cpu_seconds = _cpu_seconds(pids()) - server_before
    phase.machine_cpu_seconds = _machine_cpu_seconds() - machine_before
    return phase


def sequential(
    server: Server, requests: Sequence[bytes], n: int, expect: bytes | None = None
) -> Phase:
    """`n` requests one after another over one keep-alive connection."""
    return _measured(server.pids, lambda: _run(_sequential(server.port, requests, n, expect)))


def concurrent(
    server: Server,
    requests: Sequence[bytes],
    clients: int,
    seconds: float,
    expect: bytes | None = None,
) -> Phase:
    """`clients` keep-alive connections, each sending its next request as soon as one returns."""
    return _measured(
        server.pids,
        lambda: _run(_concurrent(server.port, requests, clients, seconds, expect)),
    )


# ---------------------------------------------------------------------------------------------
# Servers: started in their own session, always stopped


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], parent is [1])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _identity(pid: int) -> tuple[int, str] | None:
    """`pid` with its start time, which tells it from a later process given the same pid."""
    fields = _stat(pid)
    return None if fields is None else (pid, fields[19])


def _still_running(identity: tuple[int, str]) -> bool:
    fields = _stat(identity[0])
    return fields is not None and fields[0] != "Z" and fields[19] == identity[1]


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant. BentoML's workers call setsid, so neither the server's
    process group nor its session holds them: only their parent links do."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return [pid for pid in tree if _alive(pid)]


def _cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of `pids` so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all but idle and iowait) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A started server: its process (leader of a session of its own), port and log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    # every process of its tree seen so far, so that `stop` finds workers orphaned before it
    seen: set[tuple[int, str]] = field(default_factory=set)

    def pids(self) -> list[int]:
        tree = process_tree(self.process.pid)
        self.seen.update(i for i in map(_identity, tree) if i is not None)
        return tree

    def tail(self, lines: int = 15) -> str:
        """The end of its log, for saying why it failed."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])


def _wait_ready(server: Server, path: str, seconds: float) -> None:
    """Poll `GET path` until 200; raise `StageError` if the server exits or takes too long."""
    import http.client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.pids()  # learn its workers as they start
        if server.process.poll() is not None:
            raise StageError(
                f"{server.name} exited with status {server.process.returncode} before it was "
                f"ready; the end of its log ({server.log}):\n{server.tail()}"
            )
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise StageError(
        f"{server.name} was not ready ({path} != 200) after {seconds:.0f} s; the end of its log "
        f"({server.log}):\n{server.tail()}"
    )


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL after `STOP_SECONDS`; then the same to
    any of its descendants (workers in sessions of their own) that outlive it."""
    process = server.process
    group = process.pid  # start_new_session: the leader's pid is its group id
    server.pids()  # note the tree before the leader goes and its workers lose their parent
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()
    # the supervisor stops its workers on SIGTERM; any left (orphaned) get it now, then SIGKILL
    for pid, _ in [i for i in server.seen if _still_running(i)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while (left := [i for i in server.seen if _still_running(i)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(name: str, command: list[str], ready_path: str, workdir: Path) -> Iterator[Server]:
    """Start `command` (`{port}` filled in) in a new session; yield it when ready; stop it."""
    port = free_port()
    log = workdir / f"{'-'.join(name.lower().split())}-{port}.log"
    # the speed of serving is measured here, beside a FastAPI app that queues without a bound:
    # our admission bound is raised out of the way (bench/service_overload.py measures it)
    env = {
        **os.environ,
        "MONITORING_DIR": str(workdir / "monitoring"),
        "SERVICE_MAX_IN_FLIGHT": "1024",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, port, log)
    try:
        print(f"starting {name} on port {port} ...", flush=True)
        _wait_ready(server, ready_path, READY_SECONDS)
        yield server
    finally:
        stop(server)


def bentoml_serve(service: str) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", service, "--port", "{port}"]


def uvicorn_serve(target: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "{port}"]


# ---------------------------------------------------------------------------------------------
# The models in process, loaded as the services load them


def model_path(tag: str, inside: str) -> str:
    """Path of `inside` in the BentoML model `tag`; a `StageError` if it is not in the store."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag).path_of(inside)
    except NotFound:
        raise StageError(
            f"{tag} is not in the BentoML store at {os.environ['BENTOML_HOME']}: run "
            "`python -m services.pin`"
        ) from None


def spam_scorer() -> Any:
    """`SpamScorer` of the pinned spam model, as `services/spam/service.py` loads it."""
    import skops.io

    from projects.spam.model import TRUSTED_TYPES, SpamScorer
    from services.common import read_pinned

    path = model_path(read_pinned("spam")["tag"], "mlflow_model/model.skops")
    return SpamScorer(skops.io.load(path, trusted=list(TRUSTED_TYPES)))


def recommender() -> Any:
    """The pinned `Recommender`, as `services/recommend/service.py` loads it."""
    from projects.recommend.config import MODEL_ARTIFACT
    from projects.recommend.model import Recommender
    from services.common import read_pinned

    tag = read_pinned("recommend")["tag"]
    return Recommender.load(model_path(tag, f"mlflow_model/artifacts/{MODEL_ARTIFACT}.npz"))


# ---------------------------------------------------------------------------------------------
# The report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _busiest(*phases: dict[str, Any] | None) -> str:
    """The most cores other work used during any of `phases`."""
    busy = [p["other_cores"] for p in phases if p and p.get("other_cores") is not None]
    return f"{max(busy):.2f}" if busy else "-"


def print_tables(spam: dict[str, dict[str, Any]], recommend: dict[str, Any], clients: int) -> None:
    """Markdown tables of every figure."""
    print(
        f"\n| spam /classify, 1 text | 1 client p50 ms | p99 ms | max ms | errors "
        f"| {clients} clients req/s | p50 ms | p99 ms | errors | server CPU ms/req "
        f"| client CPU ms/req | other load (cores) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in spam.items():
        one, many = row["one_client"], row.get("concurrent")
        cells = [_ms(one["p50_ms"]), _ms(one["p99_ms"]), _ms(one["max_ms"]), str(one["errors"])]
        if many:
            cells += [
                f"{many['requests_per_s']:.0f}",
                _ms(many["p50_ms"]),
                _ms(many["p99_ms"]),
                str(many["errors"]),
                _ms(many["server_cpu_ms_per_request"]),
                _ms(many["client_cpu_ms_per_request"]),
            ]
        else:
            cells += ["-"] * 6
        print(f"| {name} | " + " | ".join([*cells, _busiest(one, many)]) + " |")
    print(
        "\n| recommend /recommend, k=10 | p50 ms | p99 ms | max ms | errors | other load (cores) |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in recommend.items():
        if "skipped" in row:
            print(f"| {name} | skipped: {row['skipped']} | | | | |")
        else:
            cells = [_ms(row["p50_ms"]), _ms(row["p99_ms"]), _ms(row["max_ms"])]
            print(f"| {name} | " + " | ".join([*cells, str(row["errors"]), _busiest(row)]) + " |")


def warn_if_busy(spam: dict[str, dict[str, Any]], recommend: dict[str, Any]) -> None:
    """Say so when other work took a noticeable share of the cores while we measured."""
    phases = [p for row in spam.values() for p in row.values()] + list(recommend.values())
    busy = [p["other_cores"] for p in phases if p.get("other_cores") is not None]
    if busy and max(busy) > BUSY_CORES:
        print(
            f"\nwarning: other processes used up to {max(busy):.2f} of the machine's cores while "
            "this ran; the figures are worse than on a quiet machine: run it again"
        )


def verdicts(spam: dict[str, dict[str, Any]], recommend: dict[str, Any]) -> dict[str, Any]:
    """Each target: the figure, the bound and whether it was met (None: not measured)."""
    bento, plain = spam["BentoML"], spam["FastAPI def"]
    errors = bento["one_client"]["errors"] + bento["concurrent"]["errors"]
    result = {
        "spam_p99_one_client_ms": (bento["one_client"]["p99_ms"], "≤", TARGET_P99_MS),
        "spam_req_per_s_vs_fastapi": (
            bento["concurrent"]["requests_per_s"],
            "≥",
            plain["concurrent"]["requests_per_s"],
        ),
        "spam_errors": (errors, "=", 0),
    }
    served = recommend.get("BentoML", {})
    result["recommend_p50_ms"] = (
        served.get("p50_ms"),
        "≤",
        TARGET_RECOMMEND_P50_MS,
    )
    out = {}
    for key, (value, sign, bound) in result.items():
        if value is None:
            met = None
        elif sign == "≤":
            met = value <= bound
        elif sign == "≥":
            met = value >= bound
        else:
            met = value == bound
        out[key] = {"value": value, "bound": f"{sign} {bound}", "met": met}
    return out


# ---------------------------------------------------------------------------------------------


@app.command()
def main(
    requests: Annotated[
        int, typer.Option(help="Requests in each one-client phase (and in-process calls).")
    ] = 2000,
    duration: Annotated[float, typer.Option(help="Seconds of the concurrent phase.")] = 15.0,
    clients: Annotated[int, typer.Option(help="Connections in the concurrent phase.")] = 8,
    fastapi_async: Annotated[
        bool, typer.Option(help="Also measure the FastAPI endpoint written as `async def`.")
    ] = True,
) -> None:
    """Measure spam /classify and recommend /recommend in process, under FastAPI and BentoML."""
    # a plain `kill` must unwind through the `finally` that stops the servers, as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupted)
    # the Makefile sets this; a bare `python -m bench.services_speed` should find the same store
    os.environ.setdefault("BENTOML_HOME", str(ROOT / "bentoml"))
    scorer = spam_scorer()
    try:
        model, missing = recommender(), ""
    except StageError as exc:  # spam alone is still worth measuring
        model, missing = None, str(exc)
    # The client's own collections would show up as server latency: keep what is loaded out of
    # the collector's view (the services do the same with their model).
    gc.collect()
    gc.freeze()

    def classify(i: int) -> object:
        return scorer.is_spam(scorer.probability([MESSAGES[i % len(MESSAGES)]]))

    spam: dict[str, dict[str, Any]] = {
        "in process": {"one_client": in_process(classify, requests).summary()}
    }
    print(f"in process: {spam['in process']['one_client']}", flush=True)

    def bench_spam(name: str, command: list[str], ready: str, path: str, workdir: Path) -> None:
        with serving(name, command, ready, workdir) as server:
            calls = [post_request(server.port, path, {"texts": [t]}) for t in MESSAGES]
            warm = sequential(server, calls, WARMUP, b'"label"')
            if warm.errors:
                raise StageError(f"{name}: {warm.errors} of {WARMUP} warm-up requests failed")
            one = sequential(server, calls, requests, b'"label"').summary()
            print(f"{name}, 1 client: {one}", flush=True)
            many = concurrent(server, calls, clients, duration, b'"label"').summary()
            print(f"{name}, {clients} clients: {many}", flush=True)
            spam[name] = {"one_client": one, "concurrent": many}

    with tempfile.TemporaryDirectory(prefix="services-speed-") as tmp:
        workdir = Path(tmp)
        plain = uvicorn_serve("bench.fastapi_spam:app")
        bench_spam("FastAPI def", plain, "/docs", "/classify", workdir)
        if fastapi_async:
            bench_spam("FastAPI async def", plain, "/docs", "/classify-async", workdir)
        bench_spam("BentoML", bentoml_serve(SPAM_SERVICE), "/readyz", "/classify", workdir)
        recommend = bench_recommend(model, missing, requests, workdir)

    print_tables(spam, recommend, clients)
    warn_if_busy(spam, recommend)
    targets = verdicts(spam, recommend)
    print()
    for key, verdict in targets.items():
        met = {True: "met", False: "MISSED", None: "not measured"}[verdict["met"]]
        print(f"{key}: {verdict['value']} {verdict['bound']}: {met}")
    print(json.dumps({"spam": spam, "recommend": recommend, "targets": targets}))


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def bench_recommend(model: Any, missing: str, n: int, workdir: Path) -> dict[str, Any]:
    """`/recommend` in process and under `bentoml serve`, one client; skipped, saying why, if
    the service or its model is not there or does not become ready."""
    users = [1 + (i * 37) % N_USERS for i in range(N_USERS)]  # every user, in a scattered order
    if model is None:
        print(f"recommend skipped: {missing}", flush=True)
        return {"in process": {"skipped": missing}, "BentoML": {"skipped": missing}}
    result: dict[str, Any] = {}
    result["in process"] = in_process(lambda i: model.recommend(users[i % N_USERS], K), n).summary()
    print(f"recommend in process: {result['in process']}", flush=True)
    if not RECOMMEND_FILE.exists():
        why = f"{RECOMMEND_FILE.relative_to(ROOT)} does not exist yet"
        print(f"recommend service skipped: {why}", flush=True)
        result["BentoML"] = {"skipped": why}
        return result
    try:
        with serving(
            "BentoML recommend", bentoml_serve(RECOMMEND_SERVICE), "/readyz", workdir
        ) as s:
            calls = [post_request(s.port, "/recommend", {"user_id": u, "k": K}) for u in users]
            sequential(s, calls, WARMUP)
            result["BentoML"] = sequential(s, calls, n).summary()
            print(f"recommend BentoML, 1 client: {result['BentoML']}", flush=True)
    except StageError as exc:
        print(f"recommend service skipped: {exc}", flush=True)
        result["BentoML"] = {"skipped": str(exc).splitlines()[0]}
    return result


if __name__ == "__main__":
    cli.run(app)
