from __future__ import annotations
import bentoml
from pydantic import BaseModel, Field

TAG = open("/tmp/spike/tag").read().strip()

class ClassifyRequest(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=1000)

@bentoml.service(http={"port": 3001, "host": "127.0.0.1"})
class Spam:
    model_ref = bentoml.models.BentoModel(TAG)

    def __init__(self) -> None:
        import skops.io
        from projects.spam.model import TRUSTED_TYPES
        path = self.model_ref.path_of("mlflow_model/model.skops")
        self.model = skops.io.load(path, trusted=list(TRUSTED_TYPES))

    @bentoml.api
    def classify(self, texts: list[str]) -> dict:
        import pandas as pd
        p = self.model.predict_proba(pd.DataFrame({"text": texts}))[:, 1]
        return {"spam_probability": p.tolist(), "version": self.model_ref.info.labels.get("mlflow_version")}
