"""Spark batch scoring of HDFS logs at scale: speed, memory that stays put, and the in-process
path beside it.

Run: `make bench-batch` (or `python -m bench.batch_scale`), on a quiet machine. With the
defaults (1, 3 and 10 million lines; `local[1]` and `local[2]`; the in-process path up to 10
million) it took 17 minutes on 2 cores, generating the inputs included (docs/batch.md has the
figures). `--sizes 20000,60000 --local-up-to 60000` is a smoke of every path: a few minutes,
nearly all of it Spark's fixed cost.

1. Input: for each size, a folder of simulated HDFS_v1 logs (`projects/anomaly/simulator.py`)
   of at least that many lines, written a chunk of `CHUNK_BLOCKS` blocks at a time (seed: the
   chunk's number plus `--seed`), never held whole, into files of `--file-lines` lines each: a
   block's lines cross files, so the job's grouping by block is a real shuffle. A folder is
   reused while its marker (`.generated.json`, hidden from the job) matches; they live under
   `--work`, outside the repository (default: `bench-batch/` in the system's temporary folder).
   Each chunk's clock starts again at the simulator's start: scoring reads no time.
2. Each run is its own process, `python -m batch.job --project anomaly` with `--engine spark
   --master local[N]` for each of `--masters`, then `--engine local` (the in-process path) on
   sizes up to `--local-up-to`, into a fresh output folder (removed after). Its JVM gets a fixed
   heap (`PYSPARK_SUBMIT_ARGS="--driver-memory 2g pyspark-shell"`: pyspark hands it to the
   spark-submit that starts the JVM; the table shows the -Xmx the JVM got).
3. Every `SAMPLE_EVERY` seconds, the resident memory (RSS) of the job's process tree: the Python
   driver; the JVM (in local mode it holds the driver and the executors' threads, so its RSS
   is bounded by the heap plus what the JVM keeps off it); the Python workers Spark forks
   (`pyspark.daemon` and its children: the executors' Python side), summed at each sample; the
   three together (`tree`); and every process of the tree as PSS, once a second: forked workers
   share pages, which a sum of RSS counts once per worker. The rest (spark-submit's shell and
   launcher, the JVM's spawn helper) is small and apart (`other` in the JSON). The peaks are
   reported. An in-process run whose tree passes `--memory-cap-gb` is killed by its PID and
   recorded as not fitting; no larger size is tried.
4. Speed: the job's own seconds (its summary: the champion's download, the Spark session, the
   scoring, the writing) and lines per second on them; between two sizes, the lines per second
   past the fixed cost (`marginal_lines_per_second`); the process's wall time, and the CPU its
   tree used. The CPU other processes used meanwhile is reported (`other cores`): more than
   `BUSY_CORES` makes the times longer than on a quiet machine.

Printed: a table of the runs, then the speed-up of each master over the first, the growth of
peak memory from the smallest size to the largest, and where the in-process path stops fitting
or becomes slower than Spark. `--out` (default: `batch_scale.json` under `--work`) gets it all
as JSON, with each run's logs named.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import psutil
import typer

from bench.monitoring_speed import machine_cpu_seconds
from projects.core import cli, paths
from projects.core.cli import StageError

log = logging.getLogger(__name__)
app = cli.app()

# The bench is of HDFS logs, the one input with a simulator that goes to millions of lines.
PROJECT = "anomaly"
ANOMALY_SHARE = 0.03  # Loghub's HDFS_v1: 2.9 % of blocks (params.yaml's anomaly.simulate)
CHUNK_BLOCKS = 5000  # blocks a simulate() call makes: ~93k lines, ~13 MB
LINES_PER_BLOCK = 18.7  # the simulator's average: sizes the last chunk, so sizes are met closely
BYTES_PER_LINE = 140  # the simulator's average line, newline included: the disk a size needs
MARKER = ".generated.json"  # hidden: batch.job skips names starting with "."
SAMPLE_EVERY = 0.2
PSS_EVERY = 5  # samples: the tree's PSS once a second
LEFTOVER_SECONDS = 30  # a finished job's JVM gets this long to exit by itself
BUSY_CORES = 0.2
MB = 1024**2
ROLES = ("driver", "jvm", "workers", "other")
SPARK_SUBMIT = "org.apache.spark.deploy.SparkSubmit"  # the main class of the JVM Spark runs in
LAUNCHER = "org.apache.spark.launcher.Main"  # spark-submit's helper: it names SparkSubmit too
MASTER = re.compile(r"local\[(\d+|\*)\]")


# ---------------------------------------------------------------------------------------------
# Input


class _Files:
    """Lines into `hdfs-00000.log`, `hdfs-00001.log`, ... of `per_file` lines each."""

    def __init__(self, folder: Path, per_file: int) -> None:
        self.folder, self.per_file = folder, per_file
        self.count = 0
        self._file: IO[str] | None = None
        self._in_file = 0

    def write(self, lines: list[str]) -> None:
        """Append `lines`, going on in a new file whenever one is full."""
        start = 0
        while start < len(lines):
            if self._file is None or self._in_file == self.per_file:
                self._next()
            end = min(len(lines), start + self.per_file - self._in_file)
            self._file.write("\n".join(lines[start:end]) + "\n")
            self._in_file += end - start
            start = end

    def _next(self) -> None:
        self.close()
        self._file = (self.folder / f"hdfs-{self.count:05d}.log").open("w", encoding="utf-8")
        self.count += 1
        self._in_file = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def generate(folder: Path, lines: int, seed: int = 0, file_lines: int = 250_000) -> dict[str, Any]:
    """At least `lines` simulated HDFS log lines in `folder`, `file_lines` to a file, made a
    chunk of blocks at a time; the folder as it is when its marker says it holds the same.

    Returns:
        What the marker records: lines, blocks, files, and the generation's time.
    """
    from projects.anomaly.simulator import simulate

    wanted = {
        "lines_requested": lines,
        "seed": seed,
        "file_lines": file_lines,
        "anomaly_share": ANOMALY_SHARE,
    }
    with contextlib.suppress(OSError, ValueError):
        found = json.loads((folder / MARKER).read_text())
        if all(found.get(key) == value for key, value in wanted.items()):
            return found | {"reused": True}
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    written = blocks = chunks = 0
    files = _Files(partial, file_lines)
    try:
        while written < lines:
            # every block whole: the last chunk is sized to what is still missing
            n = min(CHUNK_BLOCKS, math.ceil((lines - written) / LINES_PER_BLOCK))
            chunk, labels = simulate(n, ANOMALY_SHARE, seed + chunks)
            files.write(chunk)
            written, blocks, chunks = written + len(chunk), blocks + len(labels), chunks + 1
    finally:
        files.close()
    seconds = time.perf_counter() - started
    made = wanted | {
        "lines": written,
        "blocks": blocks,
        "files": files.count,
        "chunks": chunks,
        "bytes": sum(f.stat().st_size for f in partial.iterdir()),
        "seconds": round(seconds, 1),
        "lines_per_second": round(written / seconds),
    }
    (partial / MARKER).write_text(json.dumps(made, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return made | {"reused": False}


# ---------------------------------------------------------------------------------------------
# One measured run


@dataclass
class Tree:
    """A job's process tree, sampled: peak memory by role, CPU by process, the JVM's heap."""

    root: psutil.Process
    peaks: dict[str, float] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> user + system seconds
    most_workers: int = 0
    jvm_heap: str | None = None
    samples: int = 0
    _known: dict[int, psutil.Process] = field(default_factory=dict)

    def role(self, process: psutil.Process) -> str:
        if process.pid == self.root.pid:
            return "driver"
        name = process.name()
        if name == "java":
            return "jvm"
        # other: spark-submit's shell, its launcher, the JVM's spawn helper
        return "workers" if name.startswith("python") else "other"

    def sample(self) -> float:
        """Take one sample; return the tree's RSS in bytes."""
        try:
            members = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        # PSS reads every page table (~7 ms for a JVM of 300 MB): 1 sample in PSS_EVERY
        full = self.samples % PSS_EVERY == 0
        self.samples += 1
        now = dict.fromkeys((*ROLES, "tree", *(["tree_pss"] if full else [])), 0.0)
        workers = 0
        for found in members:
            process = self._known.setdefault(found.pid, found)  # keeps psutil's caches
            try:
                with process.oneshot():
                    role = self.role(process)
                    memory = process.memory_full_info() if full else process.memory_info()
                    times = process.cpu_times()
                    if role == "jvm" and self.jvm_heap is None:
                        self.jvm_heap = _heap(process.cmdline())
            except psutil.Error:
                continue  # it ended between the listing and the reading
            self.cpu[process.pid] = times.user + times.system
            now[role] += memory.rss
            # a child between its fork and its exec shows its parent's pages: RSS counts them
            # twice (the 700 MB of the JVM, seen once in a smoke), PSS once
            now["tree"] += memory.rss if role != "other" else 0
            if full:
                now["tree_pss"] += memory.pss
            workers += role == "workers"
        self.most_workers = max(self.most_workers, workers)
        for key, value in now.items():
            self.peaks[key] = max(self.peaks.get(key, 0.0), value)
        return now["tree"]


