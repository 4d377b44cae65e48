"""SEM inside the CIFAR ResNet: shapes, parameter count, stage mask, gradients, save/load."""

import torch

from qcore.bench import count_parameters
from qcore.testing import assert_all_parameters_get_gradients
from qcore.vision.resnet import create_cifar_resnet
from sem import SEM


def _sem_parameters(channels: int, kernel: int) -> int:
    hidden = channels // 16
    se = channels * hidden + hidden + hidden * channels + channels
    return se + 3 * channels + 3 + kernel + 2 * channels


def test_every_block_gets_sem_and_output_shape():
    model = create_cifar_resnet("cifar_resnet_test", num_classes=7, attn_layer="sem")
    assert [type(m) for m in model.attention_modules()] == [SEM, SEM, SEM]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_parameter_count_adds_formula_per_block():
    plain = create_cifar_resnet("cifar_resnet_test")
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="sem")
    extra = _sem_parameters(64, 3) + _sem_parameters(128, 5) + _sem_parameters(256, 5)
    assert count_parameters(model) == count_parameters(plain) + extra


def test_ie_keeps_its_constants_after_official_init():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="sem")
    for module in model.attention_modules():
        assert torch.all(module.ie.weight == 0)
        assert torch.all(module.ie.bias == -1)


def test_basic_block_network_runs():
    model = create_cifar_resnet("cifar_resnet8", attn_layer="sem")
    output = model(torch.randn(2, 3, 32, 32))
    assert output.shape == (2, 10)
    assert_all_parameters_get_gradients(model, output.square().sum())


def test_empty_stage_mask_equals_plain_resnet():
    torch.manual_seed(0)
    plain = create_cifar_resnet("cifar_resnet_test")
    torch.manual_seed(0)
    masked = create_cifar_resnet("cifar_resnet_test", attn_layer="sem", attn_stages=())
    assert count_parameters(masked) == count_parameters(plain)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(masked.eval()(x), plain.eval()(x), atol=0, rtol=0)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_cifar_resnet("cifar_resnet_test", attn_layer="sem").eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    copy = create_cifar_resnet("cifar_resnet_test", attn_layer="sem").eval()
    copy.load_state_dict(torch.load(tmp_path / "model.pt"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(copy(x), model(x), atol=0, rtol=0)


def test_switched_variant_builds_through_attention_kwargs():
    model = create_cifar_resnet("cifar_resnet_test", attn_layer=lambda c, **kw: SEM(c, use_se=False, **kw))
    assert all(module.se is None for module in model.attention_modules())
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
