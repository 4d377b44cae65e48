"""Cost of CLoT's parts against their plain counterparts, on a tiny LLaVA-style model on CPU.

CLoT is the method of "Let's Think Outside the Box" (arXiv 2312.02439), whose Qwen-VL runs use LoRA rank 64.

Measured in one process and reported as ratios:
- Algorithm 1 inference (5 conditioned candidates, a ranking and a 2-way selection) against one plain
  generation: wall-clock time and model calls.
- LoRA on the language model (rank 64) against full fine-tuning: trainable parameters.
- Stage 1 instruction building: instructions per Oogiri response.

Run: uv run python packages/clot/benchmarks/bench_clot.py
"""

from __future__ import annotations

import tempfile

from clot.backbone import build_tiny_backbone
from clot.data import read_oogiri_dataset
from clot.inference import leap_of_thought
from clot.instructions import build_instructions
from clot.nouns import make_noun_extractor
from clot.sample_data import write_sample_dataset
from clot.skills import GameInput
from clot.training import LoraSettings, apply_lora
from qcore.bench import count_parameters, median_time
from qcore.report import markdown_table


class CountingModel:
    """Wrap a backbone and count generate and score calls."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.calls = 0

    def generate(self, *args, **kwargs):
        self.calls += 1
        return self.backbone.generate(*args, **kwargs)

    def score_continuations(self, *args, **kwargs):
        self.calls += 1
        return self.backbone.score_continuations(*args, **kwargs)


def main() -> None:
    root = write_sample_dataset(tempfile.mkdtemp(), image_size=64)
    samples = read_oogiri_dataset(root)
    extractors = {language: make_noun_extractor(language) for language in ("en", "zh", "ja")}
    instructions = build_instructions(samples, extractors, seed=0)
    backbone = build_tiny_backbone(
        [f"{i.prompt} {i.target}" for i in instructions], hidden_size=64, num_layers=2
    )

    sample = next(s for s in samples if s.game_type == "I2T" and s.language == "en")
    game = GameInput.from_sample(sample)
    nouns = sorted({noun for s in samples if s.language == "en" for noun in extractors["en"](s.text)})
    generation = {"max_new_tokens": 12, "do_sample": True}
    counting = CountingModel(backbone)

    def plain() -> None:
        backbone.generate("Based on the image, think of a funny caption.", game.image, **generation)

    def algorithm_one() -> None:
        leap_of_thought(counting, game, nouns, seed=0, generation_kwargs=generation)

    plain_seconds = median_time(plain, warmup=1, repeats=5)
    counting.calls = 0
    leap_seconds = median_time(algorithm_one, warmup=1, repeats=5)
    calls_per_run = counting.calls / 6

    full_parameters = count_parameters(backbone.model)
    apply_lora(backbone, LoraSettings())
    lora_parameters = count_parameters(backbone.model, trainable_only=True)

    rows = [
        {"measure": "Algorithm 1 / one generation, time", "ratio": leap_seconds / plain_seconds},
        {"measure": "Algorithm 1 / one generation, model calls", "ratio": calls_per_run},
        {
            "measure": "LoRA r=64 / full fine-tuning, trainable parameters",
            "ratio": lora_parameters / full_parameters,
        },
        {"measure": "stage-1 instructions per response", "ratio": len(instructions) / len(samples)},
    ]
    print(markdown_table(rows, columns=["measure", "ratio"], floatfmt=".3g"))


if __name__ == "__main__":
    main()
