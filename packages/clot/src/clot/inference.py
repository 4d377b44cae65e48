"""CLoT inference (Algorithm 1 of arXiv 2312.02439) and the official demo's candidate listing.

Algorithm 1: draw n weakly associated conditions, each empty with probability rho and otherwise a random
noun of the noun set. Generate one candidate per condition, rank the candidates with the model and keep
the top two. Then the model chooses between those two. Ranking comes first because the model's
selection accuracy drops as the number of options grows.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import torch

from clot.backbone import HumorModel
from clot.instructions import sample_condition
from clot.skills import GameInput, generate_candidate, rank_options, select_options

__all__ = ["LeapResult", "demo_candidates", "leap_of_thought"]

logger = logging.getLogger(__name__)


@dataclass
class LeapResult:
    """Trace of one Algorithm 1 run.

    Attributes:
        conditions: The n conditions (``None`` for an empty one).
        candidates: The generated candidates, one per condition.
        ranking: Candidate indices from best to worst as the model ranked them.
        finalists: Candidate indices that reached the final selection.
        winner: Index of the chosen candidate.
    """

    conditions: list[str | None]
    candidates: list[str]
    ranking: list[int]
    finalists: list[int]
    winner: int
    extra: dict = field(default_factory=dict)

    @property
    def response(self) -> str:
        return self.candidates[self.winner]


def leap_of_thought(
    model: HumorModel,
    game: GameInput,
    nouns: list[str],
    *,
    num_candidates: int = 5,
    condition_empty_prob: float = 0.5,
    num_finalists: int = 2,
    seed: int = 0,
    generation_kwargs: dict | None = None,
) -> LeapResult:
    """Run Algorithm 1 and return the chosen response with its trace.

    Args:
        model: Generates, ranks and selects.
        game: The game input.
        nouns: Noun set S of the game's language, the source of weakly associated conditions.
        num_candidates: n, candidates to generate (5 in the paper).
        condition_empty_prob: rho, probability of an empty condition (0.5 in the paper).
        num_finalists: Candidates kept after ranking (2 in the paper).
        seed: Fixes conditions, templates and sampling.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}.")
    if not 1 <= num_finalists <= max(1, num_candidates):
        raise ValueError(f"num_finalists must be in [1, {num_candidates}], got {num_finalists}.")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    generation_kwargs = generation_kwargs or {}

    conditions = [
        sample_condition(nouns, rng, empty_prob=condition_empty_prob) for _ in range(num_candidates)
    ]
    candidates = [
        generate_candidate(model, game, condition, rng, **generation_kwargs) for condition in conditions
    ]

    if num_candidates == 1:
        return LeapResult(conditions, candidates, ranking=[0], finalists=[0], winner=0)

    ranking = rank_options(model, game, candidates, rng)
    finalists = ranking[:num_finalists]
    if len(finalists) == 1:
        winner = finalists[0]
    else:
        chosen = select_options(model, game, [candidates[i] for i in finalists], rng)[0]
        winner = finalists[chosen]
    logger.debug("leap of thought: %d candidates, ranking %s, winner %d", num_candidates, ranking, winner)
    return LeapResult(conditions, candidates, ranking=ranking, finalists=finalists, winner=winner)


def demo_candidates(
    model: HumorModel,
    game: GameInput,
    *,
    samples_per_template: int = 3,
    seed: int = 0,
    generation_kwargs: dict | None = None,
) -> list[str]:
    """List candidates the way the official Gradio demo does: no ranking and no selection.

    The demo samples every generation template ``samples_per_template`` times and shows the
    deduplicated responses as options. Its Chinese system prefix and Qwen-VL chat layout are not
    reproduced; the prompts are this package's generation templates.
    """
    from clot.templates import PromptParts, num_templates, render_prompt

    torch.manual_seed(seed)
    generation_kwargs = generation_kwargs or {}
    parts = PromptParts(game_type=game.game_type, question=game.question)
    seen: dict[str, None] = {}
    for template_id in range(num_templates("generation", game.language)):
        prompt = render_prompt("generation", game.language, template_id, parts)
        for _ in range(samples_per_template):
            text = model.generate(prompt, game.image, **generation_kwargs)
            if text and text not in seen:
                seen[text] = None
    return list(seen)
