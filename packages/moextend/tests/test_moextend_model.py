"""Vision wrapper, trainable set, frozen tensors and delta checkpoints on a tiny Mixtral + CLIP."""

from __future__ import annotations

import pytest
import torch

from moextend.data import ChatCollator
from moextend.extend import ExtensionPlan, extended_blocks
from moextend.model import MoExtendModel
from moextend.stages import finetune_trainable_names, load_bundle, make_dataset, run_probe
from moextend.training import TrainingSettings, train_parameters
from qcore.testing import assert_all_parameters_get_gradients, snapshot_parameters

from .conftest import color_samples


def _bundle(tiny_base):
    llm_dir, vision_dir = tiny_base
    return load_bundle(llm_dir, vision_model=str(vision_dir))


def _batch(bundle, count=4):
    dataset = make_dataset(bundle, color_samples(count))
    return ChatCollator(bundle.tokenizer.pad_token_id)([dataset[i] for i in range(count)])


PLAN = ExtensionPlan(layers=[1, 2], source_experts=[[3], [0]])


def test_trainable_set_and_count(tiny_base):
    bundle = _bundle(tiny_base)
    model = bundle.model
    model.extend(PLAN)
    names = finetune_trainable_names(model)
    count = model.set_trainable(names)

    hidden, intermediate, old_experts, vision_hidden = 32, 64, 4, 32
    new_experts = 1
    per_layer = new_experts * 3 * hidden * intermediate + new_experts * hidden
    per_layer += 2 * 16 * (old_experts + new_experts)
    projector = vision_hidden * hidden + hidden + hidden * hidden + hidden
    assert count == len(PLAN.layers) * per_layer + projector

    expected = {f"mm_projector.{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    for layer in PLAN.layers:
        prefix = f"language_model.model.layers.{layer}.mlp."
        expected |= {prefix + n for n in ("new_router", "new_gate_up_proj", "new_down_proj")}
        expected |= {prefix + "calibration.fc1.weight", prefix + "calibration.fc2.weight"}
    assert set(names) == expected
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected


def test_gradients_reach_every_trainable_parameter(tiny_base):
    bundle = _bundle(tiny_base)
    bundle.model.extend(PLAN)
    bundle.model.set_trainable(finetune_trainable_names(bundle.model))
    for block in extended_blocks(bundle.model.language_model).values():
        with torch.no_grad():
            block.calibration.fc2.weight.normal_(0.0, 0.05)
    output = bundle.model(**_batch(bundle))
    assert_all_parameters_get_gradients(bundle.model, output.loss)


def test_pretrained_tensors_bit_identical_after_training(tiny_base, tmp_path):
    bundle = _bundle(tiny_base)
    bundle.model.extend(PLAN)
    before = snapshot_parameters(bundle.model)
    trainable = finetune_trainable_names(bundle.model)
    dataset = make_dataset(bundle, color_samples(8))
    settings = TrainingSettings(learning_rate=1e-2, max_steps=3, batch_size=4, log_steps=0)
    train_parameters(
        bundle.model,
        dataset,
        ChatCollator(bundle.tokenizer.pad_token_id),
        trainable=trainable,
        settings=settings,
    )
    after = dict(bundle.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed <= set(trainable)
    assert "mm_projector.0.weight" in changed
    assert "language_model.model.layers.1.mlp.new_gate_up_proj" in changed
    frozen = [name for name in before if name not in set(trainable)]
    assert "language_model.model.layers.1.mlp.gate.weight" in frozen
    assert "language_model.model.layers.1.mlp.experts.gate_up_proj" in frozen


def test_save_and_load_round_trip(tiny_base, tmp_path):
    bundle = _bundle(tiny_base)
    bundle.model.extend(PLAN)
    with torch.no_grad():
        for name, param in bundle.model.named_parameters():
            if name in set(finetune_trainable_names(bundle.model)):
                param.add_(0.01 * torch.randn_like(param))
    bundle.model.save_pretrained(tmp_path / "checkpoint")
    loaded = MoExtendModel.from_pretrained(tmp_path / "checkpoint")
    batch = _batch(bundle)
    with torch.no_grad():
        expected = bundle.model(**batch).logits
        actual = loaded(**batch).logits
    assert torch.equal(expected, actual)
    assert loaded.plan.to_dict() == PLAN.to_dict()
    base_names = {n for n in bundle.model.delta_names() if ".mlp.gate." in n or ".experts." in n}
    assert not base_names


def test_probe_restores_original_routers(tiny_base, tmp_path):
    bundle = _bundle(tiny_base)
    original = {
        n: p.detach().clone() for n, p in bundle.model.named_parameters() if n.endswith("mlp.gate.weight")
    }
    settings = TrainingSettings(learning_rate=1e-2, max_steps=3, batch_size=4, log_steps=0)
    result = run_probe(bundle, color_samples(12), settings, tmp_path / "probe", validation_size=4)
    current = dict(bundle.model.named_parameters())
    for name, tensor in original.items():
        assert torch.equal(current[name], tensor)
    assert any(
        not torch.equal(
            result.probed_routers[i], original[f"language_model.model.layers.{i}.mlp.gate.weight"]
        )
        for i in result.probed_routers
    )
    assert len(result.usage["before"]["top_k"]) == 4
    assert sum(result.usage["before"]["top_k"][0]) > 0
    probed = MoExtendModel.from_pretrained(tmp_path / "probe" / "model")
    probed_weight = dict(probed.named_parameters())["language_model.model.layers.0.mlp.gate.weight"]
    assert torch.equal(probed_weight, result.probed_routers[0])


def test_aux_loss_mixed_experts_and_no_mask(tiny_base):
    bundle = _bundle(tiny_base)
    bundle.model.extend(PLAN)
    batch = _batch(bundle)
    output = bundle.model(**batch)
    assert sorted(logits.shape[-1] for logits in output.router_logits.values()) == [4, 4, 5, 5]
    assert torch.isfinite(output.aux_loss)
    batch.pop("attention_mask")
    no_mask = bundle.model(**batch)
    assert no_mask.aux_loss > 0


def test_placeholder_count_mismatch_raises(tiny_base):
    bundle = _bundle(tiny_base)
    batch = _batch(bundle, count=2)
    with pytest.raises(ValueError, match="image placeholder"):
        bundle.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:1])


