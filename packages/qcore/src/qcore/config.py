"""Keyword-only dataclass configs with help texts, validation and a YAML/JSON round trip."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import yaml

__all__ = ["Config", "check_choice", "check_positive", "check_range", "option"]

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    choices: Iterable[Any] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a config field with its help text and, optionally, the values it may take."""
    if not help:
        raise ValueError("every config field needs a help text")
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    valid = list(choices)
    if value not in valid:
        close = difflib.get_close_matches(str(value), [str(c) for c in valid], n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"invalid {name}={value!r}.{hint} Valid values: {', '.join(map(repr, valid))}")


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"invalid {name}={value!r}: must be a number greater than 0")


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"invalid {name}={value!r}: must be between {low} and {high} inclusive")


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


class Config:
    """Base class for ``@dataclass(kw_only=True)`` configs.

    Subclasses declare fields with :func:`option` and override :meth:`validate` for cross-field checks; the
    ``choices`` given to :func:`option` are checked automatically.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check field values; raise ``ValueError`` naming the field, the bad value and the valid ones."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = field.metadata.get("choices")
            if choices is not None:
                check_choice(field.name, getattr(self, field.name), choices)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Return each field's help text, keyed by field name."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain YAML/JSON-safe values (tuples become lists, paths strings)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build a config from a mapping; unknown keys raise ``ValueError`` with close matches."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = [key for key in values if key not in fields]
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"unknown {cls.__name__} keys: {', '.join(parts)}. Valid keys: {', '.join(sorted(fields))}"
            )
        kwargs = {}
        for key, value in values.items():
            default = fields[key].default
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML (``.yaml``/``.yml``) or JSON (``.json``), chosen by the suffix."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"_type": type(self).__name__, **self.to_dict()}
        if path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(data, sort_keys=False)
        elif path.suffix == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            raise ValueError(
                f"unsupported config file suffix {path.suffix!r} in {path}; use .yaml, .yml or .json"
            )
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a config written by :meth:`save` (or by hand) from YAML or JSON."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise ValueError(f"cannot parse config file {path}: {error}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must contain a mapping, got {type(data).__name__}")
        saved_type = data.pop("_type", None)
        if saved_type is not None and saved_type != cls.__name__:
            raise ValueError(f"config file {path} contains a {saved_type}, not a {cls.__name__}")
        return cls.from_dict(data)
