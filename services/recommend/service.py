"""`POST /recommend` and `POST /similar_items`: movies from the pinned recommender champion.

Run this service alone: `bentoml serve services.recommend.service:MovieRecommender --port 3002`
(after `python -m services.pin`; `make serve` does both for every service).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, Field

from projects.recommend import config
from services.common import ModelService, add_middleware, read_pinned, service_options
from services.http import error

PINNED = read_pinned(config.NAME)
MAX_K = 100
Id = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]
K = Annotated[int, Field(strict=True, ge=1, le=MAX_K, description=f"How many items, 1..{MAX_K}.")]


class Item(BaseModel):
    item_id: int = Field(description="MovieLens item id.")
    title: str = Field(description="Title and year, e.g. 'Star Wars (1977)'.")
    score: float = Field(description="The model's score; higher is better. Comparable per list.")


class Recommendation(BaseModel):
    prediction_id: str = Field(description="Refer to this list in feedback.")
    user_id: int
    cold_start: bool = Field(description="The user is unknown: the list is the most popular items.")
    items: list[Item] = Field(description="Best first; never an item the user has rated.")
    model_version: str = Field(description="The registered model version that answered.")


class SimilarItems(BaseModel):
    prediction_id: str = Field(description="Refer to this list in feedback.")
    item_id: int
    items: list[Item] = Field(description="Best first; never the item itself.")
    model_version: str = Field(description="The registered model version that answered.")


def items_of(found: list[Any]) -> list[Item]:
    return [Item(item_id=i.item_id, title=i.title, score=i.score) for i in found]


@bentoml.service(
    **service_options(config.NAME, PINNED, config.PORT, ["/recommend", "/similar_items"])
)
class MovieRecommender(ModelService):
    """The `recommender` champion, pinned when the service was built."""

    project, pinned = config.NAME, PINNED
    bento_model = bentoml.models.BentoModel(PINNED["tag"])

    def load(self, stored: Any) -> Any:
        from projects.recommend.config import MODEL_ARTIFACT
        from projects.recommend.model import Recommender

        return Recommender.load(stored.path_of(f"mlflow_model/artifacts/{MODEL_ARTIFACT}.npz"))

    # Both routes answer in microseconds from precomputed lists, so they run on the event loop.
    @bentoml.api
    async def recommend(
        self,
        user_id: Annotated[Id, Field(description="A user id; an unknown one gets cold start.")],
        k: K = 10,
    ) -> Recommendation:
        """The user's k best movies, leaving out those they have rated."""
        start, request_id = time.perf_counter(), self.new_request()
        champion = self.champion
        found = champion.model.recommend(user_id, k)
        items = items_of(found.items)
        prediction_id = f"{request_id}-0"
        self.record(
            "recommend",
            start,
            [{"prediction_id": prediction_id, "user_id": user_id, "k": k,
              "cold_start": found.cold_start, "item_ids": [i.item_id for i in items]}],
            request_id,
            champion,
        )  # fmt: skip
        return Recommendation(
            prediction_id=prediction_id,
            user_id=user_id,
            cold_start=found.cold_start,
            items=items,
            model_version=champion.version,
        )

    @bentoml.api
    async def similar_items(
        self,
        item_id: Annotated[Id, Field(description="A movie in the catalogue.")],
        k: K = 10,
    ) -> SimilarItems:
        """The k movies the model would recommend to someone who rated only this one."""
        from projects.recommend.model import UnknownItemError

        start, request_id = time.perf_counter(), self.new_request()
        champion = self.champion
        try:
            items = items_of(champion.model.similar_items(item_id, k))
        except UnknownItemError as exc:
            return error(404, str(exc))
        prediction_id = f"{request_id}-0"
        self.record(
            "similar_items",
            start,
            [{"prediction_id": prediction_id, "item_id": item_id, "k": k,
              "item_ids": [i.item_id for i in items]}],
            request_id,
            champion,
        )  # fmt: skip
        return SimilarItems(
            prediction_id=prediction_id,
            item_id=item_id,
            items=items,
            model_version=champion.version,
        )


add_middleware(
    MovieRecommender,
    config.NAME,
    statuses={"/similar_items": {404: "`item_id` is not in the model's catalogue."}},
)
