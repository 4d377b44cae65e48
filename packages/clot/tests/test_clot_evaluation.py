import hashlib

import pytest
import torch

from clot.data import split_by_input
from clot.evaluation import (
    CGG_DISTRACTORS,
    build_cgg_questions,
    build_dat_questions,
    build_eval_choices,
    build_eval_rankings,
    evaluate_dat,
    evaluate_model,
)
from clot.instructions import DistractorSources


def _hash_embed(words):
    rows = [[byte / 255.0 - 0.5 for byte in hashlib.sha256(w.encode()).digest()[:16]] for w in words]
    return torch.tensor(rows)


def test_model_preferring_human_answers_scores_one(samples, scripted_model_class):
    train, test = split_by_input(samples, test_fraction=0.25, seed=0)
    # Unrelated distractors come from training inputs, which the scripted model does not prefer.
    sources = DistractorSources.from_samples(train, caption=lambda s: "plain caption")
    # Likes as preferences: the model ranks perfectly and always picks held-out human answers.
    preferences = {s.text: 100.0 + s.star for s in test}
    metrics = evaluate_model(scripted_model_class(["x"], preferences), test, sources, seed=0)
    for key in ("acc_2T1", "acc_3T1", "acc_4T1", "acc_5T2", "rank_ndcg", "rank_ndcg@1"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["avg"] == pytest.approx(1.0)


def test_model_preferring_distractors_scores_zero(samples, scripted_model_class):
    _, test = split_by_input(samples, test_fraction=0.25, seed=0)
    sources = DistractorSources.from_samples(test, caption=lambda s: "plain caption")
    preferences = {s.text: -100.0 for s in samples}
    metrics = evaluate_model(
        scripted_model_class(["x"], preferences), test, sources, formats=("3T1",), seed=0
    )
    assert metrics["acc_3T1"] == 0.0
    assert metrics["rank_ndcg"] < 1.0


def test_eval_question_counts(samples):
    _, test = split_by_input(samples, test_fraction=0.25, seed=0)
    sources = DistractorSources.from_samples(test)
    choices = build_eval_choices(test, sources, formats=("3T1", "5T2"), seed=0)
    assert len(choices) == 2 * len(test)
    assert {choice.mtn for choice in choices} == {"3T1", "5T2"}
    rankings = build_eval_rankings(test, seed=0)
    assert len(rankings) == 4
    assert all(len(ranking.options) == 5 for ranking in rankings)


def test_dat_questions_and_scores(scripted_model_class):
    vocabulary = [f"word{i}" for i in range(30)]
    questions = build_dat_questions(vocabulary, num_questions=5, seed=0)
    assert all(len(q.context) == 9 for q in questions)
    assert all(len(q.options) == 4 for q in questions)
    assert all(not set(q.context) & set(q.options) for q in questions)
    metrics = evaluate_dat(scripted_model_class(["x"], {}), questions, _hash_embed)
    assert 0.0 <= metrics["dat_asd"] <= metrics["dat_asd_oracle"] + 1e-6
    with pytest.raises(ValueError, match="distinct words"):
        build_dat_questions(vocabulary[:5])


def test_cgg_questions_four_options():
    questions = build_cgg_questions([("cloud1.png", "cat"), ("cloud2.png", "giraffe")], seed=0)
    assert len(questions) == 6
    for question in questions:
        assert len(question.options) == 4
        assert len(set(question.options)) == 4
        assert question.options[question.correct] in ("cat", "giraffe")
        others = [word for i, word in enumerate(question.options) if i != question.correct]
        assert set(others) <= set(CGG_DISTRACTORS)
    assert len({question.correct for question in questions}) > 1
