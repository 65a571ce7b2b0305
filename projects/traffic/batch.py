"""Batch analysis of access logs (`make batch-score PROJECT=traffic`, see `batch.job`).

The input is access logs in the Combined Log Format (`projects.traffic.logformat`). Every request
gets the champion's verdict (`requests`: score, threshold, flag and, when flagged, its reasons)
and every client session one too (`clients`: an address with a user agent, split after the
champion's idle time): the tables `Analyzer.analyze` gives in process, which `--engine local`
runs on the whole input as one frame. A line that does not parse is a rejected row with
logformat's reason.

What the Spark job must reproduce, and how:

- A request's score depends on that request, save for one number of the whole batch: the request
  model weighs each request's values with a softmax shifted by the largest value surprisal of
  the batch, which changes scores in their last bits. Bits matter: a session's reasons are the
  features on which it differs from its nearest normal session at all, so a difference of 1e-16
  in a score feature can add a reason. So the job first finds the input's most surprising
  request (the "pilot", by each request's `peak`) and scores every partition together with it:
  each partition then has the whole input's shift, and its scores are the in-process ones, bit
  for bit. The reasons of flagged requests get the same treatment with the pilot of the
  requests the in-process path explains: the first `analyzer.MAX_EXPLAINED` flagged ones in
  input order, the only ones it explains.
- A session's verdict depends on its own client's requests and their scores only: no other
  client, no statistic of the batch (the normal sessions it is compared with are in the model).
  But it needs all of them, from every file, in input order: requests of one client in the same
  second keep the order in which the in-process path reads them (file after file, line after
  line), which decides its endpoint transitions, id walks and last login attempt. So requests
  are shuffled by client, sorted by (file, line) within it, and many whole clients are judged at
  once.
- A line's number in its file: Spark splits large files into blocks, so each block's lines are
  counted first (a job without Python) and a line is numbered from its block's offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from batch.inputs import dealt
from batch.inputs import read_lines as file_lines
from batch.protocol import REJECTED_COLUMNS, REJECTED_TEXT, Table, rejected
from batch.spark import literal, local_path
from projects.traffic import analyzer as in_process
from projects.traffic.analyzer import Analyzer
from projects.traffic.config import MODEL_ARTIFACT
from projects.traffic.logformat import COLUMNS, endpoint, read_lines
from projects.traffic.requests_model import PARAM_TERMS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from batch.spark import Model

TABLES = {
    "requests": Table(key=("file", "line"), positive="flagged"),
    "clients": Table(key=("client_ip", "user_agent", "start"), positive="flagged"),
}
TOP = 3  # reasons per flagged request or session, as `Analyzer.analyze` gives by default
REQUEST_COLUMNS = [
    "file", "line", "client_ip", "user_agent", "time", "method", "path", "status", "endpoint",
    "score", "threshold", "flagged", "reasons", "model_version",
]  # fmt: skip
CLIENT_COLUMNS = [
    "client_ip", "user_agent", "start", "end", "requests", "score", "threshold", "flagged",
    "reasons", "model_version",
]  # fmt: skip
# the Spark job's intermediate rows: a parsed request (its file's place in the input's order,
# its fields and its largest value surprisal) or, with `reason` set, a rejected line; then the
# request with its verdict
PARSED = ["file", "rank", *COLUMNS, "peak"]
SCORED = [*PARSED, "endpoint", "score", "threshold", "flagged"]
TYPES = {
    "file": "string", "rank": "int", "line": "long", "client_ip": "string", "user": "string",
    "time": "double", "method": "string", "path": "string", "query": "string",
    "protocol": "string", "status": "long", "bytes": "long", "referrer": "string",
    "user_agent": "string", "body": "string", "peak": "double", "endpoint": "string",
    "score": "double", "threshold": "double", "flagged": "boolean", "reasons": "array<string>",
    "model_version": "string", "text": "string", "reason": "string", "start": "double",
    "end": "double", "requests": "long",
}  # fmt: skip
CLIENT = ["client_ip", "user_agent"]
ORDER = ["rank", "file", "line"]  # input order: the in-process path reads file after file


def schema(columns: Iterable[str]) -> str:
    """The Spark schema (DDL) of these columns."""
    return ", ".join(f"`{c}` {TYPES[c]}" for c in columns)


def load(folder: Path) -> Analyzer:
    """The analyzer of a downloaded champion (its MLflow model folder)."""
    return Analyzer.load(folder / "artifacts" / f"{MODEL_ARTIFACT}.npz")


# ---------------------------------------------------------------------------------- lines


def block_offsets(counts: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """(file, block start, lines) of every block Spark read -> the lines before each block in
    its file, which turn a line's place in its block into its number in the file."""
    offsets: dict[tuple[str, int], int] = {}
    before: dict[str, int] = {}
    for file, start, lines in sorted(counts):
        offsets[(file, start)] = before.get(file, 0)
        before[file] = before.get(file, 0) + lines
    return offsets


