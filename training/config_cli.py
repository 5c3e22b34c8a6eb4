"""Run configurations as dataclasses, read from a YAML/JSON file and command-line flags.

Both stages describe a run with one dataclass whose fields all have defaults. Every field is
also a flag (``learning_rate`` -> ``--learning-rate``): booleans as ``--flag`` / ``--no-flag``,
optional values accept ``none``, ``tuple[str, ...]`` fields take several words and
``tuple[float, float]`` fields two numbers. Flags override the file, the file overrides the
defaults. A field's ``metadata["help"]`` becomes its flag's help.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

Config = TypeVar("Config")


def help_text(text: str) -> dict[str, str]:
    """Field metadata carrying a flag's help: ``field(default=..., metadata=help_text("..."))``."""
    return {"help": text}


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the non-None type of a hint, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0], True
    return hint, False


def _is_pair(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is not Ellipsis


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """A file value checked against the field's type hint (ints are accepted for floats)."""
    base, optional = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be null")
    if _is_pair(base):
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{name} must be a pair of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if typing.get_origin(base) is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (base is bool) != isinstance(value, bool) or not isinstance(value, base):
        raise ValueError(f"{name} must be {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def read_config_file(cls: type[Config], path: str | Path) -> dict[str, Any]:
    """The settings in a YAML (``.yaml``/``.yml``) or JSON file, checked against ``cls``'s fields.

    Raises ValueError for an unreadable file, a top level that is not a mapping, unknown keys
    (naming the closest field) and values of the wrong type."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read the config file {source}: {err}") from err
    if source.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{source} is not valid YAML: {err}") from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not valid JSON: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a mapping of setting names to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = [key for key in data if key not in hints]
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(hints), n=1)
            named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{source}: unknown setting(s) {', '.join(named)}")
    return {key: _coerce(key, hints[key], value) for key, value in data.items()}


def _optional(kind: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser(cls: type[Config], prog: str, description: str) -> argparse.ArgumentParser:
    """``--config FILE`` plus one flag per field of ``cls``; unset flags are absent from the result."""
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file of settings (flags override it)")
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = "--" + item.name.replace("_", "-")
        base, optional = _base_type(hints[item.name])
        default = item.default if item.default is not dataclasses.MISSING else None
        described = f"{item.metadata.get('help', '')} (default: {default!r})".lstrip()
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=described)
        elif _is_pair(base):
            parser.add_argument(flag, type=float, nargs=2, metavar=("MIN", "MAX"), help=described)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, nargs="+", type=str, help=described)
        else:
            parser.add_argument(flag, type=_optional(base) if optional else base, help=described)
    return parser


def parse_config(cls: type[Config], argv: Sequence[str] | None, prog: str, description: str) -> Config:
    """``cls`` from ``argv``: its ``--config`` file first, flags on top, then ``validate()``.
    Raises ValueError for bad files or values; argparse exits on malformed flags."""
    args = vars(build_parser(cls, prog, description).parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("config", None)
    if config_file is not None:
        values.update(read_config_file(cls, config_file))
    values.update({key: tuple(value) if isinstance(value, list) else value for key, value in args.items()})
    config = cls(**values)
    config.validate()  # type: ignore[attr-defined]
    return config
