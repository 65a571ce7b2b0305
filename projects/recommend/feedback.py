"""Why the recommender takes no labelled production data (`make retrain PROJECT=recommend`)."""

REFUSAL = (
    "no ground truth arrives for recommendations: the service logs what it recommended, but "
    "nothing says which recommendations were right, so there is nothing to fold. Put new "
    "ratings into data/raw/recommend, then run `make data-record` and `make repro`"
)
