"""Handle/target point pairs: parsing and validation of user data.

Points are image pixels (x right, y down), as the user clicks them. Accepted inputs (JSON text
or the equivalent Python objects):

- ``[{"handle": [x, y], "target": [x, y]}, ...]`` (canonical, what the picker widget writes),
  optionally wrapped as ``{"pairs": [...]}``;
- ``[[hx, hy], [tx, ty], ...]`` alternating handle, target (DragBench / Drag100 order),
  optionally wrapped as ``{"points": [...]}`` (Drag100's points.json);
- ``[hx, hy, tx, ty, ...]`` flat.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from numbers import Real

from .errors import DragInputError

MAX_PAIRS = 64
MAX_TEXT = 100_000
MIN_MOVE = 1.0  # pixels; a shorter drag is already "reached"


@dataclass(frozen=True)
class DragPoints:
    handles: tuple[tuple[float, float], ...]
    targets: tuple[tuple[float, float], ...]

    def __len__(self) -> int:
        return len(self.handles)

    def to_json(self) -> str:
        return json.dumps([{"handle": list(h), "target": list(t)} for h, t in zip(self.handles, self.targets)])

    def alternating(self) -> list[list[float]]:
        """[[hx, hy], [tx, ty], ...] as DragBench stores them."""
        return [list(p) for pair in zip(self.handles, self.targets) for p in pair]

    def validate_in(self, width: int, height: int) -> "DragPoints":
        for i, (h, t) in enumerate(zip(self.handles, self.targets), 1):
            for name, (x, y) in (("handle", h), ("target", t)):
                if not (0 <= x < width and 0 <= y < height):
                    raise DragInputError(
                        f"pair {i}: {name} ({x:g}, {y:g}) lies outside the {width}x{height} image "
                        f"(expected 0 <= x < {width}, 0 <= y < {height})", input="points")
        return self


def parse_points(data, width: int | None = None, height: int | None = None) -> DragPoints:
    """Parse point data in any accepted form; check it lies inside a width x height image if given.

    Raises DragInputError (never anything else) for any malformed input.
    """
    try:
        if isinstance(data, DragPoints):
            points = data
        else:
            if isinstance(data, (bytes, bytearray)):
                data = data.decode("utf-8", errors="replace")
            if isinstance(data, str):
                data = _load_json(data)
            points = _from_object(data)
        if width is not None and height is not None:
            points.validate_in(width, height)
    except DragInputError as e:
        raise e.at(input="points") from None
    return points


def _load_json(text: str):
    if len(text) > MAX_TEXT:
        raise DragInputError(f"point data is {len(text)} characters long; at most {MAX_TEXT} are accepted")
    if not text.strip():
        raise DragInputError("no points given: place at least one handle and its target")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except DragInputError:
        raise
    except (ValueError, RecursionError) as e:
        raise DragInputError(f"point data is not valid JSON ({e}); expected e.g. "
                             '[{"handle": [x, y], "target": [x, y]}]') from None


def _reject_constant(name):
    raise DragInputError(f"point data contains {name}; coordinates must be finite numbers")


def _from_object(obj) -> DragPoints:
    if isinstance(obj, dict):
        key = "pairs" if "pairs" in obj else "points" if "points" in obj else None
        if key is None:
            raise DragInputError(f"point data is an object with keys {sorted(map(str, obj))[:5]}; "
                                 "expected a list of pairs or an object with 'pairs' or 'points'")
        obj = obj[key]
    if not isinstance(obj, (list, tuple)):
        raise DragInputError(f"point data must be a list, got {type(obj).__name__}")
    if not obj:
        raise DragInputError("no points given: place at least one handle and its target")
    if len(obj) > 4 * MAX_PAIRS:
        raise DragInputError(f"too many points ({len(obj)} entries); at most {MAX_PAIRS} pairs are supported")
    first = obj[0]
    if isinstance(first, dict):
        pairs = [_pair_from_dict(p, i) for i, p in enumerate(obj, 1)]
    elif isinstance(first, (list, tuple)):
        if len(obj) % 2:
            raise DragInputError(f"{len(obj)} points given; points come in handle, target pairs "
                                 "so their number must be even")
        pts = [_xy(p, f"point {i}") for i, p in enumerate(obj, 1)]
        pairs = list(zip(pts[0::2], pts[1::2]))
    else:
        if len(obj) % 4:
            raise DragInputError(f"{len(obj)} coordinates given; a flat list holds hx, hy, tx, ty "
                                 "for each pair so its length must be a multiple of 4")
        pts = [_xy(obj[i:i + 2], f"point {i // 2 + 1}") for i in range(0, len(obj), 2)]
        pairs = list(zip(pts[0::2], pts[1::2]))
    if len(pairs) > MAX_PAIRS:
        raise DragInputError(f"{len(pairs)} pairs given; at most {MAX_PAIRS} are supported")
    for i, (h, t) in enumerate(pairs, 1):
        if math.dist(h, t) < MIN_MOVE:
            raise DragInputError(f"pair {i}: handle and target are the same point ({h[0]:g}, {h[1]:g}); "
                                 f"move the target at least {MIN_MOVE:g} pixel away")
    return DragPoints(tuple(h for h, _ in pairs), tuple(t for _, t in pairs))


def _pair_from_dict(p, i: int):
    if not isinstance(p, dict) or "handle" not in p or "target" not in p:
        raise DragInputError(f"pair {i} must be an object with 'handle' and 'target', got {_short(p)}")
    return _xy(p["handle"], f"pair {i} handle"), _xy(p["target"], f"pair {i} target")


def _xy(p, what: str) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or len(p) != 2:
        raise DragInputError(f"{what} must be [x, y], got {_short(p)}")
    out = []
    for v in p:
        if isinstance(v, bool) or not isinstance(v, Real):
            raise DragInputError(f"{what} must hold two numbers, got {_short(p)}")
        try:
            v = float(v)
        except OverflowError:  # an integer beyond float range (JSON allows any number of digits)
            v = math.inf
        if not math.isfinite(v):
            raise DragInputError(f"{what} has a non-finite coordinate {v}")
        out.append(v)
    return out[0], out[1]


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."
