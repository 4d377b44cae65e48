"""Instruction builders of associable instruction tuning (AIT).

Implements stage 1 data of "Let's Think Outside the Box" (arXiv 2312.02439): associable generation with
and without a condition word, masked instructions, selection questions (mTn: choose n correct out of m)
and ranking by likes. Every builder takes a ``random.Random`` so the output is fixed by a seed.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clot.data import OogiriSample, group_by_input
from clot.nouns import NounExtractor
from clot.templates import (
    PromptParts,
    format_ranking_target,
    format_selection_target,
    num_templates,
    render_prompt,
)

__all__ = [
    "MTN_FORMATS",
    "ChoiceQuestion",
    "DistractorSources",
    "Instruction",
    "InstructionSettings",
    "build_choice_question",
    "build_generation_instruction",
    "build_instructions",
    "build_mask_instruction",
    "build_ranking_instruction",
    "build_ranking_question",
    "build_selection_instruction",
    "load_instructions",
    "mask_answer",
    "parse_mtn",
    "sample_condition",
    "save_instructions",
    "swap_noun_rewriter",
]

logger = logging.getLogger(__name__)

MTN_FORMATS = ("2T1", "3T1", "4T1", "5T2")
MASK_TOKEN = "[MASK]"

CaptionProvider = Callable[[OogiriSample], "str | None"]
RewriteProvider = Callable[[OogiriSample, random.Random], "str | None"]


@dataclass
class Instruction:
    """One instruction-tuning record.

    Attributes:
        task: ``generation``, ``generation_condition``, ``mask``, ``selection`` or ``ranking``.
        language: ``en``, ``zh`` or ``ja``.
        game_type: ``I2T``, ``T2T`` or ``IT2T``.
        prompt: The rendered user turn, without the image.
        target: The response the model learns.
        image: Path of the input image, or ``None``.
        condition: Condition word of a conditional generation, or ``None``.
        template_id: Index of the template used.
        source_key: Input key of the Oogiri-GO sample it came from.
        meta: Task details, such as option kinds, correct letters or stars.
    """

    task: str
    language: str
    game_type: str
    prompt: str
    target: str
    image: str | None = None
    condition: str | None = None
    template_id: int = 0
    source_key: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> Instruction:
        return cls(**record)


@dataclass(frozen=True)
class InstructionSettings:
    """Settings of the stage-1 instruction builder.

    Attributes:
        condition_empty_prob: Probability rho_c that a generation instruction has no condition word (0.5
            in the paper).
        selection_formats: mTn formats drawn uniformly for selection instructions. The paper writes its
            templates for 3T1 and varies only counts; training on all four is our choice.
        mask_types: Game types that get masked instructions (I2T and T2T in the paper).
        ranking_size: Responses per ranking instruction (5 in the paper).
        include_ranking: Build ranking instructions from inputs with enough responses that have likes.
    """

    condition_empty_prob: float = 0.5
    selection_formats: tuple[str, ...] = MTN_FORMATS
    mask_types: tuple[str, ...] = ("I2T", "T2T")
    ranking_size: int = 5
    include_ranking: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.condition_empty_prob <= 1.0:
            raise ValueError(f"condition_empty_prob must be in [0, 1], got {self.condition_empty_prob}.")
        for name in self.selection_formats:
            parse_mtn(name)
        if self.ranking_size < 2:
            raise ValueError(f"ranking_size must be >= 2, got {self.ranking_size}.")


@dataclass
class DistractorSources:
    """Where the wrong options of a selection question come from.

    The paper uses a BLIP-2 caption of the image, responses to other inputs and Qwen-14B rewrites of the
    ground-truth response. Captions and rewrites are injected callables that may return ``None``, for
    example for a text game without an image. A missing kind is replaced by a response to another input.

    Attributes:
        pool: Responses to draw unrelated answers from, per language.
        caption: Returns a plain caption of the sample's image, or ``None``.
        rewrite: Returns a rewrite of the sample's response, or ``None``.
    """

    pool: dict[str, list[OogiriSample]]
    caption: CaptionProvider | None = None
    rewrite: RewriteProvider | None = None

    @classmethod
    def from_samples(
        cls,
        samples: Iterable[OogiriSample],
        *,
        caption: CaptionProvider | None = None,
        rewrite: RewriteProvider | None = None,
    ) -> DistractorSources:
        pool: dict[str, list[OogiriSample]] = {}
        for sample in samples:
            pool.setdefault(sample.language, []).append(sample)
        return cls(pool=pool, caption=caption, rewrite=rewrite)

    def unrelated(self, sample: OogiriSample, rng: random.Random, exclude: set[str]) -> str | None:
        """Draw a response to a different input in the same language, or ``None`` when there is none."""
        candidates = [
            other.text
            for other in self.pool.get(sample.language, [])
            if other.input_key != sample.input_key and other.text not in exclude
        ]
        if not candidates:
            return None
        return rng.choice(sorted(set(candidates)))


@dataclass(frozen=True)
class ChoiceQuestion:
    """A selection question: options in shuffled order and the positions of the correct ones."""

    options: tuple[str, ...]
    correct: tuple[int, ...]
    kinds: tuple[str, ...]

    @property
    def num_correct(self) -> int:
        return len(self.correct)


def parse_mtn(name: str) -> tuple[int, int]:
    """Parse ``"3T1"`` into (options m, correct n)."""
    match = re.fullmatch(r"(\d+)T(\d+)", name)
    if match is None:
        raise ValueError(f"invalid mTn format {name!r}; expected e.g. 3T1 (m options, n correct).")
    m, n = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m <= 26:
        raise ValueError(f"invalid mTn format {name!r}: need 1 <= n < m <= 26.")
    return m, n


def sample_condition(nouns: list[str], rng: random.Random, *, empty_prob: float = 0.5) -> str | None:
    """Draw a condition word: ``None`` with probability ``empty_prob``, else a uniform noun from ``nouns``.

    An empty noun list always gives ``None``. Exactly one random number decides emptiness, so the empty
    fraction over many draws is ``empty_prob`` whenever nouns exist.
    """
    if rng.random() < empty_prob or not nouns:
        return None
    return rng.choice(nouns)


def _random_template(task: str, language: str, rng: random.Random) -> int:
    return rng.randrange(num_templates(task, language))


def _prompt_parts(sample: OogiriSample, **extra) -> PromptParts:
    return PromptParts(game_type=sample.game_type, question=sample.question, **extra)


def _image(sample: OogiriSample) -> str | None:
    return str(sample.image) if sample.image is not None else None


def build_generation_instruction(
    sample: OogiriSample,
    extract_nouns: NounExtractor,
    rng: random.Random,
    *,
    condition_empty_prob: float = 0.5,
) -> Instruction:
    """Build an associable generation instruction, with a condition word taken from the response.

    The condition is empty with probability ``condition_empty_prob``; otherwise it is a uniformly drawn
    noun of the ground-truth response, so the target contains it.
    """
    nouns = [
        noun for noun in extract_nouns(sample.text) if noun in sample.text or noun in sample.text.lower()
    ]
    condition = sample_condition(nouns, rng, empty_prob=condition_empty_prob)
    task = "generation" if condition is None else "generation_condition"
    template_id = _random_template(task, sample.language, rng)
    prompt = render_prompt(task, sample.language, template_id, _prompt_parts(sample, condition=condition))
    return Instruction(
        task=task,
        language=sample.language,
        game_type=sample.game_type,
        prompt=prompt,
        target=sample.text,
        image=_image(sample),
        condition=condition,
        template_id=template_id,
        source_key=sample.input_key,
        meta={"star": sample.star},
    )


def _tokens_for_masking(text: str, language: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of maskable units: words for English, runs of two characters otherwise."""
    if language == "en":
        return [match.span() for match in re.finditer(r"[A-Za-z][A-Za-z'-]*", text)]
    spans = []
    for match in re.finditer(r"[^\s\W]+", text):
        start, end = match.span()
        for position in range(start, end - 1, 2):
            spans.append((position, position + 2))
    return spans


