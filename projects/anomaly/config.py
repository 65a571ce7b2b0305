"""The anomaly project's params (`anomaly:` in params.yaml) and its default paths."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from projects.core import paths
from projects.core.params import Params, load_params
from projects.core.reference import MonitorParams

NAME = "anomaly"
# the registered pyfunc's state file, `artifacts/detector.npz` in the logged model
MODEL_ARTIFACT = "detector"
MODEL_NAME = "log-anomaly-detector"
# `make serve` serves it here unless $ANOMALY_PORT says otherwise
PORT = 3003
# where the supervised comparison model is logged in the training run (it is not registered)
SUPERVISED_ARTIFACT = "supervised"

RAW_DIR = paths.RAW_DIR / NAME
PREPARED_DIR = paths.PREPARED_DIR / NAME
MODEL_DIR = paths.MODELS_DIR / NAME
REPORTS_DIR = paths.REPORTS_DIR / NAME
PLOTS_DIR = paths.PLOTS_DIR / NAME
METRICS_FILE = paths.METRICS_DIR / f"{NAME}.json"


class SimulateParams(Params):
    """The default data set; `make data-rebuild` regenerates it after a change."""

    blocks: int = Field(ge=10, le=1_000_000, description="HDFS blocks (sessions) to simulate.")
    anomaly_share: float = Field(ge=0, le=1, description="Share of blocks that go wrong.")
    seed: int


class PrepareParams(Params):
    validation_size: float = Field(gt=0, lt=1, description="Share of sessions for the threshold.")
    test_size: float = Field(gt=0, lt=1, description="Share of sessions held out for testing.")
    seed: int = Field(description="Seed of the stratified split.")
    similarity: float = Field(gt=0, le=1, description="Drain's similarity threshold.")
    depth: int = Field(ge=3, le=10, description="Depth of Drain's parse tree.")


class ValidateParams(Params):
    min_parse_rate: float = Field(ge=0, le=1, description="Least share of lines that must match.")
    min_sessions: int = Field(ge=1)
    min_anomaly_share: float = Field(ge=0, le=1)
    max_anomaly_share: float = Field(ge=0, le=1)


class TrainParams(Params):
    weighting: Literal["tfidf", "none"] = Field(description="Weighting of the event counts.")
    variance: float = Field(gt=0, lt=1, description="Variance the normal subspace keeps.")


class PromoteParams(Params):
    metric: Literal["precision", "recall", "f1"] = Field(
        description="The metric a new model must beat the champion on."
    )


class AnomalyParams(Params):
    simulate: SimulateParams
    prepare: PrepareParams
    # `validate` would shadow a pydantic method; the key in params.yaml stays `validate`
    validation: ValidateParams = Field(alias="validate")
    train: TrainParams
    promote: PromoteParams
    monitor: MonitorParams


def load() -> AnomalyParams:
    """The `anomaly:` section of params.yaml, checked."""
    return load_params(NAME, AnomalyParams)
