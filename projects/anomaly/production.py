"""The traffic `make simulate` sends the log anomaly detector: held-out blocks' raw lines, and
what the cluster itself would log. With drift strength s, the share of anomalous blocks rises
towards 0.3, and a share 0.5 s of the blocks log a WARN line of a template the model has never
seen. Every line sent is also appended to the cluster's own log, `anomaly/cluster_logs/<UTC
date>.log` under the monitoring folder, which `make retrain` folds into the raw log; the true
label of a share of the blocks arrives later, as feedback."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.simulate import (
    Service,
    Window,
    batches,
    counts,
    logged_rows,
    predictions_like,
    require,
    sample,
    utc_now,
    write_feedback,
)
from projects.anomaly import config, data
from projects.anomaly.parsing import LINE, blocks_in, content_of
from projects.core.cli import StageError
from projects.core.paths import monitoring_dir

NAME = config.NAME
# drift at full strength (s = 1); each scales linearly with s
ANOMALY_SHARE = 0.3
NEW_TEMPLATE_SHARE = 0.5
BATCH = 20


def cluster_log_dir(root: Path | None = None) -> Path:
    """Where the cluster's own log goes: `<monitoring dir>/anomaly/cluster_logs/`."""
    return (root or monitoring_dir()) / NAME / "cluster_logs"


@dataclass(frozen=True)
class Block:
    """A block as sent: a fresh id, the held-out block it replays, its label and its lines."""

    block_id: str
    source: str
    label: str
    lines: tuple[str, ...]
    new_template: bool


# A run of block ids is one field of a line (see `projects.anomaly.parsing.MASKS`); a replayed
# line names only the block it is sent for, so no block outside the request gets scored.
BLOCK_RUN = re.compile(r"blk_-?\d+(?:\s+blk_-?\d+)*")
STAMP = "%y%m%d %H%M%S"
NEW_TEMPLATE = "Slow BlockReceiver write data to disk cost: {ms}ms (threshold=300ms) for {block}"
NEW_TEMPLATE_COMPONENT = "dfs.DataNode$PacketResponder"


def block_lines(lines: Iterable[str], blocks: Collection[str]) -> dict[str, list[str]]:
    """The lines of each of `blocks`, in log order; blocks with no line are left out."""
    wanted, grouped = set(blocks), {}
    for line in lines:
        content = content_of(line)
        for block in blocks_in(content) if content is not None else ():
            if block in wanted:
                grouped.setdefault(block, []).append(line)
    return grouped


def with_new_template(lines: Sequence[str], block_id: str, rng: np.random.Generator) -> list[str]:
    """`lines` with a WARN line of a template the model has never seen, at a random second of the
    block's time range, in log order."""
    stamped = []
    for index, line in enumerate(lines):
        found = LINE.match(line)
        if found:
            stamped.append((index, dt.datetime.strptime(f"{found['date']} {found['time']}", STAMP)))
    if not stamped:
        return list(lines)
    first, last = min(t for _, t in stamped), max(t for _, t in stamped)
    span = int((last - first).total_seconds())
    at = first + dt.timedelta(seconds=int(rng.integers(0, span + 1)))
    content = NEW_TEMPLATE.format(ms=rng.integers(301, 5000), block=block_id)
    new = f"{at:{STAMP}} {rng.integers(100, 30_000)} WARN {NEW_TEMPLATE_COMPONENT}: {content}"
    # right after the last line logged at or before that second, so the log stays in time order
    position = max(index + 1 for index, t in stamped if t <= at)
    return [*lines[:position], new, *lines[position:]]


def fresh_ids(n: int, taken: Collection[str], rng: np.random.Generator) -> list[str]:
    """`n` distinct HDFS block ids (signed 64-bit numbers) that are not in `taken`."""
    info, ids = np.iinfo(np.int64), {}
    while len(ids) < n:
        for number in rng.integers(info.min, info.max, n - len(ids), dtype=np.int64).tolist():
            if f"blk_{number}" not in taken:
                ids[f"blk_{number}"] = None
    return list(ids)[:n]


def anomaly_requests(
    sessions: pd.DataFrame,
    lines: Mapping[str, Sequence[str]],
    n: int,
    s: float,
    rng: np.random.Generator,
    batch: int = BATCH,
    id_rng: np.random.Generator | None = None,
) -> list[list[Block]]:
    """`n` held-out blocks in requests of up to `batch` blocks.

    Anomalous blocks make up the held-out share, raised a share s of the way to 0.3; a share 0.5 s
    of the blocks log a new WARN line. Each block is sent under a fresh id, its lines rewritten to
    name it, so that a block id is one block in the cluster's log (and never one of the raw
    data's) however often a held-out block is replayed.

    Args:
        id_rng: draws the fresh ids; `rng` when None. The command passes an unseeded one, so that
            two runs with the same seed send the same blocks under different ids.
    """
    sessions = sessions[sessions["BlockId"].isin(lines)]
    if sessions.empty:
        raise ValueError("no held-out block has lines in the log")
    anomalous = sessions["Label"].to_numpy() == "Anomaly"
    base = anomalous.mean()
    n_anomalous = round((base + (ANOMALY_SHARE - base) * s) * n)
    # a split with one label only can give only that label
    if not anomalous.any():
        n_anomalous = 0
    elif anomalous.all():
        n_anomalous = n
    pools = [np.flatnonzero(anomalous), np.flatnonzero(~anomalous)]
    chosen = np.concatenate([
        pool[sample(len(pool), count, rng)] if count else np.empty(0, dtype=int)
        for pool, count in zip(pools, (n_anomalous, n - n_anomalous), strict=True)
    ])[rng.permutation(n)]  # fmt: skip
    new_template = np.zeros(n, dtype=bool)
    new_template[rng.choice(n, round(NEW_TEMPLATE_SHARE * s * n), replace=False)] = True
    blocks = []
    ids = fresh_ids(n, lines, rng if id_rng is None else id_rng)
    for row, block_id, new in zip(chosen.tolist(), ids, new_template.tolist(), strict=True):
        source, label = sessions["BlockId"].iat[row], sessions["Label"].iat[row]
        sent = [BLOCK_RUN.sub(block_id, line) for line in lines[source]]
        if new:
            sent = with_new_template(sent, block_id, rng)
        blocks.append(Block(block_id, source, label, tuple(sent), new))
    return list(batches(blocks, batch))


