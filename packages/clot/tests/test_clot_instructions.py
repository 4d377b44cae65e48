import random
from collections import Counter

import pytest

from clot.data import OogiriSample, group_by_input
from clot.instructions import (
    DistractorSources,
    InstructionSettings,
    build_choice_question,
    build_generation_instruction,
    build_instructions,
    build_mask_instruction,
    build_ranking_instruction,
    build_ranking_question,
    load_instructions,
    mask_answer,
    parse_mtn,
    sample_condition,
    save_instructions,
)
from clot.templates import option_letter


def _sample(text, *, key="q1", star=1, language="en", game_type="T2T"):
    return OogiriSample(
        game_type=game_type, language=language, question=key, image=None, image_id=None, text=text, star=star
    )


def test_condition_empty_fraction_near_half():
    rng = random.Random(0)
    draws = [sample_condition(["cat", "hat"], rng, empty_prob=0.5) for _ in range(20000)]
    empty = sum(draw is None for draw in draws) / len(draws)
    # Binomial standard deviation at n=20000 is 0.0035; 0.02 is more than five of them.
    assert abs(empty - 0.5) < 0.02
    assert set(draws) == {None, "cat", "hat"}


def test_condition_probability_follows_setting():
    rng = random.Random(1)
    draws = [sample_condition(["cat"], rng, empty_prob=0.2) for _ in range(20000)]
    assert abs(sum(draw is None for draw in draws) / len(draws) - 0.2) < 0.02


def test_condition_without_nouns_is_empty():
    rng = random.Random(0)
    assert all(sample_condition([], rng) is None for _ in range(100))


def test_generation_condition_is_answer_noun(samples, extractors):
    rng = random.Random(0)
    tasks = Counter()
    for _ in range(5):
        for sample in samples:
            instruction = build_generation_instruction(sample, extractors[sample.language], rng)
            tasks[instruction.task] += 1
            assert instruction.target == sample.text
            if instruction.task == "generation_condition":
                assert instruction.condition in extractors[sample.language](sample.text)
                assert instruction.condition.lower() in sample.text.lower()
                assert instruction.condition in instruction.prompt
            else:
                assert instruction.condition is None
    share = tasks["generation"] / sum(tasks.values())
    assert 0.4 < share < 0.6


def test_mask_target_restores_answer(samples, extractors):
    rng = random.Random(0)
    for sample in samples:
        masked = mask_answer(sample.text, sample.language, extractors[sample.language], rng)
        assert masked is not None
        masked_text, content = masked
        assert masked_text.count("[MASK]") == 1
        assert masked_text.replace("[MASK]", content, 1) == sample.text
        assert content


def test_mask_instruction_prompt_and_target(samples, extractors):
    sample = samples[0]
    instruction = build_mask_instruction(sample, extractors["en"], random.Random(3))
    assert instruction.task == "mask"
    assert instruction.meta["masked_answer"] in instruction.prompt
    assert instruction.meta["masked_answer"].replace("[MASK]", instruction.target) == sample.text


def test_mask_without_nouns_masks_span():
    masked_text, content = mask_answer("run quickly away", "en", lambda text: [], random.Random(0))
    assert content in ("run", "quickly", "away")
    assert masked_text.replace("[MASK]", content) == "run quickly away"


def test_parse_mtn():
    assert parse_mtn("3T1") == (3, 1)
    assert parse_mtn("5T2") == (5, 2)
    for bad in ("3t1", "2T2", "T1", "1T0"):
        with pytest.raises(ValueError, match="mTn"):
            parse_mtn(bad)


@pytest.mark.parametrize("mtn", ["2T1", "3T1", "4T1", "5T2", "6T2"])
def test_choice_question_counts(samples, mtn):
    m, n = parse_mtn(mtn)
    groups = group_by_input(samples)
    sources = DistractorSources.from_samples(samples, caption=lambda s: "a plain caption", rewrite=None)
    rng = random.Random(0)
    positions = Counter()
    for sample in samples[:20]:
        others = [o.text for o in groups[sample.input_key] if o is not sample]
        question = build_choice_question(sample, mtn, sources, rng, other_correct=others)
        assert len(question.options) == m
        assert len(set(question.options)) == m
        assert len(question.correct) == n
        assert sample.text in [question.options[i] for i in question.correct]
        correct_texts = {question.options[i] for i in question.correct}
        assert correct_texts <= {o.text for o in groups[sample.input_key]}
        assert [question.kinds[i] for i in question.correct] == ["gtr"] * n
        positions[question.options.index(sample.text)] += 1
    # The options are shuffled, so the human answer is not always in one place.
    assert len(positions) > 1


