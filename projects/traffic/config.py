"""The traffic project's params (`traffic:` in params.yaml) and its default paths."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from projects.core import paths
from projects.core.params import Params, load_params
from projects.core.reference import MonitorParams
from projects.traffic.simulator import SimulateParams

NAME = "traffic"
MODEL_NAME = "request-pattern-analyzer"
# `make serve` serves it here unless $TRAFFIC_PORT says otherwise
PORT = 3004
# the registered pyfunc's state files, `artifacts/<name>` in the logged model
MODEL_ARTIFACT = "analyzer"
# where the supervised comparison models are logged in the training run (not registered)
SUPERVISED_REQUESTS_ARTIFACT = "supervised_requests"
SUPERVISED_CLIENTS_ARTIFACT = "supervised_clients"

RAW_DIR = paths.RAW_DIR / NAME
PREPARED_DIR = paths.PREPARED_DIR / NAME
MODEL_DIR = paths.MODELS_DIR / NAME
REPORTS_DIR = paths.REPORTS_DIR / NAME
PLOTS_DIR = paths.PLOTS_DIR / NAME
METRICS_FILE = paths.METRICS_DIR / f"{NAME}.json"

__all__ = ["SimulateParams"]


class PrepareParams(Params):
    validation_size: float = Field(
        gt=0, lt=1, description="Share of clients for thresholds (normal traffic only)."
    )
    test_size: float = Field(gt=0, lt=1, description="Share of clients held out for testing.")
    seed: int = Field(description="Seed of the split of clients, stratified by their kind.")


class ValidateParams(Params):
    max_unparsed_share: float = Field(
        ge=0, le=1, description="Most lines of the log that may fail to parse."
    )
    min_requests: int = Field(ge=1, description="Least requests the log must hold.")
    min_attack_share: float = Field(
        ge=0, le=1, description="Least share of requests that are payloads or probes."
    )
    max_attack_share: float = Field(
        ge=0, le=1, description="Most share of requests that are payloads or probes."
    )


class TrainParams(Params):
    request_fpr: float = Field(
        gt=0, lt=1, description="False-positive rate on normal requests the threshold allows."
    )
    client_fpr: float = Field(
        gt=0, lt=1, description="False-positive rate on normal sessions the threshold allows."
    )
    early_fpr: float = Field(
        gt=0,
        lt=1,
        description="Share of normal sessions an early verdict (on first requests) may flag.",
    )
    folds: int = Field(
        default=5,
        ge=2,
        le=20,
        description="Folds of the training requests' cross-fitted scores (the client model's).",
    )
    idle_minutes: float = Field(gt=0, description="A client's session ends after this idle.")


class PromoteParams(Params):
    metric: Literal["request_f1", "client_f1", "mean_f1"] = Field(
        description="The metric a new model must beat the champion on."
    )


class TrafficParams(Params):
    simulate: SimulateParams
    prepare: PrepareParams
    # `validate` would shadow a pydantic method; the key in params.yaml stays `validate`
    validation: ValidateParams = Field(alias="validate")
    train: TrainParams
    promote: PromoteParams
    monitor: MonitorParams


def load() -> TrafficParams:
    """The `traffic:` section of params.yaml, checked."""
    return load_params(NAME, TrafficParams)
