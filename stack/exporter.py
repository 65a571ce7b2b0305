"""`make monitor`'s verdicts as Prometheus metrics: `python -m stack.exporter --port 9108`.

`make monitor` writes each project's last verdict to `<monitoring dir>/<project>/latest.json`;
this serves them at `/metrics`, read when Prometheus scrapes, so that an alerting rule can
watch drift:

    mlops_monitor_drift{project="…"}                    1 if the last window drifted, else 0
    mlops_monitor_drift_share{project="…"}              the share of its columns that drifted
    mlops_monitor_window_requests{project="…"}          the requests in that window
    mlops_monitor_last_run_timestamp_seconds{project="…"}  when it was judged

A project that was never monitored has no series; an unreadable file is skipped and counted in
`mlops_monitor_unreadable_files`.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import typer

from projects.core import cli, paths

app = cli.app()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS = {
    "drift": "Whether the last monitored window drifted (1) or not (0).",
    "drift_share": "The share of the last monitored window's columns that drifted.",
    "window_requests": "The requests in the last monitored window.",
    "last_run_timestamp_seconds": "When the last window was judged (Unix time).",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(monitoring_dir: Path) -> str:
    """The metrics, in Prometheus' text format, from every `*/latest.json` under
    `monitoring_dir`."""
    values: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    unreadable = 0
    for path in sorted(monitoring_dir.glob("*/latest.json")):
        try:
            latest: dict[str, Any] = json.loads(path.read_text())
            project = str(latest["project"])
            row = {
                "drift": 1.0 if latest["verdict"] == "drift" else 0.0,
                "drift_share": float(latest.get("drift_share", 0.0)),
                "window_requests": float(latest.get("requests", 0)),
                "last_run_timestamp_seconds": float(latest.get("judged_at", path.stat().st_mtime)),
            }
        except (OSError, ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        for name, value in row.items():
            values[name].append((project, value))
    lines = []
    for name, help_text in METRICS.items():
        lines += [f"# HELP mlops_monitor_{name} {help_text}", f"# TYPE mlops_monitor_{name} gauge"]
        lines += [f'mlops_monitor_{name}{{project="{_label(p)}"}} {v}' for p, v in values[name]]
    lines += [
        "# HELP mlops_monitor_unreadable_files Verdict files that could not be read.",
        "# TYPE mlops_monitor_unreadable_files gauge",
        f"mlops_monitor_unreadable_files {unreadable}",
    ]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    monitoring_dir: Path

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, "application/json", b'{"error": "only /metrics is served here"}')
            return
        self._answer(200, CONTENT_TYPE, exposition(self.monitoring_dir).encode())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:  # a line per scrape is noise
        pass


@app.command()
def main(
    port: Annotated[int, typer.Option(help="The port to serve /metrics on.")] = 9108,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve `make monitor`'s verdicts as Prometheus metrics until stopped."""
    handler = type("Handler", (_Handler,), {"monitoring_dir": paths.monitoring_dir()})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise cli.StageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with server:
        server.serve_forever()


if __name__ == "__main__":
    cli.run(app)
