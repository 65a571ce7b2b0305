"""The request pattern analyzer: the registered model, both levels in one.

`Analyzer.analyze` takes parsed requests (`projects.traffic.logformat` frames: from an access log,
from the CSIC reader, or built from structured requests) and returns a verdict per request (its
score, flag and, when flagged, the parameters or features that moved the score most) and per
client session (an address with a user agent, split after `idle` seconds without a request:
score, flag and reasons). The state is one `.npz` holding each model's own `.npz` as bytes:
plain arrays all the way down, nothing pickled.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from projects.core.cli import StageError
from projects.traffic.clients import ClientModel
from projects.traffic.logformat import endpoint
from projects.traffic.requests_model import RequestModel

PARTS = ("requests", "clients")
REQUEST_COLUMNS = ["line", "client_ip", "user_agent", "time", "method", "path", "status"]
# requests flagged in one batch whose reasons are worked out (reasons cost ~50 µs a request)
MAX_EXPLAINED = 10_000


@dataclass(frozen=True)
class Analysis:
    """The verdicts on a batch of requests."""

    requests: pd.DataFrame  # REQUEST_COLUMNS, endpoint, score, threshold, flagged, reasons
    clients: pd.DataFrame  # client_ip, user_agent, start, end, requests, score, ...


class Analyzer:
    """Scores requests with `requests` and client sessions with `clients`."""

    def __init__(self, requests: RequestModel, clients: ClientModel) -> None:
        self.requests = requests
        self.clients = clients

    @property
    def request_threshold(self) -> float:
        return float(self.requests.threshold_)

    @property
    def client_threshold(self) -> float:
        return float(self.clients.threshold_)

    def request_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Each request's anomaly score (higher is stranger)."""
        return self.requests.score(frame) if len(frame) else np.zeros(0)

    def analyze(self, frame: pd.DataFrame, top: int = 3, explain: bool = True) -> Analysis:
        """Verdicts on every request of `frame` and on every client session in it."""
        frame = frame.reset_index(drop=True)
        scores = self.request_scores(frame)
        flagged = scores > self.request_threshold
        requests = frame[[c for c in REQUEST_COLUMNS if c in frame]].copy()
        requests["endpoint"] = [
            endpoint(m, p) for m, p in zip(frame["method"], frame["path"], strict=True)
        ]
        requests["score"] = scores
        requests["threshold"] = self.request_threshold
        requests["flagged"] = flagged
        reasons: list[list[str]] = [[] for _ in range(len(frame))]
        if explain:
            which = np.flatnonzero(flagged)[:MAX_EXPLAINED]
            if len(which):
                explained = self.requests.explain(frame.iloc[which], top)
                for i, found in zip(which.tolist(), explained, strict=True):
                    reasons[i] = [f"{r.feature}: {r.problem} ({r.share:.0%})" for r in found]
        requests["reasons"] = reasons
        if len(frame):
            clients = self.clients.verdicts(frame, scores, top=top)
            clients = clients.drop(columns=["session"])
            # before `flagged` and `reasons`, as in the request verdicts
            clients.insert(len(clients.columns) - 2, "threshold", self.client_threshold)
        else:
            clients = pd.DataFrame(
                columns=["client_ip", "user_agent", "start", "end", "requests", "score",
                         "threshold", "flagged", "reasons"]
            )  # fmt: skip
        return Analysis(requests, clients.reset_index(drop=True))

    def save(self, path: Path) -> None:
        """Write both models' state into one `.npz` file at `path`."""
        parts = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in PARTS:
                file = Path(tmp) / f"{name}.npz"
                getattr(self, name).save(file)
                parts[name] = np.frombuffer(file.read_bytes(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, **parts)

    @classmethod
    def load(cls, path: Path) -> Analyzer:
        """Read what `save` wrote (no pickled objects are accepted)."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                parts = {name: io.BytesIO(arrays[name].tobytes()) for name in PARTS}
            return cls(RequestModel.load(parts["requests"]), ClientModel.load(parts["clients"]))
        except (KeyError, ValueError, OSError) as exc:
            # a state another version of this code wrote lacks or misnames arrays
            raise StageError(
                f"{path}: not an analyzer state this code can read ({type(exc).__name__}: {exc});"
                " retrain it with the current code (`make repro`)"
            ) from None
