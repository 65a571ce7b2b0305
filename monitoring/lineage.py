"""`make lineage ID=<prediction_id>`: how one prediction came to be.

The chain, from the answer back to the code and the data:

    the request-log record  (every served project's `<project>/requests/*.jsonl`, newest first)
    -> the registered model and version that answered  (the record's `model`, else the
       project's `MODEL_NAME`, and its `model_version`)
    -> that MLflow model version  (its source run, tags and aliases)
    -> the training run  (status, start, `git_commit`, `git_dirty`, `data_version` = the
       `data.dvc` md5, params, the training dataset's name and digest, metrics)
    -> the BentoML model it was pinned under (`<model>:v<version>`) and the Bentos built with it

A version or run deleted since is reported as missing and the rest is still printed; when the
version is gone but its pinned BentoML model is not, the run id is read from that model's
`MLmodel`. Everything is only read: no store is created where there is none.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from projects.core import cli, paths, tracking
from projects.core.cli import StageError
from projects.core.project import discover

app = cli.app()

# `ModelService.new_request()` is a uuid4's hex; prediction i of a request is `<request id>-<i>`
PREDICTION_ID = re.compile(r"[0-9a-f]{32}-\d+")
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
# where `bentoml.mlflow.import_model` keeps the MLflow model inside a BentoML model
MLMODEL = Path("mlflow_model") / "MLmodel"

# the fields of a request-log record that the human output shows, and their labels
RECORD_FACTS = {"route": "route", "timestamp": "answered", "request_id": "request id"}

Lineage = dict[str, Any]


class UnknownPredictionError(StageError):
    """No request log holds the prediction."""


@dataclass(frozen=True)
class Source:
    """A served project's request log and the registered model it serves."""

    project: str
    requests_dir: Path
    model_name: str


@dataclass(frozen=True)
class Found:
    """Where a prediction's record is, and the record."""

    project: str
    path: Path
    line: int
    record: dict[str, Any]


def sources() -> list[Source]:
    """Every served project's request log (`paths.requests_dir`) and registered model."""
    return [
        Source(project.name, paths.requests_dir(project.name), project.model_name)
        for project in discover()
        if project.has_service()
    ]


def parse_id(text: str) -> str:
    """The prediction id `text` holds, lower-cased.

    Raises:
        StageError: `text` is not `<32 hex digits>-<index>`.
    """
    candidate = text.strip().lower()
    if not PREDICTION_ID.fullmatch(candidate):
        raise StageError(
            f"not a prediction id: {text!r}; expected <32 hex digits>-<index> as a service's "
            "answer gives it (e.g. 0123456789abcdef0123456789abcdef-0)"
        )
    return candidate


def log_files(logs: Sequence[Source]) -> list[tuple[Source, Path]]:
    """Every daily file of the request logs, newest date first (files are named by UTC date)."""
    files = [(source, path) for source in logs for path in source.requests_dir.glob("*.jsonl")]
    # stable: files of the same date keep the projects' order
    return sorted(files, key=lambda pair: pair[1].name, reverse=True)


def find_in_file(path: Path, prediction_id: str) -> tuple[int, dict[str, Any]] | None:
    """The line number and record of `prediction_id` in one JSON-lines file, or None.

    The file is streamed and only lines that contain the id are parsed: logs can be large. A
    line that contains it but is not a JSON object (one cut short by a crash, one still being
    written) is not a record, and the search goes on.
    """
    needle = prediction_id.encode()
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                # the id is also a prefix of other ids (`…-1` of `…-10`): compare the field
                if isinstance(record, dict) and record.get("prediction_id") == prediction_id:
                    return number, record
    except OSError as exc:
        raise StageError(f"cannot read the request log {path}: {exc.strerror}") from None
    return None


def find_record(prediction_id: str, logs: Sequence[Source]) -> Found:
    """The record of `prediction_id`: the first hit, newest files first.

    Raises:
        UnknownPredictionError: no request log holds it; the message says what was searched.
    """
    files = log_files(logs)
    for source, path in files:
        hit = find_in_file(path, prediction_id)
        if hit is not None:
            return Found(source.project, path, hit[0], hit[1])
    raise UnknownPredictionError(f"unknown prediction {prediction_id}: {searched(logs, files)}")


def searched(logs: Sequence[Source], files: Sequence[tuple[Source, Path]]) -> str:
    """What a search went through, in words: the projects, their files and where."""
    if not logs:
        return "no project has a service, so there is no request log to search"
    where = sorted({str(source.requests_dir.parent.parent) for source in logs})
    if not files:
        return (
            f"no request log of {', '.join(s.project for s in logs)} under {', '.join(where)} "
            "(the services write there; MONITORING_DIR moves it)"
        )
    dates = sorted(path.stem for _, path in files)
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    per_project = [f"{s.project} ({sum(1 for source, _ in files if source == s)})" for s in logs]
    return (
        f"not in any of the {len(files)} request-log file(s), dated {span}, of "
        f"{', '.join(per_project)} under {', '.join(where)}"
    )


