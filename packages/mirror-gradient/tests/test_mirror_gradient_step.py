"""Mirror Gradient's update rule and schedule, checked on plain PyTorch with hand-computed values."""

import math

import pytest
import torch

from mirror_gradient.mirror import MirrorGradient, expected_optimizer_steps, mirrored_batches


def quadratic_setup(optimizer_cls=torch.optim.SGD, **optimizer_kwargs):
    # loss(theta) = 0.5 * sum(a * theta^2) + b . theta, so grad(theta) = a * theta + b.
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    a = torch.tensor([2.0, 1.0, 4.0])
    b = torch.tensor([0.3, -0.1, 0.2])
    optimizer = optimizer_cls([theta], **optimizer_kwargs)

    def loss():
        return 0.5 * (a * theta**2).sum() + (b * theta).sum()

    def grad(value):
        return a * value + b

    return theta, optimizer, loss, grad


@pytest.mark.parametrize("update", ["optimizer", "sgd"])
def test_mirror_pair_matches_sgd_algebra(update):
    lr, alpha1, alpha2 = 0.1, 1.0, 0.3
    theta, optimizer, loss, grad = quadratic_setup(lr=lr)
    start = theta.detach().clone()
    mirror = MirrorGradient(optimizer, alpha1=alpha1, alpha2=alpha2, beta=3, update=update)

    result = mirror.step(loss)

    theta_prime = start - alpha1 * lr * grad(start)
    expected = theta_prime + alpha2 * lr * grad(theta_prime)
    assert result.mirrored
    assert result.optimizer_steps == 2
    torch.testing.assert_close(theta.detach(), expected)


def test_sgd_update_ignores_adam_state():
    lr, alpha1, alpha2 = 0.05, 1.0, 0.2
    theta, optimizer, loss, grad = quadratic_setup(torch.optim.Adam, lr=lr)
    start = theta.detach().clone()
    mirror = MirrorGradient(optimizer, alpha1=alpha1, alpha2=alpha2, beta=1, update="sgd")

    mirror.step(loss)

    theta_prime = start - alpha1 * lr * grad(start)
    torch.testing.assert_close(theta.detach(), theta_prime + alpha2 * lr * grad(theta_prime))
    assert optimizer.state[theta] == {}


def test_normal_iteration_is_plain_step():
    lr = 0.1
    theta, optimizer, loss, grad = quadratic_setup(lr=lr)
    mirror = MirrorGradient(optimizer, beta=3)
    mirror.step(loss)
    after_mirror = theta.detach().clone()

    result = mirror.step(loss)

    assert not result.mirrored
    assert result.optimizer_steps == 1
    torch.testing.assert_close(theta.detach(), after_mirror - lr * grad(after_mirror))


def test_alpha2_zero_is_scaled_plain_training():
    lr, alpha1 = 0.1, 0.7
    theta_mg, optimizer_mg, loss_mg, _ = quadratic_setup(lr=lr)
    theta_ref, optimizer_ref, loss_ref, _ = quadratic_setup(lr=lr)
    mirror = MirrorGradient(optimizer_mg, alpha1=alpha1, alpha2=0.0, beta=2)

    for index in range(5):
        mirror.step(loss_mg)
        optimizer_ref.zero_grad()
        scale = alpha1 if index % 2 == 0 else 1.0
        (scale * loss_ref()).backward()
        optimizer_ref.step()

    torch.testing.assert_close(theta_mg.detach(), theta_ref.detach())


@pytest.mark.parametrize(("num_batches", "beta"), [(10, 3), (9, 3), (1, 3), (7, 1), (5, 8)])
def test_steps_per_epoch_batch_counter(num_batches, beta):
    _, optimizer, loss, _ = quadratic_setup(lr=0.01)
    mirror = MirrorGradient(optimizer, alpha2=0.1, beta=beta)
    calls = []
    original_step = optimizer.step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return original_step(*args, **kwargs)

    optimizer.step = counting_step
    for _epoch in range(2):
        mirror.start_epoch()
        mirrored = [index for index in range(num_batches) if mirror.step(loss).mirrored]
        assert mirrored == mirrored_batches(num_batches, beta)

    per_epoch = num_batches + math.ceil(num_batches / beta)
    assert expected_optimizer_steps(num_batches, beta) == per_epoch
    assert len(calls) == 2 * per_epoch
    assert mirror.optimizer_steps == 2 * per_epoch


def test_global_counter_counts_from_one_across_epochs():
    _, optimizer, loss, _ = quadratic_setup(lr=0.01)
    mirror = MirrorGradient(optimizer, alpha2=0.1, beta=3, counter="global")
    mirrored_steps = []
    step = 0
    for _epoch in range(3):
        mirror.start_epoch()
        for _batch in range(4):
            step += 1
            if mirror.step(loss).mirrored:
                mirrored_steps.append(step)

    assert mirrored_steps == [3, 6, 9, 12]


def test_mirror_pass_reuses_same_batch():
    theta = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([theta], lr=0.1)
    mirror = MirrorGradient(optimizer, beta=1)
    batch = {
        "users": torch.tensor([3, 1]),
        "positives": torch.tensor([5, 2]),
        "negatives": torch.tensor([7, 0]),
    }
    seen = []

    def loss():
        seen.append({key: value.clone() for key, value in batch.items()})
        return (theta * batch["users"].float()).sum()

    mirror.step(loss)

    assert len(seen) == 2
    for key in batch:
        assert torch.equal(seen[0][key], seen[1][key])


def test_clipping_only_before_second_step():
    lr = 1.0
    theta, optimizer, loss, grad = quadratic_setup(lr=lr)
    start = theta.detach().clone()
    max_norm = 1e-3
    mirror = MirrorGradient(optimizer, alpha1=1.0, alpha2=0.5, beta=1, clip_grad_norm={"max_norm": max_norm})

    mirror.step(loss)

    theta_prime = start - lr * grad(start)
    second = 0.5 * grad(theta_prime)
    clipped = second * (max_norm / (second.norm() + 1e-6))
    torch.testing.assert_close(theta.detach(), theta_prime + lr * clipped)


def test_tuple_losses_are_summed_and_checked():
    _, optimizer, loss, _ = quadratic_setup(lr=0.1)
    checked = []
    mirror = MirrorGradient(optimizer, beta=1)

    result = mirror.step(lambda: (loss(), 2 * loss()), check_loss=checked.append)

    assert len(checked) == 2
    assert len(result.losses) == 2
    torch.testing.assert_close(result.loss, result.losses[0] + result.losses[1])


def test_disabled_is_plain_training():
    _, optimizer, loss, _ = quadratic_setup(lr=0.1)
    mirror = MirrorGradient(optimizer, beta=1, enabled=False)
    assert not mirror.step(loss).mirrored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0}, "mg_beta"),
        ({"beta": 1.5}, "mg_beta"),
        ({"alpha1": -1.0}, "mg_alpha1"),
        ({"alpha2": float("nan")}, "mg_alpha2"),
        ({"counter": "epoch"}, "mg_counter"),
        ({"update": "adam"}, "mg_update"),
    ],
)
def test_invalid_settings_raise(kwargs, message):
    _, optimizer, _, _ = quadratic_setup(lr=0.1)
    with pytest.raises(ValueError, match=message):
        MirrorGradient(optimizer, **kwargs)


def test_alpha2_not_below_alpha1_warns():
    _, optimizer, _, _ = quadratic_setup(lr=0.1)
    with pytest.warns(UserWarning, match="alpha1 > alpha2"):
        MirrorGradient(optimizer, alpha1=0.2, alpha2=0.5)
