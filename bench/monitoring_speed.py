"""Speed of the monitoring job against a plain Evidently report on the same window.

Run: `python -m bench.monitoring_speed` (`make bench-monitoring`); it takes a few minutes. The
target: the monitoring job on `--requests` (100k) logged requests of one project takes at most
1.5 times a plain Evidently report with the same preset on the same data. For each project:

- `--requests` request-log records are written as its service writes them, by its `production`
  module's `logged_records` (held-out data, with predictions drawn from the reference's rows of
  the same true label), and feedback for half of the labelled predictions, so the quality
  metrics are part of the job. Everything goes to a temporary `MONITORING_DIR`.
- the job: `monitoring.monitor.run_job([project])`, wall-clock, from a fresh cursor and a fresh
  workspace each time: reading and parsing the log, the features, the Evidently report with
  every metric, its HTML and JSON, and the workspace snapshot.
- the plain report: `Report([preset]).run(current, reference)` with the job's own
  `DataDriftPreset`, on the frames the job gave Evidently (the whole window, before any sampling
  down to params.yaml's `sample_size`, which the output notes), saved as HTML and as JSON.

First, one untimed run of the job with the functions it calls wrapped in timers gives the
breakdown of its time, and the frames and preset for the plain report; it follows the job as it
is, whatever its internals become. Then job and plain report alternate (job, plain, job, ...) so
that noise on the machine hits both; the cores other processes used meanwhile are reported.
Everything runs after a warm-up on a small window. The last line printed is JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from monitoring.simulate import DAY
from projects.core import cli, paths
from projects.core.project import choose, get

log = logging.getLogger(__name__)
app = cli.app()

TARGET_RATIO = 1.5
FEEDBACK_SHARE = 0.5
WARMUP_REQUESTS = 2000
BUSY_CORES = 0.2  # other work on the machine beyond this makes the times longer


# ---------------------------------------------------------------------------------------------
# Request logs as the services write them


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def write_window(root: Path, project: str, n: int, seed: int = 0) -> None:
    """`n` request-log records of `project` under `root`, and feedback for a share of them."""
    from monitoring.monitor import load_reference
    from monitoring.specs import specs

    reference, context, _ = load_reference(specs()[project], paths.REFERENCE_DIR / project)
    rng = np.random.default_rng(seed)
    records, truth = get(project).module("production").logged_records(n, reference, context, rng)
    name = f"{DAY.date().isoformat()}.jsonl"
    _write_lines(root / project / "requests" / name, records)
    if truth is None:
        return
    labelled = np.flatnonzero(rng.random(n) < FEEDBACK_SHARE)
    # labels arrive after the predictions: an hour later will do
    feedback = [
        {"prediction_id": records[i]["prediction_id"], "label": str(truth[i]),
         "timestamp": (dt.datetime.fromisoformat(records[i]["timestamp"])
                       + dt.timedelta(hours=1)).isoformat(timespec="milliseconds")}
        for i in labelled.tolist()
    ]  # fmt: skip
    _write_lines(root / project / "feedback" / name, feedback)


# ---------------------------------------------------------------------------------------------
# The job and the plain report


@contextmanager
def monitoring_dir(root: Path) -> Iterator[None]:
    """`MONITORING_DIR` set to `root` for the block, as it was afterwards."""
    before = os.environ.get("MONITORING_DIR")
    os.environ["MONITORING_DIR"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MONITORING_DIR", None)
        else:
            os.environ["MONITORING_DIR"] = before


@contextmanager
def quiet_evidently() -> Iterator[None]:
    """What the job wraps `Report.run` in: Evidently's correlations divide by the zero spread of
    constant columns, and printing the warnings would cost the plain report alone."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all but idle and iowait) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    """Wall-clock seconds of some runs, and the CPU other processes used meanwhile."""

    seconds: float = 0.0
    other_cpu_seconds: float = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        mine, machine, start = time.process_time(), machine_cpu_seconds(), time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            others = machine_cpu_seconds() - machine - (time.process_time() - mine)
            self.other_cpu_seconds += max(others, 0.0)

    @property
    def other_cores(self) -> float:
        """Cores other work used on average; more than `BUSY_CORES` spoils the figures."""
        return self.other_cpu_seconds / self.seconds if self.seconds else 0.0


class Stopwatch:
    """Seconds spent in named steps, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def time_job(root: Path, project: str, load: Load) -> float:
    """Seconds of `run_job([project])` on the whole log: a fresh cursor, and a fresh workspace
    so that every run adds the same first snapshot."""
    from monitoring.monitor import run_job
    from monitoring.window import CURSOR_FILE

    (root / project / CURSOR_FILE).unlink(missing_ok=True)
    shutil.rmtree(root / "workspace", ignore_errors=True)
    with monitoring_dir(root), load.measure():
        start = time.perf_counter()
        verdicts, status = run_job([project])
        seconds = time.perf_counter() - start
    if status:
        raise cli.StageError(f"the monitoring job failed on {project}: {verdicts}")
    return seconds


