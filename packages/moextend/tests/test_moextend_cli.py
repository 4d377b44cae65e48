"""The ``moextend`` command line end to end on the tiny preset, resuming, and its error handling."""

from __future__ import annotations

import json

import yaml

from moextend.cli import main
from moextend.model import MoExtendModel


def test_cli_three_stages_and_chat(tmp_path, capsys):
    align, probe, extend, finetune = (tmp_path / name for name in ("align", "probe", "extend", "finetune"))
    assert main(["align", "--preset", "tiny", "--output-dir", str(align), "--max-steps", "3"]) == 0
    data = str(align / "tiny-data" / "data.json")
    common = ["--preset", "tiny", "--data-path", data, "--max-steps", "3"]
    assert main(["probe", "--model", str(align), "--output-dir", str(probe), *common]) == 0
    assert (probe / "usage.json").is_file()
    assert (
        main(["extend", "--model", str(align), "--probe-dir", str(probe), "--output-dir", str(extend)]) == 0
    )
    assert main(["finetune", "--model", str(extend), "--output-dir", str(finetune), *common]) == 0

    model = MoExtendModel.from_pretrained(finetune / "model")
    assert len(model.plan.layers) == 2
    resolved = yaml.safe_load((finetune / "config.yaml").read_text())
    assert resolved["max_steps"] == 3
    summary = json.loads((finetune / "finetune_summary.json").read_text())
    assert summary["steps"] == 3

    capsys.readouterr()
    image = align / "tiny-data" / "images" / "0000.png"
    assert main(["chat", "--model", str(finetune), "--image", str(image), "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip() != ""

    # A rerun finds checkpoints/last at the final step and trains nothing more.
    assert main(["finetune", "--model", str(extend), "--output-dir", str(finetune), *common]) == 0
    assert json.loads((finetune / "finetune_summary.json").read_text())["steps"] == 0


def test_cli_config_file_and_flag_override(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"max_steps": 5, "preset": "tiny", "output_dir": str(tmp_path / "run")}))
    assert main(["align", "--config", str(config), "--max-steps", "2"]) == 0
    assert json.loads((tmp_path / "run" / "align_summary.json").read_text())["steps"] == 2


def test_cli_bad_input_exits_with_2(tmp_path, capsys):
    assert (
        main(
            [
                "finetune",
                "--model",
                str(tmp_path / "missing"),
                "--data-path",
                str(tmp_path / "none.json"),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert main(["extend", "--model", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 2
    assert "--probe-dir" in capsys.readouterr().err
    config = tmp_path / "bad.yaml"
    config.write_text("lerning_rate: 0.1\n")
    assert main(["align", "--config", str(config), "--output-dir", str(tmp_path / "out")]) == 2
    assert "lerning_rate" in capsys.readouterr().err
