import random

import numpy as np
import pytest
import torch
from torch import nn

from qcore.checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_checkpoint_round_trip_restores_outputs(tmp_path):
    model = _model().eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(
        tmp_path / "ck",
        model=model,
        config={"lr": 0.1},
        training_state={"optimizer": optimizer.state_dict(), "epoch": 3},
    )
    loaded = load_checkpoint(tmp_path / "ck")
    clone = _model().eval()
    clone.load_state_dict(loaded.state_dict)
    inputs = torch.randn(5, 4)
    assert torch.equal(model(inputs), clone(inputs))
    assert loaded.config == {"lr": 0.1}
    assert loaded.training_state["epoch"] == 3
    assert "momentum_buffer" in loaded.training_state["optimizer"]["state"][0]


def test_checkpoint_overwrite_leaves_no_temporary_folders(tmp_path):
    save_checkpoint(tmp_path / "last", model=_model())
    save_checkpoint(tmp_path / "last", model=_model())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert latest_checkpoint(tmp_path.parent / tmp_path.name) is None
    assert load_checkpoint(tmp_path / "last").state_dict


def test_truncated_weights_are_detected(tmp_path):
    save_checkpoint(tmp_path / "ck", model=_model())
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "ck")


def test_foreign_folder_is_rejected(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="not a qcore checkpoint"):
        load_checkpoint(tmp_path)


def test_missing_folder_names_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")


def test_load_model_weights_lists_key_mismatch(tmp_path):
    save_checkpoint(tmp_path / "ck", model=_model())
    other = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model_weights(other, tmp_path / "ck")


def test_rng_state_round_trip(tmp_path):
    state = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), torch.rand(1).item())
    save_checkpoint(tmp_path / "ck", model={}, training_state={"rng": state})
    restore_rng_state(load_checkpoint(tmp_path / "ck").training_state["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == expected
