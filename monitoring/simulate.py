"""Production traffic for every project's service (`make simulate`): held-out data, drifted on
demand, and what production would leave behind, such as delayed labels.

What each project sends is its own: its `production` module (`projects.core.project`) has `load()`,
which reads its held-out data, and `window(data, service, window)`, which sends one window of
`window.n` predictions at drift strength `window.s` and writes what production would leave
behind. A run is `--windows` windows of `--requests` predictions per project. With `--drift` the
drift strength of window i of W is i/W, so it ramps up over the windows and a single window is
fully drifted. Delayed labels go to `<project>/feedback/<UTC date>.jsonl` (paths from
`monitoring.config`). Each window but the last is then closed by the monitoring job; the last is
left for `make monitor`.

The requests of a window are a pure function of the held-out data, the size, the drift strength
and a generator seeded from (seed, window, project), so a run is reproducible and one project's
traffic does not depend on which others are simulated.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pandas as pd
import typer

from monitoring import config
from projects.core import cli
from projects.core.cli import StageError
from projects.core.project import Project, choose, ports

log = logging.getLogger(__name__)
app = cli.app()

# The services flush their request logs every second; wait a little longer than that.
FLUSH_WAIT = 1.5
TIMEOUT = 30.0
DAY = dt.datetime(2025, 1, 15, tzinfo=dt.UTC)  # logged_rows' date; any fixed one will do

# --- the requests of a window (pure) ------------------------------------------------------------


def sample(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices into `range(size)`: without replacement while possible, then with."""
    if size == 0:
        raise ValueError("nothing to sample from")
    first = rng.permutation(size)[:n]
    return np.concatenate([first, rng.integers(0, size, n - len(first))])


def batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """`items` in consecutive lists of up to `size`."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def feedback_records(
    predictions: Sequence[tuple[str, str]], share: float, rng: np.random.Generator, timestamp: str
) -> list[dict[str, str]]:
    """The delayed labels of a random `share` of `(prediction id, true label)` pairs."""
    chosen = np.sort(rng.choice(len(predictions), round(share * len(predictions)), replace=False))
    return [
        {"prediction_id": predictions[i][0], "label": predictions[i][1], "timestamp": timestamp}
        for i in chosen.tolist()
    ]


def require(*paths: Path) -> None:
    """Raise `StageError` naming the held-out files that are missing."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise StageError(f"missing {', '.join(missing)}: run `make run` first")


# --- request logs without a service (for benches: `logged_records` of a project's production) ----


