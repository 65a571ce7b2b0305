"""`python -m stack up|down|status`: the team's services on this machine (`make stack`,
`make stack-down`, `make stack-status`)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from projects.core import cli
from projects.core.cli import StageError
from projects.core.project import discover
from stack import config, mlflow_server, postgres, prometheus, storage
from stack.processes import Daemon, Launch, require_free

app = cli.app()
# the database superuser's password, MLflow's admin password, and the key that signs MLflow's
# forms and sessions (its CSRF protection): one for every server process, kept across restarts
SECRETS = ("postgres_password", "admin_password", "flask_secret_key")


def _secrets() -> dict[str, str]:
    """The stack's passwords and keys, generated on its first start and kept in `.stack/`
    (mode 600); one added by a later version of this file is generated then."""
    try:
        found = json.loads(config.secrets_file().read_text())
    except FileNotFoundError:
        found = {}
    except (OSError, ValueError) as exc:
        raise StageError(
            f"{config.secrets_file()} is unreadable ({exc}); the passwords in it are the only "
            "way into the stack's database: restore it"
        ) from None
    missing = [name for name in SECRETS if name not in found]
    if missing:
        found |= {name: secrets.token_urlsafe(32) for name in missing}
        config.write_private(config.secrets_file(), json.dumps(found, indent=2) + "\n")
    return found


def _state() -> dict[str, Any]:
    try:
        return json.loads(config.state_file().read_text())
    except (OSError, ValueError):
        return {}


# the stack's processes, in the order they start (and stop in reverse)
NAMES = ("postgres", "mlflow", "exporter", "dashboards", "prometheus")


def _daemons() -> dict[str, Daemon]:
    own = {d.name: d for d in (postgres.DAEMON, mlflow_server.DAEMON, prometheus.DAEMON)}
    return {name: own.get(name) or Daemon(name) for name in NAMES}


@app.command()
def up() -> None:
    """Start what is not running yet: PostgreSQL, the MLflow server, the drift exporter, the
    Evidently UI and Prometheus; write `.stack/team.env`, which `STACK=team make` reads."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per readiness poll otherwise
    running = {name: daemon.pid() for name, daemon in _daemons().items()}
    if all(running.values()):
        typer.echo("the stack is already up:")
        status()
        return
    state = _state()
    ports = {name: state.get(name, {}).get("port") or config.port(name) for name in NAMES}
    for name, port in ports.items():
        if not running[name]:
            require_free(name, port)
    stores = _storage(state)
    prometheus.program()  # installed? said before anything starts
    keys = _secrets()
    if not running["postgres"]:
        if postgres.initialise(keys["postgres_password"]):
            typer.echo(f"PostgreSQL: a new cluster in {postgres.data_dir(postgres.run_as())}")
        postgres.start(ports["postgres"])
    postgres.create_databases(
        ports["postgres"], keys["postgres_password"],
        [config.TRACKING_DATABASE, config.AUTH_DATABASE],
    )  # fmt: skip
    # the rest start side by side: most of their start is importing Python
    launches = []
    if not running["mlflow"]:
        auth = mlflow_server.database_uri(ports["postgres"], keys["postgres_password"],
                                          config.AUTH_DATABASE)  # fmt: skip
        mlflow_server.write_auth_config(config.auth_config(), auth, keys["admin_password"])
        backend = mlflow_server.database_uri(ports["postgres"], keys["postgres_password"],
                                             config.TRACKING_DATABASE)  # fmt: skip
        launches.append(mlflow_server.launch(
            ports["mlflow"], backend, config.auth_config(), stores["artifacts"],
            keys["flask_secret_key"],
        ))  # fmt: skip
    for name, module in (("exporter", "stack.exporter"), ("dashboards", "monitoring.dashboards")):
        if not running[name]:
            launches.append(_launch_python(name, module, ports[name]))
    if not running["prometheus"]:
        services = {project.name: project.port for project in discover() if project.has_service()}
        launches.append(prometheus.launch(ports["prometheus"], services, ports["exporter"]))
    for launch in launches:
        launch.wait()
    state = {name: {"port": port, "url": f"http://{config.HOST}:{port}"}
             for name, port in ports.items()}  # fmt: skip
    state["postgres"]["url"] = f"{config.HOST}:{ports['postgres']}"
    state["storage"] = stores
    config.state_file().write_text(json.dumps(state, indent=2) + "\n")
    config.write_private(
        config.env_file(),
        f"MLFLOW_TRACKING_URI={mlflow_server.url(ports['mlflow'])}\n"
        f"MLFLOW_TRACKING_USERNAME={config.ADMIN_USER}\n"
        f"MLFLOW_TRACKING_PASSWORD={keys['admin_password']}\n"
        # a BentoML store of the stack's own: a tag such as spam-classifier:v1 names another
        # model in each registry, and the pin must not take the embedded store's for this one
        f"BENTOML_HOME={config.state_dir() / 'bentoml'}\n"
        + _storage_settings(stores["dvc_remote"]),
    )
    status()


