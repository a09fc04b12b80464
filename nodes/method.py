"""The drag method a node is asked for: a paper's preset, the user's strategy choices and setting
overrides, checked. No ComfyUI import."""

from __future__ import annotations

from ..drag_ops import presets, rules, strategies
from ..drag_ops.errors import DragInputError
from ..drag_ops.one_pass_presets import ONE_PASS_PRESETS
from ..drag_ops.overrides import apply_overrides, parse_overrides

PRESET_DEFAULT = "preset"  # a strategy input's value that keeps the preset's own


def configure(preset: str, tracker: str = PRESET_DEFAULT, supervision: str = PRESET_DEFAULT,
              schedule: str = PRESET_DEFAULT, overrides: str = "", *, lora: bool = True) -> presets.EditConfig:
    """A preset with the user's strategy choices and setting overrides, checked. lora=False: for a
    node that trains no identity LoRA (its MODEL brings one): the preset's LoRA settings are left
    out, and overriding them is refused rather than ignored."""
    config = strategies.with_strategies(presets.preset(preset), tracker, supervision, schedule)
    wanted = parse_overrides(overrides)
    if not lora:
        config = rules.replace(config, lora=None)
        for path in wanted:
            if str(path).split(".")[0] == "lora":
                raise DragInputError(f"{path}: this node trains no identity LoRA; set it on Drag Identity LoRA "
                                     "(whose MODEL this node takes), or use Drag Edit", input="overrides")
    return apply_overrides(config, wanted)


def overridden(overrides: str) -> dict:
    """{setting path: 'overrides'} for the settings the overrides input set (see plan's set_by)."""
    return dict.fromkeys(parse_overrides(overrides), "overrides")


def configure_one_pass(preset: str, overrides: str = "", strategies: dict | None = None):
    """A training-free preset (FastDrag, RegionDrag) with the user's overrides, checked. strategies:
    {input: value} of a node's strategy inputs, which must keep 'preset' (these presets have none)."""
    if preset not in ONE_PASS_PRESETS:
        raise DragInputError(f"{preset!r} is not a one-pass preset; choose one of {', '.join(ONE_PASS_PRESETS)}",
                             input="preset")
    for name, value in (strategies or {}).items():
        if value != PRESET_DEFAULT:
            raise DragInputError(f"{preset} optimises nothing, so it has no {name}; set {name} to "
                                 f"'{PRESET_DEFAULT}'", input=name)
    return apply_overrides(presets.preset(preset), parse_overrides(overrides))
