"""Every setting an override can name is one of its constructor's arguments, under that name, and
the constructor checks it: an override is judged by the same rules as the code that builds the part.
Every value carries its source. No ComfyUI needed (the node-level walk is in test_comfy_checks_first.py).
"""

import dataclasses
import inspect
import json

import pytest

from comfyui_drag.drag_ops import presets, strategies
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.overrides import apply_overrides, rule_of, settings_of
from comfyui_drag.drag_ops.rules import Choice, Flag, Items, Number, Part, Text
from comfyui_drag.nodes.method import configure


# -- bad values from a rule (also used by the node-level walk) ------------------------------------

def out_of_range(rule) -> list:
    """Values of the right type that the rule refuses."""
    if isinstance(rule, Number):
        bad = []
        if rule.low is not None:
            bad.append(rule.low if rule.above else rule.low - 1)
        if rule.high is not None:
            bad.append(rule.high + 1)
        if rule.whole:
            inside = rule.low if rule.low is not None else 0
            bad.append(inside + 0.5)
        return bad
    if isinstance(rule, Choice):
        return ["no such choice"]
    if isinstance(rule, Text):
        return [""]
    if isinstance(rule, Items):
        valid = good_value(rule.item)
        bad = [[bad_item] for bad_item in out_of_range(rule.item)[:1]]
        if rule.min_len:
            bad.append([valid] * (rule.min_len - 1))
        if rule.max_len is not None:
            bad.append([valid] * (rule.max_len + 1))
        return bad
    return []  # a switch has no range


def good_value(rule):
    if isinstance(rule, Number):
        return rule.high if rule.high is not None else (rule.low if rule.low is not None else 0) + 1
    if isinstance(rule, Choice):
        return rule.options[0]
    return "to_q"


def wrong_type(rule) -> list:
    bad = [{"a": 1}]
    if not getattr(rule, "optional", False):
        bad.append(None)
    if isinstance(rule, Number):
        return bad + ["text", True, [1], float("nan")]
    if isinstance(rule, Flag):
        return bad + [1, "yes"]
    if isinstance(rule, Choice):
        return bad + [3, [rule.options[0]]]
    return bad + [5, "text", [{"a": 1}]]


def parts():
    """Every settings object of every preset and every registered strategy: (where, object)."""
    seen = []
    for name in presets.ALL_PRESETS:  # the one-pass presets' parts too
        config = presets.preset(name)
        stack = [(name, config)]
        while stack:
            where, obj = stack.pop()
            seen.append((where, obj))
            for field, rule in type(obj).RULES.items():
                value = getattr(obj, field)
                if isinstance(rule, Part) and value is not None:
                    stack.append((f"{where}.{field}", value))
    for kind, registry in strategies.REGISTRIES.items():
        for name in registry:
            seen.append((f"{kind} {name}", strategies.build(kind, name)))
    return seen


def constructor_arguments(obj) -> list:
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    return list(inspect.signature(type(obj)).parameters)


@pytest.mark.parametrize("where, obj", parts(), ids=[w for w, _ in parts()])
def test_every_constructor_argument_is_a_setting_of_that_name_with_its_rule(where, obj):
    assert list(type(obj).RULES) == constructor_arguments(obj), where
    for name in type(obj).RULES:
        assert hasattr(obj, name), f"{where} stores its argument {name!r} under another name"


@pytest.mark.parametrize("where, obj", parts(), ids=[w for w, _ in parts()])
def test_constructors_refuse_values_out_of_range_or_of_the_wrong_type(where, obj):
    current = {name: getattr(obj, name) for name in type(obj).RULES}
    for name, rule in type(obj).RULES.items():
        if isinstance(rule, Part):
            continue
        for bad in out_of_range(rule) + wrong_type(rule):
            if isinstance(bad, list):
                bad = tuple(bad)
            with pytest.raises(ValueError, match=name):
                type(obj)(**{**current, name: bad})


def test_paper_letters_are_not_setting_names_and_the_cli_example_works():
    config = presets.preset("GoodDrag")
    names = settings_of(config)
    assert {"schedule.drag_rounds", "schedule.rounds_per_denoise", "schedule.supervision_steps"} <= set(names)
    assert not {"schedule.K", "schedule.B", "schedule.J"} & set(names)
    with pytest.raises(DragInputError, match="unknown setting 'schedule.B'"):
        apply_overrides(config, {"schedule.B": 0})
    with pytest.raises(DragInputError, match=r"schedule\.rounds_per_denoise must be a whole number"):
        apply_overrides(config, {"schedule.rounds_per_denoise": 0})
    from workbench import cli
    configs = cli.bench_configs(["GoodDrag"], cli.parse_sets(["GoodDrag:schedule.drag_rounds=40"]))
    assert configs["GoodDrag"].schedule.drag_rounds == 40 and configs["GoodDrag"].schedule.total() == 120


def test_every_value_carries_its_source_under_the_new_names():
    for name in presets.ALL_PRESETS:
        table = presets.describe(name)
        assert set(table) == set(settings_of(presets.preset(name)))
        assert all(item["source"] for item in table.values())
    good = presets.describe("GoodDrag")
    assert good["schedule.drag_rounds"] == {
        "value": 70, "source": "code: GoodDrag gooddrag_ui.py, end time step 7 x 10 trackings (paper: K = 70)"}
    assert good["schedule.rounds_per_denoise"]["source"].startswith("code: GoodDrag gooddrag_ui.py, 10 point trackings")
    assert good["schedule.supervision_steps"]["source"].startswith("code: GoodDrag gooddrag_ui.py max_drag_per_track 3")
    text = presets.describe_text("GoodDrag", configure("GoodDrag", overrides=json.dumps({"schedule.drag_rounds": 40})))
    assert "schedule.drag_rounds = 40  (user)" in text and "schedule.rounds_per_denoise = 10  (code: GoodDrag" in text


def test_an_override_rebuilds_its_part_so_derived_names_follow():
    config = apply_overrides(presets.preset("DragDiffusion"), {"supervision.reference": "original"})
    assert settings_of(config)["supervision"] == "information_preserving"


def test_every_setting_path_has_a_rule_except_strategy_names():
    for name in presets.PRESETS:
        config = presets.preset(name)
        for path in settings_of(config):
            assert (rule_of(config, path) is None) == (path in ("tracker", "supervision", "schedule")), path


def test_the_shapes_benchmark_builds_every_preset():
    """`python -m workbench bench --presets all` adapts each preset to the shapes model before running any task."""
    from workbench import cli
    from workbench.shapes import world
    configs = cli.bench_configs(["all"], {}, world.adapt)
    assert set(configs) == set(presets.ALL_PRESETS)
    assert configs["FastDrag"].inversion_strength == world.INVERSION_STRENGTH
    assert configs["GoodDrag"].tracker.radius == world.MAX_TRACKING_RADIUS
