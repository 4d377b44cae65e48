"""Training on tiny components: gradient flow, frozen parts, resuming and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcore.testing import snapshot_parameters
from sur_adapter.adapter import SURAdapter
from sur_adapter.data import collate_records
from sur_adapter.pipeline import SURStableDiffusionPipeline, encode_prompt_with_adapter
from sur_adapter.trainer import SURTrainer


def make_trainer(config, components, dataset, teacher_vectors, **changes):
    return SURTrainer(
        config.replace(**changes), components=components, dataset=dataset, teacher_vectors=teacher_vectors
    )


def first_batch(dataset):
    return collate_records([dataset[0], dataset[1]])


@pytest.mark.parametrize("legacy", [False, True])
def test_noise_loss_gradient_reaches_adapter(tiny_config, components, dataset, teacher_vectors, legacy):
    trainer = make_trainer(tiny_config, components, dataset, teacher_vectors, legacy_detach_condition=legacy)
    with torch.no_grad():
        trainer.adapter.fc.weight.normal_(0.0, 0.1)
    losses = trainer.compute_losses(first_batch(dataset), generator=torch.Generator().manual_seed(0))
    assert losses.noise.requires_grad != legacy
    if legacy:
        return
    losses.noise.backward()
    for name, parameter in trainer.adapter.named_parameters():
        if name.startswith("llm_projection."):
            assert parameter.grad is None, name
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_total_loss_reaches_every_adapter_parameter(tiny_config, components, dataset, teacher_vectors):
    trainer = make_trainer(tiny_config, components, dataset, teacher_vectors)
    with torch.no_grad():
        trainer.adapter.fc.weight.normal_(0.0, 0.1)
    losses = trainer.compute_losses(first_batch(dataset), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses.total)
    losses.total.backward()
    for name, parameter in trainer.adapter.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for module in (components.unet, components.vae, components.text_encoder):
        assert all(parameter.grad is None for parameter in module.parameters())


def test_training_changes_only_adapter(tiny_config, components, dataset, teacher_vectors):
    trainer = make_trainer(tiny_config, components, dataset, teacher_vectors)
    frozen = {
        name: snapshot_parameters(getattr(components, name)) for name in ("unet", "vae", "text_encoder")
    }
    adapter_before = snapshot_parameters(trainer.adapter)
    result = trainer.train()
    assert result.global_step == 2
    for name, snapshot in frozen.items():
        for key, value in getattr(components, name).state_dict().items():
            if key in snapshot:
                assert torch.equal(value, snapshot[key]), f"{name}.{key}"
    changed = [
        key
        for key, value in trainer.adapter.state_dict().items()
        if not torch.equal(value, adapter_before[key])
    ]
    assert "fc.weight" in changed
    assert any(key.startswith("llm_projection.") for key in changed)
    records = trainer.run_dir.read_metrics()
    assert [record["step"] for record in records] == [1, 2]
    assert {"loss", "loss_noise", "loss_llm", "loss_prompt"} <= set(records[0])
    loaded = SURAdapter.from_pretrained(result.adapter_dir)
    for key, value in trainer.adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu()), key


def test_legacy_projection_is_frozen_and_not_saved(tiny_config, components, dataset, teacher_vectors):
    trainer = make_trainer(
        tiny_config, components, dataset, teacher_vectors, legacy_llm_projection=True, max_train_steps=1
    )
    projection = trainer.legacy_projection.weight.clone()
    result = trainer.train()
    assert torch.equal(trainer.legacy_projection.weight, projection)
    assert SURAdapter.from_pretrained(result.adapter_dir).llm_projection is None


def test_resume_matches_uninterrupted_run(tiny_config, components, dataset, teacher_vectors, tmp_path):
    straight = make_trainer(tiny_config, components, dataset, teacher_vectors, output_dir=str(tmp_path / "a"))
    straight.train()
    first_half = make_trainer(
        tiny_config, components, dataset, teacher_vectors, output_dir=str(tmp_path / "b"), max_train_steps=1
    )
    first_half.train()
    resumed = make_trainer(
        tiny_config,
        components,
        dataset,
        teacher_vectors,
        output_dir=str(tmp_path / "b"),
        resume_from_checkpoint="latest",
    )
    result = resumed.train()
    assert result.global_step == 2
    for key, value in straight.adapter.state_dict().items():
        torch.testing.assert_close(resumed.adapter.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert [record["step"] for record in resumed.run_dir.read_metrics()] == [1, 2]


def test_evaluate_reports_three_losses_and_distance(tiny_config, components, dataset, teacher_vectors):
    trainer = make_trainer(
        tiny_config, components, dataset, teacher_vectors, zero_fc_bias=True, adapter_weight=0.0
    )
    with_adapter = trainer.evaluate(repeats=1)
    without = trainer.evaluate(use_adapter=False, repeats=1)
    assert with_adapter["loss_noise"] == pytest.approx(without["loss_noise"], rel=1e-5)
    assert with_adapter["simple_complex_distance"] == pytest.approx(
        without["simple_complex_distance"], rel=1e-5
    )
    assert np.isfinite(with_adapter["loss_llm"])
    assert np.isnan(without["loss_llm"])


def make_pipeline(components, adapter, **kwargs):
    pipe = SURStableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=components.inference_scheduler(),
        adapter=adapter,
        **kwargs,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def trained_adapter():
    torch.manual_seed(0)
    adapter = SURAdapter(32, nhead=4, dim_feedforward=64).eval()
    with torch.no_grad():
        adapter.fc.weight.normal_(0.0, 0.3)
    return adapter


def test_pipeline_generates_image(components, trained_adapter):
    pipe = make_pipeline(components, trained_adapter)
    output = pipe(
        "a cat",
        num_inference_steps=2,
        height=16,
        width=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert output.images.shape == (1, 16, 16, 3)
    assert np.isfinite(output.images).all()


@pytest.mark.parametrize("on_uncond", [True, False])
def test_pipeline_adapts_cfg_halves(components, trained_adapter, on_uncond):
    pipe = make_pipeline(components, trained_adapter, adapter_on_uncond=on_uncond)
    plain = make_pipeline(components, None)
    adapted_cond, adapted_uncond = pipe.encode_prompt("a cat", "cpu", 1, True, "")
    raw_cond, raw_uncond = plain.encode_prompt("a cat", "cpu", 1, True, "")
    assert not torch.allclose(adapted_cond, raw_cond)
    assert torch.allclose(adapted_uncond, raw_uncond) != on_uncond


def test_hook_on_stock_pipeline_matches_subclass(components, trained_adapter):
    from diffusers import StableDiffusionPipeline

    stock = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=components.inference_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    stock.set_progress_bar_config(disable=True)
    prompt_embeds, negative = encode_prompt_with_adapter(stock, trained_adapter, "a cat", negative_prompt="")
    subclass_embeds = make_pipeline(components, trained_adapter).encode_prompt("a cat", "cpu", 1, True, "")
    torch.testing.assert_close(prompt_embeds, subclass_embeds[0])
    torch.testing.assert_close(negative, subclass_embeds[1])


def test_pipeline_from_pretrained_with_adapter(components, trained_adapter, tmp_path):
    make_pipeline(components, None).save_pretrained(tmp_path / "pipe")
    pipe = SURStableDiffusionPipeline.from_pretrained(tmp_path / "pipe", adapter=trained_adapter)
    assert pipe.adapter is trained_adapter
    reference = make_pipeline(components, trained_adapter).encode_prompt("a cat", "cpu", 1, True, "")
    loaded = pipe.encode_prompt("a cat", "cpu", 1, True, "")
    torch.testing.assert_close(loaded[0], reference[0])
    torch.testing.assert_close(loaded[1], reference[1])