# ---------------------------------------------------------------------------------------------
# The job step by step, by timing the functions it calls during one run


class Instruments:
    """Wrap functions so that each call is timed under a label, and put them back afterwards.

    A step's time counts once, at the outermost timed call; a `part` (a piece of a step, such as
    reading the feedback inside the features) counts wherever it is called.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, list[tuple[tuple[Any, ...], Any]]] = {}
        self._depth = 0
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(
        self, owner: Any, name: str, label: str, part: bool = False, keep: bool = False
    ) -> None:
        """Time `owner.name` under `label`; with `keep`, also keep each call's arguments and
        result in `calls[name]`."""
        original = owner.__dict__.get(name)
        if original is None:  # renamed since: the breakdown says less, the bench still runs
            log.warning(
                "cannot time %s.%s: it is not there", getattr(owner, "__name__", owner), name
            )
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            outermost = self._depth == 0
            self._depth += 1
            start = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                self._depth -= 1
                if outermost or part:
                    self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
            if keep:
                self.calls.setdefault(name, []).append((args, result))
            return result

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)
        self.seconds.setdefault(label, 0.0)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


@dataclass
class JobRun:
    """What one instrumented run of the job did: its steps, and what it gave Evidently."""

    seconds: float
    steps: dict[str, float]
    current: pd.DataFrame  # the whole window in the reference's columns, before any sampling
    reference: pd.DataFrame  # the reference as the job passed it
    schema: Any
    preset: Any  # the job's own DataDriftPreset
    sampled: bool


def instrumented_job(root: Path, project: str) -> JobRun:
    """Run the job once with its steps timed, and keep the frames and the preset it used."""
    import importlib

    from evidently.core.report import Report, Snapshot

    from monitoring import dashboards
    from monitoring import monitor as job
    from monitoring.monitor import dataset

    tools = Instruments()
    features = importlib.import_module(f"projects.{project}.reference")
    prepare = "build report, sample, datasets"
    tools.wrap(dashboards, "open_workspace", "open workspace")
    tools.wrap(job, "monitor_params", "params, reference")
    tools.wrap(job, "load_reference", "params, reference")
    tools.wrap(job, "read_window", "read + parse log")
    tools.wrap(job, "window_frame", "features + feedback join")
    tools.wrap(job, "check_fields", "(of which: check fields)", part=True)
    tools.wrap(features, "window_frame", "(of which: project features)", part=True)
    tools.wrap(job, "read_feedback", "(of which: read feedback)", part=True)
    tools.wrap(job, "build_report", prepare, keep=True)
    tools.wrap(job, "sample", prepare, keep=True)
    tools.wrap(job, "dataset", prepare, keep=True)
    tools.wrap(Report, "run", "Evidently run, every metric")
    tools.wrap(Snapshot, "dict", "verdict (snapshot.dict)")
    tools.wrap(Snapshot, "save_html", "save HTML")
    tools.wrap(Snapshot, "save_json", "save JSON")
    tools.wrap(dashboards, "add_snapshot", "workspace snapshot")
    tools.wrap(job, "write_cursor", "cursor, latest.json")
    tools.wrap(job, "write_latest", "cursor, latest.json")
    try:
        seconds = time_job(root, project, Load())
    finally:
        tools.restore()
    steps = tools.seconds
    steps["rest (timestamps, judging, ...)"] = seconds - sum(
        v for k, v in steps.items() if not k.startswith("(")
    )
    # the plain report's data: the whole window as the reference's columns, built untimed
    current, reference, schema, sampled = whole_window(root, project)
    report = tools.calls["build_report"][0][1]
    current_data, reference_data = dataset(current, schema), dataset(reference, schema)
    start = time.perf_counter()
    with quiet_evidently():
        Report(report.metrics[1:]).run(current_data, reference_data)
    steps["(of which: the metrics beyond the preset, run alone)"] = time.perf_counter() - start
    return JobRun(
        seconds,
        steps,
        current=current,
        reference=reference,
        schema=schema,
        preset=report.metrics[0],
        sampled=sampled,
    )


def whole_window(root: Path, project: str) -> tuple[pd.DataFrame, pd.DataFrame, Any, bool]:
    """The whole window (never sampled) and the reference, as the job's columns; the schema; and
    whether the job samples a window of this size."""
    from monitoring import config
    from monitoring import monitor as job
    from monitoring.metrics import WINDOW_REQUESTS
    from monitoring.specs import specs
    from monitoring.window import read_window

    spec = specs()[project]
    reference, context, schema = job.load_reference(spec, paths.REFERENCE_DIR / project)
    with monitoring_dir(root):
        window = read_window(config.requests_dir(project, root), {}, schema.routes, False)
        frame, requests = job.window_frame(
            spec, window, context, schema, root, size=len(window.records)
        )
    frame[WINDOW_REQUESTS] = requests
    reference[WINDOW_REQUESTS] = len(reference)
    size = job.monitor_params(project).sample_size
    return frame, reference, schema, requests > size


def plain_report(job: JobRun, out: Path, load: Load) -> dict[str, float]:
    """Seconds of a plain report on the job's frames with the job's own `DataDriftPreset`: the
    run, then saving it as HTML and as JSON.

    The frames become Evidently datasets inside the timing, with the job's column types, as
    `Report.run` would do itself with a frame.
    """
    from evidently import Report

    from monitoring.monitor import dataset

    watch = Stopwatch()
    with load.measure():
        with watch.step("run"), quiet_evidently():
            current, reference = (
                dataset(job.current, job.schema),
                dataset(job.reference, job.schema),
            )
            snapshot = Report([job.preset]).run(current, reference)
        with watch.step("save HTML"):
            snapshot.save_html(str(out / "plain.html"))
        with watch.step("save JSON"):
            snapshot.save_json(str(out / "plain.json"))
    return watch.seconds


# ---------------------------------------------------------------------------------------------
# One project


@dataclass
class Result:
    """The timings of one project."""

    project: str
    requests: int
    job: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    plain_parts: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    job_load: Load = field(default_factory=Load)
    plain_load: Load = field(default_factory=Load)
    sampled: bool = False

    @property
    def ratio(self) -> float:
        return statistics.median(self.job) / statistics.median(self.plain)

    @property
    def other_cores(self) -> float:
        return max(self.job_load.other_cores, self.plain_load.other_cores)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "job_s": [round(s, 3) for s in self.job],
            "plain_s": [round(s, 3) for s in self.plain],
            "job_median_s": round(statistics.median(self.job), 3),
            "plain_median_s": round(statistics.median(self.plain), 3),
            "ratio": round(self.ratio, 3),
            "target": f"≤ {TARGET_RATIO}",
            "target_met": self.ratio <= TARGET_RATIO,
            "job_sampled_the_window": self.sampled,
            "other_cores": round(self.other_cores, 2),
            "plain_parts_median_s": {
                k: round(statistics.median(v), 3) for k, v in self.plain_parts.items()
            },
            "job_steps_s": {k: round(v, 3) for k, v in self.steps.items()},
        }


def warm_up(project: str) -> None:
    """One untimed job and plain report on a small window: imports, caches, templates."""
    with tempfile.TemporaryDirectory(prefix="monitoring-speed-warm-") as tmp:
        root = Path(tmp)
        write_window(root, project, WARMUP_REQUESTS, seed=1)
        plain_report(instrumented_job(root, project), root, Load())


def bench_project(project: str, requests: int, repeats: int, seed: int) -> Result:
    """The job step by step, then job and plain report, alternating, `repeats` times each."""
    result = Result(project, requests)
    warm_up(project)
    with tempfile.TemporaryDirectory(prefix="monitoring-speed-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_window(root, project, requests, seed)
        seconds = time.perf_counter() - start
        log.info("%s: %d requests logged in %.1f s", project, requests, seconds)
        # untimed: the steps of one run, and the frames and preset the job gave Evidently
        job = instrumented_job(root, project)
        result.steps, result.sampled = job.steps, job.sampled
        for i in range(repeats):
            result.job.append(time_job(root, project, result.job_load))
            parts = plain_report(job, root, result.plain_load)
            for name, seconds in parts.items():
                result.plain_parts.setdefault(name, []).append(seconds)
            result.plain.append(sum(parts.values()))
            log.info(
                "%s: repeat %d of %d: job %.2f s, plain report %.2f s",
                project,
                i + 1,
                repeats,
                result.job[-1],
                result.plain[-1],
            )
    return result


# ---------------------------------------------------------------------------------------------
# The report


def print_tables(results: list[Result]) -> None:
    """The verdict table, then each project's job steps beside the plain report's parts."""
    print(
        "\n| project | requests | job median s (min) | plain Evidently median s (min) | ratio "
        f"| target ≤ {TARGET_RATIO} met? | other load (cores) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        met = "yes" if r.ratio <= TARGET_RATIO else "NO"
        print(
            f"| {r.project} | {r.requests} | {statistics.median(r.job):.2f} ({min(r.job):.2f}) "
            f"| {statistics.median(r.plain):.2f} ({min(r.plain):.2f}) | {r.ratio:.2f} | {met} "
            f"| {r.other_cores:.2f} |"
        )
    for r in results:
        print(f"\n| {r.project}: job step (one pass) | s | plain report (median) | s |")
        print("|---|---|---|---|")
        steps = list(r.steps.items())
        parts = [(k, statistics.median(v)) for k, v in r.plain_parts.items()]
        for i in range(max(len(steps), len(parts))):
            left = f"{steps[i][0]} | {steps[i][1]:.2f}" if i < len(steps) else " | "
            right = f"{parts[i][0]} | {parts[i][1]:.2f}" if i < len(parts) else " | "
            print(f"| {left} | {right} |")
        total = sum(v for k, v in steps if not k.startswith("("))
        print(f"| sum of the steps | {total:.2f} | sum | {sum(v for _, v in parts):.2f} |")
    sampled = [r.project for r in results if r.sampled]
    if sampled:
        print(
            f"\nnote: the job sampled the window of {', '.join(sampled)} down to params.yaml's "
            "sample_size; the plain report ran on the whole window"
        )
    busy = [r for r in results if r.other_cores > BUSY_CORES]
    if busy:
        print(
            f"\nwarning: other processes used up to {max(r.other_cores for r in busy):.2f} "
            "cores while this ran: the times are longer than on a quiet machine, and the ratios "
            "less sure (alternating spreads the noise, but Evidently uses a second core at "
            "times and the job's parsing does not); run it again on a quiet machine"
        )


@app.command()
def main(
    project: Annotated[
        list[str] | None,
        typer.Option(help="A project to measure (repeatable); default: every project."),
    ] = None,
    requests: Annotated[int, typer.Option(help="Logged requests in the window.")] = 100_000,
    repeats: Annotated[int, typer.Option(help="Timed runs of the job and of the report.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the generated traffic.")] = 0,
) -> None:
    """Time the monitoring job against a plain Evidently report on the same window."""
    chosen = [p.name for p in choose(project) if p.has("production") and p.has("monitor")]
    results = [bench_project(name, requests, repeats, seed) for name in chosen]
    print_tables(results)
    print(json.dumps({r.project: r.summary() for r in results}))


if __name__ == "__main__":
    cli.run(app)
