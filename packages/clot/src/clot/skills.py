"""The three model skills that CLoT combines: generate, rank and select.

Ranking and selection prompts are rendered with the stage-1 templates, and the model's choice is read
from the log-likelihood it gives each option letter: ``"1. X."`` for the first place of a ranking and
``"X."`` for a selection. Reading letters this way always yields a valid answer, also from a model whose
free text does not parse.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from clot.backbone import HumorModel
from clot.data import OogiriSample
from clot.templates import PromptParts, num_templates, option_letter, render_prompt

__all__ = ["GameInput", "generate_candidate", "generation_prompt", "rank_options", "select_options"]


@dataclass(frozen=True)
class GameInput:
    """One Oogiri game input: an image, a question, or both.

    Attributes:
        game_type: ``I2T``, ``T2T`` or ``IT2T``.
        language: ``en``, ``zh`` or ``ja``.
        question: Question of a T2T game.
        image: Path of the image of an I2T or IT2T game.
    """

    game_type: str
    language: str
    question: str | None = None
    image: str | None = None

    @classmethod
    def from_sample(cls, sample: OogiriSample) -> GameInput:
        image = str(sample.image) if sample.image is not None else None
        return cls(
            game_type=sample.game_type, language=sample.language, question=sample.question, image=image
        )


def generation_prompt(game: GameInput, condition: str | None, rng: random.Random) -> tuple[str, int]:
    """Render a generation prompt, with the condition template when ``condition`` is set.

    Returns:
        (prompt, template id).
    """
    task = "generation" if condition is None else "generation_condition"
    template_id = rng.randrange(num_templates(task, game.language))
    parts = PromptParts(game_type=game.game_type, question=game.question, condition=condition)
    return render_prompt(task, game.language, template_id, parts), template_id


def generate_candidate(
    model: HumorModel,
    game: GameInput,
    condition: str | None,
    rng: random.Random,
    **generation_kwargs,
) -> str:
    """Generate one response to ``game``, asking for ``condition`` when it is set."""
    prompt, _ = generation_prompt(game, condition, rng)
    return model.generate(prompt, game.image, **generation_kwargs)


def rank_options(model: HumorModel, game: GameInput, options: Sequence[str], rng: random.Random) -> list[int]:
    """Rank ``options`` with the model's ranking skill.

    Returns:
        Option indices from funniest to least funny, by the log-likelihood of ``"1. X."`` for each letter.
        Ties keep option order.
    """
    template_id = rng.randrange(num_templates("ranking", game.language))
    parts = PromptParts(game_type=game.game_type, question=game.question, options=tuple(options))
    prompt = render_prompt("ranking", game.language, template_id, parts)
    letters = [f"1. {option_letter(i)}." for i in range(len(options))]
    scores = model.score_continuations(prompt, game.image, letters)
    return sorted(range(len(options)), key=lambda i: -scores[i])


def select_options(
    model: HumorModel,
    game: GameInput,
    options: Sequence[str],
    rng: random.Random,
    *,
    num_correct: int = 1,
) -> list[int]:
    """Pick the ``num_correct`` funniest options with the model's selection skill.

    Returns:
        The chosen option indices in letter order, by the log-likelihood of ``"X."`` for each letter.
    """
    template_id = rng.randrange(num_templates("selection", game.language))
    parts = PromptParts(
        game_type=game.game_type, question=game.question, options=tuple(options), num_correct=num_correct
    )
    prompt = render_prompt("selection", game.language, template_id, parts)
    letters = [f"{option_letter(i)}." for i in range(len(options))]
    scores = model.score_continuations(prompt, game.image, letters)
    best = sorted(range(len(options)), key=lambda i: -scores[i])[:num_correct]
    return sorted(best)
