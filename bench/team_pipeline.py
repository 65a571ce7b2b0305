"""Pipeline time on the team stack against the embedded default, in one run.

Run: `python -m bench.team_pipeline` (`make bench-team`); it takes about twice as long as
`make run`. In a clone of the repository (its committed files and `data/raw/`, in a temporary
folder):

1. every pipeline, every stage forced (`make repro`'s command with `--force`), on the embedded
   default: sqlite and a local artifact folder;
2. a stack of its own (`python -m stack up`, a temporary `STACK_DIR`, free ports), then the same
   command against it: PostgreSQL and the MLflow server with authentication, artifacts through
   its proxy (into a folder, or S3 with `--s3`: moto's server, as the tests use).

Each stage's time is read from the moment DVC announces it to the next announcement. The last
line printed is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, paths
from stack.config import team_environment

app = cli.app()
REPRO = ["-m", "projects.core.recovery", "--", "dvc", "repro", "--force", "--downstream",
         "--glob", "*-prepare"]  # fmt: skip
STACK_PORTS = ("POSTGRES", "MLFLOW", "EXPORTER", "DASHBOARDS", "PROMETHEUS")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clone(target: Path) -> None:
    """The repository's committed files and its raw data, as a repository of its own."""
    subprocess.run(["git", "clone", "-q", str(paths.ROOT), str(target)], check=True)
    shutil.copytree(paths.RAW_DIR, target / "data" / "raw")


def _timed_repro(root: Path, env: dict[str, str]) -> dict[str, float]:
    """Run every stage; seconds per stage and in all."""
    stages: dict[str, float] = {}
    started = time.monotonic()
    current, since = None, started
    process = subprocess.Popen(
        [sys.executable, *REPRO], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-39:], line]
        if line.startswith("Running stage '"):
            now = time.monotonic()
            if current:
                stages[current] = round(now - since, 1)
            current, since = line.split("'")[1], now
    if process.wait() != 0:
        raise cli.StageError(f"the pipelines failed:\n{''.join(tail)}")
    end = time.monotonic()
    if current:
        stages[current] = round(end - since, 1)
    return {"total": round(end - started, 1), **stages}


def _moto(env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    settings = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # fmt: skip
    import boto3

    time.sleep(2)
    boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(
        Bucket="bench-artifacts")  # fmt: skip
    return server, settings | {"STACK_ARTIFACTS": "s3://bench-artifacts/mlflow"}


@app.command()
def main(
    s3: Annotated[bool, typer.Option(help="Artifacts in S3 (moto's server).")] = False,
) -> None:
    """Time every pipeline on the embedded store, then on a stack of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-team-") as scratch:
        root = Path(scratch) / "repo"
        _clone(root)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "STACK"))
        }
        env |= {"BENTOML_HOME": str(root / "bentoml"), "MONITORING_DIR": str(root / "monitoring")}
        embedded = _timed_repro(root, env)
        print(f"embedded: {embedded['total']} s", flush=True)

        moto = None
        stack_env = env | {f"STACK_{name}_PORT": str(_free_port()) for name in STACK_PORTS}
        stack_env["STACK_DIR"] = str(Path(scratch) / "stack")
        if s3:
            moto, settings = _moto(stack_env)
            stack_env |= settings
        try:
            subprocess.run([sys.executable, "-m", "stack", "up"], cwd=root, env=stack_env,
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            stack_env |= team_environment(Path(stack_env["STACK_DIR"], "team.env"))
            on_stack = _timed_repro(root, stack_env)
            print(f"stack: {on_stack['total']} s", flush=True)
        finally:
            subprocess.run([sys.executable, "-m", "stack", "down"], cwd=root, env=stack_env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            if moto is not None:
                os.killpg(moto.pid, signal.SIGTERM)
    ratio = round(on_stack["total"] / embedded["total"], 2)
    print(json.dumps({"artifacts": "s3 (moto)" if s3 else "folder", "embedded_s": embedded,
                      "stack_s": on_stack, "ratio": ratio}))  # fmt: skip


if __name__ == "__main__":
    cli.run(app)
