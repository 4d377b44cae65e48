"""Stage 2 of CLoT: explorative self-refinement (arXiv 2312.02439, section 4).

For each training input, the model generates n candidates for weakly associated conditions (empty with
probability rho, otherwise a random noun of the whole noun set), ranks them with its own ranking skill,
keeps the top two and then picks among those two and the human answer with its selection skill. When
the human answer wins the input is dropped; otherwise the winning candidate becomes a new generation
instruction. Progress is appended to a JSONL file one input at a time, so an interrupted run resumes
where it stopped, with the same random draws for every input.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from clot.backbone import HumorModel
from clot.data import OogiriSample, group_by_input
from clot.instructions import Instruction, sample_condition
from clot.skills import GameInput, generate_candidate, generation_prompt, rank_options, select_options
from qcore.config import Config, check_range, option
from qcore.progress import progress

__all__ = [
    "RefineConfig",
    "RefineOutcome",
    "RefineSummary",
    "choose_references",
    "refine_input",
    "self_refine",
]

logger = logging.getLogger(__name__)

PROGRESS_FILE = "refine_progress.jsonl"


@dataclass(kw_only=True)
class RefineConfig(Config):
    """Settings of explorative self-refinement; defaults are the paper's."""

    num_candidates: int = option(5, help="Candidates n generated per input (5 in the paper).")
    condition_empty_prob: float = option(
        0.5, help="Probability rho that a condition is empty (0.5 in the paper)."
    )
    num_finalists: int = option(2, help="Candidates kept after the model's ranking (2 in the paper).")
    keep_condition: bool = option(
        False,
        help="Store a kept sample as a conditional instruction with the condition it was generated for. The "
        "paper does not say; storing it without the condition is our default.",
    )
    max_new_tokens: int = option(32, help="Token limit of each candidate.")
    do_sample: bool = option(True, help="Sample candidates (otherwise greedy decoding).")
    temperature: float = option(1.0, help="Sampling temperature (not stated in the paper; our choice).")
    top_p: float = option(0.9, help="Nucleus sampling threshold (not stated in the paper; our choice).")
    seed: int = option(0, help="Base seed; each input derives its own seed from it and its key.")

    def validate(self) -> None:
        super().validate()
        if self.num_candidates < 2:
            raise ValueError(f"invalid num_candidates={self.num_candidates}: must be >= 2.")
        if not 1 <= self.num_finalists <= self.num_candidates:
            raise ValueError(
                f"invalid num_finalists={self.num_finalists}: must be in [1, num_candidates={self.num_candidates}]."
            )
        check_range("condition_empty_prob", self.condition_empty_prob, 0.0, 1.0)


@dataclass
class RefineOutcome:
    """Outcome of refining one input; ``instruction`` is set only for kept inputs."""

    key: str
    kept: bool
    reason: str
    conditions: list[str | None]
    candidates: list[str]
    ranking: list[int]
    options: list[str]
    chosen: int | None
    instruction: Instruction | None = None

    def to_dict(self) -> dict:
        record = dict(self.__dict__)
        record["instruction"] = self.instruction.to_dict() if self.instruction is not None else None
        return record

    @classmethod
    def from_dict(cls, record: dict) -> RefineOutcome:
        record = dict(record)
        if record.get("instruction") is not None:
            record["instruction"] = Instruction.from_dict(record["instruction"])
        return cls(**record)


@dataclass
class RefineSummary:
    """Counts and kept instructions of a refinement run, including inputs done before a resume."""

    kept: int
    dropped_human_won: int
    dropped_no_candidates: int
    resumed: int
    instructions: list[Instruction]


def _input_seed(seed: int, key: str) -> int:
    return zlib.crc32(f"{seed}:{key}".encode()) & 0x7FFFFFFF


def choose_references(samples: list[OogiriSample]) -> list[OogiriSample]:
    """Pick one human answer per input: the one with the most likes (file order breaks ties).

    The paper refines "each training input" against its human answer without saying which answer when
    an input has several; the most-liked one is our choice.
    """
    chosen = []
    for group in group_by_input(samples).values():
        chosen.append(max(group, key=lambda sample: sample.star if sample.star is not None else -1))
    return chosen


