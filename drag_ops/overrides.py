"""Reading and overriding any setting of an EditConfig by a dotted path ("drag.learning_rate",
"supervision.radius", "schedule.drag_rounds"), so every preset value is visible and changeable.

The settings are the constructors' arguments under the constructors' names, and each part's RULES
(:mod:`.rules`) say what they may be: an override is converted by its rule and the part rebuilt
through its constructor, which judges it as it judges a value written in code."""

from __future__ import annotations

import copy
import dataclasses
import json

from .errors import DragInputError
from .rules import Part, SettingError, replace


def _rules(obj) -> dict:
    return getattr(type(obj), "RULES", {})


def settings_of(config, prefix: str = "") -> dict:
    """Flat {dotted path: value} of every setting, named as the constructors name them (a strategy's
    name is listed under its part's path; parts the config leaves out, e.g. no auto-mask, are not)."""
    out = {}
    for name, rule in _rules(config).items():
        value, path = getattr(config, name), f"{prefix}{name}"
        if not isinstance(rule, Part):
            out[path] = value
        elif value is not None:
            if not dataclasses.is_dataclass(value) and isinstance(getattr(value, "name", None), str):
                out[path] = value.name
            out.update(settings_of(value, path + "."))
    return out


def rule_of(config, path: str):
    """The rule of the setting at a dotted path, or None (no such setting, or a part)."""
    *parts, last = str(path).split(".")
    obj = config
    for p in parts:
        if not isinstance(_rules(obj).get(p), Part) or getattr(obj, p) is None:
            return None
        obj = getattr(obj, p)
    rule = _rules(obj).get(last)
    return None if rule is None or isinstance(rule, Part) else rule


def apply_overrides(config, overrides: dict):
    """A copy of config with each dotted path set. Each value is converted to its setting's type and
    the part holding it is rebuilt by its own constructor, which judges it (and anything derived
    from it); unknown paths and refused values raise DragInputError on input 'overrides'."""
    config = copy.deepcopy(config)
    for path, value in overrides.items():
        rule = rule_of(config, path)
        if rule is None:
            known = settings_of(config)
            if path in known:
                raise DragInputError(f"{path!r} is a strategy ({known[path]}); choose it with the tracker, "
                                     "supervision and schedule inputs", input="overrides")
            near = [k for k in known if k.split(".")[-1] == str(path).split(".")[-1]]
            hint = f" (did you mean {', '.join(near[:3])}?)" if near else ""
            raise DragInputError(f"unknown setting {path!r}{hint}; settings of this preset: "
                                 f"{', '.join(sorted(known))}", input="overrides")
        try:
            value = rule.coerce(value)
        except ValueError as e:
            raise DragInputError(f"{path} {e}", input="overrides") from None
        *parents, last = path.split(".")
        config = _set(config, parents, last, value, path)
    return config


def _set(obj, parents: list, name: str, value, path: str):
    """A copy of obj with parents...name set to value, each part on the way rebuilt by its
    constructor (so it judges the value, and what it derives from it follows, e.g. a name)."""
    if parents:
        value = _set(getattr(obj, parents[0]), parents[1:], name, value, path)
        name = parents[0]
    try:
        return replace(obj, **{name: value})
    except SettingError as e:
        raise DragInputError(f"{path} {e.problem}", input="overrides") from None
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


