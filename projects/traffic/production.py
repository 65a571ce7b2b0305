"""The traffic `make simulate` sends the request pattern analyzer: the held-out clients' access-log
lines, a client's requests kept together and in order, in batches to `POST /analyze`.

By default only normal clients' traffic is sent, as a healthy API would see it. `ABUSE=1` (the
environment variable, which `make simulate ABUSE=1` sets) mixes in the held-out abusive clients
too (scrapers, credential stuffing, enumeration, scanners, floods, payloads), so that
`make analyze-traffic` has something real to find. With drift strength s the share of requests
from abusive clients rises a share s of the way to one half, with or without `ABUSE=1`. The true
label of a share of the predictions (`true` for a payload or probe request) arrives later, as
feedback.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
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
    write_feedback,
)
from projects.core.accesslog import format_line
from projects.core.cli import StageError
from projects.traffic import config
from projects.traffic.reference import FLAGGED, PREFIX, request_features
from projects.traffic.simulator import ABUSE_KINDS

NAME = config.NAME
BATCH = 200  # lines per request to /analyze
# each client's first requests at most, so that a window holds many clients, as the reference
# does (`projects.traffic.reference.PREFIX`), not the whole day of a few heavy ones
DRIFTED_ABUSE_SHARE = 0.5  # of requests, from abusive clients, at full drift
LINE_FIELDS = [
    "client_ip", "time", "method", "path", "query", "protocol", "status", "bytes", "referrer",
    "user_agent", "body", "user",
]  # fmt: skip


@dataclass(frozen=True)
class HeldOut:
    """The test split's requests, their lines, and which are from abusive clients."""

    requests: pd.DataFrame
    lines: list[str]
    abusive: np.ndarray  # per request


def abuse_wanted() -> bool:
    """Whether `ABUSE=1` asks for abusive clients in the traffic."""
    return os.environ.get("ABUSE", "").strip().lower() in ("1", "true", "yes")


def load() -> HeldOut:
    """The held-out clients' requests, as access-log lines."""
    path = config.PREPARED_DIR / "test.parquet"
    require(path)
    requests = pd.read_parquet(path).sort_values(["time", "line"]).reset_index(drop=True)
    if requests.empty:
        raise StageError(f"{path} holds no requests: run `make run`")
    lines = [format_line(**row) for row in requests[LINE_FIELDS].to_dict("records")]
    abusive = requests["client_kind"].isin(ABUSE_KINDS).to_numpy()
    return HeldOut(requests, lines, abusive)


def choose_requests(held_out: HeldOut, n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """About `n` requests, each client's first `PREFIX` at most, in log order: normal clients
    only, or with
    `ABUSE=1` the held-out share of abusive clients' requests; drift `s` raises that share a
    share s of the way to one half."""
    frame = held_out.requests
    client = (frame["client_ip"] + " " + frame["user_agent"]).to_numpy()
    start = float(held_out.abusive.mean()) if abuse_wanted() else 0.0
    abusive_share = start + (DRIFTED_ABUSE_SHARE - start) * s
    chosen: list[np.ndarray] = []
    for wanted, pool in ((1 - abusive_share, ~held_out.abusive), (abusive_share, held_out.abusive)):
        quota = round(wanted * n)
        clients = np.unique(client[pool])
        taken = 0
        for name in clients[rng.permutation(len(clients))]:
            if taken >= quota:
                break
            rows = np.flatnonzero(client == name)[: min(PREFIX, quota - taken)]
            chosen.append(rows)
            taken += len(rows)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def send(
    service: Service, held_out: HeldOut, rows: np.ndarray
) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Analyse the chosen requests' lines in batches; the (prediction id, true label) of each."""
    predictions = []
    stats = counts("predictions", "requests", "attack requests", "flagged requests",
                   "flagged sessions")  # fmt: skip
    truth = held_out.requests["is_attack"].to_numpy(dtype=bool)
    for part in batches(rows.tolist(), BATCH):
        answer = service.post("analyze", {"lines": [held_out.lines[i] for i in part]})
        for verdict in answer["requests"]:
            row = part[verdict["line"] - 1]
            predictions.append((verdict["prediction_id"], FLAGGED if truth[row] else "false"))
            stats["flagged requests"] += bool(verdict["flagged"])
        stats["flagged sessions"] += sum(bool(c["flagged"]) for c in answer["clients"])
        stats["requests"] += 1
        stats["attack requests"] += int(truth[part].sum())
    stats["predictions"] = len(predictions)
    return predictions, stats


def window(held_out: HeldOut, service: Service, window: Window) -> Counter[str]:
    """Send one window of access-log lines and write delayed labels."""
    rows = choose_requests(held_out, window.n, window.s, window.rng)
    predictions, stats = send(service, held_out, rows)
    stats["labels written"] = write_feedback(
        NAME, predictions, window.label_share, window.feedback_rng
    )
    return stats


# --- a day of logged requests without a service (bench/monitoring_speed.py) ---------------


def logged_records(
    n: int, reference: pd.DataFrame, context: dict[str, Any], rng: np.random.Generator
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """`/analyze` records of held-out requests, and each one's true label."""
    requests = pd.read_parquet(config.PREPARED_DIR / "test.parquet")
    chosen = requests.iloc[rng.integers(0, len(requests), n)].reset_index(drop=True)
    truth = np.where(chosen["is_attack"].to_numpy(dtype=bool), FLAGGED, "false")
    predicted = predictions_like(truth, reference, ["score", "flagged"], rng)
    features = request_features(chosen)
    records = logged_rows(n, str(context["champion_version"]), rng)
    for i, record in enumerate(records):
        record |= {
            "route": "analyze", "method": chosen["method"].iat[i],
            "status": int(chosen["status"].iat[i]), "n_params": int(features["n_params"].iat[i]),
            "query_length": int(features["query_length"].iat[i]),
            "body_length": int(features["body_length"].iat[i]),
            "score": float(predicted["score"].iat[i]),
            "flagged": predicted["flagged"].iat[i] == FLAGGED,
        }  # fmt: skip
    return records, truth
