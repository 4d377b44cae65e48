import json

import pytest

from clot.data import OogiriDataError, read_oogiri_dataset, read_oogiri_jsonl, split_by_input


def _write(path, records):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


def test_sample_dataset_reads(samples):
    assert len(samples) == 85
    assert {s.language for s in samples} == {"en", "zh", "ja"}
    assert {s.game_type for s in samples} == {"I2T", "T2T", "IT2T"}
    for sample in samples:
        if sample.game_type == "T2T":
            assert sample.question and sample.image is None
        else:
            assert sample.image.is_file()


def test_reads_published_fields(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "5651380.jpg").write_bytes(b"not checked")
    path = _write(
        tmp_path / "en.jsonl",
        [
            {"type": "I2T", "question": None, "image": "5651380", "text": " A funny caption. ", "star": 12},
            {"type": "T2T", "question": "Why?", "image": None, "text": "Because.", "star": None},
        ],
    )
    first, second = read_oogiri_jsonl(path, language="en", image_root=tmp_path / "img")
    assert first.image == tmp_path / "img" / "5651380.jpg"
    assert first.text == "A funny caption."
    assert first.star == 12
    assert second.question == "Why?"
    assert second.star is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"type": "V2T", "question": "q", "image": None, "text": "t", "star": 1}, "unknown game type 'V2T'"),
        ({"type": "T2T", "question": "q", "image": None, "text": "   ", "star": 1}, "empty answer"),
        ({"type": "T2T", "question": "q", "image": None, "text": None, "star": 1}, "empty answer"),
        ({"type": "I2T", "question": None, "image": "404", "text": "t", "star": 1}, "image '404' not found"),
        ({"type": "I2T", "question": None, "image": None, "text": "t", "star": 1}, "needs an image id"),
        ({"type": "T2T", "question": "q", "image": None, "text": "t", "star": -3}, "star"),
        ({"type": "T2T", "question": "q", "image": None, "text": "t", "star": "many"}, "star"),
    ],
)
def test_reader_errors_name_line(tmp_path, record, message):
    (tmp_path / "img").mkdir()
    path = _write(
        tmp_path / "en.jsonl", [{"type": "T2T", "question": "q", "image": None, "text": "ok"}, record]
    )
    with pytest.raises(OogiriDataError, match=message) as raised:
        read_oogiri_jsonl(path, language="en", image_root=tmp_path / "img")
    assert "en.jsonl:2" in str(raised.value)


def test_reader_invalid_json(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text('{"type": "T2T",\n', encoding="utf-8")
    with pytest.raises(OogiriDataError, match="invalid JSON"):
        read_oogiri_jsonl(path, language="en")


def test_reader_image_without_root(tmp_path):
    path = _write(tmp_path / "en.jsonl", [{"type": "I2T", "image": "1", "text": "t"}])
    with pytest.raises(OogiriDataError, match="no image root"):
        read_oogiri_jsonl(path, language="en")


def test_reader_missing_files(tmp_path):
    with pytest.raises(OogiriDataError, match="not found"):
        read_oogiri_jsonl(tmp_path / "none.jsonl", language="en")
    with pytest.raises(OogiriDataError, match="CLoT-Oogiri-GO"):
        read_oogiri_dataset(tmp_path)
    with pytest.raises(OogiriDataError, match="data folder not found"):
        read_oogiri_dataset(tmp_path / "absent")
    with pytest.raises(OogiriDataError, match="unknown language"):
        read_oogiri_jsonl(tmp_path / "none.jsonl", language="de")


def test_split_keeps_inputs_together(samples):
    train, test = split_by_input(samples, test_fraction=0.25, seed=0)
    assert len(train) + len(test) == len(samples)
    assert not {s.input_key for s in train} & {s.input_key for s in test}
    assert len({s.input_key for s in test}) == 4
    again, _ = split_by_input(samples, test_fraction=0.25, seed=0)
    assert again == train
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_input(samples, test_fraction=1.0)
