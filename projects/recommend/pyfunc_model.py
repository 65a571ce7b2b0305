"""The recommender as an MLflow pyfunc, logged as code (MLflow's "models from code").

MLflow copies this file into the logged model and runs it when the model is loaded, so loading
unpickles nothing: the state is the `.npz` artifact that `Recommender.load` reads. The file must
end with `set_model`, which is how MLflow finds the model object.

`predict` takes a DataFrame of `user_id` and `k` and returns one row per recommended item; the
richer calls are on the unwrapped model: `pyfunc.unwrap_python_model().recommend(...)` and
`.similar_items(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from projects.recommend.config import MODEL_ARTIFACT
from projects.recommend.model import Item, Recommendations, Recommender

OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "title", "score", "cold_start")


class RecommenderModel(PythonModel):
    """Answers `recommend` and `similar_items` from the `Recommender` in the model's artifact."""

    recommender: Recommender

    def load_context(self, context: PythonModelContext) -> None:
        self.recommender = Recommender.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """See `Recommender.recommend`."""
        return self.recommender.recommend(user_id, k, exclude_seen)

    def similar_items(self, item_id: int, k: int = 10) -> list[Item]:
        """See `Recommender.similar_items`."""
        return self.recommender.similar_items(item_id, k)

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """One row per recommended item for each (`user_id`, `k`) row of `model_input`."""
        exclude_seen = bool((params or {}).get("exclude_seen", True))
        rows = []
        for user_id, k in zip(model_input["user_id"], model_input["k"], strict=True):
            found = self.recommender.recommend(int(user_id), int(k), exclude_seen)
            rows += [
                (found.user_id, rank, item.item_id, item.title, item.score, found.cold_start)
                for rank, item in enumerate(found.items, start=1)
            ]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


mlflow.models.set_model(RecommenderModel())
