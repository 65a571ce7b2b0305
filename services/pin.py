"""Pin every project's `@champion` into the BentoML model store, and record the exact tags.

`make serve` and `make bento` run this first. Each champion is imported once, under the tag
`<registered model>:v<MLflow version>`, and `services/pinned.json` maps each project to its tag.
The services read that file when they start, and follow it while they run: after this has
pinned a new champion, each running service loads it beside the old one and swaps (see
`services.common.ModelService`). `make serve` runs this again whenever an `@champion` moves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, registry, tracking
from projects.core.cli import StageError
from projects.core.project import discover
from services.common import PINNED_FILE

log = logging.getLogger(__name__)
app = cli.app()


def registered_models() -> dict[str, str]:
    """Each served project's registered model name, from its config."""
    return {project.name: project.model_name for project in discover() if project.has_service()}


def bento_tag(model: str, version: str) -> str:
    """The BentoML tag a registered model version is pinned under."""
    return f"{model}:v{version}"


def pin(model: str) -> dict[str, str]:
    """Import `model@champion` into the BentoML store unless it is there; describe the pin."""
    import bentoml
    from bentoml.exceptions import NotFound

    version = registry.version_by_alias(model, registry.CHAMPION)
    if version is None:
        raise StageError(f"{model} has no @champion: run `make run` first")
    tag = bento_tag(model, version)
    try:
        bentoml.models.get(tag)
    except NotFound:
        bentoml.mlflow.import_model(
            tag,
            f"models:/{model}/{version}",
            labels={"registered_model": model, "mlflow_version": version},
        )
        log.info("imported %s@champion (v%s) as %s", model, version, tag)
    return {"model": model, "version": version, "tag": tag}


def moved(projects: list[str], pinned_file: Path = PINNED_FILE) -> list[str]:
    """The projects among `projects` whose `@champion` is not the version pinned for them."""
    import mlflow

    from services.common import read_pinned

    mlflow.set_tracking_uri(tracking.tracking_uri())
    models = registered_models()
    found = []
    for project in projects:
        champion = registry.version_by_alias(models[project], registry.CHAMPION)
        try:
            pinned = read_pinned(project, pinned_file)["version"]
        except StageError:
            pinned = None
        if champion is not None and champion != pinned:
            found.append(project)
    return found


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Where the pinned tags are written.")] = PINNED_FILE,
    project: Annotated[
        list[str] | None, typer.Option(help="Pin only this project (repeat for more).")
    ] = None,
) -> None:
    """Pin every project's champion (or `--project`'s) and write the tags to `out`."""
    import mlflow

    models = registered_models()
    unknown = sorted(set(project or ()) - set(models))
    if unknown:
        raise StageError(f"--project {', '.join(unknown)}: not a served project "
                         f"(served: {', '.join(sorted(models))})")  # fmt: skip
    mlflow.set_tracking_uri(tracking.tracking_uri())
    pinned = {name: pin(model) for name, model in models.items() if not project or name in project}
    # written whole, then renamed over the old file: a running service that follows the pin
    # (services.common.ModelService) never reads half of it
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(json.dumps(pinned, indent=2) + "\n")
    partial.replace(out)
    for project, entry in pinned.items():
        log.info("%s: %s", project, entry["tag"])


if __name__ == "__main__":
    cli.run(app)
