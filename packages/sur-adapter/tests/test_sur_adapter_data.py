"""SURD-format folders: reading, preprocessing and clear errors on bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from sur_adapter.data import SURDataset, read_metadata
from sur_adapter.embedded import EMBEDDED_SAMPLES, write_embedded_dataset


def write_folder(root, lines, images=("a.png",)):
    root.mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", (40, 30), "red").save(root / name)
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_dataset_items(data_root):
    dataset = SURDataset(data_root, resolution=16)
    item = dataset[0]
    assert item["pixel_values"].shape == (3, 16, 16)
    assert item["pixel_values"].min() >= -1.0
    assert item["pixel_values"].max() <= 1.0
    assert item["text"] == EMBEDDED_SAMPLES[0][1]
    assert item["prompt"] == EMBEDDED_SAMPLES[0][2]
    assert len(dataset) == 4


def test_embedded_set_has_distinct_prompts(tmp_path):
    root = write_embedded_dataset(tmp_path, size=16)
    records = read_metadata(root)
    assert len(records) == len(EMBEDDED_SAMPLES)
    assert len({record.text for record in records}) == len(records)
    assert all(len(record.prompt) > 2 * len(record.text) for record in records)


def test_file_name_without_extension(tmp_path):
    root = write_folder(tmp_path / "d", [json.dumps({"file_name": "a", "text": "t", "prompt": "p"})])
    assert read_metadata(root)[0].image_path.name == "a.png"


def test_missing_metadata(tmp_path):
    tmp_path.joinpath("d").mkdir()
    with pytest.raises(FileNotFoundError, match=r"metadata\.jsonl not found"):
        read_metadata(tmp_path / "d")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Data folder not found"):
        read_metadata(tmp_path / "absent")


def test_invalid_json_line(tmp_path):
    root = write_folder(
        tmp_path / "d", [json.dumps({"file_name": "a.png", "text": "t", "prompt": "p"}), "{oops"]
    )
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        read_metadata(root)


def test_missing_prompt_key(tmp_path):
    root = write_folder(tmp_path / "d", [json.dumps({"file_name": "a.png", "text": "t"})])
    with pytest.raises(ValueError, match=r"line 1: missing key\(s\) \['prompt'\]"):
        read_metadata(root)


def test_empty_text(tmp_path):
    root = write_folder(tmp_path / "d", [json.dumps({"file_name": "a.png", "text": " ", "prompt": "p"})])
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        read_metadata(root)


def test_missing_image(tmp_path):
    root = write_folder(tmp_path / "d", [json.dumps({"file_name": "b.png", "text": "t", "prompt": "p"})])
    with pytest.raises(FileNotFoundError, match=r"image 'b\.png' not found"):
        read_metadata(root)
