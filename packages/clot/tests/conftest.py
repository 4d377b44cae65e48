"""Shared fixtures: the built-in sample data set and a scripted model."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from clot.data import read_oogiri_dataset
from clot.nouns import make_noun_extractor
from clot.sample_data import write_sample_dataset

OPTION_LINE = re.compile(r"^([A-Z])\. (.*)$", re.MULTILINE)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("oogiri"), image_size=48)


@pytest.fixture(scope="session")
def samples(sample_root):
    return read_oogiri_dataset(sample_root)


@pytest.fixture(scope="session")
def extractors():
    return {language: make_noun_extractor(language) for language in ("en", "zh", "ja")}


class ScriptedModel:
    """A model whose outputs are fixed tables.

    ``generate`` returns the next text of ``responses`` (cycling) and records the prompt. Scoring a
    letter continuation (``"A."`` or ``"1. A."``) returns ``preferences[text of option A]``, so ranking
    and selection follow the table; unknown options score ``default``.
    """

    def __init__(self, responses: Sequence[str], preferences: dict[str, float], default: float = 0.0):
        self.responses = list(responses)
        self.preferences = preferences
        self.default = default
        self.generate_prompts: list[str] = []
        self.score_prompts: list[str] = []

    def generate(self, prompt, image=None, **kwargs):
        text = self.responses[len(self.generate_prompts) % len(self.responses)]
        self.generate_prompts.append(prompt)
        return text

    def score_continuations(self, prompt, image, continuations):
        self.score_prompts.append(prompt)
        options = dict(OPTION_LINE.findall(prompt))
        scores = []
        for continuation in continuations:
            letter = continuation.rstrip(".").split()[-1]
            scores.append(self.preferences.get(options.get(letter, ""), self.default))
        return scores


@pytest.fixture
def scripted_model_class():
    return ScriptedModel