def mask_answer(
    text: str, language: str, extract_nouns: NounExtractor, rng: random.Random
) -> tuple[str, str] | None:
    """Replace one noun of ``text`` by ``[MASK]``.

    Returns (masked text, masked content), or ``None`` when nothing can be masked. Without a noun in the
    text, a random word (English) or two-character span (Chinese, Japanese) is masked instead, because the
    paper masks "nouns or verb phrases" and a span stands in for a phrase.
    """
    nouns = [noun for noun in extract_nouns(text) if noun in text]
    if nouns:
        noun = rng.choice(nouns)
        start = text.index(noun)
        end = start + len(noun)
    else:
        spans = _tokens_for_masking(text, language)
        if not spans:
            return None
        start, end = rng.choice(spans)
    return text[:start] + MASK_TOKEN + text[end:], text[start:end]


def build_mask_instruction(
    sample: OogiriSample, extract_nouns: NounExtractor, rng: random.Random
) -> Instruction | None:
    """Build a masked instruction whose target is the masked content, or ``None`` if nothing can be masked."""
    masked = mask_answer(sample.text, sample.language, extract_nouns, rng)
    if masked is None:
        return None
    masked_text, content = masked
    template_id = _random_template("mask", sample.language, rng)
    prompt = render_prompt(
        "mask", sample.language, template_id, _prompt_parts(sample, masked_answer=masked_text)
    )
    return Instruction(
        task="mask",
        language=sample.language,
        game_type=sample.game_type,
        prompt=prompt,
        target=content,
        image=_image(sample),
        template_id=template_id,
        source_key=sample.input_key,
        meta={"masked_answer": masked_text},
    )