def _heap(command: list[str]) -> str | None:
    """The -Xmx of Spark's JVM, None for another java (spark-submit's launcher, -Xmx128m)."""
    if SPARK_SUBMIT not in command or LAUNCHER in command:
        return None
    return next((arg[4:] for arg in command if arg.startswith("-Xmx")), "the JVM's default")


def job_command(folder: Path, output: Path, engine: str, master: str | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "batch.job",
        "--project",
        PROJECT,
        "--input",
        str(folder),
        "--output",
        str(output),
        "--engine",
        engine,
    ]
    return command + (["--master", master] if master else [])


def measure(command: list[str], env: dict[str, str], logs: Path, cap: float | None) -> dict:
    """Run `command`, sampling its tree; kill it by its PID once the tree passes `cap` bytes.

    Returns:
        exit code, whether it was killed over the cap, wall seconds, the tree's peaks (MB), the
        most Python workers at once, the JVM's heap, the CPU the tree used (seconds, as last
        sampled) and the CPU other processes used (cores).
    """
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen(
            command, cwd=paths.ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )
    tree = Tree(psutil.Process(process.pid))
    machine, started = machine_cpu_seconds(), time.perf_counter()
    over = ended = False
    try:
        while process.poll() is None:
            if tree.sample() > (cap or math.inf):
                process.kill()
                over = True
            time.sleep(SAMPLE_EVERY)
        wall, busy = time.perf_counter() - started, machine_cpu_seconds() - machine
        ended = not over
    finally:
        _stop_group(process, patience=LEFTOVER_SECONDS if ended else 0)
    others = busy - sum(tree.cpu.values())
    return {
        "returncode": process.returncode,
        "over_cap": over,
        "wall_seconds": round(wall, 2),
        "peak_mb": {key: round(value / MB) for key, value in tree.peaks.items()},
        "most_workers": tree.most_workers,
        "jvm_heap": tree.jvm_heap,
        "cpu_seconds": round(sum(tree.cpu.values()), 1),
        "other_cores": round(max(others, 0.0) / wall, 2),
    }


