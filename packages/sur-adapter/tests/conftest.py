"""Shared fixtures: tiny diffusion components, a four-image SURD folder and teacher vectors."""

from __future__ import annotations

import pytest
import torch

from sur_adapter.components import build_tiny_components
from sur_adapter.config import preset_config
from sur_adapter.data import SURDataset
from sur_adapter.embedded import write_embedded_dataset
from sur_adapter.teacher import PromptVectors

TEACHER_DIM = 16


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return write_embedded_dataset(tmp_path_factory.mktemp("surd"), size=32, limit=4)


@pytest.fixture
def dataset(data_root):
    return SURDataset(data_root, resolution=16, random_flip=False)


@pytest.fixture(scope="session")
def components():
    # Shared: training and inference never change the frozen parts (a test checks this).
    return build_tiny_components(seed=0)


@pytest.fixture
def teacher_vectors(dataset):
    generator = torch.Generator().manual_seed(0)
    vectors = {prompt: torch.randn(TEACHER_DIM, generator=generator) for prompt in dataset.simple_prompts}
    return PromptVectors(vectors, source="test vectors")


@pytest.fixture
def tiny_config(tmp_path):
    return preset_config(
        "tiny",
        output_dir=str(tmp_path / "run"),
        max_train_steps=2,
        resolution=16,
        train_batch_size=2,
        checkpointing_steps=1,
        validation_steps=0,
        validation_inference_steps=2,
    )
