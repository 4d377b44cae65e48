"""Extended MoE block: layout converter, copy initialisation, routing identities at initialisation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from moextend.block import ExtendedSparseMoeBlock
from moextend.experts import FusedExpertsView, ModuleListExpertsView, read_experts
from moextend.extend import ExtensionPlan, extend_model, extended_blocks, find_moe_layers
from moextend.tiny import MOE_FAMILIES, tiny_moe_model


class _V4Expert(nn.Module):
    """The transformers 4.x Mixtral expert layout: w1 (gate), w3 (up), w2 (down)."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, intermediate, bias=False)
        self.w2 = nn.Linear(intermediate, hidden, bias=False)
        self.w3 = nn.Linear(hidden, intermediate, bias=False)
        self.act_fn = nn.SiLU()


class _V4Block(nn.Module):
    """The transformers 4.x Mixtral block layout: a Linear gate and a ModuleList of experts."""

    def __init__(self, fused_block: nn.Module) -> None:
        super().__init__()
        gate_up = fused_block.experts.gate_up_proj.detach()
        down = fused_block.experts.down_proj.detach()
        num_experts, double_intermediate, hidden = gate_up.shape
        intermediate = double_intermediate // 2
        self.gate = nn.Linear(hidden, num_experts, bias=False)
        self.gate.weight.data.copy_(fused_block.gate.weight.detach())
        self.experts = nn.ModuleList(_V4Expert(hidden, intermediate) for _ in range(num_experts))
        for index, expert in enumerate(self.experts):
            expert.w1.weight.data.copy_(gate_up[index, :intermediate])
            expert.w3.weight.data.copy_(gate_up[index, intermediate:])
            expert.w2.weight.data.copy_(down[index])


