"""Held-out evaluation: mTn choice accuracy, ranking NDCG and the divergent association task.

Choice questions follow the test protocol of "Let's Think Outside the Box" (arXiv 2312.02439, section 7).
2T1 pits the human answer against a caption of the image. 3T1 adds a response to another input, and 4T1
a rewrite of the human answer. 5T2 adds a second human answer, and both must be chosen. Ranking orders five responses to
one input, with like counts as NDCG gains. The model answers every question through its option-letter
log-likelihoods (see :mod:`clot.skills`).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from clot.backbone import HumorModel
from clot.data import OogiriSample, group_by_input
from clot.instructions import (
    MTN_FORMATS,
    ChoiceQuestion,
    DistractorSources,
    build_choice_question,
    build_ranking_question,
    parse_mtn,
)
from clot.metrics import Embedder, average_semantic_distance, mtn_accuracy, ndcg
from clot.skills import GameInput, rank_options, select_options
from clot.templates import OUTSIDE_THE_BOX, format_options, option_letter
from qcore.progress import progress

__all__ = [
    "CGG_CLASSES",
    "CGG_DISTRACTORS",
    "CggQuestion",
    "DatQuestion",
    "EvalChoice",
    "EvalRanking",
    "build_cgg_questions",
    "build_dat_questions",
    "build_eval_choices",
    "build_eval_rankings",
    "evaluate_choices",
    "evaluate_dat",
    "evaluate_model",
    "evaluate_rankings",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalChoice:
    """One held-out mTn question."""

    game: GameInput
    mtn: str
    question: ChoiceQuestion


@dataclass(frozen=True)
class EvalRanking:
    """One held-out ranking question: options and their like counts."""

    game: GameInput
    options: tuple[str, ...]
    stars: tuple[int, ...]


@dataclass(frozen=True)
class DatQuestion:
    """A divergent-association question: pick the option least related to the context words."""

    context: tuple[str, ...]
    options: tuple[str, ...]


def build_eval_choices(
    samples: list[OogiriSample],
    sources: DistractorSources,
    *,
    formats: Sequence[str] = MTN_FORMATS,
    seed: int = 0,
) -> list[EvalChoice]:
    """Build one question per held-out response and format; formats that cannot be built are skipped."""
    rng = random.Random(seed)
    groups = group_by_input(samples)
    questions = []
    for name in formats:
        parse_mtn(name)
        for sample in samples:
            others = [other.text for other in groups[sample.input_key] if other is not sample]
            question = build_choice_question(sample, name, sources, rng, other_correct=others)
            if question is not None:
                questions.append(EvalChoice(GameInput.from_sample(sample), name, question))
    return questions


def build_eval_rankings(samples: list[OogiriSample], *, size: int = 5, seed: int = 0) -> list[EvalRanking]:
    """Build one ranking question per held-out input that has ``size`` responses with likes."""
    rng = random.Random(seed)
    rankings = []
    groups = group_by_input(samples)
    for key in sorted(groups):
        drawn = build_ranking_question(groups[key], rng, size=size)
        if drawn is None:
            continue
        chosen, _ = drawn
        rankings.append(
            EvalRanking(
                game=GameInput.from_sample(chosen[0]),
                options=tuple(sample.text for sample in chosen),
                stars=tuple(sample.star for sample in chosen),
            )
        )
    return rankings


def evaluate_choices(model: HumorModel, questions: list[EvalChoice], *, seed: int = 0) -> dict[str, float]:
    """Return accuracy per mTn format (``acc_3T1``) and per game type and format (``I2T_acc_3T1``)."""
    rng = random.Random(seed)
    predictions: dict[str, list[list[int]]] = defaultdict(list)
    answers: dict[str, list[list[int]]] = defaultdict(list)
    for item in progress(questions, desc="choice questions"):
        chosen = select_options(
            model, item.game, item.question.options, rng, num_correct=item.question.num_correct
        )
        for key in (f"acc_{item.mtn}", f"{item.game.game_type}_acc_{item.mtn}"):
            predictions[key].append(chosen)
            answers[key].append(list(item.question.correct))
    return {key: mtn_accuracy(predictions[key], answers[key]) for key in sorted(predictions)}


def evaluate_rankings(model: HumorModel, rankings: list[EvalRanking], *, seed: int = 0) -> dict[str, float]:
    """Return mean NDCG over all positions (``rank_ndcg``) and at the first position (``rank_ndcg@1``).

    The paper reports NDCG for the top-1 position, which reads as NDCG@1 but is ambiguous; both are given.
    """
    if not rankings:
        return {}
    rng = random.Random(seed)
    full, first = [], []
    for item in progress(rankings, desc="ranking questions"):
        order = rank_options(model, item.game, item.options, rng)
        gains = [float(item.stars[i]) for i in order]
        full.append(ndcg(gains))
        first.append(ndcg(gains, k=1))
    return {"rank_ndcg": sum(full) / len(full), "rank_ndcg@1": sum(first) / len(first)}


def evaluate_model(
    model: HumorModel,
    test_samples: list[OogiriSample],
    sources: DistractorSources,
    *,
    formats: Sequence[str] = MTN_FORMATS,
    seed: int = 0,
) -> dict[str, float]:
    """Evaluate choice accuracy and ranking NDCG on held-out responses.

    ``avg`` is the mean of 3T1, 4T1 and 5T2 accuracy and ranking NDCG where present, like the
    paper's "Avg" column.
    """
    metrics = evaluate_choices(
        model, build_eval_choices(test_samples, sources, formats=formats, seed=seed), seed=seed
    )
    metrics.update(evaluate_rankings(model, build_eval_rankings(test_samples, seed=seed), seed=seed))
    parts = [metrics[key] for key in ("acc_3T1", "acc_4T1", "acc_5T2", "rank_ndcg") if key in metrics]
    if parts:
        metrics["avg"] = sum(parts) / len(parts)
    return metrics


def build_dat_questions(
    vocabulary: Sequence[str],
    *,
    num_questions: int = 20,
    num_context: int = 9,
    num_options: int = 4,
    seed: int = 0,
) -> list[DatQuestion]:
    """Draw DAT choice questions: ``num_context`` context words and ``num_options`` other words each.

    The paper's format is 9 context words and 4 options.
    """
    words = sorted(set(vocabulary))
    if len(words) < num_context + num_options:
        raise ValueError(
            f"need at least {num_context + num_options} distinct words for DAT, got {len(words)}."
        )
    rng = random.Random(seed)
    questions = []
    for _ in range(num_questions):
        drawn = rng.sample(words, num_context + num_options)
        questions.append(DatQuestion(context=tuple(drawn[:num_context]), options=tuple(drawn[num_context:])))
    return questions


CGG_CLASSES = ("cat", "human", "giraffe")
CGG_DISTRACTORS = (
    "chair",
    "cup",
    "sing",
    "jump",
    "rap",
    "basketball",
    "computer",
    "egg",
    "phone",
    "house",
    "lamp",
    "shoes",
)


@dataclass(frozen=True)
class CggQuestion:
    """A cloud guessing game question: which word names the shape hidden in a cloud image."""

    image: str
    options: tuple[str, ...]
    correct: int


def build_cgg_questions(
    images: Sequence[tuple[str, str]],
    *,
    questions_per_image: int = 3,
    distractors: Sequence[str] = CGG_DISTRACTORS,
    num_options: int = 4,
    seed: int = 0,
) -> list[CggQuestion]:
    """Build 4T1 cloud guessing questions: the true class and three words drawn from ``distractors``.

    The paper uses three questions per cloud image, with distractors drawn from twelve unrelated words.
    Generating the cloud images needs a ControlNet model and is not part of this package.

    Args:
        images: (image path, true class) pairs.
    """
    if len(distractors) < num_options - 1:
        raise ValueError(f"need at least {num_options - 1} distractor words, got {len(distractors)}.")
    rng = random.Random(seed)
    questions = []
    for image, label in images:
        pool = [word for word in distractors if word != label]
        for _ in range(questions_per_image):
            options = [label, *rng.sample(pool, num_options - 1)]
            rng.shuffle(options)
            questions.append(CggQuestion(image=image, options=tuple(options), correct=options.index(label)))
    return questions


def _dat_prompt(question: DatQuestion) -> str:
    return (
        f"Words: {', '.join(question.context)}.\nSelect the option least relevant to the current set of words. "
        f"{OUTSIDE_THE_BOX['en']} The answer is\nOptions:\n{format_options(list(question.options))}"
    )


def evaluate_dat(model: HumorModel, questions: list[DatQuestion], embed: Embedder) -> dict[str, float]:
    """Return the mean ASD of the model's choices (``dat_asd``) and of the best possible choices.

    The model picks by the log-likelihood of each option letter. ``dat_asd_oracle`` is the mean ASD of
    the option farthest from the context, an upper bound.
    """
    chosen_scores, oracle_scores = [], []
    for question in questions:
        letters = [f"{option_letter(i)}." for i in range(len(question.options))]
        scores = model.score_continuations(_dat_prompt(question), None, letters)
        choice = max(range(len(letters)), key=lambda i: scores[i])
        distances = [
            average_semantic_distance(option, question.context, embed) for option in question.options
        ]
        chosen_scores.append(distances[choice])
        oracle_scores.append(max(distances))
    return {
        "dat_asd": sum(chosen_scores) / len(chosen_scores),
        "dat_asd_oracle": sum(oracle_scores) / len(oracle_scores),
    }