def _stop_group(process: subprocess.Popen, patience: float) -> None:
    """Stop what is left of the group `process` leads (a JVM, Python workers; all of it on
    Ctrl-C), after `patience` seconds in which it may end itself: a JVM left to exit removes
    its shuffle files from the temporary folder."""
    deadline = time.monotonic() + patience
    with contextlib.suppress(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)  # raises once no process of the group is left
            time.sleep(SAMPLE_EVERY)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def one_run(
    folder: Path,
    made: dict[str, Any],
    engine: str,
    master: str | None,
    work: Path,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Score `folder` once with `engine` (and `master`), measured; the run's record."""
    name = f"{made['lines_requested']}-{engine}" + (f"-{master}" if master else "")
    logs = work / "logs" / re.sub(r"[^\w.-]", "_", name)
    output = work / "output" / logs.name
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(output, ignore_errors=True)
    logs.mkdir(parents=True)
    env = os.environ | {
        "PYSPARK_SUBMIT_ARGS": f"--driver-memory {settings['driver_memory']} pyspark-shell"
    }
    cap = settings["memory_cap_gb"] * 1024**3 if engine == "local" else None
    log.info("scoring %d lines: %s %s", made["lines"], engine, master or "")
    measured = measure(job_command(folder, output, engine, master), env, logs, cap)
    shutil.rmtree(output, ignore_errors=True)  # the figures are what is kept, not the scores
    run = {
        "size": made["lines_requested"],
        "lines": made["lines"],
        "files": made["files"],
        "engine": engine,
        "master": master,
        "logs": str(logs),
    } | measured
    if measured["over_cap"]:
        return run | {"fit": False, "error": f"over {settings['memory_cap_gb']} GB: killed"}
    if measured["returncode"] != 0:
        return run | {"fit": None, "error": _last_line(logs / "stderr") or "no message"}
    summary = json.loads(_last_line(logs / "stdout"))
    sessions = summary["tables"]["sessions"]
    return run | {
        "fit": True,
        "seconds": summary["seconds"],
        "lines_per_second": round(made["lines"] / summary["seconds"]),
        "sessions": sessions["rows"],
        "sessions_expected": made["blocks"],
        "anomalies": sessions["positives"],
        "rejected": summary["rejected"]["rows"],
    }


# ---------------------------------------------------------------------------------------------
# Findings and the report


def _label(engine: str, master: str | None) -> str:
    return f"{engine} {master}" if master else engine


def _by_setup(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs that finished, by engine and master, smallest size first."""
    setups: dict[str, list[dict[str, Any]]] = {}
    for run in sorted((r for r in runs if r["fit"]), key=lambda r: r["size"]):
        setups.setdefault(_label(run["engine"], run["master"]), []).append(run)
    return setups


def findings(runs: list[dict[str, Any]], masters: list[str]) -> dict[str, Any]:
    """Speed-up of each master over the first, lines per second past the fixed cost, memory
    growth from the smallest size to the largest, and where the in-process path stops fitting
    or becomes slower than Spark."""
    setups = _by_setup(runs)
    seconds = {(label, r["size"]): r["seconds"] for label, done in setups.items() for r in done}
    sizes = sorted({r["size"] for r in runs})
    base = _label("spark", masters[0])
    speedup = {
        size: {
            m: round(seconds[base, size] / seconds[_label("spark", m), size], 2)
            for m in masters[1:]
            if (base, size) in seconds and (_label("spark", m), size) in seconds
        }
        for size in sizes
    }
    marginal = {
        label: {
            f"{a['lines']}-{b['lines']}": round(
                (b["lines"] - a["lines"]) / (b["seconds"] - a["seconds"])
            )
            for a, b in itertools.pairwise(done)
            if b["seconds"] > a["seconds"]
        }
        for label, done in setups.items()
        if len(done) > 1
    }
    growth = {
        label: {
            "sizes": [done[0]["size"], done[-1]["size"]],
            "ratio": {
                k: round(v / done[0]["peak_mb"][k], 2)
                for k, v in done[-1]["peak_mb"].items()
                if done[0]["peak_mb"].get(k)
            },
        }
        for label, done in setups.items()
        if len(done) > 1
    }
    local = {}
    for size in sizes:
        spark = [seconds[key] for m in masters if (key := (_label("spark", m), size)) in seconds]
        if ("local", size) in seconds and spark:
            local[size] = round(seconds["local", size] / min(spark), 2)
    not_fit = [r["size"] for r in runs if r["engine"] == "local" and r["fit"] is False]
    return {
        f"speedup_over_{masters[0]}": speedup,
        "marginal_lines_per_second": marginal,
        "peak_memory_growth": growth,
        "local_seconds_over_fastest_spark": local,
        "local_slower_than_spark_from": next((s for s, v in local.items() if v > 1), None),
        "local_did_not_fit_from": min(not_fit, default=None),
        "local_largest_run": max((r["size"] for r in setups.get("local", [])), default=None),
    }


def report(inputs: dict[int, dict], runs: list[dict[str, Any]], found: dict[str, Any]) -> str:
    """The runs as a Markdown table, then the findings in a few lines."""
    lines = [
        "| size | engine | master | files | seconds | wall s | CPU s | lines/s | driver MB "
        "| JVM MB (heap) | workers MB (most) | tree MB | tree PSS MB | other cores | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        p = r["peak_mb"]
        if r["fit"]:
            ok = r["sessions"] == r["sessions_expected"] and not r["rejected"]
            note = "" if ok else f"{r['sessions']} sessions of {r['sessions_expected']}"
        else:
            note = r["error"] if r["fit"] is None else "did not fit: " + r["error"]
        lines.append(
            f"| {r['lines']:,} | {r['engine']} | {r['master'] or ''} | {r['files']} "
            f"| {r.get('seconds', '')} | {r['wall_seconds']} | {r['cpu_seconds']} "
            f"| {r.get('lines_per_second', '')} "
            f"| {p.get('driver', 0)} | {p.get('jvm', 0)} ({r['jvm_heap'] or '-'}) "
            f"| {p.get('workers', 0)} ({r['most_workers']}) | {p.get('tree', 0)} "
            f"| {p.get('tree_pss', 0)} | {r['other_cores']} | {note} |"
        )
    made = [
        f"{m['lines']:,} lines: {m['seconds']} s ({m['lines_per_second']:,} lines/s"
        f"{', reused' if m['reused'] else ''})"
        for m in inputs.values()
    ]
    lines += ["", "generated: " + "; ".join(made)]
    for key, value in found.items():
        lines.append(f"{key}: {json.dumps(value)}")
    busy = max((r["other_cores"] for r in runs), default=0.0)
    if busy > BUSY_CORES:
        lines.append(
            f"warning: other processes used up to {busy} cores during a run: the times are "
            "longer than on a quiet machine; run it again when the machine is quiet"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The command


def _numbers(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise StageError(f"--sizes {text}: give line counts separated by commas") from None
    if not sizes or sizes[0] < 1:
        raise StageError(f"--sizes {text}: give line counts above 0")
    return sizes


def _masters(text: str) -> list[str]:
    masters = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [m for m in masters if not MASTER.fullmatch(m)]
    if not masters or wrong:
        raise StageError(
            f"--masters {text}: give local[N] masters separated by commas (this bench measures "
            "this machine)"
        )
    return masters


@app.command()
def main(
    sizes: Annotated[str, typer.Option(help="Line counts of the inputs, comma-separated.")] = (
        "1000000,3000000,10000000"
    ),
    masters: Annotated[
        str,
        typer.Option(help="Spark masters, comma-separated; the first is the base of the speed-up."),
    ] = "local[1],local[2]",
    local_up_to: Annotated[
        int,
        typer.Option(
            help="The largest size the in-process path (--engine local) is run on; 0: never."
        ),
    ] = 10_000_000,
    memory_cap_gb: Annotated[
        float,
        typer.Option(help="An in-process run whose processes pass this is killed: it did not fit."),
    ] = 16.0,
    driver_memory: Annotated[
        str, typer.Option(help="The JVM's heap (spark-submit's --driver-memory).")
    ] = "2g",
    file_lines: Annotated[int, typer.Option(help="Lines per generated file.")] = 250_000,
    seed: Annotated[int, typer.Option(help="Seed of the first chunk of generated logs.")] = 0,
    work: Annotated[
        Path | None,
        typer.Option(
            help="Where inputs, logs and outputs go (inputs "
            "are kept and reused); default: bench-batch/ in the temporary folder."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="The figures as JSON; default: batch_scale.json under --work."),
    ] = None,
) -> None:
    """Score generated HDFS logs of each size with Spark at each master and in process."""
    chosen, spark_masters = _numbers(sizes), _masters(masters)
    if memory_cap_gb <= 0 or file_lines < 1 or local_up_to < 0:
        raise StageError("--memory-cap-gb and --file-lines must be above 0, --local-up-to ≥ 0")
    if not re.fullmatch(r"\d+[kmgKMG]", driver_memory):
        raise StageError(f"--driver-memory {driver_memory}: give a size such as 2g or 1536m")
    from batch.spark import java_version

    java_version()
    work = (work or Path(tempfile.gettempdir()) / "bench-batch").expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    needed = sum(chosen) * BYTES_PER_LINE
    if shutil.disk_usage(work).free < 1.5 * needed:
        raise StageError(f"--work {work}: about {needed / 1024**3:.1f} GB of input needs room")
    settings = {
        "sizes": chosen,
        "masters": spark_masters,
        "local_up_to": local_up_to,
        "memory_cap_gb": memory_cap_gb,
        "driver_memory": driver_memory,
        "file_lines": file_lines,
        "seed": seed,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
    }
    inputs = {}
    for size in chosen:
        log.info("input of %d lines under %s", size, work)
        inputs[size] = generate(work / f"hdfs-{size}", size, seed, file_lines)
    runs, local_fits = [], True
    for size in chosen:
        folder = work / f"hdfs-{size}"
        for master in spark_masters:
            runs.append(one_run(folder, inputs[size], "spark", master, work, settings))
        if size <= local_up_to and local_fits:
            runs.append(one_run(folder, inputs[size], "local", None, work, settings))
            local_fits = runs[-1]["fit"] is not False
    found = findings(runs, spark_masters)
    print(report(inputs, runs, found), flush=True)
    out = out or work / "batch_scale.json"
    figures = {"settings": settings, "inputs": inputs, "runs": runs, "findings": found}
    out.write_text(json.dumps(figures, indent=2) + "\n")
    log.info("figures in %s", out)
    failed = [r for r in runs if r["fit"] is None]
    if failed:
        raise StageError(
            f"{len(failed)} run(s) failed: {failed[0]['error']} (logs: {failed[0]['logs']})"
        )


if __name__ == "__main__":
    cli.run(app)
