import copy

import pytest
import torch

from clot.backbone import build_tiny_backbone, load_backbone
from clot.instructions import Instruction
from clot.training import (
    LoraSettings,
    TrainConfig,
    apply_lora,
    is_lora_parameter,
    load_adapter,
    save_adapter,
    train_lora,
)
from qcore.testing import assert_all_parameters_get_gradients, assert_only_changed, snapshot_parameters

TEXTS = ["Based on the question, think of a sentence. Let's think outside the box.", "A funny answer 猫 パン"]
TINY = {"hidden_size": 32, "num_layers": 1, "vocab_size": 300, "max_length": 96}
LORA = LoraSettings(rank=4, alpha=8.0, dropout=0.0)


def _instruction(prompt="Question: why?", target="Because the box said so.", image=None):
    return Instruction(
        task="generation", language="en", game_type="T2T", prompt=prompt, target=target, image=image
    )


@pytest.fixture(scope="module")
def image_path(sample_root):
    return str(sample_root / "images" / "en-cat.png")


@pytest.fixture(scope="module")
def text_backbone_template():
    return build_tiny_backbone(TEXTS, multimodal=False, **TINY)


@pytest.fixture(scope="module")
def llava_backbone_template():
    return build_tiny_backbone(TEXTS, multimodal=True, image_size=16, patch_size=8, **TINY)


@pytest.fixture
def text_backbone(text_backbone_template):
    return copy.deepcopy(text_backbone_template)


@pytest.fixture
def llava_backbone(llava_backbone_template):
    return copy.deepcopy(llava_backbone_template)


def test_lora_changes_only_adapter_and_lowers_loss(text_backbone):
    backbone = apply_lora(text_backbone, LORA)
    before = snapshot_parameters(backbone.model)
    config = TrainConfig(learning_rate=5e-2, weight_decay=0.0, batch_size=2, micro_batch_size=1, max_steps=30)
    result = train_lora(backbone, [_instruction(), _instruction(target="Fish.")], config)
    assert result.steps == 30
    assert result.losses[-1] < result.losses[0] - 0.1
    assert_only_changed(before, backbone.model, is_lora_parameter)


def test_lora_gradients_reach_every_adapter_weight(text_backbone):
    backbone = apply_lora(text_backbone, LORA)
    trainable = [name for name, p in backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all(is_lora_parameter(name) for name in trainable)
    # lora_B starts at zero, so lora_A only gets a gradient once lora_B moved.
    for name, parameter in backbone.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    batch = backbone.collate([backbone.encode_example("Question: why?", "Because.", None)])
    assert_all_parameters_get_gradients(backbone.model, backbone.model(**batch).loss)


def test_adapter_save_load_identical(text_backbone, tmp_path):
    backbone = text_backbone
    backbone.save_pretrained(tmp_path / "base")
    apply_lora(backbone, LORA)
    config = TrainConfig(learning_rate=1e-2, batch_size=1, micro_batch_size=1, max_steps=3)
    train_lora(backbone, [_instruction()], config)
    backbone.model.eval()
    batch = backbone.collate([backbone.encode_example("Question: why?", "Because.", None)])
    expected = backbone.model(**batch).logits

    save_adapter(backbone, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    loaded = load_adapter(load_backbone(tmp_path / "base"), tmp_path / "adapter", trainable=False)
    loaded.model.eval()
    torch.testing.assert_close(loaded.model(**batch).logits, expected, rtol=0, atol=0)
    assert loaded.prompt_ids("Question: why?", None) == backbone.prompt_ids("Question: why?", None)


def test_load_adapter_missing_folder(text_backbone, tmp_path):
    backbone = text_backbone
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        load_adapter(backbone, tmp_path)


def test_llava_lora_on_language_model_only(llava_backbone, image_path):
    backbone = llava_backbone
    apply_lora(backbone, LORA)
    lora_names = [name for name, _ in backbone.model.named_parameters() if is_lora_parameter(name)]
    assert lora_names and all("language_model" in name for name in lora_names)

    example = backbone.encode_example("Based on the image.", "A cat.", image_path)
    assert example["input_ids"].count(backbone.image_token_id) == backbone.num_image_tokens == 4
    assert example["pixel_values"].shape == (3, 16, 16)
    before = snapshot_parameters(backbone.model)
    config = TrainConfig(learning_rate=1e-2, batch_size=2, micro_batch_size=2, max_steps=2)
    train_lora(backbone, [_instruction(image=image_path), _instruction()], config)
    assert_only_changed(
        before, backbone.model, lambda name: is_lora_parameter(name) and "language_model" in name
    )


def test_text_backbone_rejects_images(text_backbone, image_path):
    backbone = text_backbone
    with pytest.raises(ValueError, match="text-only"):
        backbone.prompt_ids("Based on the image.", image_path)


def test_scores_match_loss(text_backbone):
    backbone = text_backbone
    prompt, continuation = "Question: why?", "B."
    score = backbone.score_continuations(prompt, None, [continuation, "A longer continuation."])[0]
    prompt_ids = backbone.prompt_ids(prompt, None)
    target_ids = backbone.tokenizer(" " + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
    with torch.no_grad():
        loss = backbone.model(input_ids=ids, labels=labels).loss
    assert score == pytest.approx(-loss.item() * len(target_ids), rel=1e-4)


def test_generate_returns_text(llava_backbone, image_path):
    backbone = llava_backbone
    text = backbone.generate("Based on the image.", image_path, max_new_tokens=4, do_sample=False)
    assert isinstance(text, str)


def test_train_config_checks():
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainConfig(batch_size=10, micro_batch_size=4)
    with pytest.raises(ValueError, match="rank"):
        LoraSettings(rank=0)
