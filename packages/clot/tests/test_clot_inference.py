import pytest

from clot.inference import demo_candidates, leap_of_thought
from clot.skills import GameInput

GAME = GameInput(game_type="T2T", language="en", question="Why did the robot quit?")
CANDIDATES = ["alpha", "bravo", "charlie", "delta", "echo"]


def test_algorithm_one_ranks_then_selects(scripted_model_class):
    # Ranking puts delta and bravo on top; the final 2-way choice picks bravo.
    preferences = {"alpha": 1.0, "bravo": 4.0, "charlie": 0.0, "delta": 5.0, "echo": 2.0}
    model = scripted_model_class(CANDIDATES, preferences)

    class FlipFinal(type(model)):
        def score_continuations(self, prompt, image, continuations):
            scores = super().score_continuations(prompt, image, continuations)
            return [-s for s in scores] if len(continuations) == 2 else scores

    model = FlipFinal(CANDIDATES, preferences)
    result = leap_of_thought(model, GAME, ["cat", "dog"], seed=0)
    assert result.candidates == CANDIDATES
    assert result.ranking == [3, 1, 4, 0, 2]
    assert result.finalists == [3, 1]
    assert result.winner == 1
    assert result.response == "bravo"
    assert len(model.generate_prompts) == 5
    assert len(model.score_prompts) == 2


def test_algorithm_one_returns_a_candidate(scripted_model_class):
    model = scripted_model_class(CANDIDATES, {"echo": 3.0})
    for seed in range(5):
        result = leap_of_thought(model, GAME, ["cat"], seed=seed)
        assert result.response in CANDIDATES
        assert result.winner in result.finalists


def test_algorithm_one_conditions(scripted_model_class):
    model = scripted_model_class(CANDIDATES, {})
    result = leap_of_thought(model, GAME, ["teapot"], condition_empty_prob=0.0, seed=1)
    assert result.conditions == ["teapot"] * 5
    assert all("Condition: teapot" in prompt for prompt in model.generate_prompts)
    result = leap_of_thought(model, GAME, ["teapot"], condition_empty_prob=1.0, seed=1)
    assert result.conditions == [None] * 5


def test_algorithm_one_rejects_bad_counts(scripted_model_class):
    model = scripted_model_class(CANDIDATES, {})
    with pytest.raises(ValueError, match="num_candidates"):
        leap_of_thought(model, GAME, [], num_candidates=0)
    with pytest.raises(ValueError, match="num_finalists"):
        leap_of_thought(model, GAME, [], num_candidates=3, num_finalists=4)


def test_demo_lists_deduplicated_candidates(scripted_model_class):
    model = scripted_model_class(["same", "same", "other"], {})
    assert demo_candidates(model, GAME, samples_per_template=3) == ["same", "other"]
    assert len(model.generate_prompts) == 9
    assert len(model.score_prompts) == 0
