"""Teacher vectors from a tiny LLaMA, pooling, and the on-disk cache."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sur_adapter.components import _bundled_word_piece_tokenizer
from sur_adapter.teacher import (
    MissingPromptError,
    PromptVectors,
    cached_prompt_vectors,
    compute_prompt_vectors,
    feature_cache_path,
    load_prompt_vectors,
    pool_hidden_states,
    save_prompt_vectors,
)

PROMPTS = ["a cat on a sofa", "a red car parked near a very tall building", "moon"]


@pytest.fixture(scope="module")
def tiny_llama():
    tokenizer = _bundled_word_piece_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def test_mean_pooling_matches_unpadded_run(tiny_llama):
    model, tokenizer = tiny_llama
    vectors = compute_prompt_vectors(PROMPTS, model=model, tokenizer=tokenizer, layer=1, batch_size=3)
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states[1]
        torch.testing.assert_close(vectors[prompt], hidden[0].mean(dim=0), rtol=1e-4, atol=1e-5)
        assert vectors[prompt].shape == (48,)


def test_layer_out_of_range(tiny_llama):
    model, tokenizer = tiny_llama
    with pytest.raises(ValueError, match="out of range"):
        compute_prompt_vectors(PROMPTS, model=model, tokenizer=tokenizer, layer=3)


def test_pooling_modes():
    hidden = torch.arange(12.0).reshape(1, 4, 3).repeat(2, 1, 1)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    torch.testing.assert_close(
        pool_hidden_states(hidden, mask, "mean"), torch.stack([hidden[0, :3].mean(0), hidden[1, 1:].mean(0)])
    )
    torch.testing.assert_close(
        pool_hidden_states(hidden, mask, "last"), torch.stack([hidden[0, 2], hidden[1, 3]])
    )
    torch.testing.assert_close(
        pool_hidden_states(hidden, mask, "first"), torch.stack([hidden[0, 0], hidden[1, 1]])
    )
    with pytest.raises(ValueError, match="valid values"):
        pool_hidden_states(hidden, mask, "max")


class ExplodingModel(torch.nn.Module):
    """Stands in for the teacher when the cache must be used."""

    def forward(self, *args, **kwargs):
        raise AssertionError("the teacher ran although the cache was valid")


def cache(tmp_path, model, tokenizer, layer=1):
    return cached_prompt_vectors(
        PROMPTS, model_id="tiny-llama", layer=layer, cache_dir=tmp_path, model=model, tokenizer=tokenizer
    )


def test_cache_hit_skips_teacher(tmp_path, tiny_llama):
    model, tokenizer = tiny_llama
    first = cache(tmp_path, model, tokenizer)
    exploding = ExplodingModel()
    exploding.register_parameter("weight", torch.nn.Parameter(torch.zeros(1)))
    second = cache(tmp_path, exploding, tokenizer)
    for prompt in PROMPTS:
        assert torch.equal(first[prompt], second[prompt])


def test_cache_key_depends_on_layer_and_prompts(tmp_path):
    base = feature_cache_path(tmp_path, model_id="m", layer=1, pooling="mean", prompts=PROMPTS)
    assert base != feature_cache_path(tmp_path, model_id="m", layer=2, pooling="mean", prompts=PROMPTS)
    assert base != feature_cache_path(tmp_path, model_id="m", layer=1, pooling="mean", prompts=PROMPTS[:2])
    assert base != feature_cache_path(tmp_path, model_id="other", layer=1, pooling="mean", prompts=PROMPTS)
    assert base == feature_cache_path(
        tmp_path, model_id="m", layer=1, pooling="mean", prompts=list(reversed(PROMPTS))
    )


def test_corrupt_cache_is_rebuilt(tmp_path, tiny_llama, caplog):
    model, tokenizer = tiny_llama
    reference = cache(tmp_path, model, tokenizer)
    path = feature_cache_path(tmp_path, model_id="tiny-llama", layer=1, pooling="mean", prompts=PROMPTS)
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="sur_adapter.teacher"):
        rebuilt = cache(tmp_path, model, tokenizer)
    assert "Rebuilding" in caplog.text
    assert torch.equal(rebuilt[PROMPTS[0]], reference[PROMPTS[0]])
    assert load_prompt_vectors(path).metadata["layer"] == 1


def test_mismatched_cache_is_rebuilt(tmp_path, tiny_llama, caplog):
    model, tokenizer = tiny_llama
    path = feature_cache_path(tmp_path, model_id="tiny-llama", layer=1, pooling="mean", prompts=PROMPTS)
    wrong = {prompt: torch.zeros(48) for prompt in PROMPTS}
    save_prompt_vectors(wrong, path, metadata={"model_id": "tiny-llama", "layer": 0, "pooling": "mean"})
    with caplog.at_level(logging.WARNING, logger="sur_adapter.teacher"):
        rebuilt = cache(tmp_path, model, tokenizer)
    assert "stored layer 0" in caplog.text
    assert not torch.equal(rebuilt[PROMPTS[0]], torch.zeros(48))


def test_official_format_round_trip(tmp_path):
    vectors = {"a dog": torch.randn(1, 8), "a cat": torch.randn(1, 8)}
    path = save_prompt_vectors(vectors, tmp_path / "39.pt", official_format=True)
    assert set(torch.load(path, weights_only=True)) == {"a dog", "a cat"}
    loaded = load_prompt_vectors(path)
    assert loaded.dim == 8
    assert loaded.lookup(["a cat", "a dog"]).shape == (2, 8)


def test_missing_prompt_names_prompt_and_file():
    vectors = PromptVectors({"a dog": torch.zeros(4)}, source="prompt2vec/13B/39.pt")
    with pytest.raises(MissingPromptError, match=r"'a horse'.*prompt2vec/13B/39.pt"):
        vectors.lookup(["a horse"])


def test_mixed_shapes_rejected():
    with pytest.raises(ValueError, match="mixed shapes"):
        PromptVectors({"a": torch.zeros(4), "b": torch.zeros(5)}, source="x.pt")
