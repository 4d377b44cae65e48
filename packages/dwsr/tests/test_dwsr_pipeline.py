"""BasicSR's train_pipeline and test_pipeline on DWSR options files: short runs, resume, missing data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from dwsr import cli
from dwsr._compat import cpu_safe_resume
from dwsr.data import PairedFolder, benchmark_folder, div2k_folder
from dwsr.models.dwsr_model import DWSRModel
from dwsr.pipeline import run_train_pipeline, save_options
from dwsr.recipes import dwsr_network_options, dwsr_train_options

from .conftest import TINY_NETWORK

OPTIONS_DIR = Path(__file__).resolve().parents[1] / "options"


def _folders(dataset: dict[str, Path]) -> tuple[PairedFolder, PairedFolder]:
    train = PairedFolder("skimage_train", dataset["train"] / "GTmod12", dataset["train"] / "LRbicx2")
    test = PairedFolder("skimage_test", dataset["test"] / "GTmod12", dataset["test"] / "LRbicx2")
    return train, test


def _tiny_train_options(dataset, name: str, total_iter: int, checkpoint_freq: int) -> dict:
    train, test = _folders(dataset)
    network = dwsr_network_options(
        2, **{k: v for k, v in TINY_NETWORK.items() if k not in ("type", "upscale")}
    )
    return dwsr_train_options(
        name,
        2,
        train,
        test,
        network=network,
        difficulty={"patch_size": 4},
        total_iter=total_iter,
        num_gpu=0,
        batch_size=2,
        lr_patch=16,
        enlarge_ratio=1,
        num_workers=0,
        val_freq=total_iter,
        checkpoint_freq=checkpoint_freq,
        print_freq=1,
    )


def test_cli_trains_two_iterations_then_tests(tmp_path, tiny_dataset, capsys):
    options = _tiny_train_options(tiny_dataset, "two_iters", total_iter=300, checkpoint_freq=1)
    config = save_options(options, tmp_path / "train.yml")
    code = cli.main(
        ["train", "--config", str(config), "--root", str(tmp_path), "--max-steps", "2", "--num-gpu", "0"]
    )
    assert code == 0
    experiment = tmp_path / "experiments" / "two_iters"
    for name in ("net_g_1.pth", "net_g_2.pth", "net_g_latest.pth"):
        assert (experiment / "models" / name).is_file()
    assert (experiment / "training_states" / "2.state").is_file()
    assert list(experiment.glob("train_two_iters_*.log"))
    resolved = yaml.safe_load((tmp_path / "options" / "two_iters.yml").read_text())
    assert resolved["train"]["total_iter"] == 2
    assert sum(stage["iters"] for stage in resolved["train"]["stages"]) == 2
    assert (experiment / "two_iters.yml").is_file()  # BasicSR's copy of the options

    weights = experiment / "models" / "net_g_latest.pth"
    labels = tmp_path / "labels"
    code = cli.main(
        [
            "label",
            "--skimage",
            "text",
            "--config",
            str(config),
            "--weights",
            str(weights),
            "--output",
            str(labels),
        ]
    )
    assert code == 0
    assert (labels / "text_difficulty.png").is_file()

    _, test = _folders(tiny_dataset)
    test_options = {
        "name": "two_iters_test",
        "model_type": "DWSRModel",
        "scale": 2,
        "num_gpu": 0,
        "manual_seed": 0,
        "datasets": {"test_1": test.dataset_options()},
        "network_g": options["network_g"],
        "path": {"pretrain_network_g": None, "strict_load_g": True},
        "val": {
            "save_img": False,
            "suffix": None,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": True}},
        },
    }
    test_config = save_options(test_options, tmp_path / "test.yml")
    code = cli.main(
        ["test", "--config", str(test_config), "--root", str(tmp_path), "--weights", str(weights)]
    )
    assert code == 0
    assert list((tmp_path / "results" / "two_iters_test").glob("test_two_iters_test_*.log"))
    assert "results:" in capsys.readouterr().out


class _Interrupted(RuntimeError):
    pass


def test_resume_after_interruption(tmp_path, tiny_dataset, monkeypatch):
    options = _tiny_train_options(tiny_dataset, "resumed", total_iter=4, checkpoint_freq=2)
    config = save_options(options, tmp_path / "train.yml")
    original = DWSRModel.optimize_parameters
    seen: list[int] = []

    def interrupt_at_three(self, current_iter):
        if current_iter == 3:
            raise _Interrupted("simulated interruption")
        seen.append(current_iter)
        return original(self, current_iter)

    monkeypatch.setattr(DWSRModel, "optimize_parameters", interrupt_at_three)
    with pytest.raises(_Interrupted):
        run_train_pipeline(config, tmp_path)
    states = tmp_path / "experiments" / "resumed" / "training_states"
    assert sorted(path.name for path in states.iterdir()) == ["2.state"]
    assert seen == [1, 2]

    seen.clear()

    def record(self, current_iter):
        seen.append(current_iter)
        return original(self, current_iter)

    monkeypatch.setattr(DWSRModel, "optimize_parameters", record)
    run_train_pipeline(config, tmp_path, auto_resume=True)
    assert seen == [3, 4]
    state = torch.load(states / "4.state")
    assert state["iter"] == 4
    assert not list((tmp_path / "experiments").glob("resumed_archived_*"))


def test_cpu_safe_resume_restores_basicsr_function():
    import basicsr.train

    original = basicsr.train.load_resume_state
    with cpu_safe_resume():
        assert basicsr.train.load_resume_state is not original
    assert basicsr.train.load_resume_state is original


def test_cli_train_names_missing_folders(tmp_path, capsys):
    config = OPTIONS_DIR / "train_DWSR_x2.yml"
    code = cli.main(
        ["train", "--config", str(config), "--data-root", str(tmp_path / "nowhere"), "--root", str(tmp_path)]
    )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(tmp_path / "nowhere" / "DIV2K" / "DIV2K_train_HR") in error
    assert str(tmp_path / "nowhere" / "Set5" / "GTmod12") in error
    assert "DatasetPreparation" in error


def test_cli_test_without_weights_fails_cleanly(tmp_path, capsys):
    config = OPTIONS_DIR / "test_DWSR_x3.yml"
    code = cli.main(
        ["test", "--config", str(config), "--root", str(tmp_path), "--weights", str(tmp_path / "none.pth")]
    )
    assert code == 2
    assert "none.pth" in capsys.readouterr().err


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_options_files_match_recipe(scale):
    options = yaml.safe_load((OPTIONS_DIR / f"train_DWSR_x{scale}.yml").read_text())
    recipe = dwsr_train_options(
        f"DWSR_x{scale}_DIV2K",
        scale,
        div2k_folder(Path("datasets"), scale),
        benchmark_folder(Path("datasets"), "Set5", scale),
    )
    assert options["name"] == recipe["name"]
    assert options["network_g"] == recipe["network_g"]
    assert options["train"] == recipe["train"]
    for phase in ("train", "val"):
        assert options["datasets"][phase]["dataroot_gt"] == recipe["datasets"][phase]["dataroot_gt"]
        assert options["datasets"][phase]["dataroot_lq"] == recipe["datasets"][phase]["dataroot_lq"]
    assert options["datasets"]["train"]["gt_size"] == recipe["datasets"]["train"]["gt_size"]
    test_options = yaml.safe_load((OPTIONS_DIR / f"test_DWSR_x{scale}.yml").read_text())
    assert test_options["network_g"] == recipe["network_g"]
    names = [dataset["name"] for dataset in test_options["datasets"].values()]
    assert names == ["Set5", "Set14", "BSD100", "Urban100"]
