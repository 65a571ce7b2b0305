"""Stage `traffic-train`: fit both levels on normal traffic, set their thresholds, register them.

The unsupervised models see normal clients only (the client kinds of
`projects.traffic.simulator.NORMAL_KINDS`), never a label of an attack:
- the request model is fitted on the training split's normal requests, and its threshold is set
  at `request_fpr` on the validation split's normal requests;
- the client model learns normal sessions from both splits' normal clients. It reads the request
  scores as a feature, and those must be out of sample, as in use: the training requests' scores
  are cross-fitted by client (each of `folds` parts scored by a model fitted on the others; with
  few folds, the requests of a rare kind of client all look unseen).
The supervised variants, fitted on the training split's labels, are logged to the same run for
comparison; only the unsupervised analyzer is registered.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from projects.core import cli, registry, tracking
from projects.traffic import config
from projects.traffic.analyzer import Analyzer
from projects.traffic.clients import ClientModel, SupervisedClientModel, client_features
from projects.traffic.data import normal_clients
from projects.traffic.requests_model import RequestModel, SupervisedRequestModel
from projects.traffic.simulator import ABUSE_KINDS, NORMAL_KINDS

log = logging.getLogger(__name__)
app = cli.app()

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# What the logged model needs to be loaded elsewhere; its code also imports this repository's
# `projects.traffic` package, so that must be installed there too.
PACKAGES = ("mlflow", "numpy", "pandas")


@dataclass
class Trained:
    """What training produces: the registered analyzer and the two comparison models."""

    analyzer: Analyzer
    supervised_requests: SupervisedRequestModel
    supervised_clients: SupervisedClientModel


def read_split(path: Path) -> pd.DataFrame:
    """A prepared split (Parquet)."""
    return pd.read_parquet(path)


def cross_fitted_scores(frame: pd.DataFrame, params: config.TrainParams, seed: int) -> np.ndarray:
    """Request scores of `frame`, each from a request model that did not see its client."""
    unique, client = np.unique(
        (frame["client_ip"] + " " + frame["user_agent"]).to_numpy(), return_inverse=True
    )
    folds = (np.random.default_rng(seed).permutation(len(unique)) % params.folds)[client]
    scores = np.zeros(len(frame))
    for fold in range(params.folds):
        inside = folds == fold
        model = RequestModel(fpr=params.request_fpr, holdout=0, seed=seed).fit(frame[~inside])
        scores[inside] = model.score(frame[inside].reset_index(drop=True))
    return scores


def train(
    train_frame: pd.DataFrame, validation: pd.DataFrame, params: config.TrainParams, seed: int = 0
) -> Trained:
    """Fit the analyzer on normal traffic and the supervised variants on labelled traffic."""
    normal_train, normal_validation = normal_clients(train_frame), normal_clients(validation)
    # the threshold comes from the validation split, so every training request is fitted on
    requests = RequestModel(fpr=params.request_fpr, holdout=0, seed=seed).fit(normal_train)
    requests.set_threshold(normal_validation, params.request_fpr)
    idle = params.idle_minutes * 60
    clients = ClientModel(
        fpr=params.client_fpr,
        early_fpr=params.early_fpr,
        request_threshold=requests.threshold_,
        idle=idle,
    ).fit(
        normal_train,
        cross_fitted_scores(normal_train, params, seed),
        validation=(normal_validation, requests.score(normal_validation)),
    )
    supervised_requests = SupervisedRequestModel(seed=seed).fit(
        train_frame, train_frame["is_attack"].to_numpy(dtype=int)
    )
    scores = requests.score(train_frame)
    table = client_features(train_frame, scores, requests.threshold_, clients.transitions_, idle)
    supervised_clients = SupervisedClientModel(fpr=params.client_fpr).fit(
        table, session_kinds(train_frame, table).isin(ABUSE_KINDS).to_numpy()
    )
    normal_table = clients.features(normal_validation, requests.score(normal_validation))
    supervised_clients.calibrate(normal_table)
    return Trained(Analyzer(requests, clients), supervised_requests, supervised_clients)


def session_kinds(frame: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """The client kind of each session row of `table` (a session is one client's)."""
    kinds = frame.groupby(["client_ip", "user_agent"], sort=False)["client_kind"].first()
    index = pd.MultiIndex.from_frame(table[["client_ip", "user_agent"]])
    return pd.Series(kinds.reindex(index).to_numpy(), index=table.index)


def _log_models(trained: Trained, example: pd.DataFrame) -> object:
    """Log the comparison models to the run, and register the analyzer as a pyfunc from code."""
    import mlflow

    from projects.traffic.pyfunc_model import AnalyzerModel

    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (
            (config.SUPERVISED_REQUESTS_ARTIFACT, trained.supervised_requests),
            (config.SUPERVISED_CLIENTS_ARTIFACT, trained.supervised_clients),
        ):
            suffix = ".skops" if isinstance(model, SupervisedRequestModel) else ".npz"
            model.save(Path(tmp) / f"{name}{suffix}")
        mlflow.log_artifacts(tmp, "supervised")
    wrapper = AnalyzerModel()
    wrapper.analyzer = trained.analyzer
    output = wrapper.predict(None, example)
    return registry.log_pyfunc_model(
        PYFUNC_CODE,
        trained.analyzer,
        config.MODEL_ARTIFACT,
        config.MODEL_NAME,
        example,
        output,
        PACKAGES,
    )


@app.command()
def main(
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the prepared splits.")] = (
        config.PREPARED_DIR
    ),
    out: Annotated[Path, typer.Option(help="Where the registered version is recorded.")] = (
        config.MODEL_DIR / "model.json"
    ),
) -> None:
    """Fit on normal traffic, threshold on validation, register the analyzer."""
    import mlflow

    from projects.traffic.logformat import format_line
    from projects.traffic.pyfunc_model import RAW

    params = config.load()
    train_frame = read_split(prepared_dir / "train.parquet")
    validation = read_split(prepared_dir / "validation.parquet")
    logged = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    with tracking.training_run(config.NAME, logged, train_frame, prepared_dir) as run:
        trained = train(train_frame, validation, params.train, params.prepare.seed)
        analyzer = trained.analyzer
        mlflow.log_params(
            {
                "request_threshold": analyzer.request_threshold,
                "client_threshold": analyzer.client_threshold,
                "normal_train_requests": int(train_frame["client_kind"].isin(NORMAL_KINDS).sum()),
            }
        )
        head = normal_clients(train_frame).head(3)
        lines = [format_line(**row) for row in head[_LINE_FIELDS].to_dict("records")]
        info = _log_models(trained, pd.DataFrame({RAW: lines}))
    registry.write_record(out, config.MODEL_NAME, info, run.info.run_id)


_LINE_FIELDS = [
    "client_ip", "time", "method", "path", "query", "protocol", "status", "bytes", "referrer",
    "user_agent", "body", "user",
]  # fmt: skip


if __name__ == "__main__":
    cli.run(app)
