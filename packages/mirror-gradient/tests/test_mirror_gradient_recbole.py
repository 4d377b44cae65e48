"""Mirror Gradient inside RecBole: trainer schedule, configuration keys, models and a one-epoch run."""

import math

import numpy as np
import pytest
import torch

from mirror_gradient.models import MODELS
from mirror_gradient.pipeline import METRIC_KEYS, run_experiment
from mirror_gradient.trainer import MirrorGradientTrainer
from qcore.testing import assert_all_parameters_get_gradients

MODEL_NAMES = ("VBPR", "BM3", "FREEDOM", "LATTICE")


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_one_epoch_run_reports_metrics(model_name, synthetic_data, tiny_overrides, tmp_path):
    outcome = run_experiment(
        model_name, synthetic_data, mg=True, seed=0, work_dir=tmp_path, overrides=tiny_overrides
    )

    assert set(outcome.test) == set(METRIC_KEYS)
    for key, value in outcome.test.items():
        assert 0.0 <= value <= 1.0, key
    assert outcome.test["recall@20"] >= outcome.test["recall@5"]


def count_optimizer_steps(trainer):
    calls = []
    original = trainer.optimizer.step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    trainer.optimizer.step = counting_step
    return calls


@pytest.mark.parametrize("beta", [1, 3, 4])
def test_trainer_steps_per_epoch(build_model, beta):
    config, model, train_data, _, _ = build_model("VBPR", mg_beta=beta)
    trainer = MirrorGradientTrainer(config, model)
    calls = count_optimizer_steps(trainer)

    trainer._train_epoch(train_data, 0)
    trainer._train_epoch(train_data, 1)

    batches = len(train_data)
    assert batches > 1
    assert len(calls) == 2 * (batches + math.ceil(batches / beta))


def test_trainer_global_counter(build_model):
    config, model, train_data, _, _ = build_model("VBPR", mg_beta=3, mg_counter="global")
    trainer = MirrorGradientTrainer(config, model)
    calls = count_optimizer_steps(trainer)

    for epoch in range(2):
        trainer._train_epoch(train_data, epoch)

    total_batches = 2 * len(train_data)
    assert len(calls) == total_batches + total_batches // 3


def test_trainer_without_mg_steps_once_per_batch(build_model):
    config, model, train_data, _, _ = build_model("VBPR", mg=False)
    trainer = MirrorGradientTrainer(config, model)
    calls = count_optimizer_steps(trainer)
    trainer._train_epoch(train_data, 0)
    assert len(calls) == len(train_data)


def test_mirror_pass_sees_same_batch(build_model):
    config, model, train_data, _, _ = build_model("VBPR", mg_beta=1)
    trainer = MirrorGradientTrainer(config, model)
    seen = []
    original = model.calculate_loss

    def recording_loss(interaction):
        seen.append(
            tuple(interaction[field].clone() for field in (model.USER_ID, model.ITEM_ID, model.NEG_ITEM_ID))
        )
        return original(interaction)

    trainer._train_epoch(train_data, 0, loss_func=recording_loss)

    assert len(seen) == 2 * len(train_data)
    for first, mirror in zip(seen[0::2], seen[1::2], strict=True):
        for first_field, mirror_field in zip(first, mirror, strict=True):
            assert torch.equal(first_field, mirror_field)


def test_pre_and_post_epoch_hooks_run(build_model):
    config, model, train_data, _, _ = build_model("VBPR")
    events = []
    model.pre_epoch_processing = lambda: events.append("pre")
    model.post_epoch_processing = lambda: events.append("post")
    MirrorGradientTrainer(config, model)._train_epoch(train_data, 0)
    assert events == ["pre", "post"]


def test_mg_keys_do_not_collide_with_model_keys(build_model):
    config, model, _, _, _ = build_model("VBPR", beta=0.01, mg_beta=5, mg_alpha2=0.3)
    trainer = MirrorGradientTrainer(config, model)
    assert config["beta"] == 0.01
    assert trainer.mirror.beta == 5
    assert trainer.mirror.alpha2 == 0.3


def test_invalid_mg_key_raises(build_model):
    config, model, _, _, _ = build_model("VBPR", mg_beta=0)
    with pytest.raises(ValueError, match="mg_beta"):
        MirrorGradientTrainer(config, model)


def test_nan_loss_raises(build_model):
    config, model, train_data, _, _ = build_model("VBPR")
    trainer = MirrorGradientTrainer(config, model)
    with pytest.raises(ValueError):
        trainer._train_epoch(
            train_data, 0, loss_func=lambda interaction: torch.tensor(float("nan"), requires_grad=True)
        )


def test_feature_rows_align_with_internal_ids(build_model, synthetic_data):
    _, model, train_data, _, _ = build_model("VBPR")
    tokens = train_data.dataset.field2id_token[model.ITEM_ID]
    raw = {
        "image": np.load(synthetic_data.feature_dir / "image_feat.npy"),
        "text": np.load(synthetic_data.feature_dir / "text_feat.npy"),
    }
    raw_ids = [int(token) for token in tokens[1:]]
    assert raw_ids != sorted(raw_ids), "internal IDs should be a re-mapping, or the check proves nothing"
    assert len(raw_ids) < raw["image"].shape[0], "some raw items should be absent from the interactions"

    for name, features in model.modality_features().items():
        assert torch.count_nonzero(features[0]) == 0
        for internal_id in range(1, len(tokens)):
            expected = torch.from_numpy(raw[name][int(tokens[internal_id])])
            assert torch.equal(features[internal_id], expected), (name, internal_id)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_gradients_reach_every_parameter(build_model, model_name):
    _, model, train_data, _, _ = build_model(model_name)
    model.train()
    batch = next(iter(train_data))
    assert_all_parameters_get_gradients(model, model.calculate_loss(batch))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_save_load_gives_identical_scores(build_model, model_name):
    _, model, _, _, test_data = build_model(model_name)
    _, restored, _, _, _ = build_model(model_name, seed=1)
    restored.load_state_dict(model.state_dict())
    model.eval()
    restored.eval()
    interaction = next(iter(test_data))[0]
    torch.testing.assert_close(model.full_sort_predict(interaction), restored.full_sort_predict(interaction))


def test_registry_lists_models():
    assert set(MODEL_NAMES) <= set(MODELS.names())
