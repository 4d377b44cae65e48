"""Tests of the SEM module: equations by hand, initial values, switches, gradients, save/load, timm."""

import itertools

import pytest
import torch
from timm.layers import create_attn

from qcore.testing import assert_all_parameters_get_gradients, assert_only_changed, snapshot_parameters
from qcore.vision.attention import ATTENTION
from sem import IE_BIAS_INIT, IE_WEIGHT_INIT, SEM, eca_kernel_size

SWITCHES = [combo for combo in itertools.product([True, False], repeat=3) if any(combo)]


def _perturb(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize(
    ("channels", "kernel"),
    [(16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_eca_kernel_size_per_channel_count(channels, kernel):
    assert eca_kernel_size(channels) == kernel


@pytest.mark.parametrize(("channels", "kernel"), [(64, 3), (128, 5), (256, 5)])
def test_module_uses_adaptive_eca_kernel(channels, kernel):
    module = SEM(channels)
    assert module.eca.kernel_size == (kernel,)
    assert module.eca.padding == (kernel // 2,)
    assert module.eca.bias is None


def test_ie_starts_at_zero_and_minus_one():
    module = SEM(64)
    assert IE_WEIGHT_INIT == 0.0
    assert IE_BIAS_INIT == -1.0
    assert torch.all(module.ie.weight == 0)
    assert torch.all(module.ie.bias == -1)


def test_se_operator_has_official_width():
    assert SEM(64).se.rd_channels == 4
    assert SEM(256).se.rd_channels == 16


def test_parameter_count_matches_formula():
    channels = 128
    module = SEM(channels)
    se = channels * 8 + 8 + 8 * channels + channels
    expected = se + (3 * channels + 3) + 5 + 2 * channels
    assert sum(p.numel() for p in module.parameters()) == expected


def test_decision_is_independent_sigmoids_not_softmax():
    torch.manual_seed(0)
    module = SEM(32)
    _perturb(module)
    x = torch.randn(4, 32, 5, 5)
    decision = module.decide(x)
    assert decision.shape == (4, 3)
    z = x.mean(dim=(2, 3))
    expected = torch.sigmoid(z @ module.decision.weight.T + module.decision.bias)
    torch.testing.assert_close(decision, expected)
    assert not torch.allclose(decision.sum(dim=1), torch.ones(4))


def test_operator_logits_match_hand_computation():
    torch.manual_seed(0)
    module = SEM(64)
    _perturb(module)
    x = torch.randn(2, 64, 4, 4)
    logits = module.operator_logits(x)
    z = x.mean(dim=(2, 3))

    se = module.se
    expected_se = torch.relu(z @ se.fc1.weight.T + se.fc1.bias) @ se.fc2.weight.T + se.fc2.bias
    torch.testing.assert_close(logits["se"].view(2, 64), expected_se)

    kernel = module.eca.weight.view(-1)
    padded = torch.nn.functional.pad(z, (1, 1))
    expected_eca = torch.stack([(padded[:, c : c + 3] * kernel).sum(dim=1) for c in range(64)], dim=1)
    torch.testing.assert_close(logits["eca"].view(2, 64), expected_eca)

    expected_ie = module.ie.weight.view(1, 64) * z + module.ie.bias.view(1, 64)
    torch.testing.assert_close(logits["ie"].view(2, 64), expected_ie)


def test_gate_equals_product_formula():
    torch.manual_seed(0)
    module = SEM(64)
    _perturb(module)
    x = torch.randn(3, 64, 4, 4)
    s = module.decide(x)
    e = module.operator_logits(x)
    expected = (
        torch.sigmoid(s[:, 0].view(3, 1, 1, 1) * e["se"])
        * torch.sigmoid(s[:, 1].view(3, 1, 1, 1) * e["eca"])
        * torch.sigmoid(s[:, 2].view(3, 1, 1, 1) * e["ie"])
    )
    gate = module.gate(x)
    assert gate.shape == (3, 64, 1, 1)
    torch.testing.assert_close(gate, expected)
    torch.testing.assert_close(module(x), x * expected)


def test_gate_at_init_with_zero_ie_weight():
    torch.manual_seed(0)
    module = SEM(64)
    x = torch.randn(2, 64, 4, 4)
    s = module.decide(x)
    e = module.operator_logits(x)
    # IE logits are b = -1 for every input at init.
    torch.testing.assert_close(e["ie"], torch.full_like(e["ie"], -1.0))
    expected_ie = torch.sigmoid(-s[:, 2]).view(2, 1, 1, 1)
    ratio = module.gate(x) / (
        torch.sigmoid(s[:, 0].view(2, 1, 1, 1) * e["se"]) * torch.sigmoid(s[:, 1].view(2, 1, 1, 1) * e["eca"])
    )
    torch.testing.assert_close(ratio, expected_ie.expand_as(ratio))


def test_zero_decision_gives_one_eighth():
    module = SEM(64)
    with torch.no_grad():
        module.decision.weight.zero_()
        module.decision.bias.fill_(-1e4)
    gate = module.gate(torch.randn(2, 64, 4, 4))
    torch.testing.assert_close(gate, torch.full_like(gate, 0.125))


@pytest.mark.parametrize(("use_se", "use_eca", "use_ie"), SWITCHES)
def test_every_operator_subset_builds_and_runs(use_se, use_eca, use_ie):
    torch.manual_seed(0)
    module = SEM(64, use_se=use_se, use_eca=use_eca, use_ie=use_ie)
    enabled = [name for name, on in zip(("se", "eca", "ie"), (use_se, use_eca, use_ie), strict=True) if on]
    assert module.operators == tuple(enabled)
    assert module.decision.out_features == len(enabled)
    assert (module.se is None) != use_se
    assert (module.eca is None) != use_eca
    assert (module.ie is None) != use_ie
    x = torch.randn(2, 64, 4, 4)
    s = module.decide(x)
    e = module.operator_logits(x)
    expected = torch.ones(2, 64, 1, 1)
    for index, name in enumerate(enabled):
        expected = expected * torch.sigmoid(s[:, index].view(2, 1, 1, 1) * e[name])
    torch.testing.assert_close(module.gate(x), expected)
    assert_all_parameters_get_gradients(module, module(x).square().sum())


def test_no_operator_is_rejected():
    with pytest.raises(ValueError, match="at least one operator"):
        SEM(64, use_se=False, use_eca=False, use_ie=False)


def test_even_eca_kernel_is_rejected():
    with pytest.raises(ValueError, match="odd"):
        SEM(64, eca_kernel=4)


def test_bad_channels_are_rejected():
    with pytest.raises(ValueError, match="positive integer channel count"):
        SEM(0)


def test_wrong_input_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 64, H, W\)"):
        SEM(64)(torch.randn(2, 32, 4, 4))


def test_gradients_reach_every_parameter():
    module = SEM(64)
    _perturb(module)
    assert_all_parameters_get_gradients(module, module(torch.randn(2, 64, 4, 4)).square().sum())


def test_optimizer_step_changes_only_module_parameters():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 64, 3, padding=1)
    module = SEM(64)
    model = torch.nn.Sequential(conv, module)
    before = snapshot_parameters(model)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    optimizer.step()
    assert_only_changed(before, model, ["1."])


def test_state_dict_round_trip_gives_identical_outputs():
    torch.manual_seed(0)
    module = SEM(64)
    _perturb(module)
    copy = SEM(64)
    copy.load_state_dict(module.state_dict())
    x = torch.randn(2, 64, 4, 4)
    torch.testing.assert_close(copy(x), module(x), atol=0, rtol=0)


def test_registered_as_sem():
    assert ATTENTION.get("sem") is SEM


def test_timm_create_attn_builds_sem():
    module = create_attn(SEM, 256, device="cpu", dtype=torch.float32)
    assert isinstance(module, SEM)
    assert module(torch.randn(2, 256, 3, 3)).shape == (2, 256, 3, 3)


def test_timm_resnet_runs_with_sem():
    from timm.models.resnet import Bottleneck, ResNet

    model = ResNet(
        block=Bottleneck,
        layers=(1, 1, 1, 1),
        channels=(8, 16, 32, 64),
        stem_width=8,
        num_classes=5,
        block_args={"attn_layer": SEM},
        zero_init_last=False,
    )
    assert isinstance(model.layer1[0].se, SEM)
    output = model(torch.randn(2, 3, 32, 32))
    assert output.shape == (2, 5)
    assert torch.isfinite(output).all()
