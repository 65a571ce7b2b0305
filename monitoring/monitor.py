"""`make monitor`: judge each project's latest window of requests against its reference.

For each project: read the requests logged since the last run, turn them into the reference's
columns, join the ground truth that has arrived, and run one Evidently report (drift of every
column and of the predictions, the project's own measures, quality from feedback). The report is
saved as HTML and JSON under `monitoring/<project>/reports/` and added to the workspace behind
`make dashboards`. The last line printed is one JSON object with each project's verdict.

Exit status: 0 when every project's window was judged, whatever the verdicts; otherwise the
status of the first project that could not be judged (see `monitoring.window`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from pydantic import ConfigDict

from monitoring import config, dashboards
from monitoring.metrics import WINDOW_REQUESTS
from monitoring.specs import Spec, specs
from monitoring.window import (
    MonitorError,
    ReferenceMismatchError,
    Window,
    check_fields,
    read_cursor,
    read_feedback,
    read_window,
    write_cursor,
)
from projects.core import cli, paths
from projects.core import reference as ref
from projects.core.params import Params, load_params
from projects.core.reference import TARGET, MonitorParams, Schema

# named, not __name__: run as `-m`, the module would log as "__main__"
log = logging.getLogger("monitoring.monitor")
app = cli.app()

NUMERICAL_METHOD, CATEGORICAL_METHOD = "wasserstein", "jensenshannon"


class _Section(Params):
    """A project's params section, of which monitoring reads only `monitor:`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    monitor: MonitorParams


def monitor_params(project: str) -> MonitorParams:
    """The `<project>.monitor` section of params.yaml, checked."""
    return load_params(project, _Section).monitor


@dataclass
class Judgement:
    """A window's verdict and why."""

    project: str
    verdict: str
    reasons: list[str] = field(default_factory=list)
    requests: int = 0
    report: Path | None = None
    drift_share: float = 0.0  # the share of the window's columns that drifted

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"


def load_reference(spec: Spec, directory: Path) -> tuple[pd.DataFrame, dict[str, Any], Schema]:
    """The project's reference frame, context and schema, checked against each other.

    Raises:
        MonitorError: there is no reference yet.
        ReferenceMismatchError: the reference lacks a column of the current schema, or a
            numerical column holds text.
    """
    if not (directory / ref.FRAME_FILE).exists():
        raise MonitorError(f"no reference in {directory}: run the pipeline (`make run`) first")
    try:
        context = ref.read_context(directory)
        schema = spec.reference.schema(context)
        frame = ref.read_frame(directory, [*schema.categorical_columns, TARGET])
    except (OSError, ValueError, KeyError) as exc:
        raise ReferenceMismatchError(f"the reference in {directory} cannot be read: {exc!r}; "
                                     "rebuild it with `make repro`") from None  # fmt: skip
    missing = [c for c in schema.columns if c not in frame]
    wrong = [c for c in schema.numerical_columns if c in frame and frame[c].dtype == object]
    if missing or wrong:
        problems = [f"missing column(s) {missing}"] if missing else []
        problems += [f"text in numerical column(s) {wrong}"] if wrong else []
        raise ReferenceMismatchError(
            f"the reference in {directory} does not match the current schema of "
            f"{spec.name}: {'; '.join(problems)}; rebuild it with `make repro`"
        )
    return frame, context, schema


def window_frame(
    spec: Spec, window: Window, context: dict[str, Any], schema: Schema, root: Path, size: int
) -> tuple[pd.DataFrame, int]:
    """The window's records as reference columns, with ground truth where it has arrived, and
    the number of requests; a window of more than `size` requests is sampled down to `size`."""
    where = config.requests_dir(spec.name, root)
    records = check_fields(window.records, schema.record_fields, where)
    dropped = len(window.records) - len(records)
    if dropped:
        log.warning("%s: %d records lack a field monitoring needs; left out", spec.name, dropped)
    frame = spec.reference.window_frame(sample(records, size), context)
    if schema.positive is not None:
        labels = read_feedback(config.feedback_dir(spec.name, root))
        frame[TARGET] = frame["prediction_id"].map(labels)
    return frame.drop(columns="prediction_id"), len(records)