def test_choice_distractor_kinds_in_paper_order(samples):
    groups = group_by_input(samples)
    sources = DistractorSources.from_samples(
        samples, caption=lambda s: "caption text", rewrite=lambda s, rng: s.text + " (rewritten)"
    )
    sample = samples[0]
    others = [o.text for o in groups[sample.input_key] if o is not sample]
    expected = {
        "2T1": ["caption"],
        "3T1": ["caption", "unrelated"],
        "4T1": ["caption", "unrelated", "rewrite"],
    }
    for mtn, kinds in expected.items():
        question = build_choice_question(sample, mtn, sources, random.Random(0), other_correct=others)
        assert sorted(k for k in question.kinds if k != "gtr") == sorted(kinds)
    question = build_choice_question(sample, "5T2", sources, random.Random(0), other_correct=others)
    assert sorted(question.kinds) == ["caption", "gtr", "gtr", "rewrite", "unrelated"]


def test_missing_caption_falls_back_to_unrelated(samples):
    sources = DistractorSources.from_samples(samples)
    question = build_choice_question(samples[0], "4T1", sources, random.Random(0))
    assert question.kinds.count("unrelated") == 3


def test_choice_needs_second_answer_for_5t2():
    lone = _sample("only answer", key="lonely")
    sources = DistractorSources.from_samples([lone, _sample("x", key="q2"), _sample("y", key="q3")])
    assert build_choice_question(lone, "5T2", sources, random.Random(0)) is None


def test_ranking_orders_by_likes():
    group = [_sample(f"answer {i}", star=star) for i, star in enumerate([5, 50, 20, 40, 10, 30])]
    chosen, order = build_ranking_question(group, random.Random(0), size=5)
    stars = [chosen[i].star for i in order]
    assert stars == sorted(stars, reverse=True)
    assert len(chosen) == 5


def test_ranking_instruction_target():
    group = [_sample(f"answer {i}", star=star) for i, star in enumerate([5, 50, 20, 40, 10])]
    instruction = build_ranking_instruction(group, random.Random(0))
    options = instruction.prompt.split("\n")[-5:]
    letter_of = {line[3:]: line[0] for line in options}
    expected = " ".join(
        f"{rank}. {letter_of[text]}. {text}"
        for rank, text in enumerate(["answer 1", "answer 3", "answer 2", "answer 4", "answer 0"], start=1)
    )
    assert instruction.target == expected


def test_ranking_needs_five_rated():
    group = [_sample(f"answer {i}", star=None if i > 2 else 3) for i in range(6)]
    assert build_ranking_question(group, random.Random(0)) is None


def test_build_instructions_deterministic(samples, extractors, tmp_path):
    first = build_instructions(samples, extractors, seed=7)
    second = build_instructions(samples, extractors, seed=7)
    other = build_instructions(samples, extractors, seed=8)
    assert [i.to_dict() for i in first] == [i.to_dict() for i in second]
    assert [i.to_dict() for i in first] != [i.to_dict() for i in other]
    path = save_instructions(tmp_path / "instructions.jsonl", first)
    assert [i.to_dict() for i in load_instructions(path)] == [i.to_dict() for i in first]


def test_build_instructions_covers_tasks(samples, extractors):
    instructions = build_instructions(samples, extractors, seed=0)
    tasks = Counter(i.task for i in instructions)
    assert tasks["generation"] + tasks["generation_condition"] == len(samples)
    assert tasks["mask"] == sum(s.game_type in ("I2T", "T2T") for s in samples)
    assert tasks["selection"] == len(samples)
    assert tasks["ranking"] == len(group_by_input(samples))
    languages = {(i.task, i.language) for i in instructions}
    for task in tasks:
        for language in ("en", "zh", "ja"):
            assert (task, language) in languages
    for instruction in instructions:
        if instruction.task == "selection":
            for index in instruction.meta["correct"]:
                assert f"{option_letter(index)}. " in instruction.target


def test_build_instructions_missing_extractor(samples):
    with pytest.raises(ValueError, match="noun extractor"):
        build_instructions(samples, {"en": lambda t: []})


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="condition_empty_prob"):
        InstructionSettings(condition_empty_prob=1.5)
    with pytest.raises(ValueError, match="mTn"):
        InstructionSettings(selection_formats=("three",))
