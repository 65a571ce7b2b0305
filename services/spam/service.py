"""`POST /classify`: spam or ham for 1..1000 texts, with the pinned champion's version.

Run one service: `bentoml serve services.spam.service:SpamClassifier --port 3001`
(after `python -m services.pin`).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

import bentoml
from services.common import MONITORING_DIR, RequestLog, now, quiet_client_errors
from services.pin import read_pinned

PINNED = read_pinned("spam")
Text = Annotated[str, Field(min_length=1, max_length=5000)]
EXAMPLE = ["WINNER!! Claim your free prize now, call 09061701461", "See you at lunch?"]


class Verdict(BaseModel):
    label: Literal["spam", "ham"] = Field(description="The model's decision.")
    spam_probability: float = Field(ge=0, le=1, description="Calibrated probability of spam.")


class Classification(BaseModel):
    results: list[Verdict] = Field(description="One verdict per text, in order.")
    model_version: str = Field(description="The registered model version that answered.")


@bentoml.service(http={"host": "127.0.0.1", "port": 3001}, metrics={"enabled": True})
class SpamClassifier:
    bento_model = bentoml.models.BentoModel(PINNED["tag"])

    def __init__(self) -> None:
        import skops.io

        from projects.spam.model import TRUSTED_TYPES

        quiet_client_errors()
        path = self.bento_model.path_of("mlflow_model/model.skops")
        self.model = skops.io.load(path, trusted=list(TRUSTED_TYPES))
        self.threshold = float(self.model.threshold)
        self.version = PINNED["version"]
        self.requests = RequestLog(MONITORING_DIR / "spam" / "requests")

    @bentoml.api
    def classify(
        self,
        texts: Annotated[
            list[Text],
            Field(min_length=1, max_length=1000, description="The messages.", examples=[EXAMPLE]),
        ],
    ) -> Classification:
        """Classify each text as spam or ham."""
        import pandas as pd

        start = time.perf_counter()
        from projects.spam.model import spam_probability

        probability = spam_probability(self.model, pd.DataFrame({"text": texts}))
        # the same rule as FixedThresholdClassifier.predict: spam at or above the threshold
        results = [
            Verdict(label="spam" if p >= self.threshold else "ham", spam_probability=float(p))
            for p in probability
        ]
        latency_ms = (time.perf_counter() - start) * 1000
        stamp = now()
        for text, verdict in zip(texts, results, strict=True):
            self.requests.append(
                {"timestamp": stamp, "model_version": self.version, "text": text,
                 "label": verdict.label, "spam_probability": verdict.spam_probability,
                 "latency_ms": latency_ms}
            )  # fmt: skip
        return Classification(results=results, model_version=self.version)
