"""Prometheus, from Debian's `prometheus` package: every service's `/metrics` and the drift
exporter scraped, and the alerting rules of `stack/rules.yml` loaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import yaml

from projects.core.cli import StageError
from stack import config
from stack.processes import Daemon, Launch

DAEMON = Daemon("prometheus")
RULES = Path(__file__).with_name("rules.yml")


def scrape_every() -> str:
    """How often Prometheus scrapes and evaluates the rules: `STACK_SCRAPE_INTERVAL` (a
    Prometheus duration such as `30s`), else 15 s."""
    return os.environ.get("STACK_SCRAPE_INTERVAL") or "15s"


def program(name: str = "prometheus") -> str:
    """Debian's `prometheus` (or `promtool`), or a message saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise StageError(f"{name} is not installed: `make prometheus` installs Debian's "
                         "package (needs root or sudo)")  # fmt: skip
    return found


def configuration(services: dict[str, int], exporter_port: int, rules: Path) -> dict:
    """Prometheus' configuration: each service (`project: port`) and the exporter, on 127.0.0.1."""
    return {
        "global": {"scrape_interval": scrape_every(), "evaluation_interval": scrape_every()},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "services",
                "static_configs": [
                    {"targets": [f"{config.HOST}:{port}"], "labels": {"project": project}}
                    for project, port in sorted(services.items())
                ],
            },
            {
                "job_name": "monitoring",
                "static_configs": [{"targets": [f"{config.HOST}:{exporter_port}"]}],
            },
        ],
    }


def launch(port: int, services: dict[str, int], exporter_port: int) -> Launch:
    """Write the configuration into the state folder and launch Prometheus on 127.0.0.1:`port`,
    its data in `prometheus/` there."""
    folder = config.state_dir() / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "prometheus.yml"
    settings.write_text(yaml.safe_dump(configuration(services, exporter_port, RULES.resolve())))
    command = [
        program(), f"--config.file={settings}", f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={config.HOST}:{port}",
    ]  # fmt: skip

    def ready() -> bool:
        return httpx.get(f"http://{config.HOST}:{port}/-/ready", timeout=2).status_code == 200

    return DAEMON.launch(command, ready, timeout=60)