def refine_input(
    model: HumorModel,
    reference: OogiriSample,
    nouns: list[str],
    config: RefineConfig,
) -> RefineOutcome:
    """Run explorative self-refinement on one input against its human answer ``reference``."""
    rng = random.Random(_input_seed(config.seed, reference.input_key))
    torch.manual_seed(_input_seed(config.seed, reference.input_key))
    game = GameInput.from_sample(reference)
    generation_kwargs = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": config.do_sample,
        "temperature": config.temperature,
        "top_p": config.top_p,
    }

    conditions = [
        sample_condition(nouns, rng, empty_prob=config.condition_empty_prob)
        for _ in range(config.num_candidates)
    ]
    candidates = [
        generate_candidate(model, game, condition, rng, **generation_kwargs) for condition in conditions
    ]
    usable = [i for i, text in enumerate(candidates) if text.strip()]
    common = {"key": reference.input_key, "conditions": conditions, "candidates": candidates}
    if len(usable) < config.num_finalists:
        return RefineOutcome(
            **common, kept=False, reason="no_candidates", ranking=[], options=[], chosen=None
        )

    ranked = rank_options(model, game, [candidates[i] for i in usable], rng)
    ranking = [usable[i] for i in ranked]
    finalists = ranking[: config.num_finalists]

    # The human answer joins the finalists at a random position, so position bias cannot favour it.
    entries = [(index, candidates[index]) for index in finalists] + [(None, reference.text)]
    rng.shuffle(entries)
    options = [text for _, text in entries]
    chosen = select_options(model, game, options, rng)[0]
    winner_index, winner_text = entries[chosen]

    if winner_index is None or winner_text.strip() == reference.text.strip():
        return RefineOutcome(
            **common, kept=False, reason="human_won", ranking=ranking, options=options, chosen=chosen
        )

    condition = conditions[winner_index] if config.keep_condition else None
    prompt, template_id = generation_prompt(game, condition, rng)
    instruction = Instruction(
        task="generation" if condition is None else "generation_condition",
        language=reference.language,
        game_type=reference.game_type,
        prompt=prompt,
        target=winner_text,
        image=game.image,
        condition=condition,
        template_id=template_id,
        source_key=reference.input_key,
        meta={"refined": True, "generated_for_condition": conditions[winner_index]},
    )
    return RefineOutcome(
        **common,
        kept=True,
        reason="kept",
        ranking=ranking,
        options=options,
        chosen=chosen,
        instruction=instruction,
    )


def _read_progress(path: Path) -> dict[str, RefineOutcome]:
    done: dict[str, RefineOutcome] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                outcome = RefineOutcome.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                # A run killed mid-write leaves a partial last line; that input is simply redone.
                logger.warning("ignoring unreadable line %d of %s", line_number, path)
                continue
            done[outcome.key] = outcome
    return done


def self_refine(
    model: HumorModel,
    samples: list[OogiriSample],
    noun_set: dict[str, list[str]],
    config: RefineConfig | None = None,
    *,
    output_dir: str | Path | None = None,
) -> RefineSummary:
    """Run explorative self-refinement over every input of ``samples``.

    Args:
        model: The stage-1 model.
        samples: Training responses; each input is refined once, against its most-liked answer.
        noun_set: Noun set S per language.
        config: Refinement settings.
        output_dir: Folder for ``refine_progress.jsonl``. Inputs already recorded there are skipped and
            their outcomes reused.
    """
    config = config or RefineConfig()
    references = choose_references(samples)
    progress_path = Path(output_dir) / PROGRESS_FILE if output_dir is not None else None
    done = _read_progress(progress_path) if progress_path is not None else {}
    resumed = sum(1 for reference in references if reference.input_key in done)
    if resumed:
        logger.info("resuming self-refinement: %d of %d inputs already done", resumed, len(references))
    if progress_path is not None:
        progress_path.parent.mkdir(parents=True, exist_ok=True)
        # Rewrite the readable records so that a torn last line cannot swallow the next append.
        temporary = progress_path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            for outcome in done.values():
                handle.write(json.dumps(outcome.to_dict(), ensure_ascii=False) + "\n")
        temporary.replace(progress_path)

    outcomes: list[RefineOutcome] = []
    for reference in progress(references, desc="self-refinement"):
        if reference.input_key in done:
            outcomes.append(done[reference.input_key])
            continue
        nouns = noun_set.get(reference.language, [])
        outcome = refine_input(model, reference, nouns, config)
        outcomes.append(outcome)
        if progress_path is not None:
            with progress_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(outcome.to_dict(), ensure_ascii=False) + "\n")

    summary = RefineSummary(
        kept=sum(outcome.kept for outcome in outcomes),
        dropped_human_won=sum(outcome.reason == "human_won" for outcome in outcomes),
        dropped_no_candidates=sum(outcome.reason == "no_candidates" for outcome in outcomes),
        resumed=resumed,
        instructions=[outcome.instruction for outcome in outcomes if outcome.instruction is not None],
    )
    logger.info(
        "self-refinement: kept %d, dropped %d (human answer won) and %d (no usable candidates) of %d inputs",
        summary.kept,
        summary.dropped_human_won,
        summary.dropped_no_candidates,
        len(outcomes),
    )
    return summary
