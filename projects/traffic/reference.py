"""Stage `traffic-reference`: healthy requests as monitoring sees them, scored by the champion.

The reference is healthy traffic, against which abuse shows as drift: the normal clients'
requests of the validation split. The analyzer was fitted on the training split's, whose
in-sample scores are lower than any new request's; the validation clients were held out of
fitting (they only set the threshold), so their scores are what healthy production traffic gets.

A request becomes its method, status class, number of parameters, query and body lengths, next
to the champion's request score and flag. `window_frame` turns the service's request-log
records (one per analysed request) into the same columns, so `make monitor` sees both a change
in the traffic (a new client mix, longer bodies) and in what the model makes of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli, paths, reference
from projects.core.reference import TARGET, Schema
from projects.traffic import config
from projects.traffic.data import normal_clients
from projects.traffic.logformat import params

app = cli.app()

FLAGGED = "true"
# requests per client in the reference, and in a simulated window: a sample of many clients' first
# requests, so that a few heavy clients (apps, dashboards) do not make up the distribution
PREFIX = 10
SCHEMA = Schema(
    numerical=("n_params", "query_length", "body_length"),
    categorical=("method", "status_class"),
    prediction="score",
    prediction_label="flagged",
    record_fields=(
        "prediction_id", "method", "status", "n_params", "query_length", "body_length", "score",
        "flagged",
    ),
    routes=("analyze",),
    positive=FLAGGED,
)  # fmt: skip
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def status_class(status: Sequence[Any]) -> np.ndarray:
    """`2xx`, `4xx`, ... of each status (`other` for one that is not a number)."""
    numbers = pd.to_numeric(pd.Series(status), errors="coerce").to_numpy()
    classes = np.array([f"{int(n) // 100}xx" if n == n else "other" for n in numbers], dtype=object)
    return classes


def request_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The monitored features of parsed requests (`projects.traffic.logformat` columns)."""
    counts = [
        len(params(m, p, q, b))
        for m, p, q, b in zip(
            frame["method"], frame["path"], frame["query"], frame["body"], strict=True
        )
    ]
    method = frame["method"].where(frame["method"].isin(METHODS), "other")
    return pd.DataFrame(
        {
            "n_params": np.asarray(counts, dtype=np.int64),
            "query_length": frame["query"].str.len().to_numpy(dtype=np.int64),
            "body_length": frame["body"].str.len().to_numpy(dtype=np.int64),
            "method": method.to_numpy(dtype=object),
            "status_class": status_class(frame["status"]),
        }
    )


def build(requests: pd.DataFrame, analyzer: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference frame (features, the champion's scores and flags, the truth)."""
    frame = request_features(requests)
    scores = analyzer.request_scores(requests)
    frame[SCHEMA.prediction] = scores
    frame[SCHEMA.prediction_label] = np.where(scores > analyzer.request_threshold, FLAGGED, "false")
    frame[TARGET] = np.where(requests["is_attack"].to_numpy(dtype=bool), FLAGGED, "false")
    return frame, {"request_threshold": analyzer.request_threshold}


def window_frame(records: pd.DataFrame, context: dict[str, Any]) -> pd.DataFrame:
    """Request-log records of `/analyze` as reference columns (plus `prediction_id`)."""
    del context
    method = records["method"].astype(str)
    flagged = records["flagged"].map(lambda v: FLAGGED if v in (True, "true", 1) else "false")
    frame = pd.DataFrame(
        {
            column: pd.to_numeric(records[column], errors="coerce").to_numpy()
            for column in SCHEMA.numerical
        }
    )
    frame["method"] = method.where(method.isin(METHODS), "other").to_numpy()
    frame["status_class"] = status_class(records["status"].tolist())
    frame[SCHEMA.prediction] = pd.to_numeric(records["score"], errors="coerce").to_numpy()
    frame[SCHEMA.prediction_label] = flagged.to_numpy()
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
    requests_file: Annotated[
        Path, typer.Option(help="Held-out requests (the validation split).")
    ] = (config.PREPARED_DIR / "validation.parquet"),
    out_dir: Annotated[Path, typer.Option(help="Where the reference goes.")] = (
        paths.REFERENCE_DIR / config.NAME
    ),
) -> None:
    """Write the champion's reference, unless the champion and its reference are unchanged."""
    from projects.core import registry

    def from_champion(model_uri: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        analyzer = registry.load_pyfunc_model(model_uri).unwrap_python_model().analyzer
        healthy = normal_clients(pd.read_parquet(requests_file))
        first = (
            healthy.sort_values(["time", "line"]).groupby(["client_ip", "user_agent"]).head(PREFIX)
        )
        return build(first.reset_index(drop=True), analyzer)

    reference.run_stage(
        config.NAME, config.MODEL_NAME, model_record, out_dir, __file__, from_champion
    )


if __name__ == "__main__":
    cli.run(app)
