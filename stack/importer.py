"""Copy a laptop's registry to the team's server (`make stack-import`): every registered model,
each version's model files and the run behind it (params, metrics, tags, dataset inputs,
artifacts), and the aliases.

Each copy is tagged with where it came from, so a second import copies only what is new. The
server numbers versions itself: version 3 on the laptop is version 3 on the server only if the
server had none of that model before; the tag `imported_from` says which it was.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# on copied runs, versions and models: "<source store>#<run id>" or "#<model>/<version>"
IMPORTED_FROM = "imported_from"
# MLflow's own bookkeeping, which the destination writes itself
_SKIPPED_TAGS = ("mlflow.log-model.history",)
# MLflow's limits per log_batch call
MAX_PARAMS, MAX_METRICS = 100, 1000


@dataclass
class Imported:
    """What one import copied, and what it left as it was."""

    runs: int = 0
    versions: int = 0
    aliases: list[str] = field(default_factory=list)
    kept_aliases: list[str] = field(default_factory=list)

    def summary(self) -> str:
        said = [f"{self.runs} runs and {self.versions} model versions copied"]
        if self.aliases:
            said.append(f"aliases set: {', '.join(self.aliases)}")
        if self.kept_aliases:
            said.append(
                f"aliases the server already points elsewhere, left as they are: "
                f"{', '.join(self.kept_aliases)}"
            )
        return "; ".join(said)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Importer:
    """Copies from `source` (an MlflowClient on the laptop's store) to `dest` (one on the
    server); `label` names the source in the `imported_from` tags."""

    def __init__(self, source: Any, dest: Any, label: str) -> None:
        self.source, self.dest, self.label = source, dest, label
        self.result = Imported()
        self._runs: dict[str, str] = {}  # source run id -> destination run id
        self._experiments: dict[str, str] = {}

    def _experiment(self, source_id: str) -> str:
        if source_id not in self._experiments:
            experiment = self.source.get_experiment(source_id)
            found = self.dest.get_experiment_by_name(experiment.name)
            # the server chooses the artifact location: its proxy, whatever the laptop used
            self._experiments[source_id] = (
                found.experiment_id if found else
                self.dest.create_experiment(experiment.name, tags=experiment.tags)
            )  # fmt: skip
        return self._experiments[source_id]

    def _find_run(self, experiment_id: str, origin: str) -> str | None:
        found = self.dest.search_runs(
            [experiment_id], filter_string=f"tags.{IMPORTED_FROM} = '{origin}'", max_results=1
        )
        return found[0].info.run_id if found else None

    def run(self, run_id: str) -> str:
        """The destination's copy of the source run `run_id`, made if there is none yet."""
        if run_id in self._runs:
            return self._runs[run_id]
        from mlflow.entities import Metric, Param

        run = self.source.get_run(run_id)
        experiment_id = self._experiment(run.info.experiment_id)
        origin = f"{self.label}#{run_id}"
        copied = self._find_run(experiment_id, origin)
        if copied is None:
            tags = {k: v for k, v in run.data.tags.items() if k not in _SKIPPED_TAGS}
            new = self.dest.create_run(
                experiment_id, start_time=run.info.start_time,
                tags=tags | {IMPORTED_FROM: origin}, run_name=run.info.run_name,
            )  # fmt: skip
            copied = new.info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            for chunk in _chunks(params, MAX_PARAMS):
                self.dest.log_batch(copied, params=chunk)
            metrics = [
                Metric(m.key, m.value, m.timestamp, m.step)
                for key in run.data.metrics
                for m in self.source.get_metric_history(run_id, key)
            ]
            for chunk in _chunks(metrics, MAX_METRICS):
                self.dest.log_batch(copied, metrics=chunk)
            if run.inputs and run.inputs.dataset_inputs:
                self.dest.log_inputs(copied, datasets=run.inputs.dataset_inputs)
            with tempfile.TemporaryDirectory() as scratch:
                local = self.source.download_artifacts(run_id, "", scratch)
                if any(Path(local).iterdir()):
                    self.dest.log_artifacts(copied, local)
            self.dest.set_terminated(copied, run.info.status, run.info.end_time)
            self.result.runs += 1
            log.info("run %s copied as %s", run_id, copied)
        self._runs[run_id] = copied
        return copied

    def _logged_model(self, version: Any, run_id: str | None, experiment_id: str) -> str:
        """A logged model on the destination holding the version's files; its id."""
        import mlflow

        source_model = None
        if getattr(version, "model_id", None):
            source_model = self.source.get_logged_model(version.model_id)
        model = self.dest.create_logged_model(
            experiment_id,
            name=source_model.name if source_model else version.name,
            source_run_id=run_id,
            tags=dict(source_model.tags) if source_model else None,
            params=dict(source_model.params) if source_model else None,
            model_type=source_model.model_type if source_model else None,
        )
        uri = self.source.get_model_version_download_uri(version.name, version.version)
        with tempfile.TemporaryDirectory() as scratch:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch)
            self.dest.log_model_artifacts(model.model_id, local)
        self.dest.finalize_logged_model(model.model_id, "READY")
        return model.model_id

    def model(self, name: str) -> None:
        """Copy registered model `name`: its versions in order, then its aliases."""
        from mlflow.exceptions import MlflowException

        registered = self.source.get_registered_model(name)
        try:
            self.dest.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.dest.create_registered_model(
                name, tags=registered.tags, description=registered.description
            )
        # versions are numbers in a sqlite store and strings from a server
        present = {
            v.tags.get(IMPORTED_FROM): str(v.version)
            for v in self.dest.search_model_versions(f"name = '{name}'")
        }
        mapping: dict[str, str] = {}
        versions = self.source.search_model_versions(f"name = '{name}'")
        for version in sorted(versions, key=lambda v: int(v.version)):
            number = str(version.version)
            origin = f"{self.label}#{name}/{number}"
            if origin in present:
                mapping[number] = present[origin]
                continue
            run_id = self.run(version.run_id) if version.run_id else None
            experiment_id = (
                self.dest.get_run(run_id).info.experiment_id if run_id else
                self.dest.get_experiment_by_name("Default").experiment_id
            )  # fmt: skip
            model_id = self._logged_model(version, run_id, experiment_id)
            made = self.dest.create_model_version(
                name, source=f"models:/{model_id}", run_id=run_id,
                tags=dict(version.tags) | {IMPORTED_FROM: origin},
                description=version.description, model_id=model_id,
            )  # fmt: skip
            mapping[number] = str(made.version)
            self.result.versions += 1
            log.info("%s v%s copied as v%s", name, number, made.version)
        server_aliases = self.dest.get_registered_model(name).aliases
        for alias, version in registered.aliases.items():
            target = mapping[str(version)]
            where = f"{name}@{alias}"
            if alias in server_aliases and str(server_aliases[alias]) != target:
                self.result.kept_aliases.append(where)
                continue
            if alias not in server_aliases:
                self.dest.set_registered_model_alias(name, alias, target)
                self.result.aliases.append(f"{where} -> v{target}")

    def everything(self) -> Imported:
        for registered in self.source.search_registered_models():
            self.model(registered.name)
        return self.result
