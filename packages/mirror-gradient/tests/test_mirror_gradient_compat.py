"""Each RecBole compatibility fix, checked against the failure it prevents."""

import importlib
import sys

import numpy as np
import pytest
import scipy.sparse
import torch

from mirror_gradient import compat


def test_all_fixes_applied_on_import():
    assert set(compat.applied_fixes()) == {
        "numpy_aliases",
        "dok_matrix_update",
        "torch_load_weights_only",
        "quick_start_without_ray",
        "anomaly_detection_off",
    }


def test_numpy_aliases_let_config_build(synthetic_data):
    from mirror_gradient.pipeline import build_config

    for alias, target in (
        ("float_", np.float64),
        ("complex_", np.complex128),
        ("unicode_", np.str_),
        ("bool8", np.bool_),
    ):
        assert getattr(np, alias) is target
    config = build_config("VBPR", synthetic_data, mg=True, seed=0)
    assert np.float is np.float64
    assert config["model"] == "VBPR"


def test_dok_matrix_update_fills_entries():
    matrix = scipy.sparse.dok_matrix((3, 4), dtype=np.float32)
    matrix._update({(0, 1): 1.0, (2, 3): 0.5})
    expected = np.zeros((3, 4), dtype=np.float32)
    expected[0, 1], expected[2, 3] = 1.0, 0.5
    np.testing.assert_array_equal(matrix.toarray(), expected)
    assert matrix.nnz == 2


def test_lightgcn_builds_its_adjacency(build_model):
    from recbole.model.general_recommender import LightGCN

    config, _, train_data, _, _ = build_model("VBPR")
    model = LightGCN(config, train_data.dataset)
    assert model.norm_adj_matrix.shape[0] == model.n_users + model.n_items


class PickledObject:
    """A non-tensor object, like RecBole's Config, that a weights-only load rejects."""

    def __init__(self, value):
        self.value = value


def test_trainer_torch_load_reads_pickled_checkpoint(tmp_path):
    trainer_module = importlib.import_module("recbole.trainer.trainer")
    path = tmp_path / "checkpoint.pth"
    torch.save({"config": PickledObject(3), "state_dict": {"w": torch.ones(2)}}, path)

    with pytest.raises(Exception, match="weights_only"):
        torch.load(path)
    checkpoint = trainer_module.torch.load(path, map_location="cpu")

    assert checkpoint["config"].value == 3
    assert trainer_module.torch.Tensor is torch.Tensor


def test_quick_start_imports_without_ray():
    quick_start = importlib.import_module("recbole.quick_start")
    assert "ray" not in sys.modules
    assert importlib.util.find_spec("ray") is None
    with pytest.raises(ImportError, match="ray"):
        _ = quick_start.quick_start.tune.run


def test_anomaly_detection_is_off_after_recbole_import():
    assert "recbole.model.sequential_recommender.sine" in sys.modules
    assert not torch.is_anomaly_enabled()