def last_time(stamps: pd.Series | None) -> dt.datetime:
    """The latest of the records' timestamps, or now if they have none."""
    if stamps is not None and not pd.api.types.is_datetime64_any_dtype(stamps):
        # ISO timestamps in UTC sort as text: parse only the latest
        text = stamps.dropna().astype(str)
        stamps = pd.to_datetime(pd.Series(text.max() if len(text) else None), utc=True,
                                errors="coerce", format="ISO8601")  # fmt: skip
    latest = None if stamps is None else stamps.max()
    if latest is None or pd.isna(latest):
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
    latest = pd.Timestamp(latest)
    return (latest.tz_convert("UTC") if latest.tzinfo else latest).tz_localize(None).to_pydatetime()


def sample(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """At most `size` rows, drawn without replacement; the frame itself when it is smaller."""
    return frame if len(frame) <= size else frame.sample(size, random_state=seed)


def build_report(
    spec: Spec, schema: Schema, params: MonitorParams, context: dict[str, Any], labelled: bool
) -> Any:
    """The window's Evidently report: drift, requests, the project's measures, quality."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    from monitoring.metrics import FeedbackQuality, WindowRequests

    metrics: list[Any] = [
        DataDriftPreset(
            columns=list(schema.columns),
            num_method=NUMERICAL_METHOD,
            cat_method=CATEGORICAL_METHOD,
            threshold=params.column_threshold,
            drift_share=params.drift_share,
        ),
        WindowRequests(),
        *spec.measures(context),
    ]
    if labelled and schema.prediction_label and schema.positive:
        metrics += [
            FeedbackQuality(
                target=TARGET,
                prediction=schema.prediction_label,
                positive=schema.positive,
                measure=measure,
            )
            for measure in ("f1", "precision", "recall")
        ]
    return Report(metrics)


def dataset(frame: pd.DataFrame, schema: Schema) -> Any:
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(
        numerical_columns=schema.numerical_columns,
        categorical_columns=schema.categorical_columns,
    )
    return Dataset.from_pandas(frame, data_definition=definition)


def judge(
    project: str, snapshot: dict[str, Any], schema: Schema, params: MonitorParams
) -> Judgement:
    """Drift when the share of drifted columns reaches `drift_share`, or the predictions drift."""
    drifts: dict[str, float] = {}
    share = 0.0
    for metric in snapshot["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            drifts[metric["config"]["column"]] = float(metric["value"])
        elif kind == "DriftedColumnsCount":
            share = float(metric["value"]["share"])
    drifted = sorted(c for c, v in drifts.items() if v >= params.column_threshold)
    predictions = [c for c in (schema.prediction, schema.prediction_label) if c in drifted]
    reasons = []
    if share >= params.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(schema.columns)} columns drifted ({share:.0%} >= "
            f"{params.drift_share:.0%}): {', '.join(drifted)}"
        )
    if predictions:
        distances = ", ".join(f"{c} {drifts[c]:.2f}" for c in predictions)
        reasons.append(
            f"the predictions drifted ({distances}; threshold {params.column_threshold})"
        )
    if not reasons and drifted:
        reasons.append(f"below the threshold; drifted: {', '.join(drifted)}")
    verdict = "drift" if share >= params.drift_share or predictions else "no_drift"
    return Judgement(project, verdict, reasons, drift_share=share)


def quality_note(snapshot: dict[str, Any], labelled: int) -> str | None:
    """F1 on the window's predictions whose labels have arrived, if any have."""
    for metric in snapshot["metrics"]:
        config_ = metric["config"]
        if config_["type"].endswith(":FeedbackQuality") and config_["measure"] == "f1":
            return f"F1 on the {labelled} predictions whose labels arrived: {metric['value']:.3f}"
    return None


def save(snapshot: Any, directory: Path, stamp: dt.datetime) -> Path:
    """Write the report as HTML and JSON; return the HTML's path."""
    directory.mkdir(parents=True, exist_ok=True)
    name = stamp.strftime("%Y%m%dT%H%M%S%fZ")
    snapshot.save_html(str(directory / f"{name}.html"))
    snapshot.save_json(str(directory / f"{name}.json"))
    return directory / f"{name}.html"


def monitor_project(spec: Spec, root: Path, skip_bad: bool, workspace: Any) -> Judgement:
    """Judge one project's latest window; save its report; move its cursor.

    Raises:
        MonitorError: the window cannot be judged; nothing is saved and the cursor stays.
    """
    params = monitor_params(spec.name)
    reference, context, schema = load_reference(spec, paths.REFERENCE_DIR / spec.name)
    requests_dir = config.requests_dir(spec.name, root)
    cursor = read_cursor(root / spec.name)
    window = read_window(requests_dir, cursor, schema.routes, skip_bad)
    frame, requests = window_frame(spec, window, context, schema, root, params.sample_size)
    # both datasets need the same columns; the reference's count is not used
    frame[WINDOW_REQUESTS] = requests
    reference[WINDOW_REQUESTS] = len(reference)
    labelled = int(frame[TARGET].notna().sum()) if TARGET in frame else 0
    report = build_report(spec, schema, params, context, labelled > 0)
    # the snapshot is dated by the window's last request, so dashboards show traffic time
    stamp = last_time(window.records.get("timestamp"))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Evidently's correlations divide by the zero spread of constant columns; harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            dataset(frame, schema),
            dataset(sample(reference, params.sample_size), schema),
            timestamp=stamp,
            tags=[spec.name],
            metadata={"requests": str(requests), "bad_lines": str(len(window.skipped))},
        )
    summary = snapshot.dict()
    judgement = judge(spec.name, summary, schema, params)
    judgement.requests = requests
    note = quality_note(summary, labelled)
    if note:
        judgement.reasons.append(note)
    if window.skipped:
        judgement.reasons.append(f"{len(window.skipped)} bad log line(s) skipped: "
                                 + "; ".join(window.skipped[:5]))  # fmt: skip
    judgement.report = save(snapshot, config.reports_dir(spec.name, root), stamp)
    dashboards.add_snapshot(workspace, spec, snapshot)
    write_cursor(root / spec.name, window.cursor)
    write_latest(root / spec.name, judgement)
    return judgement