def build_choice_question(
    sample: OogiriSample,
    mtn: str,
    sources: DistractorSources,
    rng: random.Random,
    *,
    other_correct: list[str] | None = None,
) -> ChoiceQuestion | None:
    """Build an mTn question around ``sample``'s response.

    The correct options are the response and, for n > 1, further responses to the same input
    (``other_correct``). Wrong options follow the order of the paper's evaluation: a caption of the
    image, a response to another input, a rewrite of the response, then more responses to other inputs.
    A kind that is unavailable is replaced by a response to another input. The options are shuffled.

    Returns:
        The question, or ``None`` when there are not enough correct or wrong options.
    """
    m, n = parse_mtn(mtn)
    extra_correct = [text for text in (other_correct or []) if text != sample.text][: n - 1]
    correct_texts = [sample.text, *extra_correct]
    if len(correct_texts) < n:
        return None
    used = set(correct_texts)
    wrong: list[tuple[str, str]] = []
    planned = ["caption", "unrelated", "rewrite"] + ["unrelated"] * max(0, m - n - 3)
    for kind in planned[: m - n]:
        text = None
        if kind == "caption" and sources.caption is not None:
            text = sources.caption(sample)
        elif kind == "rewrite" and sources.rewrite is not None:
            text = sources.rewrite(sample, rng)
        if text is None or text in used:
            kind, text = "unrelated", sources.unrelated(sample, rng, used)
        if text is None:
            return None
        used.add(text)
        wrong.append((kind, text))

    entries = [("gtr", text) for text in correct_texts] + wrong
    order = list(range(len(entries)))
    rng.shuffle(order)
    options = tuple(entries[i][1] for i in order)
    kinds = tuple(entries[i][0] for i in order)
    correct = tuple(position for position, i in enumerate(order) if i < n)
    return ChoiceQuestion(options=options, correct=correct, kinds=kinds)


def build_selection_instruction(
    sample: OogiriSample,
    question: ChoiceQuestion,
    rng: random.Random,
    *,
    mtn: str,
) -> Instruction:
    """Render a selection instruction whose target is ``A. text`` for each correct option."""
    template_id = _random_template("selection", sample.language, rng)
    parts = _prompt_parts(sample, options=question.options, num_correct=question.num_correct)
    return Instruction(
        task="selection",
        language=sample.language,
        game_type=sample.game_type,
        prompt=render_prompt("selection", sample.language, template_id, parts),
        target=format_selection_target(list(question.options), list(question.correct)),
        image=_image(sample),
        template_id=template_id,
        source_key=sample.input_key,
        meta={"mtn": mtn, "correct": list(question.correct), "kinds": list(question.kinds)},
    )


def build_ranking_question(
    group: list[OogiriSample], rng: random.Random, *, size: int = 5
) -> tuple[list[OogiriSample], list[int]] | None:
    """Draw ``size`` responses with likes from one input and order them by likes.

    Returns:
        (responses in shuffled option order, option indices from most to fewest likes), or ``None`` when
        the group has fewer than ``size`` distinct responses with a like count. Ties keep option order.
    """
    rated: dict[str, OogiriSample] = {}
    for sample in group:
        if sample.star is not None and sample.text not in rated:
            rated[sample.text] = sample
    if len(rated) < size:
        return None
    chosen = rng.sample(list(rated.values()), size)
    order = sorted(range(size), key=lambda i: -chosen[i].star)
    return chosen, order