def iso(milliseconds: int | None) -> str | None:
    """An MLflow timestamp (epoch milliseconds) as ISO 8601 in UTC."""
    if milliseconds is None:
        return None
    return dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC).isoformat(timespec="seconds")


def _absent(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == NOT_FOUND


def version_facts(client: Any, model: str, version: str) -> dict[str, Any] | None:
    """A registered model version's source run, source, creation time, aliases and tags; None
    when the registry no longer has it."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(model, version)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise StageError(
            f"cannot read {model} v{version} from the MLflow store: {exc.message}"
        ) from None
    return {
        "run_id": found.run_id,
        "source": found.source,
        "created": iso(found.creation_timestamp),
        "aliases": sorted(found.aliases),
        "tags": dict(sorted(found.tags.items())),
    }


def dataset_facts(inputs: Any) -> list[dict[str, Any]]:
    """The run's input datasets: name, digest, context (`training`) and source (its URI when
    the source is one)."""
    found = []
    for entry in inputs.dataset_inputs if inputs else []:
        tags = {tag.key: tag.value for tag in entry.tags}
        try:
            source = json.loads(entry.dataset.source).get("uri", entry.dataset.source)
        except (ValueError, AttributeError):
            source = entry.dataset.source
        found.append(
            {
                "name": entry.dataset.name,
                "digest": entry.dataset.digest,
                "context": tags.get("mlflow.data.context"),
                "source": source,
            }
        )
    return found


def run_facts(client: Any, run_id: str) -> dict[str, Any] | None:
    """A training run's status, times, lineage tags (`projects.core.tracking.lineage`), params,
    datasets and metrics; None when the store no longer has it."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise StageError(f"cannot read run {run_id} from the MLflow store: {exc.message}") from None
    tags = run.data.tags
    return {
        "id": run.info.run_id,
        "name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "lifecycle_stage": run.info.lifecycle_stage,
        "start_time": iso(run.info.start_time),
        "end_time": iso(run.info.end_time),
        **{key: tags.get(key) for key in ("git_commit", "git_dirty", "data_version")},
        "dvc_experiment": tags.get("dvc_experiment"),
        "params": dict(sorted(run.data.params.items())),
        "datasets": dataset_facts(run.inputs),
        "metrics": dict(sorted(run.data.metrics.items())),
    }


def bentos_with(model_tag: str, bentos: Iterable[Any]) -> list[str]:
    """The tags of the built Bentos (`bentoml.list()`) that contain the model `model_tag`."""
    return sorted(
        str(bento.tag)
        for bento in bentos
        if model_tag in {str(model.tag) for model in bento.info.all_models}
    )


def pinned_run_id(model_path: Path) -> str | None:
    """The MLflow run id in a pinned BentoML model's `MLmodel`, if it has one."""
    try:
        run_id = yaml.safe_load((model_path / MLMODEL).read_text()).get("run_id")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return str(run_id) if run_id else None


def bento_facts(model_tag: str, home: Path) -> dict[str, Any]:
    """The BentoML model `model_tag` in the store at `home` (BENTOML_HOME), the run id its
    MLflow model records, and the Bentos built with it.

    A `home` that does not exist is reported as such: BentoML would create a store there.
    """
    facts: dict[str, Any] = {
        "store": str(home),
        "model_tag": model_tag,
        "in_store": False,
        "created": None,
        "run_id": None,
        "bentos": [],
    }
    if not home.is_dir():
        return facts
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(model_tag)
    except (NotFound, ValueError):  # ValueError: a model name BentoML cannot hold
        pass
    else:
        created = model.info.creation_time
        facts |= {
            "in_store": True,
            "created": created.isoformat(timespec="seconds"),
            "run_id": pinned_run_id(Path(model.path)),
        }
    facts["bentos"] = bentos_with(model_tag, bentoml.list())
    return facts


def trace(
    prediction_id: str,
    logs: Sequence[Source],
    connect: Callable[[], Any],
    bento: Callable[[str], dict[str, Any]],
) -> Lineage:
    """The lineage of a prediction, as the JSON object `--json` prints.

    Args:
        logs: the request logs to search (`sources()`).
        connect: returns an `MlflowClient` on the store, or None when there is no store; called
            only once the record is found.
        bento: the BentoML facts of a model tag (`bento_facts` on BENTOML_HOME).

    Raises:
        StageError: the id is malformed, or no request log holds it.
    """
    found = find_record(parse_id(prediction_id), logs)
    served = {source.project: source.model_name for source in logs}
    # a record names its model since services can switch champions; older ones only the version
    name = str(found.record.get("model") or served[found.project])
    version = found.record.get("model_version")
    lineage: Lineage = {
        "prediction_id": found.record["prediction_id"],
        "request": {
            "project": found.project,
            "file": str(found.path),
            "line": found.line,
            "record": found.record,
        },
        "model": {"name": name, "version": None if version is None else str(version)},
        "model_version": None,
        "bento": None,
        "run": None,
        "missing": [],
    }
    if version is None:
        lineage["missing"].append("the record names no model_version: nothing more to trace")
        return lineage
    return lineage | upstream(name, str(version), connect(), bento)