def line_numbers(
    blocks: Iterable[tuple[str, int]],
    offsets: dict[tuple[str, int], int],
    seen: dict[tuple[str, int], int],
) -> np.ndarray:
    """The line number in its file of each of a batch's lines, given the (file, block start)
    of each; `seen` counts the lines of each block that earlier batches of the partition held
    (a block's lines come in order, in one partition) and is updated."""
    out = []
    for block in blocks:
        count = seen.get(block, 0)
        seen[block] = count + 1
        out.append(offsets.get(block, 0) + count + 1)
    return np.array(out, dtype=np.int64)


def parse_batch(
    analyzer: Analyzer,
    batch: pd.DataFrame,
    offsets: dict[tuple[str, int], int],
    seen: dict[tuple[str, int], int],
    ranks: dict[str, int],
) -> list[pd.DataFrame]:
    """A batch of Spark's lines (`file` as Spark names it, `block`, `value`) -> `parse`'s
    frames; `offsets`, `seen`: see `line_numbers`; `ranks`: each file's place in the input's
    order (a file not there, e.g. of a remote input: after all of them)."""
    blocks = zip(batch["file"], batch["block"].tolist(), strict=True)
    lines = line_numbers(blocks, offsets, seen)
    files = [local_path(f) for f in batch["file"]]
    rank = np.array([ranks.get(f, len(ranks)) for f in files], dtype=np.int32)
    return parse(analyzer, files, lines, rank, list(batch["value"]))


def parse(
    analyzer: Analyzer, files: list[str], lines: np.ndarray, ranks: np.ndarray, texts: list[str]
) -> list[pd.DataFrame]:
    """Lines (with their file, line number and file rank) -> frames of `PARSED` columns and
    `text` and `reason`: the requests, and the lines that do not parse with logformat's reason."""
    parsed = read_lines(texts)
    at = parsed.frame["line"].to_numpy() - 1  # logformat numbers the lines it was given from 1
    out = []
    if len(at):
        frame = parsed.frame.assign(line=lines[at])
        requests = frame.assign(
            file=np.asarray(files, dtype=object)[at],
            rank=ranks[at],
            peak=peaks(analyzer, frame),
            text=None,
            reason=None,
        )
        out.append(requests[[*PARSED, "text", "reason"]])
    if parsed.bad:
        bad = pd.DataFrame(
            {
                "file": [files[b.line - 1] for b in parsed.bad],
                "line": [int(lines[b.line - 1]) for b in parsed.bad],
                "text": [b.text[:REJECTED_TEXT] for b in parsed.bad],
                "reason": [b.reason for b in parsed.bad],
            }
        )
        # absent values as None, not NaN: pyarrow makes no strings of a float column
        absent = {c: None for c in [*PARSED, "text", "reason"] if c not in bad}
        out.append(bad.assign(**absent)[[*PARSED, "text", "reason"]])
    return out


# ---------------------------------------------------------------------------------- requests


def peaks(analyzer: Analyzer, frame: pd.DataFrame) -> np.ndarray:
    """Each request's largest value surprisal: the batch's largest is the request model's
    softmax shift (`requests_model._softmax_weights`), summed as it sums it."""
    _, rows = analyzer.requests.terms(frame)
    totals = np.column_stack([rows[name] for name in PARAM_TERMS]).sum(axis=1)
    out = np.full(len(frame), -np.inf)
    np.maximum.at(out, rows["req"], totals)  # every request has a value row: its path
    return out