# where the stack keeps files: the setting that chooses it when `up` first runs, and its default
STORAGE = {
    "artifacts": ("STACK_ARTIFACTS", config.artifacts_destination),
    "dvc_remote": ("STACK_DVC_REMOTE", config.dvc_remote),
}


def _storage(state: dict[str, Any]) -> dict[str, str]:
    """The artifact store and DVC remote: what the first `up` recorded (the registry's runs
    point into it), else the settings; S3 buckets checked before anything starts."""
    recorded = state.get("storage", {})
    chosen = {}
    for name, (setting, default) in STORAGE.items():
        asked, kept = default(), recorded.get(name)
        if kept is not None and setting in os.environ and asked != kept:
            raise StageError(
                f"{setting}={asked}, but this stack keeps its {name.replace('_', ' ')} in "
                f"{kept or 'the repository'} ({config.state_file()}); moving them is in "
                "docs/team.md (Object storage)"
            )
        chosen[name] = kept if kept is not None else asked
        storage.check_bucket(chosen[name], setting)
    return chosen


def _storage_settings(dvc_remote: str) -> str:
    """team.env's lines that point DVC at the team's remote and at its store."""
    if not dvc_remote:
        return ""
    present = [name for name in storage.CLIENT_SETTINGS if os.environ.get(name)]
    return f"STACK_DVC_REMOTE={dvc_remote}\n" + "".join(
        f"{name}={os.environ[name]}\n" for name in present
    )


def _launch_python(name: str, module: str, port: int) -> Launch:
    """One of the stack's own Python servers, ready when its port answers HTTP."""
    import httpx

    url = f"http://{config.HOST}:{port}/"

    def ready() -> bool:
        return httpx.get(url, timeout=2).status_code < 500

    command = [sys.executable, "-m", module, "--host", config.HOST, "--port", str(port)]
    return Daemon(name).launch(command, ready, timeout=120)


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Option(help="The store to copy from; by default the embedded one.")
    ] = "",
    data: Annotated[
        bool, typer.Option(help="Push the data version to the team's DVC remote.")
    ] = True,
    models: Annotated[bool, typer.Option(help="Copy registered models, runs and aliases.")] = True,
) -> None:
    """Copy the work done before the team existed to the stack (`make stack-import`): the
    registered models with their runs and aliases, and the data version `data.dvc` records;
    a second import copies only what is new."""
    from mlflow import MlflowClient

    from projects.core import bootstrap, paths, tracking
    from stack.importer import Importer

    os.environ.update(config.team_environment())
    if data and os.environ.get("STACK_DVC_REMOTE"):
        pushed = bootstrap.dvc("push", *bootstrap.remote_args(), paths.DATA_DVC_FILE.name)
        bootstrap.check(pushed, "dvc push to the team's remote")
        said = pushed.stdout.strip().splitlines()[-1:] or ["pushed"]
        typer.echo(f"data: {os.environ['STACK_DVC_REMOTE']}: {said[0]}")
    elif data:
        typer.echo(
            "data: the stack has no DVC remote of its own (STACK_DVC_REMOTE); nothing to push"
        )
    if not models:
        return
    source = source or f"sqlite:///{paths.main_root() / tracking.TRACKING_DB}"
    if source.startswith("sqlite:///") and not Path(source.removeprefix("sqlite:///")).exists():
        raise StageError(f"there is no store at {source}: nothing to import")
    server = os.environ["MLFLOW_TRACKING_URI"]
    copier = Importer(
        MlflowClient(tracking_uri=source, registry_uri=source),
        MlflowClient(tracking_uri=server, registry_uri=server),
        label=f"{socket.gethostname()}:{source}",
    )
    typer.echo(f"models: {copier.everything().summary()}")


@app.command()
def down() -> None:
    """Stop what `up` started, by PID, the last started first; the data stays for the next
    `up`."""
    stops = {"postgres": postgres.stop}
    stopped = [name for name, daemon in reversed(_daemons().items())
               if stops.get(name, daemon.stop)()]  # fmt: skip
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the stack was not running")


@app.command()
def status() -> None:
    """What runs where."""
    state = _state()
    for name, daemon in _daemons().items():
        pid = daemon.pid()
        where = state.get(name, {}).get("url", "-")
        typer.echo(f"{name:<11} {'up' if pid else 'down':<5} {where:<28} "
                   f"{f'pid {pid}' if pid else ''}")  # fmt: skip
    stores = state.get("storage", {})
    typer.echo(f"artifacts   {stores.get('artifacts') or '-'}")
    own = "the repository's own (.dvc/config)"
    typer.echo(f"dvc remote  {stores.get('dvc_remote') or own}")
    typer.echo(f"credentials: {config.env_file()} (STACK=team make <target> reads it)")


if __name__ == "__main__":
    cli.run(app)
