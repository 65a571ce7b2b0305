"""Stage `spam-reference`: the champion's training messages as monitoring sees them.

A message becomes its length, word count, share of digits and out-of-vocabulary rate (the share
of its words the champion has no weight for), next to the champion's spam probability and label.
`window_frame` turns request-log records into the same columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli, paths, reference
from projects.core.reference import TARGET, Schema
from projects.spam import config
from projects.spam.data import read_messages
from projects.spam.model import POSITIVE, TRUSTED_TYPES, SpamScorer

app = cli.app()

SCHEMA = Schema(
    numerical=("text_length", "word_count", "digit_share", "oov_rate"),
    categorical=(),
    prediction="spam_probability",
    prediction_label="label",
    record_fields=("prediction_id", "text", "spam_probability", "label"),
    routes=("classify",),
    positive=POSITIVE,
)
# TfidfVectorizer's default token pattern on lower-cased text: the words the model itself sees
_WORD = re.compile(r"(?u)\b\w\w+\b")


def text_features(texts: Sequence[str], vocabulary: frozenset[str]) -> pd.DataFrame:
    """Length, word count, digit share and out-of-vocabulary rate of each text."""
    rows = []
    for text in texts:
        words = _WORD.findall(text.lower())
        unknown = len(words) - sum(map(vocabulary.__contains__, words))
        rows.append(
            (
                len(text),
                len(words),
                sum(map(str.isdigit, text)) / len(text) if text else 0.0,
                unknown / len(words) if words else 0.0,
            )
        )
    return pd.DataFrame(rows, columns=list(SCHEMA.numerical))


def vocabulary_of(scorer: SpamScorer) -> list[str]:
    """The single words the model's word vectorizer has a feature for."""
    return sorted(term for term in scorer.words.vocabulary_ if " " not in term)


def cross_fitted_features(texts: Sequence[str], folds: int = 5) -> pd.DataFrame:
    """`text_features` of training texts, each against the words of the other folds only.

    Against the whole training vocabulary, a training text has no unknown words at all, while
    any new text has some: the reference would make every window look drifted.
    """
    words = [set(_WORD.findall(text.lower())) for text in texts]
    parts = []
    for fold in range(folds):
        inside = range(fold, len(texts), folds)
        others = frozenset().union(*(w for i, w in enumerate(words) if i % folds != fold))
        parts.append(text_features([texts[i] for i in inside], others).set_index(pd.Index(inside)))
    return pd.concat(parts).sort_index()


def build(messages: pd.DataFrame, scorer: SpamScorer) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference frame (features, predictions, true label) and its context."""
    vocabulary = vocabulary_of(scorer)
    texts = messages["text"].tolist()
    frame = cross_fitted_features(texts)
    probability = scorer.probability(texts)
    frame[SCHEMA.prediction] = probability
    frame[SCHEMA.prediction_label] = np.where(scorer.is_spam(probability), POSITIVE, "ham")
    frame[TARGET] = messages["label"].to_numpy()
    return frame, {"vocabulary": vocabulary}


def window_frame(records: pd.DataFrame, context: dict[str, Any]) -> pd.DataFrame:
    """Request-log records of `/classify` as reference columns (plus `prediction_id`)."""
    frame = text_features(records["text"].astype(str).tolist(), frozenset(context["vocabulary"]))
    frame[SCHEMA.prediction] = pd.to_numeric(records["spam_probability"], errors="coerce").values
    frame[SCHEMA.prediction_label] = records["label"].to_numpy()
    frame["prediction_id"] = records["prediction_id"].to_numpy()
    return frame


def schema(context: dict[str, Any]) -> Schema:
    """The columns; they do not depend on the context."""
    del context
    return SCHEMA


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    train_file: Annotated[Path, typer.Option(help="The training split.")] = (
        config.PREPARED_DIR / "train.csv"
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the reference goes.")] = (
        paths.REFERENCE_DIR / config.NAME
    ),
) -> None:
    """Write the champion's reference, unless the champion and its reference are unchanged."""
    from projects.core import registry

    def from_champion(model_uri: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        scorer = SpamScorer(registry.load_sklearn_model(model_uri, TRUSTED_TYPES))
        return build(read_messages(train_file), scorer)

    reference.run_stage(
        config.NAME, config.MODEL_NAME, model_record, out_dir, __file__, from_champion
    )


if __name__ == "__main__":
    cli.run(app)