def logged_rows(n: int, version: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """What `ModelService.record` adds to every row: time, request id, version, latency."""
    seconds = np.sort(rng.uniform(0, 86_400, n))
    latency = np.round(rng.lognormal(np.log(2.0), 0.5, n), 3)
    rows = []
    for second, ms in zip(seconds.tolist(), latency.tolist(), strict=True):
        stamp = (DAY + dt.timedelta(seconds=second)).isoformat(timespec="milliseconds")
        request_id = uuid.UUID(bytes=rng.bytes(16), version=4).hex
        rows.append({"timestamp": stamp, "request_id": request_id, "model_version": version,
                     "latency_ms": ms, "prediction_id": f"{request_id}-0"})  # fmt: skip
    return rows


def predictions_like(
    truth: np.ndarray, reference: pd.DataFrame, columns: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """For each true label, the predictions of a random reference row with that true label, so
    that predictions agree with the data about as often as the champion's do."""
    picked = np.empty(len(truth), dtype=int)
    for label in np.unique(truth):
        rows = np.flatnonzero(reference["target"].to_numpy() == label)
        where = np.flatnonzero(truth == label)
        picked[where] = rng.choice(rows, size=len(where))
    return reference[columns].iloc[picked].reset_index(drop=True)


# --- sending ------------------------------------------------------------------------------------


@dataclass
class Service:
    """One project's service over HTTP."""

    project: str
    url: str
    client: httpx.Client

    def _not_answering(self) -> StageError:
        return StageError(
            f"the {self.project} service is not answering at {self.url}: "
            "start the services with `make serve`"
        )

    def check(self) -> None:
        """Raise `StageError` unless the service is up and ready."""
        try:
            response = self.client.get("/readyz")
        except httpx.TransportError:
            raise self._not_answering() from None
        if response.status_code != 200:
            raise StageError(
                f"the {self.project} service at {self.url} is not ready "
                f"({response.status_code}): wait for `make serve` to finish starting"
            )

    def post(
        self, route: str, body: dict[str, Any], missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """The JSON answer to `POST /<route>`; None for a 404 if `missing_ok` (something the
        model does not know, such as an item, which traffic may well ask for).

        Raises:
            StageError: the service does not answer, or answers with another 4xx or 5xx.
        """
        try:
            response = self.client.post(f"/{route}", json=body)
        except httpx.TransportError:
            raise self._not_answering() from None
        if response.status_code == 404 and missing_ok:
            log.warning("%s: %s %s: %s", self.project, route, body, response.text[:200])
            return None
        if response.status_code >= 400:
            raise StageError(
                f"the {self.project} service answered {response.status_code} to POST /{route}: "
                f"{response.text[:500]}"
            )
        return response.json()


def counts(*names: str) -> Counter[str]:
    """A counter of `names`, each at 0, in that order (the order reports show them in)."""
    return Counter(dict.fromkeys(names, 0))


def utc_now() -> dt.datetime:
    """Now, in UTC: the files are named by the UTC date, as the services' request logs are."""
    return dt.datetime.now(dt.UTC)


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSON-lines file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(record, separators=(",", ":")) + "\n" for record in records)


def write_feedback(
    project: str, predictions: Sequence[tuple[str, str]], share: float, rng: np.random.Generator
) -> int:
    """Append the delayed labels of a random `share` of predictions; how many were written."""
    now = utc_now()
    records = feedback_records(predictions, share, rng, now.isoformat(timespec="milliseconds"))
    append_jsonl(config.feedback_dir(project) / f"{now:%Y-%m-%d}.jsonl", records)
    return len(records)


# --- windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """What one project's window needs besides its held-out data and service."""

    n: int
    s: float
    rng: np.random.Generator
    feedback_rng: np.random.Generator
    label_share: float
    # block ids must differ between runs, like the ids the services give predictions
    id_rng: np.random.Generator = field(default_factory=np.random.default_rng)


def describe(stats: Counter[str]) -> str:
    """Counts as `3 predictions, 1 requests`, in the order they were first counted."""
    return ", ".join(f"{count} {name}" for name, count in stats.items())


def run_monitoring(projects: Sequence[str]) -> None:
    """Close the window with the monitoring job, as a scheduler would."""
    from monitoring.monitor import run_job  # Evidently loads slowly: only when a window closes

    run_job(list(projects))


def simulate(
    held_out: Mapping[str, Any],
    services: Mapping[str, Service],
    requests: int,
    windows: int,
    drift: bool,
    seed: int,
    label_share: float,
) -> dict[str, Counter[str]]:
    """Send every window to every project in `held_out`; the totals of each project."""
    totals = {project: Counter() for project in held_out}
    for number in range(1, windows + 1):
        s = number / windows if drift else 0.0
        for project, data in held_out.items():
            started = time.perf_counter()
            # one stream per (seed, window, project): a project's traffic is the same whichever
            # other projects run
            key = [seed, number, zlib.crc32(project.encode())]
            window = Window(
                requests,
                s,
                np.random.default_rng([*key, 0]),
                np.random.default_rng([*key, 1]),
                label_share,
            )
            stats = Project(project).module("production").window(data, services[project], window)
            log.info(
                "window %d/%d, %s, drift %.2f: %s (%.1f s)",
                number, windows, project, s, describe(stats), time.perf_counter() - started,
            )  # fmt: skip
            totals[project].update(stats)
        time.sleep(FLUSH_WAIT)  # so the services' request logs hold the whole window
        if number < windows:
            run_monitoring(list(held_out))
    return totals


@app.command()
def main(
    requests: Annotated[
        int, typer.Option(min=1, help="Predictions per project per window.")
    ] = 1000,
    windows: Annotated[
        int, typer.Option(min=1, help="Windows to send; each but the last is then monitored.")
    ] = 1,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift/--no-drift",
            help="Drift the traffic, at strength i/W in window i of W (full in a single one).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the traffic and the labels.")] = 0,
    host: Annotated[str, typer.Option(help="Host the services listen on.")] = "127.0.0.1",
    port: Annotated[
        list[str] | None,
        typer.Option(
            help="name=port of one service (repeat); else $<NAME>_PORT, else its config's."
        ),
    ] = None,
    projects: Annotated[
        list[str] | None,
        typer.Option(
            "--projects",
            metavar="PROJECT",
            help="A project to send traffic to; repeat for several (default: all).",
        ),
    ] = None,
    label_share: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of labelled predictions whose true label arrives."),
    ] = 0.5,
) -> None:
    """Send held-out (optionally drifted) traffic to the running services, then write the
    delayed labels and what else production would leave behind."""
    chosen = [p for p in choose(projects) if p.has("production")]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    addresses = ports(chosen, port or [])
    held_out = {p.name: p.module("production").load() for p in chosen}
    clients = {name: httpx.Client(base_url=f"http://{host}:{number}", timeout=TIMEOUT)
               for name, number in addresses.items()}  # fmt: skip
    try:
        services = {p: Service(p, str(c.base_url).rstrip("/"), c) for p, c in clients.items()}
        for service in services.values():
            service.check()
        totals = simulate(held_out, services, requests, windows, drift, seed, label_share)
    finally:
        for client in clients.values():
            client.close()
    for project, stats in totals.items():
        typer.echo(f"{project}: {describe(stats)} in {windows} window(s)")


if __name__ == "__main__":
    cli.run(app)
