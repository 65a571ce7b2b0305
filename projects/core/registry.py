"""The MLflow model registry: log and load models safely, and the promotion gate.

A new version becomes `@champion` only if it beats the current champion on the project's primary
metric, both scored on the same, current test split; otherwise it becomes `@challenger`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from projects.core.cli import StageError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
SKOPS_FILE = "model.skops"
# What a scikit-learn model needs to be loaded and served elsewhere.
SKLEARN_PACKAGES = ("scikit-learn", "skops", "numpy", "scipy", "pandas")


def log_sklearn_model(
    model: Any,
    registered_name: str | None,
    input_example: Any,
    prediction_example: Any,
    trusted: Sequence[str] = (),
    name: str = "model",
) -> Any:
    """Log a scikit-learn model in the skops format with its signature, and register it.

    Args:
        registered_name: the registered model it becomes a version of; None logs it to the run
            only (a model kept for comparison).
        name: its artifact path in the run.

    Returns:
        The `ModelInfo`; `registered_model_version` is the new version.
    """
    import mlflow
    from mlflow.models import infer_signature

    # stated, not inferred: inference reloads the model in a subprocess and guesses
    requirements = [f"{name}=={version(name)}" for name in SKLEARN_PACKAGES]
    return mlflow.sklearn.log_model(
        model,
        name=name,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        signature=infer_signature(input_example, prediction_example),
        input_example=input_example,
        registered_model_name=registered_name,
        skops_trusted_types=list(trusted),
        pip_requirements=requirements,
    )


def log_pyfunc_model(
    code: Path,
    state: Any,
    artifact: str,
    registered_name: str,
    input_example: Any,
    output_example: Any,
    packages: Sequence[str],
) -> Any:
    """Log and register a pyfunc model from code: MLflow runs `code` to load it, and `code` reads
    the model's state from the artifact `artifact`, which `state.save(path)` writes. Nothing is
    pickled.

    Returns:
        The `ModelInfo`; `registered_model_version` is the new version.
    """
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        path = Path(tmp) / f"{artifact}.npz"
        state.save(path)
        # MLflow hints that integer columns cannot hold missing values; ids are never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={artifact: str(path)},
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            registered_model_name=registered_name,
            pip_requirements=[f"{name}=={version(name)}" for name in packages],
        )


def _not_loadable(model_uri: str, exc: Any) -> StageError:
    import mlflow

    return StageError(
        f"cannot load {model_uri} from {mlflow.get_tracking_uri()}: {exc.message}; "
        "if the MLflow store was removed, `make clean-state` and run the pipeline again"
    )


def load_sklearn_model(model_uri: str, trusted: Sequence[str] = ()) -> Any:
    """Load a skops model from the registry, trusting only scikit-learn's own types and `trusted`.

    MLflow's own loader trusts the type list written inside the model; this one trusts only the
    list in our code, and refuses a model that needs anything more.
    """
    import mlflow
    import skops.io
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(model_uri))
    except MlflowException as exc:
        raise _not_loadable(model_uri, exc) from None
    model_file = local / SKOPS_FILE if local.is_dir() else local
    if not model_file.exists():
        raise StageError(f"{model_uri} holds no {SKOPS_FILE}; only skops models are loaded")
    untrusted = set(skops.io.get_untrusted_types(file=model_file)) - set(trusted)
    if untrusted:
        raise StageError(f"{model_uri} needs types not on the allow-list: {sorted(untrusted)}")
    return skops.io.load(model_file, trusted=list(trusted))


def load_pyfunc_model(model_uri: str) -> Any:
    """Load a pyfunc model that was logged as code; refuse one that would be unpickled."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        flavor = mlflow.models.get_model_info(model_uri).flavors.get("python_function", {})
        if "model_code_path" not in flavor:
            raise StageError(f"{model_uri} is not a model logged as code; it is not loaded")
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise _not_loadable(model_uri, exc) from None


def write_record(path: Path, model: str, info: Any, run_id: str) -> dict[str, str]:
    """Write the version train registered to `path` (the JSON later stages read); return it."""
    version = str(info.registered_model_version)
    record = {
        "model_name": model,
        "version": version,
        "model_uri": f"models:/{model}/{version}",
        "run_id": run_id,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    log.info("registered %s v%s (run %s)", model, version, run_id)
    return record


def read_record(path: Path) -> dict[str, str]:
    """The record `write_record` wrote."""
    return json.loads(path.read_text())


def version_by_alias(name: str, alias: str) -> str | None:
    """The version behind `name@alias`, or None if the alias (or the model) does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Decision:
    """The promotion gate's verdict and the scores it rests on."""

    model: str
    metric: str
    candidate_version: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None
    promoted: bool

    @property
    def reason(self) -> str:
        if self.champion_version is None:
            return "first model: it becomes champion"
        if self.champion_version == self.candidate_version:
            return "already champion"
        verb = "beats" if self.promoted else "does not beat"
        return (
            f"{self.metric} {self.candidate_score:.4f} {verb} "
            f"champion v{self.champion_version}'s {self.champion_score:.4f}"
        )

    def as_report(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def decide(
    model: str,
    metric: str,
    candidate_version: str,
    candidate_score: float,
    champion_version: str | None,
    score_champion: Callable[[str], float],
) -> Decision:
    """Judge a candidate against the champion; a tie keeps the champion."""
    champion_score = None
    if champion_version is None:
        promoted = True
    elif champion_version == candidate_version:
        promoted, champion_score = True, candidate_score
    else:
        champion_score = score_champion(f"models:/{model}/{champion_version}")
        promoted = candidate_score > champion_score
    return Decision(
        model,
        metric,
        candidate_version,
        candidate_score,
        champion_version,
        champion_score,
        promoted,
    )


def apply(decision: Decision) -> None:
    """Tag the candidate version with the verdict, then move the aliases as decided.

    The alias moves last, in one call: a promote killed before it leaves `@champion` where it
    was (its rerun decides again), and one killed after it leaves a consistent new champion,
    which the rerun finds already champion, keeping the verdict that made it so.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    name, version = decision.model, decision.candidate_version
    already = decision.champion_version == version
    if not (already and "promotion" in client.get_model_version(name, version).tags):
        client.set_model_version_tag(name, version, "promotion", decision.reason)
    if decision.promoted:
        if version_by_alias(name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        client.set_registered_model_alias(name, CHAMPION, version)
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
    log.info("%s v%s: %s", name, version, decision.reason)


def promote(
    model: str,
    metric: str,
    model_record: Path,
    metrics_file: Path,
    report: Path,
    score_champion: Callable[[str], float],
) -> Decision:
    """A promote stage: judge the version train recorded against the champion, move the aliases,
    and write the decision to `report`.

    Args:
        model_record: the JSON train wrote, with the new `version`.
        metrics_file: the new version's metrics, as evaluate wrote them.
        score_champion: scores a model URI on `metric`, on the same data the metrics came from.
    """
    version = read_record(model_record)["version"]
    decision = decide(
        model,
        metric,
        version,
        json.loads(metrics_file.read_text())[metric],
        version_by_alias(model, CHAMPION),
        score_champion,
    )
    apply(decision)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(decision.as_report(), indent=2) + "\n")
    return decision
