"""Top-k ranking metrics, as Microsoft Recommenders defines them for its ML-100K benchmark.

Every held-out item counts as relevant (binary relevance, whatever its rating), and a metric is
the mean over the users who have at least one held-out item.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

METRICS = ("precision", "recall", "ndcg", "map")


def hits(ranked: np.ndarray, relevant: sparse.csr_matrix) -> np.ndarray:
    """Boolean matrix: whether the item at each rank of each user's list is relevant to them.

    Args:
        ranked: item indices, one row per user (the rows of `relevant`), best first.
        relevant: users x items, non-zero where the item is held out for the user.
    """
    return np.take_along_axis(sparse.csr_matrix(relevant).toarray() != 0, ranked, axis=1)


def ranking_metrics(ranked: np.ndarray, relevant: sparse.csr_matrix, k: int) -> dict[str, float]:
    """precision@k, recall@k, nDCG@k and MAP@k of ranked lists against held-out items.

    MAP@k divides each user's sum of precisions at the hits by min(k, relevant items), so a
    perfect list scores 1.
    """
    found = hits(ranked[:, :k], relevant)
    n_relevant = np.asarray(sparse.csr_matrix(relevant).getnnz(axis=1))
    users = n_relevant > 0
    found, n_relevant = found[users], n_relevant[users]
    if not users.any():
        return {f"{name}_at_{k}": 0.0 for name in METRICS}
    ranks = np.arange(1, found.shape[1] + 1)
    discount = 1 / np.log2(ranks + 1)
    ideal = np.cumsum(discount)[np.minimum(n_relevant, found.shape[1]) - 1]
    precision_at_rank = np.cumsum(found, axis=1) / ranks
    values = {
        "precision": found.sum(axis=1) / k,
        "recall": found.sum(axis=1) / n_relevant,
        "ndcg": (found * discount).sum(axis=1) / ideal,
        "map": (precision_at_rank * found).sum(axis=1) / np.minimum(n_relevant, k),
    }
    return {f"{name}_at_{k}": float(value.mean()) for name, value in values.items()}


def coverage(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k list."""
    return len(np.unique(ranked[:, :k])) / n_items


def top_k_metrics(ranked: np.ndarray, relevant: sparse.csr_matrix, k: int) -> dict[str, float]:
    """`ranking_metrics` and coverage@k, both over the users with held-out items."""
    users = np.asarray(sparse.csr_matrix(relevant).getnnz(axis=1)) > 0
    return {
        **ranking_metrics(ranked, relevant, k),
        f"coverage_at_{k}": coverage(ranked[users], relevant.shape[1], k),
    }


def precision_curve(ranked: np.ndarray, relevant: sparse.csr_matrix, max_k: int) -> np.ndarray:
    """precision@k for k = 1..max_k, over the users with held-out items."""
    found = hits(ranked[:, :max_k], relevant)
    users = np.asarray(sparse.csr_matrix(relevant).getnnz(axis=1)) > 0
    return np.cumsum(found[users], axis=1).mean(axis=0) / np.arange(1, max_k + 1)
