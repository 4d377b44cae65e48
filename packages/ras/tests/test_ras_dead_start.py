"""Gradient of the shared scale w at the official initialisation (w = 0, b = −1).

With w = 0 every sample's z_1 equals b, so the BN between the two steps receives a batch of identical values
and outputs exactly β = 0 on CPU float32. The gradient of w is Σ ∂L/∂z_2 ⊙ BN(z_1) = 0, and BN's γ and β
are multiplied by w = 0, so in the first step only b learns and the gate is the input-independent constant
σ(b). Later steps receive float32 rounding noise from BN's batch mean, which moves w off 0 (by about 1e-7
in the first steps).
"""

import pytest
import torch
from torch import nn

from ras import RAS, create_ras_resnet


def _one_backward(model: nn.Module, batch: int = 8, size: int = 16) -> None:
    torch.manual_seed(1)
    model.train()
    logits = model(torch.randn(batch, 3, size, size))
    nn.functional.cross_entropy(logits, torch.randint(0, logits.shape[1], (batch,))).backward()


def _check_dead_start(model: nn.Module) -> None:
    modules = [m for m in model.modules() if isinstance(m, RAS)]
    assert modules
    for index, module in enumerate(modules):
        assert torch.count_nonzero(module.affine.weight.grad) == 0, (
            f"block {index}: w.grad is not exactly zero"
        )
        assert torch.count_nonzero(module.norms[0].weight.grad) == 0, f"block {index}: BN γ grad is not zero"
        assert torch.count_nonzero(module.norms[0].bias.grad) == 0, f"block {index}: BN β grad is not zero"
        assert torch.count_nonzero(module.affine.bias.grad) > 0, f"block {index}: b.grad is zero"


def test_weight_gradient_is_exactly_zero_at_init():
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet29", num_classes=10)
    _one_backward(model)
    _check_dead_start(model)


@pytest.mark.slow
def test_weight_gradient_is_exactly_zero_at_init_resnet164():
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet164", num_classes=100)
    _one_backward(model, size=32)
    _check_dead_start(model)


def test_weight_stays_near_zero_under_sgd():
    # Once b leaves −1, the batch mean of identical values is no longer always exact in float32, so BN(z_1)
    # and w.grad pick up rounding noise (about 1e-7 here), and w starts to move from 0.
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", num_classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step in range(3):
        optimizer.zero_grad()
        torch.manual_seed(step)
        loss = nn.functional.cross_entropy(model(torch.randn(8, 3, 16, 16)), torch.randint(0, 4, (8,)))
        loss.backward()
        optimizer.step()
    for module in model.attention_modules():
        assert module.affine.weight.abs().max() < 1e-5
        # Weight decay alone shrinks γ by about 6e-5 in three steps.
        assert torch.all(module.norms[0].weight.sub(1).abs() < 1e-3)
        assert torch.any(module.affine.bias != -1)


def test_gate_is_input_independent_at_init():
    module = RAS(16)
    with torch.no_grad():
        module.affine.bias.uniform_(-2, 2)
    module.train()
    gate = module.gate(torch.randn(5, 16, 4, 4))
    torch.testing.assert_close(gate, torch.sigmoid(module.affine.bias).expand_as(gate), rtol=0, atol=0)


def test_nonzero_weight_init_gives_live_gradients():
    torch.manual_seed(0)
    model = create_ras_resnet("cifar_resnet_test", num_classes=4, weight_init=0.1)
    _one_backward(model)
    for module in model.attention_modules():
        assert torch.count_nonzero(module.affine.weight.grad) > 0
        assert torch.count_nonzero(module.norms[0].weight.grad) > 0