class _V4DecoderLayer(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block_sparse_moe = block


class _V4Model(nn.Module):
    """A module tree shaped like a transformers 4.x MixtralForCausalLM (model.layers[i].block_sparse_moe)."""

    def __init__(self, blocks: list[nn.Module], config) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(_V4DecoderLayer(block) for block in blocks)
        self.config = config


@pytest.fixture(scope="module")
def mixtral():
    return tiny_moe_model("mixtral", seed=0)


def _hidden(seed: int = 1, tokens: int = 64, hidden: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, tokens, hidden, generator=generator)


def test_converter_reads_v5_fused_layout(mixtral):
    view = read_experts(mixtral.model.layers[0].mlp.experts, 32)
    assert isinstance(view, FusedExpertsView)
    assert view.num_experts == 4
    assert view.intermediate_size == 64


def test_converter_reads_v4_module_list_layout(mixtral):
    fused = mixtral.model.layers[0].mlp
    v4 = _V4Block(fused)
    view = read_experts(v4.experts, 32)
    assert isinstance(view, ModuleListExpertsView)
    tokens = _hidden()[0]
    fused_view = read_experts(fused.experts, 32)
    for index in range(4):
        torch.testing.assert_close(view.expert_output(index, tokens), fused_view.expert_output(index, tokens))
        for v4_weight, v5_weight in zip(
            view.fused_weights(index), fused_view.fused_weights(index), strict=True
        ):
            assert torch.equal(v4_weight, v5_weight)


def test_extension_of_v4_tree_matches_v5(mixtral):
    v5 = copy.deepcopy(mixtral)
    blocks = [_V4Block(layer.mlp) for layer in v5.model.layers]
    v4 = _V4Model(blocks, v5.config)
    plan = ExtensionPlan(layers=[1, 3], source_experts=[[2], [0]])
    assert [layer.attribute for layer in find_moe_layers(v4)] == ["block_sparse_moe"] * 4
    extend_model(v4, plan)
    extend_model(v5, plan)
    hidden = _hidden()
    for index in plan.layers:
        v4_out = v4.model.layers[index].block_sparse_moe(hidden)
        v5_out = v5.model.layers[index].mlp(hidden)
        torch.testing.assert_close(v4_out, v5_out, rtol=1e-6, atol=1e-6)


def test_copy_initialisation(mixtral):
    model = copy.deepcopy(mixtral)
    extend_model(model, ExtensionPlan(layers=[0, 2], source_experts=[[3], [1]]))
    block = model.model.layers[2].mlp
    assert isinstance(block, ExtendedSparseMoeBlock)
    assert torch.equal(block.new_gate_up_proj[0], block.experts.gate_up_proj[1])
    assert torch.equal(block.new_down_proj[0], block.experts.down_proj[1])
    assert torch.equal(block.new_router[0], block.gate.weight[1])
    assert torch.equal(block.calibration.fc2.weight, torch.zeros_like(block.calibration.fc2.weight))
    probabilities = torch.softmax(torch.randn(10, 5), dim=-1)
    assert torch.equal(block.calibration(probabilities), torch.zeros(10, 5))
    assert block.calibration.fc1.weight.std() > 0


def test_init_output_without_and_with_copied_expert(mixtral):
    """Tokens whose original top-2 excludes the source expert keep their output.

    Where the source expert ranked first, it now ties with its copy at weights 1/2 and 1/2, so the output is
    that expert alone. Where it ranked second, the copy or the source joins the first expert with the
    original weights, so the output is unchanged."""
    model = copy.deepcopy(mixtral)
    original = copy.deepcopy(model.model.layers[1].mlp)
    source = 2
    extend_model(model, ExtensionPlan(layers=[1], source_experts=[[source]]))
    block = model.model.layers[1].mlp
    hidden = _hidden(seed=3, tokens=256)
    tokens = hidden[0]

    with torch.no_grad():
        expected = original(hidden)[0]
        actual = block(hidden)[0]
        original_top = torch.topk(torch.softmax(tokens @ original.gate.weight.T, dim=-1), 2).indices
        source_alone = read_experts(original.experts, 32).expert_output(source, tokens)

    excludes = (original_top != source).all(dim=-1)
    first = original_top[:, 0] == source
    second = original_top[:, 1] == source
    assert excludes.any()
    assert first.any()
    assert second.any()
    torch.testing.assert_close(actual[excludes], expected[excludes], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(actual[second], expected[second], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(actual[first], source_alone[first], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(actual[first], expected[first], atol=1e-4)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_very_negative_column_keeps_original(family):
    model = tiny_moe_model(family, seed=0, norm_topk_prob=False)
    original = copy.deepcopy(model)
    extend_model(model, ExtensionPlan(layers=[0, 3], source_experts=[[1], [2]]))
    for block in extended_blocks(model).values():
        with torch.no_grad():
            block.new_router.zero_()
            block.new_router[:, 0] = -1e4
    hidden = _hidden(seed=4)
    hidden[..., 0] = hidden[..., 0].abs() + 1.0
    # The new logit is -1e4 * x_0 with x_0 >= 1, so softmax gives the new expert probability 0.
    with torch.no_grad():
        for index in (0, 3):
            torch.testing.assert_close(
                model.model.layers[index].mlp(hidden),
                original.model.layers[index].mlp(hidden),
                rtol=1e-6,
                atol=1e-6,
            )


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_extended_family_model_trains(family):
    model = tiny_moe_model(family, seed=0)
    blocks = extend_model(model, ExtensionPlan(layers=[1, 2], source_experts=[[0], [3]]))
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    loss = model(input_ids=ids, labels=ids, output_router_logits=False).loss
    loss.backward()
    for block in blocks.values():
        assert block.new_gate_up_proj.grad is not None
        assert block.new_router.grad is not None
    assert torch.isfinite(loss)


def test_calibration_changes_weights_not_selection(mixtral):
    model = copy.deepcopy(mixtral)
    extend_model(model, ExtensionPlan(layers=[0], source_experts=[[0]]))
    block = model.model.layers[0].mlp
    tokens = _hidden(seed=5)[0]
    with torch.no_grad():
        _, weights_before, index_before = block.route(tokens)
        block.calibration.fc2.weight.normal_(0.0, 1.0)
        _, weights_after, index_after = block.route(tokens)
    assert torch.equal(index_before, index_after)
    assert not torch.allclose(weights_before, weights_after)
    torch.testing.assert_close(weights_after.sum(-1), torch.ones(tokens.shape[0]))


def test_gradients_reach_new_parameters(mixtral):
    model = copy.deepcopy(mixtral)
    extend_model(model, ExtensionPlan(layers=[2], source_experts=[[1]]))
    block = model.model.layers[2].mlp
    with torch.no_grad():
        block.calibration.fc2.weight.normal_(0.0, 0.1)
    block(_hidden(seed=6, tokens=128)).square().sum().backward()
    for param in block.new_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_bad_plan_errors(mixtral):
    model = copy.deepcopy(mixtral)
    with pytest.raises(ValueError, match="not a sparse-MoE layer"):
        extend_model(model, ExtensionPlan(layers=[7], source_experts=[[0]]))
    with pytest.raises(ValueError, match="outside"):
        extend_model(model, ExtensionPlan(layers=[0], source_experts=[[9]]))
    with pytest.raises(ValueError, match="same number"):
        ExtensionPlan(layers=[0, 1], source_experts=[[0], [0, 1]])


def test_qwen2_moe_shared_expert_rejected():
    holder = nn.Module()
    holder.model = nn.Module()
    layer = nn.Module()
    layer.mlp = nn.Module()
    layer.mlp.gate, layer.mlp.experts, layer.mlp.shared_expert = (
        nn.Linear(4, 2),
        nn.ModuleList(),
        nn.Linear(4, 4),
    )
    holder.model.layers = nn.ModuleList([layer])
    with pytest.raises(ValueError, match="shared expert"):
        find_moe_layers(holder)