def build_ranking_instruction(
    group: list[OogiriSample], rng: random.Random, *, size: int = 5
) -> Instruction | None:
    """Build a ranking instruction whose target is ``1. A. text 2. C. text ...`` ordered by likes."""
    drawn = build_ranking_question(group, rng, size=size)
    if drawn is None:
        return None
    chosen, order = drawn
    first = chosen[0]
    options = [sample.text for sample in chosen]
    template_id = _random_template("ranking", first.language, rng)
    parts = _prompt_parts(first, options=tuple(options))
    return Instruction(
        task="ranking",
        language=first.language,
        game_type=first.game_type,
        prompt=render_prompt("ranking", first.language, template_id, parts),
        target=format_ranking_target(options, order),
        image=_image(first),
        template_id=template_id,
        source_key=first.input_key,
        meta={"order": order, "stars": [sample.star for sample in chosen]},
    )


def swap_noun_rewriter(
    noun_set: dict[str, list[str]], extractors: dict[str, NounExtractor]
) -> RewriteProvider:
    """Return a rewrite provider that swaps one noun of the response for another noun of the language.

    It stands in for the paper's Qwen-14B rewrites when no rewriting model is available: the result stays
    close to the response in form but changes its content.
    """

    def rewrite(sample: OogiriSample, rng: random.Random) -> str | None:
        nouns = [noun for noun in extractors[sample.language](sample.text) if noun in sample.text]
        replacements = noun_set.get(sample.language, [])
        if not nouns or len(replacements) < 2:
            return None
        old = rng.choice(nouns)
        new = rng.choice([noun for noun in replacements if noun != old])
        return sample.text.replace(old, new, 1)

    return rewrite


def build_instructions(
    samples: list[OogiriSample],
    extractors: dict[str, NounExtractor],
    *,
    seed: int = 0,
    settings: InstructionSettings | None = None,
    sources: DistractorSources | None = None,
) -> list[Instruction]:
    """Build the stage-1 instruction set: per response one generation, one masked and one selection
    instruction, and per input one ranking instruction when it has enough responses with likes.

    Args:
        samples: Training responses.
        extractors: Noun extractor per language present in ``samples``.
        seed: Fixes every random choice.
        settings: Builder settings; defaults follow the paper.
        sources: Distractor sources for selection; default: responses to other inputs only.
    """
    settings = settings or InstructionSettings()
    sources = sources or DistractorSources.from_samples(samples)
    rng = random.Random(seed)
    groups = group_by_input(samples)
    instructions: list[Instruction] = []
    skipped = {"mask": 0, "selection": 0, "ranking": 0}

    for sample in samples:
        if sample.language not in extractors:
            raise ValueError(f"no noun extractor for language {sample.language!r}; pass one in extractors.")
        extract = extractors[sample.language]
        instructions.append(
            build_generation_instruction(
                sample, extract, rng, condition_empty_prob=settings.condition_empty_prob
            )
        )

        if sample.game_type in settings.mask_types:
            masked = build_mask_instruction(sample, extract, rng)
            if masked is None:
                skipped["mask"] += 1
            else:
                instructions.append(masked)

        mtn = rng.choice(settings.selection_formats)
        others = [other.text for other in groups[sample.input_key] if other is not sample]
        question = build_choice_question(sample, mtn, sources, rng, other_correct=others)
        if question is None:
            skipped["selection"] += 1
        else:
            instructions.append(build_selection_instruction(sample, question, rng, mtn=mtn))

    if settings.include_ranking:
        for key in sorted(groups):
            ranking = build_ranking_instruction(groups[key], rng, size=settings.ranking_size)
            if ranking is None:
                skipped["ranking"] += 1
            else:
                instructions.append(ranking)

    logger.info(
        "built %d instructions from %d samples (skipped: %s)",
        len(instructions),
        len(samples),
        ", ".join(f"{key} {value}" for key, value in skipped.items()),
    )
    return instructions


def save_instructions(path: str | Path, instructions: Iterable[Instruction]) -> Path:
    """Write instructions as JSONL, one record per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for instruction in instructions:
            handle.write(json.dumps(instruction.to_dict(), ensure_ascii=False) + "\n")
    return path


def load_instructions(path: str | Path) -> list[Instruction]:
    """Read instructions written by :func:`save_instructions`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"instruction file not found: {path}; build it with `clot build-instructions`."
        )
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(Instruction.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: invalid instruction record ({error}).") from None
    return records
