"""Stage `traffic-prepare`: parse the access log, join its labels, split the clients.

A client is an address with a user agent. Clients, not requests, are split into train,
validation and test (within each client kind, seeded), so a client's session never straddles two
splits. Lines that do not parse are counted and named in `parse.json`, not dropped silently;
judging the result (parse share, label coverage, kind shares) is the validate stage's job.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli
from projects.traffic import config
from projects.traffic.data import LABEL_COLUMNS, LABELS_FILE, LOG_FILE, read_labels
from projects.traffic.logformat import Parsed, read_file, read_lines

log = logging.getLogger(__name__)
app = cli.app()

SPLITS = ("train", "validation", "test")
PARSE_FILE = "parse.json"
SHOWN_BAD = 20  # bad lines named in parse.json; all are counted


def client_ids(frame: pd.DataFrame) -> pd.Series:
    """Each request's client: its address and user agent."""
    return frame["client_ip"] + " " + frame["user_agent"]


def split_clients(
    clients: pd.DataFrame, validation_size: float, test_size: float, seed: int
) -> dict[str, np.ndarray]:
    """Client ids per split: within each kind, a seeded shuffle cut in the three shares (a kind
    with one client goes to train)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {name: [] for name in SPLITS}
    for _, group in clients.sort_values("client").groupby("kind", sort=True):
        ids = group["client"].to_numpy()[rng.permutation(len(group))]
        n_test = round(test_size * len(ids)) if len(ids) > 1 else 0
        n_validation = round(validation_size * len(ids)) if len(ids) > 2 else 0
        parts["test"] += ids[:n_test].tolist()
        parts["validation"] += ids[n_test : n_test + n_validation].tolist()
        parts["train"] += ids[n_test + n_validation :].tolist()
    return {name: np.array(ids, dtype=object) for name, ids in parts.items()}


def prepare(
    parsed: Parsed, labels: pd.DataFrame, params: config.PrepareParams
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The labelled requests of each split, and the parse summary."""
    frame = parsed.frame.merge(labels[list(LABEL_COLUMNS)], on="line", how="left")
    frame["client"] = client_ids(frame)
    # a client's kind: the one its requests carry (unlabelled requests give none)
    kinds = frame.dropna(subset=["client_kind"]).groupby("client", sort=True)["client_kind"].first()
    clients = pd.DataFrame({"client": kinds.index, "kind": kinds.to_numpy()})
    parts = split_clients(clients, params.validation_size, params.test_size, params.seed)
    # clients without any label go to train, where validate reports them
    unlabelled = set(frame["client"]) - set(kinds.index)
    parts["train"] = np.concatenate([parts["train"], np.array(sorted(unlabelled), dtype=object)])
    frames = {
        name: frame[frame["client"].isin(set(ids))].reset_index(drop=True)
        for name, ids in parts.items()
    }
    summary = {
        "lines": parsed.total,
        "parsed": len(parsed.frame),
        "unparsed": len(parsed.bad),
        "unparsed_share": round(len(parsed.bad) / parsed.total, 6) if parsed.total else 1.0,
        "labels": len(labels),
        "bad_lines": [f"{b.source}:{b.line}: {b.reason}" for b in parsed.bad[:SHOWN_BAD]],
        "clients": {name: len(ids) for name, ids in parts.items()},
    }
    return frames, summary


def _read_leniently(raw_dir: Path) -> tuple[Parsed, pd.DataFrame]:
    try:
        parsed = read_file(raw_dir / LOG_FILE)
    except OSError as exc:
        log.warning("%s cannot be read (%s); validate will report it", raw_dir / LOG_FILE, exc)
        parsed = read_lines([])
    try:
        labels = read_labels(raw_dir / LABELS_FILE)
    except cli.StageError as exc:
        log.warning("%s; validate will report it", exc)
        labels = pd.DataFrame({c: pd.Series(dtype=object) for c in LABEL_COLUMNS})
        labels["line"] = labels["line"].astype("int64")
    return parsed, labels


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the access log and labels.")] = (
        config.RAW_DIR
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the splits and parse summary go.")] = (
        config.PREPARED_DIR
    ),
) -> None:
    """Write the train/validation/test requests (Parquet) and the parse summary."""
    params = config.load().prepare
    frames, summary = prepare(*_read_leniently(raw_dir), params)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    (out_dir / PARSE_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info(
        "%d of %d lines parsed; clients %s; requests %s",
        summary["parsed"],
        summary["lines"],
        summary["clients"],
        {name: len(frame) for name, frame in frames.items()},
    )


if __name__ == "__main__":
    cli.run(app)
