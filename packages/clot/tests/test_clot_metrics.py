import hashlib
import math

import pytest
import torch

from clot.metrics import average_semantic_distance, dcg, mtn_accuracy, ndcg, pairwise_semantic_distance


def hash_embed(words):
    """Deterministic stand-in for word vectors: 16 numbers from each word's SHA-256."""
    rows = []
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()[:16]
        rows.append([byte / 255.0 - 0.5 for byte in digest])
    return torch.tensor(rows)


def test_mtn_accuracy_exact_sets():
    assert mtn_accuracy([[0], [2], [1]], [[0], [1], [1]]) == pytest.approx(2 / 3)
    # 5T2 counts only when both correct options are chosen.
    assert mtn_accuracy([[1, 3], [0, 3]], [[3, 1], [1, 3]]) == 0.5
    with pytest.raises(ValueError, match="predictions"):
        mtn_accuracy([[0]], [[0], [1]])


def test_ndcg_hand_computed():
    # Likes in ranked order 10, 50, 0, 30, 20; ideal order 50, 30, 20, 10, 0.
    gains = [10, 50, 0, 30, 20]
    actual = 10 / math.log2(2) + 50 / math.log2(3) + 0 / math.log2(4) + 30 / math.log2(5) + 20 / math.log2(6)
    ideal = 50 / math.log2(2) + 30 / math.log2(3) + 20 / math.log2(4) + 10 / math.log2(5) + 0 / math.log2(6)
    assert dcg(gains) == pytest.approx(actual)
    assert ndcg(gains) == pytest.approx(actual / ideal)
    assert ndcg(gains, k=1) == pytest.approx(10 / 50)
    assert ndcg([50, 30, 20, 10, 0]) == pytest.approx(1.0)
    assert ndcg([0, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="gains"):
        ndcg([1, -1])


def test_semantic_distances_hand_computed():
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [-1.0, 0.0]}

    def embed(words):
        return torch.tensor([vectors[w] for w in words])

    # Cosine distances: a-b 1, a-c 2, b-c 1.
    assert pairwise_semantic_distance(["a", "b", "c"], embed) == pytest.approx(100 * 4 / 3)
    assert average_semantic_distance("a", ["b", "c"], embed) == pytest.approx(100 * 1.5)


def test_distance_with_hash_embedding_is_symmetric():
    words = ["cat", "umbrella", "volcano"]
    forward = pairwise_semantic_distance(words, hash_embed)
    backward = pairwise_semantic_distance(list(reversed(words)), hash_embed)
    assert forward == pytest.approx(backward)
    assert average_semantic_distance("cat", ["cat"], hash_embed) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.slow
def test_minilm_embedder_related_words_closer():
    from clot.metrics import minilm_embedder

    embed = minilm_embedder()
    assert embed(["cat"]).shape == (1, 384)
    near = average_semantic_distance("kitten", ["cat"], embed)
    far = average_semantic_distance("volcano", ["cat"], embed)
    assert near < far
