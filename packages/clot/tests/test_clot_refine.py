import json

import pytest

from clot.data import OogiriSample
from clot.refine import RefineConfig, choose_references, refine_input, self_refine

HUMAN = "The human answer."
CANDIDATES = ["cand one", "cand two", "cand three", "cand four", "cand five"]


def _reference(key="q", text=HUMAN, star=10):
    return OogiriSample(
        game_type="T2T", language="en", question=key, image=None, image_id=None, text=text, star=star
    )


def _config(**changes):
    return RefineConfig(seed=0, **changes)


def test_human_answer_wins_drops_sample(scripted_model_class):
    preferences = {
        "cand one": 1.0,
        "cand two": 5.0,
        "cand three": 4.0,
        "cand four": 0.0,
        "cand five": 2.0,
        HUMAN: 9.0,
    }
    model = scripted_model_class(CANDIDATES, preferences)
    outcome = refine_input(model, _reference(), ["cat", "dog"], _config())
    assert not outcome.kept
    assert outcome.reason == "human_won"
    assert outcome.instruction is None
    assert outcome.ranking == [1, 2, 4, 0, 3]
    assert sorted(outcome.options) == sorted(["cand two", "cand three", HUMAN])


def test_candidate_wins_keeps_sample(scripted_model_class):
    preferences = {
        "cand one": 1.0,
        "cand two": 5.0,
        "cand three": 8.0,
        "cand four": 0.0,
        "cand five": 2.0,
        HUMAN: 6.0,
    }
    model = scripted_model_class(CANDIDATES, preferences)
    outcome = refine_input(model, _reference(), ["cat", "dog"], _config())
    assert outcome.kept
    assert outcome.options[outcome.chosen] == "cand three"
    assert outcome.instruction.target == "cand three"
    assert outcome.instruction.task == "generation"
    assert outcome.instruction.condition is None
    assert "Question: q" in outcome.instruction.prompt
    assert outcome.instruction.meta["refined"] is True


def test_only_top_two_reach_selection(scripted_model_class):
    # "cand four" would beat the human answer but ranks last, so it never reaches the selection.
    preferences = {
        "cand one": 3.0,
        "cand two": 2.0,
        "cand three": 1.0,
        "cand four": 0.5,
        "cand five": 0.1,
        HUMAN: 2.5,
    }
    ranking_only = dict(preferences)
    model = scripted_model_class(CANDIDATES, ranking_only)
    outcome = refine_input(model, _reference(), [], _config())
    assert set(outcome.options) == {"cand one", "cand two", HUMAN}
    assert outcome.kept and outcome.instruction.target == "cand one"


def test_keep_condition_option(scripted_model_class):
    preferences = {text: float(i) for i, text in enumerate(CANDIDATES)}
    model = scripted_model_class(CANDIDATES, preferences)
    outcome = refine_input(
        model, _reference(), ["volcano"], _config(keep_condition=True, condition_empty_prob=0.0)
    )
    assert outcome.kept
    assert outcome.instruction.task == "generation_condition"
    assert outcome.instruction.condition == "volcano"
    assert "Condition: volcano" in outcome.instruction.prompt


def test_conditions_are_weak_nouns(scripted_model_class):
    model = scripted_model_class(CANDIDATES, {})
    outcome = refine_input(model, _reference(), ["volcano", "teapot"], _config(condition_empty_prob=0.0))
    assert set(outcome.conditions) <= {"volcano", "teapot"}
    assert len(model.generate_prompts) == 5
    assert all("Condition: " in prompt for prompt in model.generate_prompts)


def test_empty_candidates_dropped(scripted_model_class):
    model = scripted_model_class(["", "   "], {})
    outcome = refine_input(model, _reference(), [], _config())
    assert not outcome.kept
    assert outcome.reason == "no_candidates"


def test_self_refine_counts_and_resume(scripted_model_class, tmp_path):
    references = [_reference(key=f"q{i}", text=f"human {i}") for i in range(4)]
    # Odd inputs: the human answer is disliked, so a candidate wins.
    preferences = {f"human {i}": (9.0 if i % 2 == 0 else -9.0) for i in range(4)}
    preferences.update({text: float(j) for j, text in enumerate(CANDIDATES)})
    model = scripted_model_class(CANDIDATES, preferences)
    summary = self_refine(model, references, {"en": ["cat"]}, _config(), output_dir=tmp_path)
    assert (summary.kept, summary.dropped_human_won, summary.dropped_no_candidates) == (2, 2, 0)
    assert sorted(i.source_key for i in summary.instructions) == ["en/T2T/question:q1", "en/T2T/question:q3"]

    # Simulate an interrupted run: keep two finished inputs and a torn last line.
    lines = (tmp_path / "refine_progress.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "refine_progress.jsonl").write_text("\n".join(lines[:2]) + '\n{"key": ', encoding="utf-8")
    fresh_model = scripted_model_class(CANDIDATES, preferences)
    resumed = self_refine(fresh_model, references, {"en": ["cat"]}, _config(), output_dir=tmp_path)
    assert resumed.resumed == 2
    assert len(fresh_model.generate_prompts) == 2 * 5
    assert [i.to_dict() for i in resumed.instructions] == [i.to_dict() for i in summary.instructions]
    records = [json.loads(line) for line in (tmp_path / "refine_progress.jsonl").read_text().splitlines()]
    assert sorted(record["key"].rsplit(":", 1)[1] for record in records) == ["q0", "q1", "q2", "q3"]


def test_references_take_most_liked():
    samples = [
        _reference(text="low", star=1),
        _reference(text="high", star=7),
        _reference(key="other", text="x"),
    ]
    chosen = {s.question: s.text for s in choose_references(samples)}
    assert chosen == {"q": "high", "other": "x"}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_finalists"):
        RefineConfig(num_candidates=3, num_finalists=4)
    with pytest.raises(ValueError, match="num_candidates"):
        RefineConfig(num_candidates=1)
