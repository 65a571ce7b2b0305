"""The plain FastAPI baseline that `bench.services_speed` holds the BentoML spam service against.

It is what a user would write by hand: the pinned spam model loaded once at import, the same
pydantic limits as `services.spam.service`, a plain `def` endpoint (FastAPI runs it in its
threadpool), uvicorn's defaults (access log on), no request log and no garbage-collector tricks.
`/classify-async` is the same endpoint as `async def`, run on the event loop itself.

Run alone: `uvicorn bench.fastapi_spam:app --port 3101` (after `python -m services.pin`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import bentoml
import skops.io
from fastapi import FastAPI
from pydantic import BaseModel, Field

from projects.spam.model import TRUSTED_TYPES, SpamScorer
from services.common import read_pinned

MAX_TEXTS = 1000
MAX_CHARACTERS = 5000
Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARACTERS)]

# what `python -m services.pin` wrote: the spam model's tag in the BentoML store
PINNED = read_pinned("spam")
scorer = SpamScorer(
    skops.io.load(
        bentoml.models.get(PINNED["tag"]).path_of("mlflow_model/model.skops"),
        trusted=list(TRUSTED_TYPES),
    )
)

app = FastAPI(title="spam classifier (plain FastAPI baseline)")


class Texts(BaseModel):
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)


class Verdict(BaseModel):
    label: Literal["spam", "ham"]
    spam_probability: float


class Classification(BaseModel):
    results: list[Verdict]
    model_version: str


def _classify(texts: list[str]) -> Classification:
    probability = scorer.probability(texts)
    is_spam = scorer.is_spam(probability)
    results = [
        Verdict(label="spam" if spam else "ham", spam_probability=p)
        for p, spam in zip(probability.tolist(), is_spam.tolist(), strict=True)
    ]
    return Classification(results=results, model_version=PINNED["version"])


@app.post("/classify")
def classify(body: Texts) -> Classification:
    """Spam or ham for each text (the baseline: a plain `def`)."""
    return _classify(body.texts)


@app.post("/classify-async")
async def classify_async(body: Texts) -> Classification:
    """The same, as `async def`: no threadpool hop, but it blocks the loop while it scores."""
    return _classify(body.texts)
