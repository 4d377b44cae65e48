import dataclasses
import json

import pytest

from qcore.config import Config, check_positive, check_range, option
from qcore.registry import Registry, UnknownNameError


def test_registry_rejects_duplicate_names():
    registry = Registry("attention")
    registry.add("se", object())
    with pytest.raises(ValueError, match="already registered"):
        registry.add("se", object())


def test_registry_unknown_name_lists_close_matches():
    registry = Registry("attention")
    for name in ("se", "spem", "lsas"):
        registry.add(name, name)
    with pytest.raises(UnknownNameError) as caught:
        registry.get("spen")
    message = str(caught.value)
    assert "'spem'" in message
    assert "Valid names: lsas, se, spem" in message
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)


def test_registry_decorator_uses_object_name():
    registry = Registry("model")

    @registry.register()
    def tiny():
        return 1

    assert registry.get("tiny") is tiny
    assert "tiny" in registry
    assert list(registry) == ["tiny"]


@dataclasses.dataclass(kw_only=True)
class ToyConfig(Config):
    lr: float = option(0.1, help="learning rate")
    milestones: tuple[int, ...] = option((81, 122), help="epochs where the learning rate drops")
    block: str = option("bottleneck", help="block type", choices=("basic", "bottleneck"))

    def validate(self) -> None:
        super().validate()
        check_positive("lr", self.lr)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_round_trip(tmp_path, suffix):
    config = ToyConfig(lr=0.05, milestones=(3, 4), block="basic")
    path = config.save(tmp_path / f"config{suffix}")
    assert ToyConfig.load(path) == config


def test_config_is_keyword_only():
    with pytest.raises(TypeError):
        ToyConfig(0.1)  # type: ignore[misc]


def test_config_rejects_bad_choice_with_valid_values():
    with pytest.raises(ValueError, match=r"block='bottle'.*Did you mean 'bottleneck'.*Valid values"):
        ToyConfig(block="bottle")


def test_config_rejects_non_positive_value():
    with pytest.raises(ValueError, match=r"lr=-1"):
        ToyConfig(lr=-1)


def test_config_unknown_key_suggests_field(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 0.1, "milestone": [1]}))
    with pytest.raises(ValueError, match="did you mean 'milestones'"):
        ToyConfig.load(path)


def test_config_load_rejects_other_config_type(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_type": "OtherConfig"}))
    with pytest.raises(ValueError, match="contains a OtherConfig"):
        ToyConfig.load(path)


def test_option_requires_help():
    with pytest.raises(ValueError, match="help"):
        option(1, help="")


def test_check_range_bounds():
    check_range("p", 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
        check_range("p", 1.5, 0.0, 1.0)
