"""Tests of the Stripe Observation tool."""

import pytest
import torch
from timm.layers import SEModule
from torch import nn

from asr import StripeObserver
from asr.stripe import GateRecord, _gate_from_output
from qcore.testing import snapshot_parameters
from qcore.vision.resnet import create_cifar_resnet


def test_variances_match_hand_computed_values():
    gates = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.5, 0.7]])
    record = GateRecord(step=0, module="m", gates=gates)
    # Per channel over the 2 inputs: var(0.1, 0.3) = 0.01, var(0.5, 0.5) = 0, var(0.9, 0.7) = 0.01.
    assert record.across_input_variance == pytest.approx(0.02 / 3)
    # Per input over the 3 channels: var(0.1, 0.5, 0.9) = 0.32/3, var(0.3, 0.5, 0.7) = 0.08/3.
    assert record.across_channel_variance == pytest.approx((0.32 / 3 + 0.08 / 3) / 2)


def test_gate_estimate_exact_for_scaling():
    x = torch.randn(3, 4, 5, 5)
    gate = torch.rand(3, 4, 1, 1)
    torch.testing.assert_close(_gate_from_output(x, x * gate), gate.reshape(3, 4))


def test_observer_records_se_gates_on_schedule():
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    probe = torch.randn(6, 3, 16, 16)
    observer = StripeObserver(model, probe, every=5)
    recorded = [observer.observe(step) for step in range(11)]
    assert recorded == [step % 5 == 0 for step in range(11)]
    assert observer.steps() == [0, 5, 10]
    assert len(observer.modules) == 3
    first = next(iter(observer.modules))
    assert observer.gates(first, 0).shape == (6, 64)

    module = observer.modules[first]
    captured = {}
    handle = module.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    model.eval()
    with torch.no_grad():
        model(probe)
    handle.remove()
    torch.testing.assert_close(observer.gates(first, 0), module.gate(captured["x"]).reshape(6, 64))


def test_observer_leaves_parameters_statistics_and_mode_unchanged():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    model.train()
    before = snapshot_parameters(model)
    statistics = model.layer1[0].bn1.running_mean.clone()
    StripeObserver(model, torch.randn(4, 3, 16, 16), every=1).observe(0)
    assert model.training
    assert all(torch.equal(before[name], parameter) for name, parameter in model.named_parameters())
    assert torch.equal(model.layer1[0].bn1.running_mean, statistics)


def test_observer_works_with_timm_se_without_gate_method():
    module = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SEModule(16))
    observer = StripeObserver(module, torch.randn(4, 3, 8, 8), every=1)
    observer.observe(0)
    gates = observer.gates("1", 0)
    assert gates.shape == (4, 16)
    assert torch.all((gates > 0) & (gates < 1))


def test_summary_has_one_row_per_module_and_step():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    observer = StripeObserver(model, torch.randn(4, 3, 16, 16), every=2)
    for step in range(5):
        observer.observe(step)
    rows = observer.summary()
    assert len(rows) == 3 * 3
    assert {"step", "module", "across_input_variance", "across_channel_variance"} <= set(rows[0])


def test_plot_writes_figure(tmp_path):
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    observer = StripeObserver(model, torch.randn(4, 3, 16, 16), every=1)
    observer.observe(0)
    observer.observe(1)
    path = observer.plot(tmp_path / "stripes.png")
    assert path.is_file()
    assert path.stat().st_size > 0


def test_model_without_attention_is_rejected():
    with pytest.raises(ValueError, match="no attention module"):
        StripeObserver(create_cifar_resnet("cifar_resnet_test"), torch.randn(2, 3, 16, 16))


def test_single_probe_input_is_rejected():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    with pytest.raises(ValueError, match="at least 2 inputs"):
        StripeObserver(model, torch.randn(1, 3, 16, 16))


def test_bad_interval_is_rejected():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="se")
    with pytest.raises(ValueError, match="every must be a positive"):
        StripeObserver(model, torch.randn(2, 3, 16, 16), every=0)


def test_observer_skips_inner_module_of_asr():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="asr_se")
    observer = StripeObserver(model, torch.randn(2, 3, 16, 16))
    assert sorted(observer.modules) == [
        "layer1.0.attn.attention",
        "layer2.0.attn.attention",
        "layer3.0.attn.attention",
    ]