def upstream(
    name: str, version: str, client: Any, bento: Callable[[str], dict[str, Any]]
) -> Lineage:
    """What the registry, the training run and the BentoML store know of `name` v`version`:
    the `model_version`, `bento`, `run` and `missing` parts of a lineage."""
    from services.pin import bento_tag

    missing: list[str] = []
    registered = None
    if client is None:
        missing.append(f"no MLflow store at {tracking.tracking_uri()}")
    else:
        registered = version_facts(client, name, version)
        if registered is None:
            missing.append(f"{name} v{version} is not in the MLflow registry (deleted?)")
    pinned = bento(bento_tag(name, version))
    if not pinned["in_store"]:
        missing.append(f"no BentoML model {pinned['model_tag']} in {pinned['store']}")
    # a deleted version's run is still known to the BentoML model it was pinned as
    run_id = (registered or {}).get("run_id") or pinned["run_id"]
    run = None
    if client is not None and run_id is None:
        missing.append("the training run is unknown: no registry version or pinned model names it")
    elif client is not None:
        run = run_facts(client, run_id)
        if run is None:
            missing.append(f"run {run_id} is not in the MLflow store (deleted?)")
    return {"model_version": registered, "bento": pinned, "run": run, "missing": missing}


def connect(uri: str | None = None) -> Any:
    """An `MlflowClient` on the tracking store (`tracking.tracking_uri()`), or None when that
    is a sqlite file that does not exist: opening it would create an empty store."""
    uri = uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_run(run: Lineage, via_bento: bool) -> list[str]:
    """The run's lines of the human output, indented under the model."""
    name = f" ({run['name']})" if run["name"] else ""
    lines = [f"MLflow run: {run['id']}{name}"]
    if via_bento:
        lines.append("  found via: the pinned BentoML model's MLmodel (the version is gone)")
    stage = "" if run["lifecycle_stage"] == "active" else f" ({run['lifecycle_stage']})"
    lines += [
        f"  experiment: {run['experiment_id']}",
        f"  status: {run['status']}{stage}",
        f"  started: {run['start_time']}",
        f"  git commit: {run['git_commit'] or 'not recorded'}",
        f"  git dirty: {run['git_dirty'] or 'not recorded'}",
        f"  data version (data.dvc md5): {run['data_version'] or 'not recorded'}",
    ]
    if run["dvc_experiment"]:
        lines.append(f"  dvc experiment: {run['dvc_experiment']}")
    for dataset in run["datasets"]:
        lines.append(
            f"  {dataset['context'] or 'input'} dataset: {dataset['name']}, digest "
            f"{dataset['digest']}, from {dataset['source']}"
        )
    for part in ("params", "metrics"):
        lines.append(f"  {part}:" if run[part] else f"  {part}: none")
        lines += [f"    {key}: {_number(value)}" for key, value in run[part].items()]
    return lines


def render(lineage: Lineage) -> str:
    """The human output: an indented chain, one fact per line."""
    request, model, record = lineage["request"], lineage["model"], lineage["request"]["record"]
    lines = [
        f"prediction {lineage['prediction_id']}",
        f"  request log: {request['file']}, line {request['line']}",
        f"    project: {request['project']}",
        *(f"    {label}: {record[key]}" for key, label in RECORD_FACTS.items() if key in record),
        f"  model: {model['name']} v{model['version'] or '?'}",
    ]
    if version := lineage["model_version"]:
        lines += [
            f"    aliases: {', '.join(version['aliases']) or 'none'}",
            *(f"    tag {key}: {value}" for key, value in version["tags"].items()),
            f"    registered: {version['created']}",
            f"    source: {version['source']}",
        ]
    if bento := lineage["bento"]:
        where = "in" if bento["in_store"] else "not in"
        lines.append(f"    BentoML model: {bento['model_tag']} ({where} {bento['store']})")
        built = bento["bentos"]
        lines += [f"      Bento: {tag}" for tag in built] or ["      Bentos: none built with it"]
    if run := lineage["run"]:
        lines += ["    " + line for line in render_run(run, lineage["model_version"] is None)]
    lines += [f"  missing: {what}" for what in lineage["missing"]]
    return "\n".join(lines)


@app.command()
def main(
    prediction_id: Annotated[
        str, typer.Argument(help="A prediction id from a service's answer: <request id>-<i>.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print how a prediction came to be: its request-log record, the model version that
    answered, the MLflow run that trained it (code, data, params, dataset, metrics) and the
    BentoML model and Bentos it was served from."""
    prediction_id = parse_id(prediction_id)  # before the slow imports
    # the Makefile's store; never BentoML's default under $HOME
    home = Path(os.environ.setdefault("BENTOML_HOME", str(paths.ROOT / "bentoml")))
    lineage = trace(prediction_id, sources(), connect, lambda tag: bento_facts(tag, home))
    typer.echo(json.dumps(lineage, indent=2) if as_json else render(lineage))


if __name__ == "__main__":
    cli.run(app)
