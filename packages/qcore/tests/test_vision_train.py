"""Tests of the classification trainer: recipe, aux losses, checkpoints and exact resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from qcore.checkpoint import load_checkpoint
from qcore.rundir import RunDir
from qcore.vision.data import TensorImageDataset, build_datasets
from qcore.vision.resnet import create_cifar_resnet
from qcore.vision.train import TrainConfig, evaluate_classifier, train_classifier


class _Penalty(nn.Module):
    """Gate that is always 1 but passes gradients to p, with aux loss ‖p‖² and p initialised to (0.5, 0.5)."""

    def __init__(self, channels, *, device=None, dtype=None):
        super().__init__()
        self.p = nn.Parameter(torch.full((2,), 0.5))

    def forward(self, x):
        return x * (self.p.sum() / self.p.sum().detach())

    def aux_loss(self):
        return (self.p**2).sum()


@pytest.fixture(scope="module")
def tiny_data():
    train, test, _ = build_datasets("digits", image_size=16, seed=0)
    common = {
        "mean": train.mean.flatten().tolist(),
        "std": train.std.flatten().tolist(),
        "padding": 2,
        "flip": False,
    }
    small_train = TensorImageDataset(train.images[:96], train.labels[:96], augment=True, seed=0, **common)
    small_test = TensorImageDataset(test.images[:40], test.labels[:40], **common)
    return small_train, small_test


def _config(**changes):
    base = {
        "epochs": 2,
        "milestones": (1,),
        "batch_size": 32,
        "test_batch_size": 40,
        "image_size": 16,
        "device": "cpu",
        "save_best": False,
    }
    return TrainConfig(**{**base, **changes})


def _build(attn_layer=None):
    torch.manual_seed(0)
    return create_cifar_resnet("cifar_resnet8", attn_layer=attn_layer)


def test_recipe_defaults():
    config = TrainConfig()
    assert (config.lr, config.momentum, config.weight_decay, config.nesterov) == (0.1, 0.9, 1e-4, False)
    assert (config.batch_size, config.test_batch_size, config.epochs) == (128, 100, 164)
    assert (config.milestones, config.gamma, config.aux_loss_weight) == ((81, 122), 0.1, 0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("batch_size", 0), ("milestones", (5, 2)), ("weight_decay", -1.0), ("dataset", "mnist")],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        _config(**{field: value})


def test_training_writes_results_and_checkpoints(tmp_path, tiny_data):
    model = _build("se")
    results = train_classifier(model, _config(save_best=True), tmp_path, datasets=tiny_data)
    assert results["epochs_completed"] == 2
    assert results["steps"] == 6
    assert len(results["history"]) == 2
    assert results["best_acc"] == max(r["test_acc"] for r in results["history"])
    assert results["final_acc"] == results["history"][-1]["test_acc"]
    assert [r["lr"] for r in results["history"]] == pytest.approx([0.1, 0.01])
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert checkpoint.config["lr"] == 0.1
    assert checkpoint.training_state["progress"]["epoch"] == 2
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()
    assert len(RunDir(tmp_path).read_metrics()) == 2
    assert (tmp_path / "config.yaml").is_file()


def test_training_loss_includes_weighted_aux_loss(tmp_path, tiny_data):
    model = _build(_Penalty)
    results = train_classifier(
        model, _config(epochs=1, max_steps=2, aux_loss_weight=0.1), tmp_path, datasets=tiny_data
    )
    record = results["history"][0]
    assert record["train_aux"] > 0
    assert record["train_loss"] == pytest.approx(record["train_ce"] + 0.1 * record["train_aux"], rel=1e-6)
    # Three blocks with ‖(0.5, 0.5)‖² = 0.5 each start at 1.5; weight decay and the penalty shrink p.
    assert record["train_aux"] < 1.5


def test_killed_run_resumes_to_identical_weights(tmp_path, tiny_data):
    reference = _build("se")
    reference_results = train_classifier(
        reference, _config(), tmp_path / "reference", resume=False, datasets=tiny_data
    )

    def kill_at_step_four(step):
        if step == 4:
            raise KeyboardInterrupt

    interrupted = _build("se")
    config = _config(checkpoint_every_steps=3)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            interrupted, config, tmp_path / "resumed", datasets=tiny_data, step_callback=kill_at_step_four
        )
    saved = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last").training_state["progress"]
    assert (saved["global_step"], saved["epoch"], saved["step_in_epoch"]) == (3, 1, 0)

    resumed = _build("se")
    resumed_results = train_classifier(resumed, config, tmp_path / "resumed", datasets=tiny_data)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert resumed_results["history"] == reference_results["history"]
    assert len(RunDir(tmp_path / "resumed").read_metrics()) == 2


def test_resume_mid_epoch_matches(tmp_path, tiny_data):
    reference = _build()
    train_classifier(reference, _config(epochs=1), tmp_path / "reference", resume=False, datasets=tiny_data)

    partial = _build()
    train_classifier(partial, _config(epochs=1, max_steps=2), tmp_path / "resumed", datasets=tiny_data)
    resumed = _build()
    train_classifier(resumed, _config(epochs=1), tmp_path / "resumed", datasets=tiny_data)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_evaluate_classifier_counts_correct():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 5.0, 0.0]))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 3)

    images = torch.zeros(4, 1)
    labels = torch.tensor([1, 1, 0, 2])
    loader = DataLoader(list(zip(images, labels, strict=True)), batch_size=3)
    result = evaluate_classifier(Constant(), loader)
    assert result["accuracy"] == 50.0
    assert result["samples"] == 4
    expected_loss = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 5.0, 0.0]]).expand(4, 3), labels)
    assert result["loss"] == pytest.approx(float(expected_loss))


_KILLED_SCRIPT = """
import sys, time, torch
from qcore.vision.data import TensorImageDataset, build_datasets
from qcore.vision.resnet import create_cifar_resnet
from qcore.vision.train import TrainConfig, train_classifier

train, test, _ = build_datasets("digits", image_size=16, seed=0)
common = {"mean": train.mean.flatten().tolist(), "std": train.std.flatten().tolist(), "padding": 2, "flip": False}
data = (
    TensorImageDataset(train.images[:96], train.labels[:96], augment=True, seed=0, **common),
    TensorImageDataset(test.images[:40], test.labels[:40], **common),
)
config = TrainConfig(epochs=2, milestones=(1,), batch_size=32, test_batch_size=40, image_size=16, device="cpu",
                     save_best=False, checkpoint_every_steps=1)
torch.manual_seed(0)
model = create_cifar_resnet("cifar_resnet8", attn_layer="se")
# Slow steps leave time for the parent to kill the process between and during checkpoint writes.
train_classifier(model, config, sys.argv[1], datasets=data, step_callback=lambda step: time.sleep(0.5))
"""


@pytest.mark.slow
def test_sigkill_during_training_resumes_exactly(tmp_path, tiny_data):
    import os
    import signal
    import subprocess
    import sys
    import time

    from qcore.checkpoint import latest_checkpoint

    run = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_SCRIPT, str(run)])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        checkpoint = latest_checkpoint(run)
        if (
            checkpoint is not None
            and load_checkpoint(checkpoint).training_state["progress"]["global_step"] >= 2
        ):
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    progress = load_checkpoint(run / "checkpoints" / "last").training_state["progress"]
    assert progress["global_step"] < 6

    reference = _build("se")
    train_classifier(reference, _config(), tmp_path / "reference", resume=False, datasets=tiny_data)
    resumed = _build("se")
    train_classifier(resumed, _config(checkpoint_every_steps=1), run, datasets=tiny_data)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
