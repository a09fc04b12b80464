"""Reading and overriding any setting of an EditConfig by a dotted path ("drag.learning_rate",
"supervision.radius", "schedule.max_steps"), so every preset value is visible and changeable."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
from numbers import Real

from .errors import DragInputError

_SCALARS = (bool, int, float, str, type(None))


_PACKAGE = __name__.rsplit(".", 1)[0]


def _is_part(value) -> bool:
    """A settings object of the engine (a dataclass or a strategy), not a tensor or a list."""
    return dataclasses.is_dataclass(value) or type(value).__module__.startswith(_PACKAGE)


def _fields(obj) -> dict:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    # a strategy: its constructor arguments are its public attributes; "name" is reported by the parent
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "name"}


def settings_of(config, prefix: str = "") -> dict:
    """Flat {dotted path: value} of every scalar setting (tuples of scalars included)."""
    out = {}
    for name, value in _fields(config).items():
        path = f"{prefix}{name}"
        if value is None and not prefix:
            continue  # a part the preset leaves out (e.g. no auto-mask), not a number to set
        if isinstance(value, _SCALARS) or (isinstance(value, tuple) and all(isinstance(v, _SCALARS) for v in value)):
            out[path] = value
        elif _is_part(value):
            if not dataclasses.is_dataclass(value) and isinstance(getattr(value, "name", None), str):
                out[path] = value.name
            out.update(settings_of(value, path + "."))
    return out


def apply_overrides(config, overrides: dict):
    """A copy of config with each dotted path set; unknown paths and wrong types are rejected."""
    config = copy.deepcopy(config)
    known = settings_of(config)
    for path, value in overrides.items():
        owner = _owner(config, path) if path in known else None
        if owner is not None and not isinstance(getattr(owner, path.split(".")[-1]), _SCALARS + (tuple,)):
            raise DragInputError(f"{path!r} is a strategy ({known[path]}); choose it with the tracker, "
                                 "supervision and schedule inputs", input="overrides")
        if owner is None:
            near = [k for k in known if k.split(".")[-1] == str(path).split(".")[-1]]
            hint = f" (did you mean {', '.join(near[:3])}?)" if near else ""
            raise DragInputError(f"unknown setting {path!r}{hint}; settings of this preset: "
                                 f"{', '.join(sorted(known))}", input="overrides")
        setattr(owner, path.split(".")[-1], _coerce(path, known[path], value))
        _recheck(path, owner)
    return config


def _recheck(path: str, owner) -> None:
    """Let the part's own constructor judge the new value (ranges, choices): rebuild it from its
    settings and turn what it raises into the user's error."""
    try:
        if dataclasses.is_dataclass(owner):
            dataclasses.replace(owner)
        else:
            params = inspect.signature(type(owner)).parameters
            type(owner)(**{k: getattr(owner, k) for k in params if hasattr(owner, k)})
    except (TypeError, ValueError) as e:
        detail = e.detail if isinstance(e, DragInputError) else str(e)
        raise DragInputError(f"{path}: {detail}", input="overrides") from None


def parse_overrides(text: str) -> dict:
    """JSON object text from a node widget ("" or "{}" for none)."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise DragInputError(f"overrides must be JSON text, got {type(text).__name__}", input="overrides")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DragInputError(f"overrides are not valid JSON ({e}); expected e.g. "
                             '{"drag.learning_rate": 0.02}', input="overrides") from None
    if not isinstance(data, dict):
        raise DragInputError("overrides must be a JSON object of setting: value", input="overrides")
    return data


def _owner(config, path: str):
    for p in path.split(".")[:-1]:
        config = getattr(config, p)
    return config


def _coerce(path: str, current, value):
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise DragInputError(f"{path} takes true or false, got {value!r}", input="overrides")
        return value
    if current is None and isinstance(value, (list, tuple)):
        current = ()  # an optional list setting (e.g. drag.features.size)
    if isinstance(current, (int, float)) or current is None:
        return _number(path, current, value)
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise DragInputError(f"{path} takes a list, got {_short(value)}", input="overrides")
        kinds = {type(v) for v in current}
        if not value and current:
            raise DragInputError(f"{path} takes a non-empty list", input="overrides")
        out = []
        for v in value:
            if kinds == {str} or isinstance(v, str):
                if not isinstance(v, str) or (kinds and kinds != {str}):
                    raise DragInputError(f"{path} takes a list of {'text' if kinds == {str} else 'numbers'}, "
                                         f"got {_short(value)}", input="overrides")
                out.append(v)
            else:  # list entries may be negative (block indices count from the end)
                out.append(_number(path, next(iter(kinds)) if kinds else None, v, signed=True))
        return tuple(out)
    if not isinstance(value, str):
        raise DragInputError(f"{path} takes text, got {value!r}", input="overrides")
    return value


def _number(path: str, current, value, signed: bool = False):
    """A finite number (whole for integer settings; not negative unless signed)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise DragInputError(f"{path} takes a finite number, got {_short(value)}", input="overrides")
    whole = isinstance(current, int) and not isinstance(current, bool) or current is int
    if whole and not float(value).is_integer():
        raise DragInputError(f"{path} takes a whole number, got {value!r}", input="overrides")
    if value < 0 and not signed:
        raise DragInputError(f"{path} takes a number >= 0, got {value!r}", input="overrides")
    return int(value) if whole or isinstance(value, int) and current is None else float(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
