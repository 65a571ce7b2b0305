"""Why the request pattern analyzer does not fold feedback into its raw data (`make retrain
PROJECT=traffic`), yet: feedback labels single requests, but the raw data also labels every
request's client with its kind, which the split, the validation and the client level's metrics
need, and which no feedback carries."""

REFUSAL = (
    "feedback on the analyzer labels single requests (attack or not), but data/raw/traffic "
    "also labels each client's kind, which feedback does not carry, so there is nothing to fold "
    "it into. Label the access log you want to learn from (labels.csv: line, client_kind, "
    "request_kind, is_attack), put both into data/raw/traffic, then run `make data-record` and "
    "`make repro`"
)
