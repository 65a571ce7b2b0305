"""Where the stack keeps its state and which ports it listens on, written once.

Every port can be moved with `STACK_<NAME>_PORT` when `make stack` starts the stack; what it
started is then recorded in `.stack/stack.json`, which the other commands and `.stack/team.env`
follow.
"""

from __future__ import annotations

import os
from pathlib import Path

from projects.core import paths

HOST = "127.0.0.1"
ROOT = paths.main_root()


def state_dir() -> Path:
    """Where the stack keeps everything: `STACK_DIR`, else `.stack/` in the repository (read
    when called, so that tests run a stack of their own)."""
    return Path(os.environ.get("STACK_DIR") or ROOT / ".stack")


def run_dir() -> Path:
    return state_dir() / "run"


def log_dir() -> Path:
    return state_dir() / "logs"


def state_file() -> Path:
    """What `up` started, on which ports."""
    return state_dir() / "stack.json"


def secrets_file() -> Path:
    return state_dir() / "secrets.json"


def env_file() -> Path:
    """What the targets read with STACK=team: the tracking server's address and credentials."""
    return state_dir() / "team.env"


def team_environment(path: Path | None = None) -> dict[str, str]:
    """The settings of `.stack/team.env` (or `path`), as `STACK=team make` exports them."""
    from projects.core.cli import StageError

    path = path or env_file()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise StageError(f"{path} does not exist: start the stack with `make stack`") from None
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return dict(pairs)


def postgres_dir() -> Path:
    return state_dir() / "postgres"


def auth_config() -> Path:
    return state_dir() / "basic_auth.ini"


DEFAULT_PORTS = {
    "postgres": 5433, "mlflow": 5100, "exporter": 9108, "dashboards": 8000, "prometheus": 9090,
}  # fmt: skip
# the database user that owns MLflow's databases, and MLflow's own admin user
DATABASE_USER = "mlflow"
TRACKING_DATABASE = "mlflow"
AUTH_DATABASE = "mlflow_auth"
ADMIN_USER = "admin"


def port(name: str) -> int:
    """`STACK_<NAME>_PORT`, else the default port of `name`."""
    value = os.environ.get(f"STACK_{name.upper()}_PORT", "")
    if not value:
        return DEFAULT_PORTS[name]
    if not value.isdigit() or not 0 < int(value) < 65536:
        from projects.core.cli import StageError

        raise StageError(f"STACK_{name.upper()}_PORT={value!r} is not a port (1-65535)")
    return int(value)


def mlflow_workers() -> int:
    """How many processes answer the tracking server's requests: `STACK_MLFLOW_WORKERS`, else
    2 (one request waiting on the database does not hold up the others)."""
    value = os.environ.get("STACK_MLFLOW_WORKERS", "") or "2"
    if not value.isdigit() or int(value) < 1:
        from projects.core.cli import StageError

        raise StageError(f"STACK_MLFLOW_WORKERS={value!r} is not a number of processes (1 or more)")
    return int(value)


def artifacts_destination() -> str:
    """Where the tracking server keeps artifacts: `STACK_ARTIFACTS` (an `s3://bucket/prefix`,
    see docs/team.md), else `artifacts/` in the state folder."""
    return os.environ.get("STACK_ARTIFACTS") or str(state_dir() / "artifacts")


def dvc_remote() -> str:
    """The team's DVC remote, `STACK_DVC_REMOTE` (an `s3://bucket/prefix`), or "" to keep the
    repository's own remote (`.dvc/config`)."""
    return os.environ.get("STACK_DVC_REMOTE", "")


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only (mode 600) before anything is in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
