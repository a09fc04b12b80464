"""What each setting may be: one rule per constructor argument, declared beside the constructor
(``RULES``) and applied by it (:func:`check`).

An override rebuilds the part it changes through that constructor (:mod:`.overrides`), so a
value typed into a node's overrides is judged by the same rules as one written in code, under
the name the constructor gives it. A class whose arguments and rules disagree fails on its first
construction, so a new setting cannot go without a rule.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from numbers import Real

from .errors import DragInputError


class SettingError(ValueError):
    """A setting's value breaks its rule: ``setting`` is its name, ``problem`` what is wrong."""

    def __init__(self, setting: str, problem: str):
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Number:
    """A finite number in [low, high] (above low when ``above``); whole: an integer."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    above: bool = False
    optional: bool = False  # None allowed (e.g. "the engine picks")

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low, high = self.low, self.high
        if low is not None and high is not None:
            return f"{kind} above {_num(low)} and at most {_num(high)}" if self.above else \
                f"{kind} from {_num(low)} to {_num(high)}"
        if low is not None:
            return f"{kind} above {_num(low)}" if self.above else f"{kind} >= {_num(low)}"
        return f"{kind} <= {_num(high)}" if high is not None else kind

    def problem(self, value) -> str | None:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return f"must be {self.describe()}, got {_short(value)}"
        if self.whole and not float(value).is_integer():
            return f"must be {self.describe()}, got {_short(value)}"
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        if not low_ok or (self.high is not None and value > self.high):
            return f"must be {self.describe()}, got {_short(value)}"
        return None

    def coerce(self, value):
        """A JSON value as this setting's type (5.0 -> 5 for whole numbers), or SettingError's problem."""
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"takes a finite number, got {_short(value)}")
        if self.whole and not float(value).is_integer():
            raise ValueError(f"takes a whole number, got {value!r}")
        if value < 0 and (self.low is None or self.low >= 0):
            raise ValueError(f"takes a number >= 0, got {value!r}")
        return int(value) if self.whole else float(value)


@dataclass(frozen=True)
class Flag:
    optional = False

    def describe(self) -> str:
        return "true or false"

    def problem(self, value) -> str | None:
        return None if isinstance(value, bool) else f"must be true or false, got {_short(value)}"

    def coerce(self, value):
        if not isinstance(value, bool):
            raise ValueError(f"takes true or false, got {_short(value)}")
        return value


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    optional = False

    def describe(self) -> str:
        return " or ".join(repr(o) for o in self.options)

    def problem(self, value) -> str | None:
        return None if value in self.options and isinstance(value, str) else \
            f"must be {self.describe()}, got {_short(value)}"

    def coerce(self, value):
        if not isinstance(value, str):
            raise ValueError(f"takes text ({self.describe()}), got {_short(value)}")
        return value


@dataclass(frozen=True)
class Text:
    """Non-empty text (e.g. a module name)."""

    optional = False

    def describe(self) -> str:
        return "non-empty text"

    def problem(self, value) -> str | None:
        return None if isinstance(value, str) and value else f"must be {self.describe()}, got {_short(value)}"

    def coerce(self, value):
        if not isinstance(value, str):
            raise ValueError(f"takes text, got {_short(value)}")
        return value


@dataclass(frozen=True)
class Items:
    """A list (stored as a tuple) of min_len..max_len values that each follow ``item``."""

    item: Number | Text
    min_len: int = 1
    max_len: int | None = None
    optional: bool = False
    label: str = ""  # what the list is, e.g. "[height, width]"

    def describe(self) -> str:
        if self.label:
            return self.label
        size = f"{self.min_len} to {self.max_len}" if self.max_len is not None else f"at least {self.min_len}"
        return f"a list of {size} values, each {self.item.describe()}"

    def problem(self, value) -> str | None:
        if value is None and self.optional:
            return None
        if not isinstance(value, tuple):
            return f"must be {self.describe()}, got {_short(value)}"
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return f"must be {self.describe()}, got {len(value)} values"
        for v in value:
            problem = self.item.problem(v)
            if problem:
                return f"entry {problem}"
        return None

    def coerce(self, value):
        if value is None and self.optional:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"takes a list ({self.describe()}), got {_short(value)}")
        if not value and self.min_len:
            raise ValueError(f"takes a non-empty list ({self.describe()})")
        texts = isinstance(self.item, Text)
        out = []
        for v in value:
            if texts != isinstance(v, str):
                raise ValueError(f"takes a list of {'text' if texts else 'numbers'}, got {_short(value)}")
            out.append(self.item.coerce(v))
        return tuple(out)


@dataclass(frozen=True)
class Part:
    """A settings object of its own (recursed into, not set by value); ``kind`` its class or None: any part."""

    kind: type | None = None
    optional: bool = False

    def describe(self) -> str:
        return f"a {self.kind.__name__}" if self.kind else "a part of the engine"

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.optional else "is missing"
        if self.kind is not None and not isinstance(value, self.kind):
            return f"must be {self.describe()}, got {type(value).__name__}"
        return None


def arguments(obj_or_class) -> list[str]:
    """The names its constructor takes: a dataclass's fields, else the __init__ parameters."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return [p for p in inspect.signature(cls).parameters]


def replace(obj, **changes):
    """A new obj of the same class from its constructor arguments with `changes` (checked by it)."""
    return type(obj)(**{**{name: getattr(obj, name) for name in arguments(obj)}, **changes})


def check(obj) -> None:
    """Apply a settings object's RULES to its values (call at the end of its constructor).
    Raises SettingError for a value, TypeError when the rules do not match the constructor."""
    rules = type(obj).RULES
    names = arguments(obj)
    if list(rules) != names or not all(hasattr(obj, n) for n in names):
        raise TypeError(f"{type(obj).__name__}: RULES must name each constructor argument, in order, and the "
                        f"object must keep each under that name (arguments {names}, rules {list(rules)})")
    for name, rule in rules.items():
        problem = rule.problem(getattr(obj, name))
        if problem:
            raise SettingError(name, problem)


def build(cls, inputs: dict[str, str] | None = None, **values):
    """cls(**values) from a node's inputs: a SettingError becomes the node's input error (the input
    named like the setting unless `inputs` maps it: {setting: input})."""
    try:
        return cls(**values)
    except SettingError as e:
        input = (inputs or {}).get(e.setting, e.setting)
        raise DragInputError(f"{input} {e.problem}", input=input) from None
