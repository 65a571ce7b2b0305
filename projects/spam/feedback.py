"""How labelled production data folds into the spam classifier's raw data (`make retrain
PROJECT=spam`): each labelled text becomes a row of `data/raw/spam/sms_spam.csv`, unless the file
already holds that exact text."""

from __future__ import annotations

import logging

import pandas as pd

from monitoring.retrain import TRUTH, Fold, Joined, nothing_new
from projects.core import paths
from projects.spam import config, data

log = logging.getLogger(__name__)

LABELS = data.LABELS


def csv_safe(text: str) -> bool:
    """Whether the raw CSV gives `text` back as it was: pandas leaves a carriage return that is
    not part of a CRLF unquoted, so it would split the row, and a NUL ends the field."""
    return "\x00" not in text and "\r" not in text.replace("\r\n", "")


def new_messages(raw: pd.DataFrame, labelled: pd.DataFrame) -> pd.DataFrame:
    """The labelled texts as rows of the raw file (`label`, `text`) that it does not hold yet.

    A text the raw file already holds (exactly) is left out, and so is a text the CSV cannot
    hold (`csv_safe`); of a text labelled more than once, the latest label counts.
    """
    if "text" not in labelled:
        return pd.DataFrame(columns=list(data.COLUMNS), dtype=str)
    rows = pd.DataFrame({"label": labelled[TRUTH], "text": labelled["text"]})
    rows = rows[rows["text"].map(lambda text: isinstance(text, str) and csv_safe(text))]
    rows = rows.drop_duplicates("text", keep="last")
    return rows[~rows["text"].isin(raw["text"])].reset_index(drop=True)


def fold(joined: Joined) -> Fold:
    """Plan appending the new labelled messages to the raw collection."""
    path = config.RAW_DIR / data.RAW_FILE
    raw = data.read_messages(path)
    added = new_messages(raw, joined.labelled)
    # the service takes longer texts than the collection holds; validation would refuse them,
    # and with them every later retrain, so they wait for that bound to be raised
    longest = config.load().validation.max_text_length
    too_long = added["text"].str.len() > longest
    if too_long.any():
        log.warning(
            "%d labelled texts are longer than spam.validate.max_text_length (%d) and are left "
            "out; raise it in params.yaml to fold them in",
            int(too_long.sum()),
            longest,
        )
        added = added[~too_long].reset_index(drop=True)
    if added.empty:
        raise nothing_new(
            "spam", joined, f"all {len(joined.labelled)} labelled texts are in {path.name}"
        )
    counts = added["label"].value_counts()
    summary = (
        f"{len(added)} labelled messages ({counts.get('spam', 0)} spam, {counts.get('ham', 0)} "
        f"ham) appended to {path.relative_to(paths.ROOT)}, which had {len(raw)}"
    )
    return Fold(
        (path,),
        lambda: data.write_messages(pd.concat([raw, added], ignore_index=True), path),
        summary,
    )
