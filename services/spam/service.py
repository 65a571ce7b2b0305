"""`POST /classify`: spam or ham for 1..1000 texts, from the pinned spam champion.

Run this service alone: `bentoml serve services.spam.service:SpamClassifier --port 3001`
(after `python -m services.pin`; `make serve` does both for every service).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, Field

from projects.spam import config
from services.common import ModelService, add_middleware, read_pinned, service_options

PINNED = read_pinned(config.NAME)
MAX_TEXTS = 1000
MAX_CHARACTERS = 5000
Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARACTERS)]
EXAMPLE = ["WINNER!! Claim your free prize now, call 09061701461", "See you at lunch?"]


class TokenWeight(BaseModel):
    token: str = Field(description="A whitespace-separated token of the text.")
    weight: float = Field(description="Its share of the SVM margin; positive pushes to spam.")


class Verdict(BaseModel):
    prediction_id: str = Field(description="Refer to this prediction in feedback.")
    label: Literal["spam", "ham"] = Field(description="The model's decision.")
    spam_probability: float = Field(ge=0, le=1, description="Calibrated probability of spam.")
    explanation: list[TokenWeight] | None = Field(
        default=None, description="With `explain`: the tokens that moved the score most."
    )


class Classification(BaseModel):
    results: list[Verdict] = Field(description="One verdict per text, in order.")
    model_version: str = Field(description="The registered model version that answered.")


# up to this many characters in all, without explanations, a request is scored on the event loop
INLINE_CHARACTERS = 2000


@bentoml.service(**service_options(config.NAME, PINNED, config.PORT, ["/classify"]))
class SpamClassifier(ModelService):
    """The `spam-classifier` champion, pinned when the service was built."""

    project, pinned = config.NAME, PINNED
    bento_model = bentoml.models.BentoModel(PINNED["tag"])

    def load(self, stored: Any) -> Any:
        import skops.io

        from projects.spam.model import TRUSTED_TYPES, SpamScorer

        path = stored.path_of("mlflow_model/model.skops")
        return SpamScorer(skops.io.load(path, trusted=list(TRUSTED_TYPES)))

    @bentoml.api
    async def classify(
        self,
        texts: Annotated[
            list[Text],
            Field(
                min_length=1,
                max_length=MAX_TEXTS,
                description=f"1..{MAX_TEXTS} messages of 1..{MAX_CHARACTERS} characters.",
                examples=[EXAMPLE],
            ),
        ],
        explain: Annotated[
            bool,
            Field(strict=True, description="Also return the tokens that moved each score most."),
        ] = False,
    ) -> Classification:
        """Classify each text as spam or ham."""
        inline = not explain and sum(map(len, texts)) <= INLINE_CHARACTERS
        return await self.compute(inline, self._classify, texts, explain)

    def _classify(self, texts: list[str], explain: bool) -> Classification:
        start, request_id = time.perf_counter(), self.new_request()
        champion = self.champion  # one model answers the whole request, even across a switch
        scorer = champion.model
        probability = scorer.probability(texts)
        is_spam = scorer.is_spam(probability)
        results = [
            Verdict(
                prediction_id=f"{request_id}-{i}",
                label="spam" if spam else "ham",
                spam_probability=float(p),
            )
            for i, (p, spam) in enumerate(zip(probability.tolist(), is_spam.tolist(), strict=True))
        ]
        if explain:
            for text, verdict in zip(texts, results, strict=True):
                verdict.explanation = [
                    TokenWeight(token=t.token, weight=t.weight) for t in scorer.explain(text)
                ]
        self.record(
            "classify",
            start,
            (
                {"prediction_id": v.prediction_id, "text": text, "text_length": len(text),
                 "label": v.label, "spam_probability": v.spam_probability}
                for text, v in zip(texts, results, strict=True)
            ),
            request_id,
            champion,
        )  # fmt: skip
        return Classification(results=results, model_version=champion.version)


add_middleware(SpamClassifier, config.NAME)
