import pytest

from clot.templates import (
    OUTSIDE_THE_BOX,
    TASKS,
    PromptParts,
    format_ranking_target,
    format_selection_target,
    num_templates,
    render_prompt,
)

LANGUAGES = ("en", "zh", "ja")


def _parts(task: str, game_type: str) -> PromptParts:
    question = "Why is the sky blue?" if game_type == "T2T" else None
    if task == "generation_condition":
        return PromptParts(game_type=game_type, question=question, condition="umbrella")
    if task == "mask":
        return PromptParts(game_type=game_type, question=question, masked_answer="The [MASK] did it.")
    if task == "selection":
        return PromptParts(game_type=game_type, question=question, options=("x", "y", "z"), num_correct=1)
    if task == "ranking":
        return PromptParts(game_type=game_type, question=question, options=("a", "b", "c", "d", "e"))
    return PromptParts(game_type=game_type, question=question)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("task", TASKS)
def test_every_template_renders(task, language):
    assert num_templates(task, language) == 3
    for template_id in range(3):
        for game_type in ("I2T", "T2T", "IT2T"):
            prompt = render_prompt(task, language, template_id, _parts(task, game_type))
            assert OUTSIDE_THE_BOX[language] in prompt
            assert "{" not in prompt
            assert "}" not in prompt


def test_english_prompts_contain_phrase():
    for task in TASKS:
        prompt = render_prompt(task, "en", 0, _parts(task, "I2T"))
        assert "Let's think outside the box." in prompt


def test_templates_differ_within_task():
    for language in LANGUAGES:
        for task in TASKS:
            prompts = {render_prompt(task, language, i, _parts(task, "I2T")) for i in range(3)}
            assert len(prompts) == 3


def test_parts_appear_in_prompt():
    prompt = render_prompt("generation_condition", "en", 1, _parts("generation_condition", "T2T"))
    assert "Question: Why is the sky blue?" in prompt
    assert "Condition: umbrella" in prompt
    prompt = render_prompt("mask", "zh", 0, _parts("mask", "I2T"))
    assert "回答：The [MASK] did it." in prompt
    prompt = render_prompt("ranking", "ja", 2, _parts("ranking", "IT2T"))
    assert "A. a" in prompt
    assert "E. e" in prompt
    assert "5" in prompt


def test_selection_quantifier_follows_count():
    one = render_prompt(
        "selection", "en", 0, PromptParts(game_type="I2T", options=tuple("abcde"), num_correct=1)
    )
    two = render_prompt(
        "selection", "en", 0, PromptParts(game_type="I2T", options=tuple("abcde"), num_correct=2)
    )
    assert "the most humorous" in one
    assert "the 2 most humorous" in two
    assert "5 options" in two


def test_targets_format():
    assert format_selection_target(["x", "y", "z"], [2, 0]) == "A. x\nC. z"
    assert format_ranking_target(["x", "y", "z"], [1, 2, 0]) == "1. B. y 2. C. z 3. A. x"


@pytest.mark.parametrize(
    ("task", "parts", "message"),
    [
        ("generation_condition", PromptParts(game_type="I2T"), "condition"),
        ("mask", PromptParts(game_type="I2T", masked_answer="no mask here"), "MASK"),
        ("selection", PromptParts(game_type="I2T", options=("a",)), "at least 2"),
        ("selection", PromptParts(game_type="I2T", options=("a", "b"), num_correct=2), "num_correct"),
        ("generation", PromptParts(game_type="V2T"), "game type"),
    ],
)
def test_invalid_parts_rejected(task, parts, message):
    with pytest.raises(ValueError, match=message):
        render_prompt(task, "en", 0, parts)


def test_unknown_task_language_template():
    with pytest.raises(ValueError, match="unknown task"):
        render_prompt("joke", "en", 0, PromptParts(game_type="I2T"))
    with pytest.raises(ValueError, match="unknown language"):
        render_prompt("generation", "fr", 0, PromptParts(game_type="I2T"))
    with pytest.raises(ValueError, match="template_id"):
        render_prompt("generation", "en", 3, PromptParts(game_type="I2T"))