@dataclass(frozen=True)
class AnomalyHeldOut:
    """Anomaly's held-out sessions and the raw lines of each of their blocks."""

    sessions: pd.DataFrame
    lines: dict[str, list[str]]


def load() -> AnomalyHeldOut:
    """Anomaly's held-out sessions, with their lines from the raw log."""
    sessions_path = config.PREPARED_DIR / "test.csv"
    log_path = config.RAW_DIR / data.LOG_FILE
    require(sessions_path, log_path)
    sessions = data.read_sessions(sessions_path)
    lines = block_lines(data.read_lines(log_path), sessions["BlockId"])
    if not lines:
        raise StageError(f"no block of {sessions_path} has lines in {log_path}: run `make run`")
    return AnomalyHeldOut(sessions, lines)


def send_anomaly(
    service: Service, requests: Sequence[Sequence[Block]], cluster_log: Path
) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Score each request's lines, and append them to the cluster's log once scored; the
    (prediction id, true label) of each block."""
    predictions = []
    stats = counts(
        "predictions", "requests", "lines", "anomalous blocks", "new-template blocks",
        "unknown events", "predicted anomalies",
    )  # fmt: skip
    cluster_log.parent.mkdir(parents=True, exist_ok=True)
    with cluster_log.open("a", encoding="utf-8") as shipped:
        for blocks in requests:
            lines = [line for block in blocks for line in block.lines]
            answer = service.post("score_lines", {"lines": lines})
            shipped.write("".join(f"{line}\n" for line in lines))
            labels = {block.block_id: block.label for block in blocks}
            for verdict in answer["sessions"]:
                if verdict["block_id"] in labels:
                    predictions.append((verdict["prediction_id"], labels[verdict["block_id"]]))
                    stats["predicted anomalies"] += verdict["is_anomaly"]
                    stats["unknown events"] += verdict["unknown_events"]
            stats["requests"] += 1
            stats["lines"] += len(lines)
            stats["anomalous blocks"] += sum(block.label == "Anomaly" for block in blocks)
            stats["new-template blocks"] += sum(block.new_template for block in blocks)
    stats["predictions"] = len(predictions)
    return predictions, stats


def window(held_out: AnomalyHeldOut, service: Service, window: Window) -> Counter[str]:
    """Send one window of log lines, ship them to the cluster log, and write delayed labels."""
    requests = anomaly_requests(
        held_out.sessions, held_out.lines, window.n, window.s, window.rng, id_rng=window.id_rng
    )
    cluster_log = cluster_log_dir() / f"{utc_now():%Y-%m-%d}.log"
    predictions, stats = send_anomaly(service, requests, cluster_log)
    stats["labels written"] = write_feedback(
        NAME, predictions, window.label_share, window.feedback_rng
    )
    return stats


# --- a day of logged requests without a service (bench/monitoring_speed.py) ---------------


def logged_records(
    n: int, reference: pd.DataFrame, context: dict[str, Any], rng: np.random.Generator
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """`/score` records of held-out block sessions, and each one's true label."""
    from projects.anomaly.reference import ANOMALY, SCORE_FLOOR

    sessions = pd.read_csv(config.PREPARED_DIR / "test.csv")
    chosen = sessions.iloc[rng.integers(0, len(sessions), n)].reset_index(drop=True)
    truth = chosen["Label"].to_numpy()
    predicted = predictions_like(truth, reference, ["log_score", "label"], rng)
    scores = np.maximum(10 ** predicted["log_score"].to_numpy() - SCORE_FLOOR, 0.0)
    anomalous = (predicted["label"] == ANOMALY).to_numpy()
    # the detector's threshold lies between the highest normal and the lowest anomalous score
    threshold = float(scores[anomalous].min()) if anomalous.any() else float(scores.max())
    known = set(context["vocabulary"][1:])  # vocabulary[0] is the unknown event
    records = logged_rows(n, str(context["champion_version"]), rng)
    for i, record in enumerate(records):
        events = str(chosen["Events"].iat[i]).split()
        record |= {"route": "score", "block_id": chosen["BlockId"].iat[i],
                   "events": " ".join(events), "n_events": len(events),
                   "unknown_events": sum(e not in known for e in events),
                   "score": float(scores[i]), "threshold": threshold,
                   "is_anomaly": bool(anomalous[i])}  # fmt: skip
    return records, truth