class _FailingCollator:
    """Collates normally, then raises on call ``fail_at`` to simulate a crash mid-run."""

    def __init__(self, collator, fail_at: int) -> None:
        self.collator, self.fail_at, self.calls = collator, fail_at, 0

    def __call__(self, items):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.collator(items)


def test_interrupted_training_resumes_identically(tiny_base, tmp_path):
    settings = TrainingSettings(learning_rate=1e-2, max_steps=4, batch_size=4, save_steps=2, log_steps=0)
    results = []
    for name, fail_at in (("straight", None), ("crashed", 3)):
        # The projector and calibration start random, so both runs start from the same seed.
        torch.manual_seed(0)
        bundle = _bundle(tiny_base)
        bundle.model.extend(PLAN)
        dataset = make_dataset(bundle, color_samples(8))
        collator = ChatCollator(bundle.tokenizer.pad_token_id)
        names = finetune_trainable_names(bundle.model)
        if fail_at is not None:
            with pytest.raises(RuntimeError, match="simulated crash"):
                train_parameters(
                    bundle.model,
                    dataset,
                    _FailingCollator(collator, fail_at),
                    trainable=names,
                    settings=settings,
                    output_dir=tmp_path / name,
                )
            bundle = _bundle(tiny_base)
            bundle.model.extend(PLAN)
        summary = train_parameters(
            bundle.model, dataset, collator, trainable=names, settings=settings, output_dir=tmp_path / name
        )
        results.append(
            (summary, {n: p.detach().clone() for n, p in bundle.model.named_parameters() if n in names})
        )
    (straight, straight_params), (resumed, resumed_params) = results
    assert straight.start_step == 0
    assert resumed.start_step == 2
    assert resumed.losses == straight.losses[2:]
    for name, tensor in straight_params.items():
        assert torch.equal(resumed_params[name], tensor), name


def test_keep_probe_router_option_saves_routers(tiny_base, tmp_path):
    from moextend.stages import extend_from_usage

    bundle = _bundle(tiny_base)
    settings = TrainingSettings(learning_rate=1e-2, max_steps=2, batch_size=4, log_steps=0)
    result = run_probe(bundle, color_samples(12), settings, tmp_path / "probe", validation_size=4)
    plan = extend_from_usage(
        bundle,
        result.usage,
        probed_routers=result.probed_routers,
        keep_probe_router=True,
        legacy_ascending_argsort=True,
    )
    weights = dict(bundle.model.named_parameters())
    for index, probed in result.probed_routers.items():
        assert torch.equal(weights[f"language_model.model.layers.{index}.mlp.gate.weight"], probed)
    for index, sources in zip(plan.layers, plan.source_experts, strict=True):
        new_row = weights[f"language_model.model.layers.{index}.mlp.new_router"][0]
        assert torch.equal(new_row, result.probed_routers[index][sources[0]])
    assert "language_model.model.layers.0.mlp.gate.weight" in bundle.model.delta_names()

    probed_bundle = load_bundle(tmp_path / "probe")
    with pytest.raises(ValueError, match="probed router weights"):
        extend_from_usage(probed_bundle, result.usage)

    bundle.model.save_pretrained(tmp_path / "extended")
    loaded = MoExtendModel.from_pretrained(tmp_path / "extended")
    loaded_weights = dict(loaded.named_parameters())
    assert torch.equal(
        loaded_weights["language_model.model.layers.0.mlp.gate.weight"], result.probed_routers[0]
    )


def test_keep_probe_router_needs_weights(tiny_base):
    from moextend.stages import extend_from_usage

    bundle = _bundle(tiny_base)
    usage = {
        "layers": [0, 1, 2, 3],
        "before": {"top_k": [[1.0] * 4] * 4},
        "after": {"top_k": [[1.0, 2.0, 3.0, 4.0]] * 4},
    }
    with pytest.raises(ValueError, match="probed router weights"):
        extend_from_usage(bundle, usage, keep_probe_router=True)
