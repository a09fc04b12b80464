"""The shipped example workflows run in a real ComfyUI (a tiny random SD1.5 checkpoint, small
settings: a few seconds a run) and shown in headless Chromium, once per frontend and renderer
(conftest.py). The drag nodes receive the progress previews a real run sends; after the run no node
may overlap another: the previews stay inside the nodes' own area.

Screenshots go to out/browser/<frontend>[-vue]/<workflow>_after_run.png, the nodes' boxes to
previews_driver.json there.
"""

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from comfy_server import COMFYUI, FRONTENDS, ROOT, run_driver

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import workflow_graph as wg  # noqa: E402

WORKFLOWS = ("Drag step by step", "Drag with DragDiffusion")  # file names (= template card titles)
CHECKPOINT = "tiny_sd15.safetensors"
IMAGE = "drag_test.png"  # 64 x 64
POINTS = json.dumps([{"handle": [20, 24], "target": [30, 26]}])
# As tests/test_comfy_workflows.py runs the workflows: the tiny checkpoint has two decoder levels,
# so drag features come from up_blocks[1]; a few steps of everything.
FAST_DRAG = {"drag.features.blocks": [1], "schedule.max_steps": 3}
FAST_GOODDRAG = {"drag.features.blocks": [1], "schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}
FAST_LORA = {"steps": 2, "rank": 4, "batch_size": 1}
PREVIEWING = {"DragLatentOptimizer", "DragReferenceSampler", "DragEdit"}  # send images with their progress


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """The tiny checkpoint and test image of tests/comfy_support.py, written once by a subprocess
    (the writer imports ComfyUI's modules, which this process does not load)."""
    folder = tmp_path_factory.mktemp("tiny")
    code = ("import sys, pathlib; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "from comfy.cli_args import args; args.cpu = True\n"
            "from comfy_support import write_tiny_checkpoint, write_test_image\n"
            "write_tiny_checkpoint(pathlib.Path(sys.argv[3]))\nwrite_test_image(pathlib.Path(sys.argv[4]))\n")
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    args = [COMFYUI, str(ROOT / "tests"), str(folder / CHECKPOINT), str(folder / IMAGE)]
    p = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"writing the tiny checkpoint failed:\n{p.stderr[-3000:]}"
    return folder


def fast_workflow(workflow: dict, specs: dict, seed: int) -> dict:
    """The workflow as a user would set it up for a quick run, edited in its UI form. The seed of
    the identity LoRA (and Drag Edit) differs per run: a server shared by two renderers must run the
    drag nodes again rather than answer from its cache."""
    wf = json.loads(json.dumps(workflow))
    for node in wf["nodes"]:
        kind = node["type"]
        if kind not in specs:
            continue
        values = wg.named_widgets(specs[kind], node)
        if kind == "CheckpointLoaderSimple":
            values["ckpt_name"] = CHECKPOINT
        elif kind == "LoadImage":
            values["image"] = IMAGE
        elif kind == "DragPointPicker":
            values["points"] = POINTS
        elif kind == "DragIdentityLoRA":
            values.update(FAST_LORA, seed=seed)
        elif kind == "DragDDIMInversion":
            values["num_steps"] = 10
        elif kind in ("DragLatentOptimizer", "DragEdit"):
            fast = FAST_GOODDRAG if values["preset"] == "GoodDrag" else FAST_DRAG
            if kind == "DragEdit":
                fast = {**fast, **{f"lora.{k}": v for k, v in FAST_LORA.items()}, "inversion_strength": 0.1}
                values["seed"] = seed
            values["overrides"] = json.dumps(fast)
        node["widgets_values"] = wg.widget_values(specs[kind], values)
    return wf


def object_info(server) -> dict:
    with urllib.request.urlopen(f"{server.url}/object_info", timeout=60) as r:
        return json.load(r)


def served_specs(server) -> dict:
    """Every node as this server's /object_info describes it (the pack's V3 nodes included)."""
    return {name: wg.info_entry(info) for name, info in object_info(server).items()}


@pytest.fixture(scope="module")
def runs(server, frontend, tiny_files, tmp_path_factory):
    checkpoints = server.base / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for link, name in ((checkpoints / CHECKPOINT, CHECKPOINT), (server.base / "input" / IMAGE, IMAGE)):
        if not link.exists():
            link.symlink_to(tiny_files / name)
    specs = served_specs(server)
    folder = tmp_path_factory.mktemp("workflows")
    files = []
    for name in WORKFLOWS:
        wf = json.loads((ROOT / "example_workflows" / f"{name}.json").read_text())
        files.append(folder / f"{name}.json")
        files[-1].write_text(json.dumps(fast_workflow(wf, specs, seed=FRONTENDS.index(frontend))))
    out = server.out_dir(frontend)
    result = run_driver("previews_driver.mjs", server.url, int(frontend.vue_nodes), out, *files)
    (out / "previews_driver.json").write_text(json.dumps(result, indent=1))  # every box, for a look
    return result


def overlaps(nodes):
    def meet(a, b):
        return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    return [(a["title"], b["title"], a["box"], b["box"])
            for i, a in enumerate(nodes) for b in nodes[i + 1:] if meet(a["box"], b["box"])]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_and_its_drag_nodes_get_previews(runs, name):
    r = runs["workflows"][name]
    assert r["run"]["ok"], r["run"]
    ids = {str(n["id"]) for n in r["before"] if n["type"] in PREVIEWING}
    assert ids and all(r["previews"].get(i, 0) > 0 for i in ids), (ids, r["previews"])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_no_node_overlaps_another_after_the_run(runs, name):
    r = runs["workflows"][name]
    assert not overlaps(r["before"]), "the shipped layout overlaps before any run"
    assert not overlaps(r["after"])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_drag_nodes_keep_their_size(server, runs, name):
    r = runs["workflows"][name]
    before = {n["id"]: n["box"] for n in r["before"]}
    pack = {kind for kind, info in object_info(server).items() if info["category"] == "drag editing"}
    grown = [(n["title"], before[n["id"]], n["box"]) for n in r["after"]
             if n["type"] in pack and n["box"][3] > before[n["id"]][3] + 1]
    assert not grown


def test_a_new_drag_node_has_room_for_its_previews(runs):
    new = runs["newNode"]
    assert new["size"][1] >= new["widgets"][1] + 200, new


def test_no_errors_from_the_pack(runs):
    ours = [m for m in runs["console"] if "comfyui_drag" in m]
    assert not ours, ours
