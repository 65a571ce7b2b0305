"""Monitoring's reference data: the champion's training data as features, with its predictions.

Each project has a `reference` stage that writes `data/reference/<project>/`:
- `reference.csv`: one row per training example, the columns of the project's `Schema`;
- `context.json`: what turning a request-log record into the same columns needs (a vocabulary,
  item popularity, ...) and which champion version the predictions are from.

The reference follows the champion, not the latest model: when the promotion gate keeps the old
champion, its reference is kept too, so drift is measured against the data that trained the
model that is serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from projects.core.cli import StageError
from projects.core.params import Params

log = logging.getLogger(__name__)

FRAME_FILE = "reference.csv"
CONTEXT_FILE = "context.json"
TARGET = "target"


class MonitorParams(Params):
    """A project's `monitor:` section: how its windows are judged."""

    sample_size: int = Field(
        ge=100, description="Windows and references larger than this are sampled down to it."
    )
    column_threshold: float = Field(
        gt=0,
        le=1,
        description="A column drifts when its distance from the reference reaches this "
        "(normed Wasserstein for numbers, Jensen-Shannon for categories).",
    )
    drift_share: float = Field(
        gt=0, le=1, description="The window drifts when this share of its columns drift."
    )


@dataclass(frozen=True)
class Schema:
    """The columns monitoring compares, and the request-log fields they come from."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction: str  # the numerical prediction, whose drift is judged on its own
    prediction_label: str | None  # the predicted class, when there is one
    record_fields: tuple[str, ...]  # what `window_frame` reads from each request-log record
    routes: tuple[str, ...]  # the request-log routes that are monitored
    positive: str | None = None  # the positive class, when ground truth arrives as feedback

    @property
    def features(self) -> tuple[str, ...]:
        return self.numerical + self.categorical

    @property
    def columns(self) -> tuple[str, ...]:
        label = (self.prediction_label,) if self.prediction_label else ()
        return (*self.features, self.prediction, *label)

    @property
    def numerical_columns(self) -> list[str]:
        return [*self.numerical, self.prediction]

    @property
    def categorical_columns(self) -> list[str]:
        label = [self.prediction_label] if self.prediction_label else []
        return [*self.categorical, *label]


def reference_dir(root: Path, project: str) -> Path:
    return root / project


def read_context(directory: Path) -> dict[str, Any]:
    return json.loads((directory / CONTEXT_FILE).read_text())


def read_frame(directory: Path, categorical: list[str]) -> pd.DataFrame:
    """The reference frame; `categorical` columns stay text ("false" is not read as False)."""
    return pd.read_csv(directory / FRAME_FILE, dtype=dict.fromkeys(categorical, str))


def write(directory: Path, frame: pd.DataFrame, context: dict[str, Any]) -> None:
    """Write the reference; byte-for-byte the same for the same inputs (DVC hashes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / FRAME_FILE, index=False, lineterminator="\n", float_format="%.6g")
    (directory / CONTEXT_FILE).write_text(json.dumps(context, indent=1, sort_keys=True) + "\n")


def fingerprint(*sources: str) -> str:
    """A hash of the code that builds a reference, so that changed code rebuilds it."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for source in sources:
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def _built(directory: Path) -> tuple[str | None, str | None]:
    """The champion version and builder an existing reference was built with."""
    try:
        context = read_context(directory)
    except (OSError, ValueError):
        return None, None
    return str(context.get("champion_version")), context.get("builder")


def refresh(
    directory: Path,
    model_name: str,
    trained_version: str,
    builder: str,
    build: Callable[[str], tuple[pd.DataFrame, dict[str, Any]]],
) -> None:
    """Rebuild the reference when the champion (or the code that builds it) changed; keep it
    when neither did.

    Args:
        directory: the project's reference folder.
        model_name: the registered model whose `@champion` is served.
        trained_version: the version this pipeline run registered.
        builder: `fingerprint` of the code that builds the reference.
        build: builds the frame and context from the current training data with the model at
            the given `models:/` URI.

    Raises:
        StageError: there is no champion (the promote stage has not run).
    """
    from projects.core.registry import version_by_alias

    champion = version_by_alias(model_name, "champion")
    if champion is None:
        raise StageError(f"{model_name} has no @champion: run the promote stage first")
    if champion != trained_version:
        if _built(directory) == (champion, builder) and (directory / FRAME_FILE).exists():
            log.info("the reference of %s v%s (still the champion) is kept", model_name, champion)
            return
        # the champion's own training data is an older data version, no longer checked out
        log.warning(
            "%s@champion is v%s, not this run's v%s, and its reference is missing or was built "
            "by other code: building it from the current training data",
            model_name,
            champion,
            trained_version,
        )
    frame, context = build(f"models:/{model_name}/{champion}")
    context |= {"model": model_name, "champion_version": champion, "builder": builder}
    write(directory, frame, context)
    log.info("reference of %s v%s: %d rows in %s", model_name, champion, len(frame), directory)


def run_stage(
    project: str,
    model_name: str,
    model_record: Path,
    out_dir: Path,
    source: str,
    build: Callable[[str], tuple[pd.DataFrame, dict[str, Any]]],
) -> None:
    """A project's whole reference stage: `refresh` for the version its train stage registered.

    Args:
        source: the project's reference module (`__file__`), whose code is fingerprinted.
    """
    from projects.core import registry, tracking

    tracking.start(project)
    trained = registry.read_record(model_record)["version"]
    refresh(out_dir, model_name, trained, fingerprint(source), build)
