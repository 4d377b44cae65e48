"""Shared tiny checkpoints for the moextend tests, written once per session."""

from __future__ import annotations

import pytest

from moextend.bundled import DIGIT_NAMES, digit_answer
from moextend.data import IMAGE_MARKER, ChatSample

CORPUS = [
    "[INST]Describe the image.[/INST]This is a red square.",
    "[INST]What digit is written here?[/INST]" + " ".join(digit_answer(i) for i in range(10)),
    "a red square, a blue circle and a green triangle. " + " ".join(DIGIT_NAMES),
]
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def color_samples(count: int = 16) -> list[ChatSample]:
    """Solid-colour squares drawn with PIL, captioned with their colour."""
    from PIL import Image

    samples = []
    names = list(COLORS)
    for index in range(count):
        name = names[index % len(names)]
        image = Image.new("RGB", (32, 32), (0, 0, 0))
        image.paste(Image.new("RGB", (20, 20), COLORS[name]), (6, 6))
        samples.append(
            ChatSample(turns=[(f"{IMAGE_MARKER}\nDescribe the image.", f"a {name} square")], image=image)
        )
    return samples


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Paths ``(llm_dir, vision_dir)`` of a random tiny Mixtral with tokenizer and a tiny CLIP tower."""
    from moextend.tiny import save_tiny_base

    return save_tiny_base(tmp_path_factory.mktemp("base"), corpus=CORPUS, vocab_size=300)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """Tiny models run fastest on one intra-op thread, and a shared CI machine stays responsive."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
