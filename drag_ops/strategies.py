"""The strategies a user can pick by name (the drag node's dropdowns), and which combinations work.

Each registry maps a user-facing name to a factory that builds the strategy with its paper's
defaults. Adding a strategy is one line in one registry. A strategy that cannot work with some
partner says so through an optional method ``conflicts(tracker, supervision, schedule)`` returning
the reason (or None); :func:`check_compatible` asks every part and raises DragInputError.
"""

from __future__ import annotations

import copy

from . import rules
from .discriminative import ConfidentSupervision, DiscriminativeTracker
from .errors import DragInputError
from .line_search import AdaptiveTemplateSupervision, LineSearchTracker
from .schedules import AlternatingDragDenoise, PositionSupervisedBacktracking, SingleTimestep
from .semantic_regions import SemanticRegionSupervision, SemanticRegionTracker
from .supervision import PointDragSupervision
from .tracking import NearestNeighbourTracker

TRACKERS = {
    "nearest": NearestNeighbourTracker,  # DragDiffusion, GoodDrag
    "discriminative": DiscriminativeTracker,  # StableDrag
    "line_search": LineSearchTracker,  # FreeDrag (needs adaptive_template)
    "semantic_region": SemanticRegionTracker,  # AdaptiveDrag
}

SUPERVISIONS = {
    "point": PointDragSupervision,  # DragDiffusion
    # GoodDrag, with its code's (2*r1)^2 scale
    "information_preserving": lambda: PointDragSupervision(reference="original", weight="2r_squared"),
    "adaptive_template": AdaptiveTemplateSupervision,  # FreeDrag (needs line_search)
    "confident": ConfidentSupervision,  # StableDrag (needs a tracker with a confidence)
    "semantic_region": SemanticRegionSupervision,  # AdaptiveDrag
}

SCHEDULES = {
    "single": SingleTimestep,  # DragDiffusion, FreeDrag, StableDrag
    "alternating": AlternatingDragDenoise,  # GoodDrag
    "adaptive": PositionSupervisedBacktracking,  # AdaptiveDrag
}

REGISTRIES = {"tracker": TRACKERS, "supervision": SUPERVISIONS, "schedule": SCHEDULES}

# settings that describe the drag's spatial scale rather than the method: a strategy swapped into a
# preset keeps the preset's values of these (GoodDrag's r2 = 12 for a discriminative tracker, say)
CARRIED = ("radius", "step")


def build(kind: str, name: str):
    """A new strategy of `kind` ("tracker", "supervision", "schedule") by its user-facing name."""
    registry = REGISTRIES[kind]
    if name not in registry:
        raise DragInputError(f"unknown {kind} {name!r}; available: {', '.join(registry)}", input=kind)
    return registry[name]()


def name_of(strategy) -> str:
    return getattr(strategy, "name", type(strategy).__name__)


def check_compatible(tracker, supervision, schedule) -> None:
    """Raise DragInputError naming every reason the three strategies cannot work together."""
    reasons = []
    for part in (tracker, supervision, schedule):
        conflicts = getattr(part, "conflicts", None)
        reason = conflicts(tracker, supervision, schedule) if conflicts else None
        if reason and reason not in reasons:
            reasons.append(reason)
    if reasons:
        combo = f"tracker '{name_of(tracker)}', supervision '{name_of(supervision)}', schedule '{name_of(schedule)}'"
        raise DragInputError(f"{combo} cannot work together: " + "; ".join(reasons), input="strategies")


def with_strategies(config, tracker: str | None = None, supervision: str | None = None,
                    schedule: str | None = None):
    """A copy of an EditConfig with the named strategies swapped in (None or "preset": keep the
    preset's). A swapped-in strategy takes its paper's defaults, except the radii and step length
    (CARRIED), which it takes from the preset's strategy it replaces. The result is checked."""
    config = copy.deepcopy(config)
    for kind, name in (("tracker", tracker), ("supervision", supervision), ("schedule", schedule)):
        if name is None or name == "preset":
            continue
        old = getattr(config, kind)
        if name_of(old) == name:
            continue
        new = build(kind, name)
        carried = {attr: getattr(old, attr) for attr in CARRIED
                   if getattr(old, attr, None) is not None and attr in type(new).RULES}
        try:
            new = rules.replace(new, **carried)
        except rules.SettingError as e:
            raise DragInputError(f"the {kind} '{name}' cannot take the preset's {e.setting} ({e.problem})",
                                 input=kind) from None
        setattr(config, kind, new)
    check_compatible(config.tracker, config.supervision, config.schedule)
    return config