def pilot_of(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The request with the largest `peak` (`COLUMNS`, one row), or None for no request."""
    if not len(frame):
        return None
    return frame.iloc[[int(np.argmax(frame["peak"].to_numpy(np.float64)))]][COLUMNS]


def _with(frame: pd.DataFrame, pilot: pd.DataFrame | None) -> pd.DataFrame:
    """`frame`'s requests and the pilot last: the batch's largest surprisal is the pilot's."""
    frame = frame[COLUMNS]
    return frame if pilot is None else pd.concat([frame, pilot[COLUMNS]], ignore_index=True)


def score_requests(
    analyzer: Analyzer, frame: pd.DataFrame, pilot: pd.DataFrame | None
) -> pd.DataFrame:
    """Endpoint, score, threshold and flag of each request, as `Analyzer.analyze` gives them on
    an input whose pilot is `pilot`."""
    scores = analyzer.request_scores(_with(frame, pilot))[: len(frame)]
    return pd.DataFrame(
        {
            "endpoint": [
                endpoint(m, p) for m, p in zip(frame["method"], frame["path"], strict=True)
            ],
            "score": scores,
            "threshold": analyzer.request_threshold,
            "flagged": scores > analyzer.request_threshold,
        }
    )


def reasons(analyzer: Analyzer, frame: pd.DataFrame, pilot: pd.DataFrame | None) -> list[list[str]]:
    """The reasons of each request, as `Analyzer.analyze` words them when it explains these
    requests among others whose pilot is `pilot`."""
    if not len(frame):
        return []
    explained = analyzer.requests.explain(_with(frame, pilot), TOP)[: len(frame)]
    return [[f"{r.feature}: {r.problem} ({r.share:.0%})" for r in found] for found in explained]


def explain_batch(
    analyzer: Analyzer, batch: pd.DataFrame, pilot: pd.DataFrame | None
) -> list[list[str]]:
    """The reasons of each request of `batch` whose `explain` is true (`reasons`), none for
    the others."""
    which = np.flatnonzero(batch["explain"].to_numpy(bool))
    found: list[list[str]] = [[] for _ in range(len(batch))]
    for i, texts in zip(which.tolist(), reasons(analyzer, batch.iloc[which], pilot), strict=True):
        found[i] = texts
    return found


# ---------------------------------------------------------------------------------- clients


def whole_clients(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Batches of requests sorted by client -> frames that each hold every request of their
    clients: the last client of a batch may go on in the next one, so it waits for it."""
    carry: pd.DataFrame | None = None
    for batch in batches:
        if carry is not None and len(carry):
            batch = pd.concat([carry, batch], ignore_index=True)
        if not len(batch):
            continue
        last = (batch["client_ip"] == batch["client_ip"].iat[-1]) & (
            batch["user_agent"] == batch["user_agent"].iat[-1]
        )
        carry = batch[last]
        if not last.all():
            yield batch[~last].reset_index(drop=True)
    if carry is not None and len(carry):
        yield carry.reset_index(drop=True)


def client_verdicts(analyzer: Analyzer, frame: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """The session verdicts on whole clients' requests (each client's in input order) and their
    scores, as `Analyzer.analyze` gives them."""
    clients = analyzer.clients.verdicts(frame, scores, top=TOP).drop(columns=["session"])
    clients.insert(len(clients.columns) - 2, "threshold", analyzer.client_threshold)
    return clients.reset_index(drop=True)


# ---------------------------------------------------------------------------------- Spark


def _pilot(frame: DataFrame) -> pd.DataFrame | None:
    """The request of a Spark frame with the largest `peak`, on the driver (or None)."""
    from pyspark.sql import functions as sf

    rows = frame.orderBy(sf.desc("peak")).limit(1).select(*COLUMNS).collect()
    if not rows:
        return None
    return pd.DataFrame([rows[0].asDict()], columns=COLUMNS).astype(
        {"line": "int64", "time": "float64", "status": "int64", "bytes": "int64"}
    )


def _lines(spark: SparkSession, files: list[str]) -> tuple[DataFrame, dict[tuple[str, int], int]]:
    """Every line of `files` (`file`, `block`: the start of its file's block, `value`), and the
    lines before each block in its file (counted by a job of its own, without Python)."""
    from pyspark.sql import functions as sf

    raw = (
        spark.read.option("recursiveFileLookup", "false")
        .text([literal(f) for f in files])
        .select(
            sf.col("_metadata.file_path").alias("file"),
            sf.col("_metadata.file_block_start").alias("block"),
            "value",
        )
    )
    counts = raw.groupBy("file", "block").count().collect()
    return raw, block_offsets((r["file"], r["block"], r["count"]) for r in counts)


def _to_explain(scored: DataFrame) -> DataFrame:
    """`scored` with `explain`: whether the in-process path explains the request, i.e. it is one
    of the first `MAX_EXPLAINED` flagged requests in input order (the limit is read when the
    job is built, so that a test can lower it)."""
    from pyspark.sql import functions as sf

    order = sf.struct(*ORDER)
    last = (
        scored.where("flagged")
        .select(order.alias("order"))
        .orderBy("order")
        .limit(in_process.MAX_EXPLAINED)
        .agg(sf.max("order").alias("last"))
    )
    explain = sf.coalesce(sf.col("flagged") & (order <= sf.col("last")), sf.lit(False))
    return scored.crossJoin(sf.broadcast(last)).withColumn("explain", explain).drop("last")


def spark(spark: SparkSession, files: list[str], model: Model) -> dict[str, DataFrame]:
    """The Spark job: requests parsed and scored where they lie (with the input's pilot),
    sessions judged after a shuffle by client, the first flagged requests explained."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    raw, offsets = _lines(spark, files)
    ranks = {f: i for i, f in enumerate(files)}
    version = model.version

    def parse_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        analyzer, seen = model.get(), {}
        for batch in batches:
            yield from parse_batch(analyzer, batch, offsets, seen, ranks)

    # parsed once, then read for the pilot, the scores and the rejected lines
    parsed = raw.mapInPandas(parse_partition, schema([*PARSED, "text", "reason"]))
    parsed = parsed.persist(StorageLevel.DISK_ONLY)
    requests = parsed.where(sf.col("reason").isNull()).select(*PARSED)
    pilot = _pilot(requests)

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        analyzer = model.get()
        for batch in batches:
            verdicts = score_requests(analyzer, batch, pilot)
            yield pd.concat([batch[PARSED], verdicts], axis=1)

    scored = requests.mapInPandas(score_partition, schema(SCORED))
    scored = scored.persist(StorageLevel.DISK_ONLY)
    to_explain = _to_explain(scored)
    explain_pilot = _pilot(to_explain.where("explain"))

    def explain_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        analyzer = model.get()
        for batch in batches:
            found = explain_batch(analyzer, batch, explain_pilot)
            yield batch.assign(reasons=found, model_version=version)[REQUEST_COLUMNS]

    def client_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        analyzer = model.get()
        for frame in whole_clients(batches):
            scores = frame["score"].to_numpy(np.float64)
            yield client_verdicts(analyzer, frame[COLUMNS], scores).assign(model_version=version)

    return {
        "requests": to_explain.mapInPandas(explain_partition, schema(REQUEST_COLUMNS)),
        "clients": scored.select(*dict.fromkeys([*ORDER, *COLUMNS, "score"]))
        .repartition(*CLIENT)
        .sortWithinPartitions(*CLIENT, *ORDER)
        .mapInPandas(client_partition, schema(CLIENT_COLUMNS)),
        "rejected": parsed.where(sf.col("reason").isNotNull()).select(*REJECTED_COLUMNS),
    }


# ---------------------------------------------------------------------------------- in process


def read_requests(files: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every file's parsed requests in one frame (with its `file`), file after file, and the
    rejected lines; lines as Spark reads them (`batch.inputs.read_lines`)."""
    frames, bad = [], []
    for path in files:
        parsed = read_lines(file_lines(path), source=str(path))
        frames.append(parsed.frame.assign(file=str(path)))
        bad += [rejected(str(path), b.text, b.reason) for b in parsed.bad]
    return pd.concat(frames, ignore_index=True), pd.DataFrame(bad, columns=REJECTED_COLUMNS)


def local(files: list[Path], analyzer: Analyzer, version: str) -> dict[str, pd.DataFrame]:
    """The in-process path: `Analyzer.analyze` on every file's requests as one frame."""
    frame, bad = read_requests(files)
    analysis = analyzer.analyze(frame, top=TOP)
    requests = analysis.requests.assign(file=frame["file"].to_numpy(), model_version=version)
    clients = analysis.clients.assign(model_version=version)
    return {
        "requests": requests[REQUEST_COLUMNS],
        "clients": clients[CLIENT_COLUMNS],
        "rejected": bad,
    }


OTHER_FORMATS = [
    "[Mon Mar 11 01:00:33.123456 2024] [core:error] [pid 4242] AH00126: Invalid URI in request",
    '{"time": "2024-03-11T01:00:33+01:00", "level": "info", "msg": "GET /"}',
    '203.0.113.9 - - [31/Feb/2024:01:00:33 +0100] "GET / HTTP/1.1" 200 512 "-" "curl/8.4.0"',
]


def example(folder: Path, lines: int) -> None:
    """The first `lines` lines of the raw log dealt round-robin into three files (so that a
    client's requests, even those of one second, are spread over files; the last one gzipped),
    with lines of other formats, an impossible date and a blank line in the second."""
    import gzip

    from projects.traffic.config import RAW_DIR
    from projects.traffic.data import LOG_FILE

    folder.mkdir(parents=True, exist_ok=True)
    parts = dealt(RAW_DIR / LOG_FILE, lines)
    parts[1] = parts[1][:2] + OTHER_FORMATS + [""] + parts[1][2:]
    for i, part in enumerate(parts[:2]):
        (folder / f"access-{i}.log").write_text("\n".join(part) + "\n")
    text = ("\n".join(parts[2]) + "\n").encode()
    (folder / "access-2.log.gz").write_bytes(gzip.compress(text, mtime=0))
