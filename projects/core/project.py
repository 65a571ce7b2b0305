"""Projects are found, not named: the one protocol a project implements, and its discovery.

A project is a package `projects/<name>/` (plus its service, `services/<name>/`). The shared
layers (`projects/core`, `services/*.py`, `monitoring/`, the Makefile) find every project by
folder and talk to it only through these modules of its own, the way Django finds each app's
`admin.py` or Kedro each pipeline's `create_pipeline()`:

| module | what it provides | who uses it |
|---|---|---|
| `config` | `NAME`, `MODEL_NAME` (registered model), `PORT` (`make serve`), `load()` | all |
| `data` | `write_raw(out_dir, wheel_cache)`: the raw data, deterministically | bootstrap |
| `reference` | `schema(context)`, `window_frame(records, context)`: monitoring features | monitor |
| `monitor` | `SPEC`: a `monitoring.specs.Spec` (title, measures, dashboard panels) | monitor |
| `production` | `load()`, `window(data, service, window)`: what `make simulate` sends | simulate |
| `feedback` | `LABELS`, `fold(joined)`: labelled production data into the raw data | retrain |
| `bench` | a typer `app`: the project's quality and speed bench (`make bench`) | Makefile |
| `batch` | `TABLES`, `load`, `spark`, `local`, `example` (`batch/protocol.py`) | batch-score |

`config` and `data` are required; a project without a `production`, `feedback`, `bench` or
`batch` module is simply left out of what needs it (and `make retrain` says why). The service is
the one `services/<name>/bentofile.yaml` names. Nothing here imports a project until asked to.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

import yaml

import projects
from projects.core import paths
from projects.core.cli import StageError

REQUIRED = ("config", "data")
SERVICES_DIR = paths.ROOT / "services"


@dataclass(frozen=True)
class Project:
    """One project, as the shared layers see it."""

    name: str

    def has(self, part: str) -> bool:
        """Whether the project has the module `projects.<name>.<part>`."""
        return importlib.util.find_spec(f"projects.{self.name}.{part}") is not None

    def module(self, part: str) -> ModuleType:
        """The project's module `part` (imported now).

        Raises:
            StageError: the project has no such module.
        """
        if not self.has(part):
            raise StageError(f"project {self.name} has no {part} module (projects/{self.name}/)")
        return importlib.import_module(f"projects.{self.name}.{part}")

    @property
    def config(self) -> ModuleType:
        return self.module("config")

    @property
    def model_name(self) -> str:
        """The registered model this project's pipeline promotes."""
        return self.config.MODEL_NAME

    @property
    def port(self) -> int:
        """Its service's port: `$<NAME>_PORT` (e.g. `SPAM_PORT`) if set, else its config's."""
        override = os.environ.get(f"{self.name.upper()}_PORT", "").strip()
        if override:
            if not override.isdigit() or not 0 < int(override) < 65536:
                raise StageError(f"{self.name.upper()}_PORT: not a port number: {override!r}")
            return int(override)
        return int(self.config.PORT)

    @property
    def bentofile(self) -> Path:
        return SERVICES_DIR / self.name / "bentofile.yaml"

    @cached_property
    def service(self) -> str:
        """The BentoML service its bentofile names, `services.<name>.service:Class`.

        Raises:
            StageError: the project has no service, or its bentofile names none.
        """
        try:
            target = yaml.safe_load(self.bentofile.read_text()).get("service")
        except (OSError, yaml.YAMLError, AttributeError) as exc:
            raise StageError(f"{self.name}: no readable {self.bentofile}: {exc}") from None
        if not isinstance(target, str) or ":" not in target:
            raise StageError(f"{self.bentofile}: `service:` must be `module:Class`")
        return target

    def has_service(self) -> bool:
        return self.bentofile.exists()


def _is_project(name: str) -> bool:
    return name != "core" and all(
        importlib.util.find_spec(f"projects.{name}.{part}") is not None for part in REQUIRED
    )


def discover() -> list[Project]:
    """Every project under `projects/`, ordered by port (the order `make serve` lists them)."""
    found = [
        Project(module.name)
        for module in pkgutil.iter_modules(projects.__path__)
        if module.ispkg and _is_project(module.name)
    ]
    return sorted(found, key=lambda p: (int(p.config.PORT), p.name))


def names() -> list[str]:
    """The names of every project, in discovery order."""
    return [project.name for project in discover()]


def get(name: str) -> Project:
    """The project called `name`.

    Raises:
        StageError: there is none; the message lists those there are.
    """
    known = names()
    if name not in known:
        raise StageError(f"unknown project {name!r}; choose from {', '.join(known)}")
    return Project(name)


def choose(chosen: list[str] | None) -> list[Project]:
    """The projects asked for, in discovery order and once each; every project when none is.

    Raises:
        StageError: naming the unknown ones and the choices.
    """
    every = discover()
    if not chosen:
        return every
    known = [p.name for p in every]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise StageError(f"unknown project(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [p for p in every if p.name in chosen]


def ports(projects: list[Project], overrides: list[str]) -> dict[str, int]:
    """Each of `projects`' port: its own (`Project.port`), or the `name=port` given for it (one
    given for another project is ignored, so that one list of ports serves any choice).

    Raises:
        StageError: an override that is not `name=port` of a project, or two projects on one
            port.
    """
    chosen = {project.name: project.port for project in projects}
    known = names()
    for override in overrides:
        name, _, port = override.partition("=")
        if name not in known or not port.isdigit() or not 0 < int(port) < 65536:
            raise StageError(f"--port {override}: give name=port for one of {', '.join(known)}")
        if name in chosen:
            chosen[name] = int(port)
    if len(set(chosen.values())) < len(chosen):
        raise StageError(f"the ports must differ, got {chosen}")
    return chosen


def having(part: str) -> list[str]:
    """The projects that have `part`: a module's name, or `service`."""
    if part == "service":
        return [p.name for p in discover() if p.has_service()]
    return [p.name for p in discover() if p.has(part)]


if __name__ == "__main__":
    # the Makefile reads project lists from here, so that it names no project:
    # `python -m projects.core.project [PART]` prints every project (that has PART)
    import sys

    print(" ".join(having(sys.argv[1]) if len(sys.argv) > 1 else names()))
