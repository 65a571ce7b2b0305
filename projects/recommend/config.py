"""The recommend project's params (`recommend:` in params.yaml) and its default paths."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from projects.core import paths
from projects.core.params import Params, load_params
from projects.core.reference import MonitorParams

NAME = "recommend"
# the registered pyfunc's state file, `artifacts/recommender.npz` in the logged model
MODEL_ARTIFACT = "recommender"
MODEL_NAME = "recommender"
# `make serve` serves it here unless $RECOMMEND_PORT says otherwise
PORT = 3002

RAW_DIR = paths.RAW_DIR / NAME
PREPARED_DIR = paths.PREPARED_DIR / NAME
MODEL_DIR = paths.MODELS_DIR / NAME
REPORTS_DIR = paths.REPORTS_DIR / NAME
PLOTS_DIR = paths.PLOTS_DIR / NAME
METRICS_FILE = paths.METRICS_DIR / f"{NAME}.json"

Metric = Literal["precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10"]
Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class PrepareParams(Params):
    test_size: float = Field(gt=0, lt=1, description="Share of each user's ratings held out.")
    validation_size: float = Field(
        gt=0, lt=1, description="Share of each user's training ratings held out for tuning."
    )
    seed: int = Field(description="Seed of both splits.")


class ValidateParams(Params):
    min_ratings: int = Field(ge=1, description="Fewest ratings the raw file may hold.")
    max_ratings: int = Field(ge=1, description="Most ratings the raw file may hold.")
    # quoted ISO days in params.yaml: DVC cannot read YAML's own date type
    earliest: dt.date = Field(strict=False, description="No rating may be older than this day.")
    latest: dt.date = Field(strict=False, description="No rating may be newer than this day.")


class TrainParams(Params):
    """Grids searched on the validation split; the best point is refit on all of train."""

    l2: list[Positive] = Field(min_length=1, description="EASE's L2 penalty.")
    filter_rank: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, description="Rank of the ideal low-pass filter."
    )
    filter_weight: list[Annotated[float, Field(ge=0)]] = Field(
        min_length=1, description="Weight of the ideal filter within the graph filter."
    )
    blend: list[Share] = Field(
        min_length=1, description="Share of the graph filter in the blend; 0 is plain EASE."
    )
    selection_metric: Metric = Field(description="Validation metric the search maximises.")


class PromoteParams(Params):
    metric: Metric = Field(description="The metric a new model must beat the champion on.")


class RecommendParams(Params):
    prepare: PrepareParams
    # `validate` would shadow a pydantic method; the key in params.yaml stays `validate`
    validation: ValidateParams = Field(alias="validate")
    train: TrainParams
    promote: PromoteParams
    monitor: MonitorParams


def load() -> RecommendParams:
    """The `recommend:` section of params.yaml, checked."""
    return load_params(NAME, RecommendParams)
