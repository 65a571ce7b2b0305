"""The spam project's params (the `spam:` section of params.yaml) and its default paths."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from projects.core import paths
from projects.core.params import Params, load_params
from projects.core.reference import MonitorParams

NAME = "spam"
MODEL_NAME = "spam-classifier"
# `make serve` serves it here unless $SPAM_PORT says otherwise
PORT = 3001

RAW_DIR = paths.RAW_DIR / NAME
PREPARED_DIR = paths.PREPARED_DIR / NAME
MODEL_DIR = paths.MODELS_DIR / NAME
REPORTS_DIR = paths.REPORTS_DIR / NAME
PLOTS_DIR = paths.PLOTS_DIR / NAME
METRICS_FILE = paths.METRICS_DIR / f"{NAME}.json"


class PrepareParams(Params):
    test_size: float = Field(gt=0, lt=1, description="Share of messages held out for testing.")
    seed: int = Field(description="Seed of the stratified split.")


class ValidateParams(Params):
    min_rows: int = Field(ge=1, description="Fewest messages the raw file may hold.")
    max_rows: int = Field(ge=1, description="Most messages the raw file may hold.")
    min_spam_share: float = Field(ge=0, le=1)
    max_spam_share: float = Field(ge=0, le=1)
    max_text_length: int = Field(ge=1, description="Longest message, in characters.")


class TrainParams(Params):
    word_ngram_max: int = Field(ge=1, le=3, description="Word n-grams from 1 up to this.")
    char_ngram_min: int = Field(ge=1, le=10)
    char_ngram_max: int = Field(ge=1, le=10)
    char_min_df: int = Field(ge=1, description="Drop character n-grams seen in fewer messages.")
    C: float = Field(gt=0, description="Inverse regularisation strength of the linear SVM.")
    calibration_folds: int = Field(ge=2, le=10, description="CV folds of the sigmoid calibration.")
    max_blocked_ham: float = Field(
        ge=0, le=1, description="Share of ham the threshold may block on out-of-fold scores."
    )


class PromoteParams(Params):
    metric: Literal["accuracy", "precision", "recall", "f1", "mcc", "roc_auc"] = Field(
        description="The metric a new model must beat the champion on."
    )


class SpamParams(Params):
    prepare: PrepareParams
    # `validate` would shadow a pydantic method; the key in params.yaml stays `validate`
    validation: ValidateParams = Field(alias="validate")
    train: TrainParams
    promote: PromoteParams
    monitor: MonitorParams


def load() -> SpamParams:
    """The `spam:` section of params.yaml, checked."""
    return load_params(NAME, SpamParams)
