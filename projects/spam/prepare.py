"""Stage `spam-prepare`: the stratified, seeded 70/30 split of Almeida et al. (2011).

The split only divides rows. Judging the data is the validate stage's job, so a raw file that
is unreadable or malformed still yields (possibly empty) splits, and validate reports all that is
wrong in one place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from sklearn.model_selection import train_test_split

from projects.core import cli
from projects.spam import config
from projects.spam.data import COLUMNS, RAW_FILE, read_messages, write_messages

log = logging.getLogger(__name__)
app = cli.app()


def split(messages: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split messages into train and test, stratified by label when the labels allow it."""
    if len(messages) < 2:
        return messages, messages.iloc[0:0]
    labels = messages.get("label")
    # stratifying needs two members of every class; otherwise validate will flag the labels
    if labels is not None and labels.value_counts().min() < 2:
        labels = None
    train, test = train_test_split(
        messages, test_size=test_size, random_state=seed, shuffle=True, stratify=labels
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _read_leniently(path: Path) -> pd.DataFrame:
    try:
        return read_messages(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        log.warning(
            "%s cannot be read (%s); writing empty splits for validate to report", path, exc
        )
        return pd.DataFrame(columns=list(COLUMNS))


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw collection.")] = config.RAW_DIR,
    out_dir: Annotated[Path, typer.Option(help="Where train.csv and test.csv go.")] = (
        config.PREPARED_DIR
    ),
) -> None:
    """Split the raw messages into train.csv and test.csv."""
    params = config.load().prepare
    train, test = split(_read_leniently(raw_dir / RAW_FILE), params.test_size, params.seed)
    write_messages(train, out_dir / "train.csv")
    write_messages(test, out_dir / "test.csv")
    log.info("split %d messages: %d train, %d test", len(train) + len(test), len(train), len(test))


if __name__ == "__main__":
    cli.run(app)
