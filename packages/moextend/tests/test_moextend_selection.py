"""Layer selection on hand-made usage counts, usage counting and the loss terms, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from moextend.losses import answer_cross_entropy, load_balancing_loss
from moextend.selection import count_expert_usage, select_layers, usage_shift

# Four layers, four experts. Fractions before are uniform; after probing layers 1 and 3 shift most.
BEFORE = torch.tensor([[25.0, 25.0, 25.0, 25.0]] * 4)
AFTER = torch.tensor(
    [
        [26.0, 24.0, 25.0, 25.0],  # small shift
        [10.0, 60.0, 20.0, 10.0],  # large shift, most used: expert 1
        [25.0, 25.0, 25.0, 25.0],  # no shift
        [5.0, 15.0, 30.0, 50.0],  # large shift, most used: expert 3
    ]
)


def test_usage_shift_uses_sample_std():
    shift = usage_shift(BEFORE, AFTER)
    differences = [0.01, -0.01, 0.0, 0.0]
    mean = sum(differences) / 4
    expected = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3)
    assert shift[0].item() == pytest.approx(expected, rel=1e-6)
    assert shift[2].item() == 0.0


def test_select_layers_top_half_and_sources():
    plan = select_layers(BEFORE, AFTER)
    assert plan.layers == [1, 3]
    assert plan.source_experts == [[1], [3]]


def test_select_layers_two_new_experts():
    plan = select_layers(BEFORE, AFTER, layer_indices=[10, 11, 12, 13], num_layers=3, num_new_experts=2)
    assert plan.layers == [10, 11, 13]
    assert plan.source_experts == [[0, 2], [1, 2], [3, 2]]


def test_select_layers_rejects_bad_counts():
    with pytest.raises(ValueError, match="num_layers"):
        select_layers(BEFORE, AFTER, num_layers=5)
    with pytest.raises(ValueError, match="at least one counted token"):
        select_layers(BEFORE, torch.zeros(4, 4))


def test_count_usage_descending_and_legacy_ascending():
    logits = {0: torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [5.0, 0.0, 4.0, 1.0]])}
    mask = torch.tensor([[1, 1, 0]])
    descending = count_expert_usage(logits, top_k=2, attention_mask=mask)[0]
    assert descending.tolist() == [1.0, 1.0, 1.0, 1.0]
    all_tokens = count_expert_usage(logits, top_k=2)[0]
    assert all_tokens.tolist() == [2.0, 1.0, 2.0, 1.0]
    legacy = count_expert_usage(logits, top_k=2, legacy_ascending_argsort=True)[0]
    assert legacy.tolist() == [1.0, 2.0, 1.0, 2.0]


def test_legacy_counts_change_the_source_expert():
    logits = {0: torch.tensor([[4.0, 3.0, 0.0, -2.0]] * 5), 1: torch.tensor([[0.0, 0.0, 0.0, 0.0]] * 5)}
    before = count_expert_usage({0: torch.zeros(5, 4), 1: torch.zeros(5, 4)}, top_k=2)
    after = count_expert_usage(logits, top_k=2)
    legacy_before = count_expert_usage(
        {0: torch.zeros(5, 4), 1: torch.zeros(5, 4)}, top_k=2, legacy_ascending_argsort=True
    )
    legacy_after = count_expert_usage(logits, top_k=2, legacy_ascending_argsort=True)
    plan = select_layers(torch.stack([before[0], before[1]]), torch.stack([after[0], after[1]]), num_layers=1)
    legacy = select_layers(
        torch.stack([legacy_before[0], legacy_before[1]]),
        torch.stack([legacy_after[0], legacy_after[1]]),
        num_layers=1,
    )
    assert plan.source_experts == [[0]]
    assert legacy.source_experts == [[2]]


def test_load_balancing_hand_computed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]))
    # Top-1: token 0 -> expert 0, token 1 -> expert 2. f = [0.5, 0, 0.5]; P = [0.3, 0.25, 0.45].
    expected_layer = 0.5 * 0.3 + 0.5 * 0.45
    loss = load_balancing_loss({0: logits}, top_k=1, scale=3)
    assert loss.item() == pytest.approx(3 * expected_layer, rel=1e-6)
    masked = load_balancing_loss({0: logits}, top_k=1, attention_mask=torch.tensor([[1, 0]]), scale=3)
    assert masked.item() == pytest.approx(3 * (1.0 * 0.5), rel=1e-6)


def test_load_balancing_mixed_expert_counts_average_over_layers():
    four = torch.zeros(6, 4)
    five = torch.zeros(6, 5)
    loss = load_balancing_loss({0: four, 1: five}, top_k=2)
    # Uniform probabilities: sum_e f_e P_e = top_k / E per layer; scale = max E = 5.
    expected = 5 * (2 / 4 + 2 / 5) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_answer_cross_entropy_ignores_masked_positions():
    logits = torch.zeros(1, 4, 3)
    logits[0, 1, 2] = 2.0
    labels = torch.tensor([[-100, -100, 2, -100]])
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2))
    assert answer_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    empty = answer_cross_entropy(logits.requires_grad_(), torch.full((1, 4), -100))
    assert empty.item() == 0.0
    empty.backward()
