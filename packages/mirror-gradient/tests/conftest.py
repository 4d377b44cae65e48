"""Shared fixtures: one tiny synthetic MMRec dataset converted for RecBole, reused by every test."""

import pytest
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from mirror_gradient.models import MODELS
from mirror_gradient.pipeline import build_config, prepare_mmrec_dataset
from mirror_gradient.synthetic import write_synthetic_mmrec

TINY_OVERRIDES = {
    "embedding_size": 8,
    "feat_embed_dim": 8,
    "train_batch_size": 64,
    "epochs": 1,
    "knn_k": 4,
}


@pytest.fixture(scope="session")
def tiny_overrides():
    return dict(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror_gradient")
    source = write_synthetic_mmrec(root / "mmrec", "synthetic")
    return prepare_mmrec_dataset(source, "synthetic", root)


@pytest.fixture(scope="session")
def build_model(synthetic_data, tmp_path_factory):
    """Return a factory ``(model_name, mg=True, **overrides) -> (config, model, train, valid, test)``."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    loaders = {}

    def factory(model_name, mg=True, seed=0, **overrides):
        config = build_config(
            model_name,
            synthetic_data,
            mg=mg,
            seed=seed,
            checkpoint_dir=checkpoints,
            overrides={**TINY_OVERRIDES, **overrides},
        )
        # Loaders depend only on the input type and negative sampling, so tests share them.
        key = (
            str(config["MODEL_INPUT_TYPE"]),
            str(config["train_neg_sample_args"]),
            config["train_batch_size"],
        )
        if key not in loaders:
            init_seed(0, True)
            loaders[key] = data_preparation(config, create_dataset(config))
        train_data, valid_data, test_data = loaders[key]
        init_seed(seed, True)
        model = MODELS.get(model_name)(config, train_data.dataset)
        return config, model, train_data, valid_data, test_data

    return factory
