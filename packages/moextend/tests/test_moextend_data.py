"""LLaVA-format parsing, chat template, answer-only label masking and batching."""

from __future__ import annotations

import json

import pytest
import torch

from moextend.data import ChatCollator, encode_conversation, load_llava_json, parse_llava_records
from moextend.tiny import IMAGE_TOKEN, build_tokenizer

from .conftest import CORPUS

NUM_IMAGE_TOKENS = 4


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CORPUS, vocab_size=300)


def _record(image="a.png", question="<image>\nDescribe the image.", answer="a red square"):
    record = {
        "id": "x",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
    }
    if image is not None:
        record["image"] = image
    return record


def test_labels_mask_prompt_and_image(tokenizer):
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    turns = [("<image>\nDescribe the image.", "a red square")]
    input_ids, labels = encode_conversation(tokenizer, turns, image_token_id=image_id, num_image_tokens=4)

    answer = tokenizer("a red square", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_length = len(input_ids) - len(answer)
    assert input_ids[0] == tokenizer.bos_token_id
    assert input_ids[prompt_length:] == answer
    assert labels[prompt_length:] == answer
    assert labels[:prompt_length] == [-100] * prompt_length
    image_positions = [i for i, token in enumerate(input_ids) if token == image_id]
    assert len(image_positions) == NUM_IMAGE_TOKENS
    assert image_positions == list(range(image_positions[0], image_positions[0] + NUM_IMAGE_TOKENS))
    prompt_text = tokenizer.decode([t for t in input_ids[1:prompt_length] if t != image_id])
    assert prompt_text == "[INST]\nDescribe the image.[/INST]"


def test_multi_turn_labels_cover_every_answer(tokenizer):
    turns = [("first question", "one"), ("second question", "two")]
    _, labels = encode_conversation(tokenizer, turns, image_token_id=4, num_image_tokens=4)
    kept = [token for token in labels if token != -100]
    expected = []
    for answer in ("one", "two"):
        expected += tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert kept == expected


def test_prompt_only_stops_after_inst(tokenizer):
    input_ids, labels = encode_conversation(
        tokenizer, [("hello", "ignored")], image_token_id=4, num_image_tokens=4, prompt_only=True
    )
    assert tokenizer.decode(input_ids, skip_special_tokens=True).endswith("[/INST]")
    assert set(labels) == {-100}


def test_truncation_through_image_span_raises(tokenizer):
    with pytest.raises(ValueError, match="cut an image span"):
        encode_conversation(
            tokenizer,
            [("<image>\nDescribe the image.", "a red square")],
            image_token_id=4,
            num_image_tokens=20,
            max_length=10,
        )


def test_collator_pads_and_masks():
    items = [
        {"input_ids": torch.tensor([1, 5, 6]), "labels": torch.tensor([-100, -100, 6]), "pixel_values": None},
        {
            "input_ids": torch.tensor([1, 7]),
            "labels": torch.tensor([-100, 7]),
            "pixel_values": torch.zeros(3, 8, 8),
        },
    ]
    batch = ChatCollator(pad_token_id=0)(items)
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 6], [-100, 7, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["pixel_values"].shape == (1, 3, 8, 8)


def test_parse_keeps_first_turn_and_roles(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    record = _record()
    record["conversations"] += [{"from": "user", "value": "again?"}, {"from": "assistant", "value": "yes"}]
    (first,) = parse_llava_records([record], image_folder=tmp_path)
    assert first.turns == [("<image>\nDescribe the image.", "a red square")]
    (both,) = parse_llava_records([record], image_folder=tmp_path, all_turns=True)
    assert both.turns[1] == ("again?", "yes")


def test_parse_adds_missing_image_marker(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (sample,) = parse_llava_records([_record(question="Describe it.")], image_folder=tmp_path)
    assert sample.turns[0][0] == "<image>\nDescribe it."


def test_missing_image_error_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        parse_llava_records([_record(image="missing.png")], image_folder=tmp_path)


@pytest.mark.parametrize(
    ("conversations", "message"),
    [
        ([{"from": "human", "value": "q"}], "pair up"),
        ([{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}], "alternate"),
        ([{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}], "role 'robot'"),
        ([{"from": "human"}, {"from": "gpt", "value": "a"}], "'from' and 'value'"),
        ([{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}], "empty assistant answer"),
        ([], "non-empty list"),
    ],
)
def test_malformed_turns_raise(conversations, message):
    with pytest.raises(ValueError, match=message):
        parse_llava_records([{"conversations": conversations}], source="data.json")


def test_marker_without_image_raises():
    with pytest.raises(ValueError, match="no 'image'"):
        parse_llava_records([_record(image=None)])


def test_load_llava_json_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "data.json"
    path.write_text(json.dumps([_record()]))
    (sample,) = load_llava_json(path)
    assert sample.image == tmp_path / "a.png"
    path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_llava_json(path)