def write_latest(directory: Path, judgement: Judgement) -> None:
    latest = {
        "project": judgement.project,
        "verdict": judgement.verdict,
        "reasons": judgement.reasons,
        "requests": judgement.requests,
        "drift_share": judgement.drift_share,
        "report": str(judgement.report),
        "judged_at": time.time(),
    }
    (directory / "latest.json").write_text(json.dumps(latest, indent=1) + "\n")


def advice(judgement: Judgement, labelled: bool) -> str:
    """What the user reads about one project (`labelled`: its ground truth arrives)."""
    if judgement.drifted:
        why = "; ".join(judgement.reasons)
        action = (
            f"retrain it on the labelled traffic: `make retrain PROJECT={judgement.project}`"
            if labelled
            else f"no labels arrive for {judgement.project}: add new data to its raw data, "
            "then `make data-record` and `make repro`"
        )
        return (
            f"{judgement.project}: DRIFT in {judgement.requests} requests: {why}. To act, "
            f"{action}. Report: {judgement.report}"
        )
    extra = f" ({'; '.join(judgement.reasons)})" if judgement.reasons else ""
    return (
        f"{judgement.project}: no drift in {judgement.requests} requests{extra}. "
        f"Report: {judgement.report}"
    )


def run_job(
    projects: list[str] | None = None, skip_bad: bool = False
) -> tuple[dict[str, str], int]:
    """Monitor `projects` (default all); return each verdict and the exit status."""
    root = config.monitoring_dir()
    workspace = dashboards.open_workspace(config.workspace_dir(root))
    verdicts: dict[str, str] = {}
    status = 0
    for name, spec in specs(projects).items():
        try:
            judgement = monitor_project(spec, root, skip_bad, workspace)
        except MonitorError as exc:
            log.error("%s: %s", name, exc)
            verdicts[name] = exc.kind
            status = status or exc.status
            continue
        log.info("%s", advice(judgement, spec.labelled))
        verdicts[name] = judgement.verdict
    return verdicts, status


@app.command()
def main(
    project: Annotated[
        list[str] | None,
        typer.Option(help="A project to monitor (repeatable); default: all of them."),
    ] = None,
    skip_bad_lines: Annotated[
        bool,
        typer.Option(help="Monitor the good records of a log with bad lines; list the bad ones."),
    ] = False,
) -> None:
    """Judge every project's latest window; the last line is the verdicts as JSON."""
    unknown = sorted(set(project or []) - set(specs()))
    if unknown:
        raise MonitorError(f"unknown project(s) {unknown}; choose from {list(specs())}")
    verdicts, status = run_job(project, skip_bad_lines)
    sys.stderr.flush()
    print(json.dumps(verdicts), flush=True)
    raise SystemExit(status)


if __name__ == "__main__":
    cli.run(app)
