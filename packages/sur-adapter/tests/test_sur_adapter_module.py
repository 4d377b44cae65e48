"""Adapter forward pass, initial values, batch mixing, parameter count and save/load."""

from __future__ import annotations

import math

import pytest
import torch

from sur_adapter.adapter import AdapterAttention, SURAdapter


def tiny_adapter(**kwargs) -> SURAdapter:
    torch.manual_seed(0)
    return SURAdapter(32, nhead=4, dim_feedforward=64, **kwargs)


def randomize_fc(adapter: SURAdapter) -> None:
    with torch.no_grad():
        adapter.fc.weight.normal_(0.0, 0.2)


def test_output_shapes():
    adapter = tiny_adapter().eval()
    x = torch.randn(3, 77, 32)
    y, h, o = adapter(x)
    assert y.shape == (3, 77, 32)
    assert h.shape == (3, 77, 32)
    assert o.shape == (3, 77, 32)


@pytest.mark.parametrize("beta", [0.1, 0.01, 0.5])
def test_initial_output_is_mix_with_fc_bias(beta):
    adapter = tiny_adapter(adapter_weight=beta)
    x = torch.randn(2, 77, 32)
    y = adapter(x).embeds
    expected = beta * adapter.fc.bias.detach() + (1.0 - beta) * x
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert torch.count_nonzero(adapter.fc.weight) == 0


def test_zero_fc_bias_gives_scaled_input():
    adapter = tiny_adapter(adapter_weight=0.1, zero_fc_bias=True)
    x = torch.randn(2, 77, 32)
    torch.testing.assert_close(adapter(x).embeds, 0.9 * x, rtol=0, atol=0)


def test_zero_beta_returns_input():
    adapter = tiny_adapter(adapter_weight=0.0)
    randomize_fc(adapter)
    x = torch.randn(2, 77, 32)
    torch.testing.assert_close(adapter(x).embeds, x, rtol=0, atol=0)


def test_attention_matches_hand_computation():
    torch.manual_seed(1)
    attention = AdapterAttention(8)
    h = torch.randn(2, 5, 8)
    x = torch.randn(2, 5, 8)
    result = attention(query=h, key=x, value=x)
    for b in range(2):
        q = h[b] @ attention.query_layer.weight.T + attention.query_layer.bias
        k = x[b] @ attention.key_layer.weight.T + attention.key_layer.bias
        scores = torch.exp(q @ k.T / math.sqrt(8))
        weights = scores / scores.sum(dim=1, keepdim=True)
        z = weights @ x[b] + x[b]
        first, _, second = attention.output_layer
        expected = second(torch.relu(first(z))) + z
        torch.testing.assert_close(result[b], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("legacy", "mixes"), [(False, False), (True, True)])
def test_batch_mixing_only_with_legacy_flag(legacy, mixes):
    adapter = tiny_adapter(legacy_batch_first_bug=legacy).eval()
    randomize_fc(adapter)
    x = torch.randn(3, 77, 32)
    changed = x.clone()
    changed[2] += torch.randn(77, 32)
    with torch.no_grad():
        before = adapter(x)
        after = adapter(changed)
    for name in ("embeds", "transformer_states"):
        other_samples_differ = not torch.allclose(
            getattr(before, name)[:2], getattr(after, name)[:2], atol=1e-6
        )
        assert other_samples_differ == mixes, name


def test_parameter_count_at_768():
    layer = 3 * 768 * 768 + 3 * 768 + 768 * 768 + 768 + 768 * 2048 + 2048 + 2048 * 768 + 768 + 4 * 768
    linear = 768 * 768 + 768
    adapter = SURAdapter(768, keep_value_layer=True)
    assert sum(p.numel() for p in adapter.parameters()) == 2 * layer + 5 * linear + linear
    assert layer == 5_513_984
    slim = SURAdapter(768)
    assert sum(p.numel() for p in slim.parameters()) == 2 * layer + 4 * linear + linear


def test_save_load_round_trip(tmp_path):
    adapter = tiny_adapter(llm_dim=16, adapter_weight=0.2).eval()
    randomize_fc(adapter)
    adapter.save_pretrained(tmp_path / "adapter")
    loaded = SURAdapter.from_pretrained(tmp_path / "adapter")
    x = torch.randn(2, 77, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).embeds, adapter(x).embeds, rtol=0, atol=0)
    assert loaded.config == adapter.config
    for name, tensor in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.llm_projection is not None


def test_from_pretrained_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        SURAdapter.from_pretrained(tmp_path / "nothing")


def test_official_state_dict_loads(tmp_path):
    source = tiny_adapter(keep_value_layer=True).eval()
    randomize_fc(source)
    official = dict(source.state_dict())
    template = source.transformer_encoder.layers[0].state_dict()
    official.update({f"encoder_layer.{name}": tensor for name, tensor in template.items()})
    target = tiny_adapter()
    target.load_official_state_dict(official)
    target.eval()
    x = torch.randn(2, 77, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x).embeds, source(x).embeds, rtol=0, atol=0)


def test_projection_is_seeded():
    first = SURAdapter(32, nhead=4, dim_feedforward=64, llm_dim=16, projection_seed=3)
    second = SURAdapter(32, nhead=4, dim_feedforward=64, llm_dim=16, projection_seed=3)
    assert torch.equal(first.llm_projection.weight, second.llm_projection.weight)
    assert first.project_llm(torch.randn(5, 16)).shape == (5, 1, 32)


def test_wrong_width_is_rejected():
    adapter = tiny_adapter()
    with pytest.raises(ValueError, match=r"\(batch, tokens, 32\)"):
        adapter(torch.randn(2, 77, 16))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="divisible by nhead"):
        SURAdapter(30, nhead=8)
    with pytest.raises(ValueError, match="adapter_weight"):
        SURAdapter(32, nhead=4, adapter_weight=1.5)
