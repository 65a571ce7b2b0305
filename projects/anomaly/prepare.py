"""Stage `anomaly-prepare`: split the blocks, mine templates on train, parse every line.

Blocks (sessions) are split into train, validation and test, stratified by label and seeded.
Templates are mined with drain3 from the lines of training blocks only, then every line is
matched against them, so test lines meet the model's templates exactly as serving will: a line
that matches none is the unknown event `E0`. Judging the result (parse rate, labels, empty
sessions) is the validate stage's job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from sklearn.model_selection import train_test_split

from projects.anomaly import config
from projects.anomaly.data import (
    LABELS_FILE,
    LOG_FILE,
    SESSION_COLUMNS,
    read_labels,
    read_lines,
    write_frame,
)
from projects.anomaly.parsing import Templates, blocks_in, content_of, format_events, mine, sessions
from projects.core import cli

log = logging.getLogger(__name__)
app = cli.app()

SPLITS = ("train", "validation", "test")
TEMPLATES_FILE = "templates.json"
PARSE_FILE = "parse.json"


def split_blocks(
    labels: pd.DataFrame, validation_size: float, test_size: float, seed: int
) -> dict[str, list[str]]:
    """Block ids per split, stratified by label when every label has a few members."""
    blocks, label = labels["BlockId"].to_numpy(), labels["Label"].to_numpy()
    if len(blocks) < 10:
        return {"train": list(blocks), "validation": [], "test": []}
    stratify = label if labels["Label"].value_counts().min() >= 3 else None
    rest, test = train_test_split(blocks, test_size=test_size, random_state=seed, stratify=stratify)
    rest_labels = (
        labels.set_index("BlockId").loc[rest, "Label"].to_numpy() if stratify is not None else None
    )
    train, validation = train_test_split(
        rest, test_size=validation_size / (1 - test_size), random_state=seed, stratify=rest_labels
    )
    return {"train": list(train), "validation": list(validation), "test": list(test)}


def prepare(
    lines: list[str], labels: pd.DataFrame, params: config.PrepareParams
) -> tuple[dict[str, pd.DataFrame], Templates, dict[str, float]]:
    """The sessions of each split, the mined templates and the parse statistics."""
    labels = labels.drop_duplicates("BlockId")
    parts = split_blocks(labels, params.validation_size, params.test_size, params.seed)
    train_blocks = set(parts["train"])
    contents = [content_of(line) for line in lines]
    templates = mine(
        (c for c in contents if c is not None and train_blocks & set(blocks_in(c))),
        params.similarity,
        params.depth,
    )
    grouped, stats = sessions(lines, templates)
    # sessions the label file does not know go to train unlabelled, for validate to report
    parts["train"] += [block for block in grouped if block not in set(labels["BlockId"])]
    label_of = dict(zip(labels["BlockId"], labels["Label"], strict=True))
    frames = {
        name: pd.DataFrame(
            [(b, label_of.get(b, ""), format_events(grouped.get(b, []))) for b in blocks],
            columns=list(SESSION_COLUMNS),
        )
        for name, blocks in parts.items()
    }
    summary = {**asdict(stats), "parse_rate": round(stats.parse_rate, 6)}
    return frames, templates, summary


def _read_leniently(raw_dir: Path) -> tuple[list[str], pd.DataFrame]:
    try:
        lines = read_lines(raw_dir / LOG_FILE)
    except OSError as exc:
        log.warning("%s cannot be read (%s); validate will report it", raw_dir / LOG_FILE, exc)
        lines = []
    try:
        labels = read_labels(raw_dir / LABELS_FILE)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        log.warning("%s cannot be read (%s); validate will report it", raw_dir / LABELS_FILE, exc)
        labels = pd.DataFrame(columns=["BlockId", "Label"])
    if not {"BlockId", "Label"} <= set(labels.columns):
        log.warning("%s lacks BlockId or Label; validate will report it", raw_dir / LABELS_FILE)
        labels = pd.DataFrame(columns=["BlockId", "Label"])
    return lines, labels


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw log and labels.")] = (
        config.RAW_DIR
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the sessions and templates go.")] = (
        config.PREPARED_DIR
    ),
) -> None:
    """Write train/validation/test sessions, the mined templates and parse statistics."""
    params = config.load().prepare
    frames, templates, summary = prepare(*_read_leniently(raw_dir), params)
    for name, frame in frames.items():
        write_frame(frame, out_dir / f"{name}.csv")
    (out_dir / TEMPLATES_FILE).write_text(templates.to_json() + "\n")
    (out_dir / PARSE_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info(
        "%d templates; %s; sessions %s",
        len(templates.templates),
        summary,
        {name: len(frame) for name, frame in frames.items()},
    )


if __name__ == "__main__":
    cli.run(app)
