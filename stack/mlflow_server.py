"""The MLflow tracking server: runs and registry in PostgreSQL, artifacts through its proxy,
MLflow's basic authentication with a generated admin password, and its host and origin checks
set to the one address it serves."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import httpx

from stack import config
from stack.processes import Daemon, Launch

DAEMON = Daemon("mlflow")


def database_uri(port: int, password: str, database: str) -> str:
    """SQLAlchemy's URI of `database` on the stack's PostgreSQL."""
    return (f"postgresql+psycopg2://{config.DATABASE_USER}:{quote(password, safe='')}"
            f"@{config.HOST}:{port}/{database}")  # fmt: skip


def write_auth_config(path: Path, database: str, admin_password: str) -> None:
    """MLflow's basic-auth settings: users in `database`; new users may read, nothing more;
    the admin's password generated (MLflow ships none); verified passwords cached for a
    minute. Readable by this user only."""
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database}\n"
        f"admin_username = {config.ADMIN_USER}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # a verified password is trusted for a minute: without it every request pays for a
        # scrypt hash (0.1-0.4 s here), and a stage makes dozens; a password changed through
        # the API is seen at once by the worker that changed it, by the others within that
        "auth_cache_ttl_seconds = 60\n"
    )
    config.write_private(path, text)


def url(port: int) -> str:
    return f"http://{config.HOST}:{port}"


def launch(port: int, backend: str, auth_config: Path, artifacts: str, secret_key: str) -> Launch:
    """`mlflow server` on 127.0.0.1:`port`, ready when `/health` answers."""
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    command = [
        mlflow, "server", "--host", config.HOST, "--port", str(port),
        "--backend-store-uri", backend,
        "--serve-artifacts", "--artifacts-destination", artifacts,
        "--app-name", "basic-auth",
        # only requests addressed to this server, and no browser page from another origin
        "--allowed-hosts", f"{config.HOST}:{port},localhost:{port}",
        "--cors-allowed-origins", f"{url(port)},http://localhost:{port}",
        "--workers", str(config.mlflow_workers()),
    ]  # fmt: skip
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
    }

    def ready() -> bool:
        return httpx.get(f"{url(port)}/health", timeout=2).status_code == 200

    return DAEMON.launch(command, ready, env=env, timeout=180)
