"""Writes the example workflows in this folder (ComfyUI's UI format) and their thumbnails. Run by
hand after changing a node's inputs, a workflow or a card below, and commit what it writes:

    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.workflows.build

Widget values are given by input name and put in the frontend's widget order from the nodes'
own definitions (the pack's V3 schemas, read through ComfyUI's comfy_api, hence COMFYUI_PATH, and
workbench/workflows/stock_nodes.json for ComfyUI's); whatever is not
given keeps the node's default, so each preset runs with its paper's settings.
tests/test_workflows.py checks the result.

Each workflow is a card in ComfyUI's template browser, and the card is made from the file name
alone: ComfyUI's GET /workflow_templates lists names only, and the frontends show the name as the
title (1.27 adds it again, '-' and '_' as spaces, as the description; 1.58 shows no description).
So the file is named by the card's title, and the thumbnail <title>.jpg (thumbnails.py) shows the
method, a picture of its idea and the one-line description.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass

# ComfyUI is a checkout, not an installed package: its comfy_api (the pack's node schemas) is
# importable only from the folder COMFYUI_PATH names
if os.environ.get("COMFYUI_PATH") and os.environ["COMFYUI_PATH"] not in sys.path:
    sys.path.append(os.environ["COMFYUI_PATH"])

from . import thumbnails  # noqa: E402
from . import workflow_graph as wg  # noqa: E402

SPECS = wg.all_nodes()

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
SDXL_CHECKPOINT = "sd_xl_base_1.0.safetensors"
IMAGE = "example.png"  # ComfyUI's own input/example.png (768 x 768): runs before you load yours
PROMPT = "a child's drawing of a girl with yellow hair in a pink dress, arms out, on a green hill"
POINTS = '[\n  {"handle": [585, 360], "target": [590, 260]}\n]'  # raise her left hand (right side)
SAVED_LORA = "drag_identity_00001.safetensors"


@dataclass(frozen=True)
class Card:
    """A workflow's card in the template browser."""
    title: str  # the file name without .json: the only text ComfyUI shows (keep it under ~32 characters)
    heading: str  # drawn large on the thumbnail
    description: str  # one line under the thumbnail's picture
    picture: str  # which of thumbnails.PICTURES


# keyed by the workflows' old file names, which stay their ids (uuid below, output prefixes)
CARDS = {
    "dragdiffusion": Card("Drag with DragDiffusion", "DragDiffusion",
                          "Motion supervision + point tracking", "dragdiffusion"),
    "freedrag": Card("Drag with FreeDrag", "FreeDrag", "Template + line search, no tracking", "freedrag"),
    "stabledrag": Card("Drag with StableDrag", "StableDrag", "Discriminative tracker + confidence", "stabledrag"),
    "gooddrag": Card("Drag with GoodDrag", "GoodDrag", "Alternate drag and denoise steps", "gooddrag"),
    "adaptivedrag_auto_mask": Card("Drag with AdaptiveDrag auto mask", "AdaptiveDrag",
                                   "Superpixel auto mask, no painting", "adaptivedrag"),
    "step_by_step": Card("Drag step by step", "Step by step",
                         "Every stage its own node: fast re-drags", "step_by_step"),
    "refine_with_ksampler": Card("Drag, then refine with KSampler", "Refine with KSampler",
                                 "Save the LoRA, refine with a KSampler", "refine"),
    "reuse_identity_lora": Card("Drag with a saved identity LoRA", "Reuse a saved LoRA",
                                "Load a saved identity LoRA: no retraining", "reuse"),
    "sdxl_drag": Card("Drag on SDXL", "Drag on SDXL", "SDXL checkpoints, 1024 px images", "sdxl"),
    "fastdrag": Card("Drag with FastDrag", "FastDrag", "One-step latent warp: seconds, no LoRA", "fastdrag"),
    "regiondrag": Card("Drag with RegionDrag", "RegionDrag", "Copy a region along the points: seconds",
                       "regiondrag"),
}

NOTE_COLOR, NOTE_BG = "#432", "#653"
GROUP_COLOR = "#3f789e"


class Canvas:
    """A workflow being laid out: nodes, links and groups with ids as the frontend numbers them."""

    def __init__(self, name: str):
        self.name = name
        self.nodes, self.links, self.groups = [], [], []

    def node(self, kind: str, pos, size=None, title: str | None = None, **widgets) -> dict:
        node = {"id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": None,
                "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [],
                "properties": {}, "widgets_values": []}
        if kind == "Note":
            node["properties"] = {"text": ""}
            node["widgets_values"] = [widgets.pop("text")]
            node["color"], node["bgcolor"] = NOTE_COLOR, NOTE_BG
            node["size"] = list(size)
        else:
            spec = SPECS[kind]
            node["inputs"] = [{"name": n, "type": t, "link": None} for n, t, _ in wg.socket_inputs(spec)]
            node["outputs"] = [{"name": n, "type": t, "links": None, "slot_index": i}
                               for i, (n, t) in enumerate(zip(spec["output_name"], spec["output"]))]
            node["properties"] = {"Node name for S&R": kind}
            node["widgets_values"] = wg.widget_values(spec, widgets)
            node["size"] = list(size or estimate_size(spec))
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, pos, size, text: str) -> dict:
        return self.node("Note", pos, size, text=reflow(text))

    def link(self, src: dict, output, dst: dict, input_name: str):
        outs = src["outputs"]
        slot = output if isinstance(output, int) else [o["name"] for o in outs].index(output)
        target = [i["name"] for i in dst["inputs"]].index(input_name)
        lid = len(self.links) + 1
        kind = outs[slot]["type"]
        self.links.append([lid, src["id"], slot, dst["id"], target, kind])
        outs[slot]["links"] = (outs[slot]["links"] or []) + [lid]
        dst["inputs"][target]["link"] = lid

    def group(self, title: str, members: list, pad: int = 20):
        """A labelled box around nodes (their title bars and the group's own title included)."""
        x0 = min(n["pos"][0] for n in members) - pad
        y0 = min(n["pos"][1] for n in members) - 30 - 45 - pad
        x1 = max(n["pos"][0] + n["size"][0] for n in members) + pad
        y1 = max(n["pos"][1] + n["size"][1] for n in members) + pad
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": GROUP_COLOR, "font_size": 24, "flags": {}})

    def workflow(self, offset=(80, 320), scale=0.75) -> dict:
        self._order()
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-drag-editing/{self.name}")), "revision": 0,
                "last_node_id": len(self.nodes), "last_link_id": len(self.links),
                "nodes": self.nodes, "links": self.links, "groups": self.groups, "config": {},
                "extra": {"ds": {"scale": scale, "offset": list(offset)}}, "version": 0.4}

    def _order(self):
        """Execution order as the frontend computes it: sources before their consumers."""
        deps = {n["id"]: {link[1] for link in self.links if link[3] == n["id"]} for n in self.nodes}
        done, order = set(), []
        while len(order) < len(self.nodes):
            ready = [nid for nid in sorted(deps) if nid not in done and deps[nid] <= done]
            done.update(ready)
            order.extend(ready)
        for i, nid in enumerate(order):
            self.nodes[nid - 1]["order"] = i


def reflow(text: str) -> str:
    """One line per paragraph, heading or list item: the note's text box wraps lines itself."""
    out = []
    for line in text.strip().splitlines():
        item = line.strip()
        if not item or not out or not out[-1] or out[-1].isupper() or item[0] in "-0123456789":
            out.append(item)
        else:
            out[-1] += " " + item
    return "\n".join(out)


def estimate_size(spec: dict) -> list:
    rows = max(len(wg.socket_inputs(spec)), len(spec["output"]))
    height = 30 + 22 * rows
    for _, entry, kind in wg.widget_slots(spec):
        height += 100 if entry and entry.get("multiline") else 26
    return [340, height + 10]


# -- pieces shared by the workflows ----------------------------------------------------------------

def loaders(c: Canvas, x: int = 0, y: int = 0, checkpoint: str = CHECKPOINT):
    ckpt = c.node("CheckpointLoaderSimple", (x, y), (340, 100), ckpt_name=checkpoint)
    # Nodes 2.0 adds a 26 px "issues" footer to the loader while the checkpoint is missing
    text = c.node("CLIPTextEncode", (x, y + 190), (340, 150), text=PROMPT)
    image = c.node("LoadImage", (x, y + 390), (340, 420), image=IMAGE)
    c.link(ckpt, "CLIP", text, "clip")
    return ckpt, text, image


def picker(c: Canvas, image: dict, x: int, y: int = 0) -> dict:
    p = c.node("DragPointPicker", (x, y), (480, 660), points=POINTS, mask="")
    c.link(image, "IMAGE", p, "image")
    return p


START_NOTE = """
HOW TO USE
1. Load Checkpoint: pick an SD 1.5 (or 2.x) checkpoint; for SDXL see the template "Drag on SDXL". Flux, SD3
   and other non-UNet models are not supported.
2. Load Image: upload your photo (sides a multiple of 8; 512 px is what the papers use).
3. CLIP Text Encode: describe the image in a few words (an empty prompt also works).
4. Drag Point Picker: click a handle (the point to move), then its target (where it should go); add more
   pairs the same way. Optionally paint the region that may change (unpainted = the whole image may
   change). With an image that does not come straight from Load Image, queue once to see it here.
5. Queue. The example points raise the girl's hand in ComfyUI's example.png.
"""

ONE_BOX_NOTE = """
Drag Edit does the whole edit in one node: identity LoRA -> DDIM inversion -> drag -> reference sampling.
Changing the points re-runs all of it (the LoRA too). To re-drag quickly, use the template "{step}":
there ComfyUI keeps the LoRA and the inversion and re-runs only the drag.

overrides: any preset setting as JSON, e.g. {"schedule.max_steps": 120} or {"lora.steps": 40}.
The 'settings' preview lists every setting used and where its value comes from.
tracker / supervision / schedule: 'preset' keeps the preset's; pick another to mix methods.
""".replace("{step}", CARDS["step_by_step"].title)

PRESET_NOTES = {
    "DragDiffusion": """
PRESET: DragDiffusion (Shi et al., CVPR 2024)
Identity LoRA, DDIM inversion to 70% (step 35 of 50), then 80 steps of motion supervision on UNet
features with nearest-neighbour point tracking, and sampling that shares the original's attention.
The reference method: start here. If a handle stops short, raise schedule.max_steps.
""",
    "FreeDrag": """
PRESET: FreeDrag (Ling et al., CVPR 2024)
No point tracking: each handle follows an adaptive feature template toward its target by a line search
that backs off when the template is lost. Up to 300 steps. Good when DragDiffusion's tracker jumps to
a similar-looking spot or the handle drifts off the object.
""",
    "StableDrag": """
PRESET: StableDrag (Cui et al., ECCV 2024)
A discriminative point tracker (a small filter fitted to the handle) and confidence-based supervision:
where tracking is unsure it falls back to the original features, so the content keeps its look.
60 steps. Try it when handles wander or textures smear.
""",
    "GoodDrag": """
PRESET: GoodDrag (Zhang et al., ICLR 2025)
Alternates drag steps with denoising steps (AlDD: 70 drag rounds, one denoise every 10) and keeps the
handle's original features (information-preserving supervision). Inverts to 75%. Usually the
sharpest results with large moves; slower than DragDiffusion.
""",
    "AdaptiveDrag": """
PRESET: AdaptiveDrag (Chen et al., 2024)
No mask painting needed: Drag Auto Mask cuts the image into superpixels from the model's own features
and keeps those under the handles and along each drag (see its preview: cyan boundaries, kept
region tinted). The drag moves whole semantic regions, backtracks when a step makes things worse,
and sampling is guided back toward the input. Inverts to 80%.
n_segments: fewer = larger kept regions. dilation: how far the kept region grows (-1: 16 px).
""",
}


ONE_PASS_NOTES = {
    "FastDrag": """
PRESET: FastDrag (Zhao et al., NeurIPS 2024)
Training-free, in seconds: DDIM-inverts with 10 steps to 70%, then warps the inverted latent once,
like a stretched sheet: each point of the painted region moves by the drag, scaled down to nothing at
the circle around the region; the gaps are filled from their nearest neighbours. Sampling reads the
inversion's attention keys and values. No LoRA, no optimisation.
The painted region is what stretches: paint the part to move and room around it.
""",
    "RegionDrag": """
PRESET: RegionDrag (Lu et al., ECCV 2024)
Training-free, in seconds: a 20-step DDPM inversion to 50% that records its noise; the painted part
under each handle is copied to where its points send it, at every sampling step, and the sampling
reads the inversion's attention keys and values. Outside the painted part and its copy the input's
own pixels stay. Several pairs in one part move, stretch or squeeze it.
""",
}

ONE_PASS_NOTE = """
Drag One-Pass Edit inverts, moves the inverted latent and samples once: no identity LoRA, no drag
loop, so an edit takes seconds and re-dragging simply runs it again. The example mask is painted
around the hand; paint your own on your image (clear it first).
overrides: any setting as JSON, e.g. {"num_steps": 20}; 'Settings used' lists every setting's name,
value and source (the authors' code or paper). A MODEL from Drag Identity LoRA works
too, for a closer likeness at the LoRA's cost.
"""


def painted_disc(centre, radius: int, size: int = 768) -> str:
    """A mask as the point picker's widget writes it: a PNG data URL, white where painted."""
    import base64
    import io

    from PIL import Image, ImageDraw
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).ellipse([centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius],
                                fill=255)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# the raised hand (POINTS' handle at (585, 360)): FastDrag stretches a wider region than RegionDrag moves
ONE_PASS_MASKS = {"FastDrag": ((585, 330), 150), "RegionDrag": ((590, 365), 60)}


def link_edit_inputs(c: Canvas, edit, ckpt, text, image, pick, mask_source) -> None:
    """The one-box edit nodes' inputs, in their order: model, vae, image, conditioning, points, mask."""
    for (node, output), name in (((ckpt, "MODEL"), "model"), ((ckpt, "VAE"), "vae"), ((image, "IMAGE"), "image"),
                                 ((text, "CONDITIONING"), "conditioning"), ((pick, "points"), "points"),
                                 (mask_source, "mask")):
        c.link(node, output, edit, name)


def edit_outputs(c: Canvas, edit, x: int, settings_y: int, note: tuple, prefix: str, trajectory_title: str) -> None:
    """Under a one-box edit node its settings and a note ((y, height, text)); right of it the saved image
    and the trajectory preview."""
    settings = c.node("PreviewAny", (x, settings_y), (380, 300), title="Settings used")
    c.link(edit, "settings", settings, "source")
    note_y, note_h, text = note
    c.note((x, note_y), (380, note_h), text)
    save = c.node("SaveImage", (x + 420, 0), (420, 460), filename_prefix=prefix)
    c.link(edit, "image", save, "images")
    path = c.node("PreviewImage", (x + 420, 510), (420, 460), title=trajectory_title)
    c.link(edit, "trajectory", path, "images")


def one_pass_workflow(preset: str, name: str) -> dict:
    c = Canvas(name)
    c.note((0, -300), (820, 250), START_NOTE)
    ckpt, text, image = loaders(c)
    pick = c.node("DragPointPicker", (380, 0), (480, 660), points=POINTS, mask=painted_disc(*ONE_PASS_MASKS[preset]))
    c.link(image, "IMAGE", pick, "image")
    x = 900
    c.note((x, -300), (380, 250), ONE_PASS_NOTES[preset])
    edit = c.node("DragOnePassEdit", (x, 0), (380, 560), preset=preset)
    link_edit_inputs(c, edit, ckpt, text, image, pick, (pick, "mask"))
    edit_outputs(c, edit, x, 610, (960, 220, ONE_PASS_NOTE), f"drag/{preset}", "Preview: the drags")
    return c.workflow()


def preset_workflow(preset: str, name: str) -> dict:
    c = Canvas(name)
    c.note((0, -300), (820, 250), START_NOTE)
    ckpt, text, image = loaders(c)
    pick = picker(c, image, 380)
    x = 900
    mask_source = (pick, "mask")
    if preset == "AdaptiveDrag":
        auto = c.node("DragAutoMask", (x, 0), (340, 250))
        c.link(ckpt, "MODEL", auto, "model")
        c.link(ckpt, "VAE", auto, "vae")
        c.link(image, "IMAGE", auto, "image")
        c.link(pick, "points", auto, "points")
        c.link(pick, "mask", auto, "mask")
        c.link(text, "CONDITIONING", auto, "conditioning")
        shown = c.node("PreviewImage", (x, 300), (340, 380), title="Preview: auto-mask")
        c.link(auto, "preview", shown, "images")
        mask_source = (auto, "mask")
        x += 380
    c.note((x, -300), (380, 250), PRESET_NOTES[preset])
    edit = c.node("DragEdit", (x, 0), (380, 650), preset=preset)  # 230 px below the widgets for previews
    link_edit_inputs(c, edit, ckpt, text, image, pick, mask_source)
    edit_outputs(c, edit, x, 700, (1050, 200, ONE_BOX_NOTE), f"drag/{preset}", "Preview: handle trajectory")
    return c.workflow()


SDXL_NOTE = """
DRAG ON SDXL (SDXL base 1.0 and its fine-tunes and merges: Pony, Illustrious, NoobAI, ...)
1. Load Checkpoint: pick your SDXL checkpoint (sd_xl_base_1.0.safetensors is the placeholder). The SDXL
   refiner, Flux, SD3 and other non-UNet models are refused with an error that names what works.
2. Load Image: SDXL was trained at about 1024 x 1024 (one megapixel); sides must be a multiple of 32.
   Smaller images work but look less like the model's own. The example.png (768 px) runs as it is.
3. CLIP Text Encode: the SDXL checkpoint's CLIP gives the pooled prompt SDXL needs; size and crop
   conditioning are the image's, as in a KSampler.
4. Click handle and target in the Drag Point Picker, queue.
What differs from SD 1.5 (the settings preview lists it, with sources): features from SDXL's up_blocks[1]
at a quarter of the image, so every radius and step covers the same part of a 1024 picture as the
papers' do of a 512 one; reference attention in up_blocks[1]; gradient checkpointing on.
Time: about 4x the pixels of SD 1.5 at 512 and a 3x larger UNet; expect several minutes per edit on a
GPU (estimate, not measured). Memory: fp16, gradient checkpointing on; every preset at 1024 x 1024 is
estimated to fit 16 GB (peaks of 6.9 GiB for the LoRA, 5.4 GiB for the drag; not measured on a GPU).
"""


def sdxl_workflow(name: str) -> dict:
    c = Canvas(name)
    c.note((0, -420), (900, 370), SDXL_NOTE)
    ckpt, text, image = loaders(c, checkpoint=SDXL_CHECKPOINT)
    pick = picker(c, image, 380)
    x = 900
    c.note((x, -300), (380, 250), PRESET_NOTES["DragDiffusion"])
    edit = c.node("DragEdit", (x, 0), (380, 650), preset="DragDiffusion")
    link_edit_inputs(c, edit, ckpt, text, image, pick, (pick, "mask"))
    edit_outputs(c, edit, x, 700, (1050, 200, ONE_BOX_NOTE), "drag/SDXL", "Preview: handle trajectory")
    return c.workflow()


def staged(c: Canvas, ckpt, text, image, pick, model, x: int, save_name: str = ""):
    """Identity LoRA (unless a MODEL with one is given), inversion, drag, sampler: column by column."""
    nodes = {}
    if model is None:
        lora = c.node("DragIdentityLoRA", (x, 0), (340, 330), save_name=save_name)
        c.link(ckpt, "MODEL", lora, "model")
        c.link(ckpt, "VAE", lora, "vae")
        c.link(image, "IMAGE", lora, "image")
        c.link(text, "CONDITIONING", lora, "conditioning")
        nodes["lora"], model = lora, (lora, "model")
    inv = c.node("DragDDIMInversion", (x, 420 if "lora" in nodes else 0), (340, 190))
    c.link(*model, inv, "model")
    c.link(ckpt, "VAE", inv, "vae")
    c.link(image, "IMAGE", inv, "image")
    c.link(text, "CONDITIONING", inv, "conditioning")
    opt = c.node("DragLatentOptimizer", (x + 380, 0), (360, 560))  # room for its previews
    c.link(*model, opt, "model")
    c.link(inv, "inversion", opt, "inversion")
    c.link(text, "CONDITIONING", opt, "conditioning")
    c.link(pick, "points", opt, "points")
    c.link(pick, "mask", opt, "mask")
    smp = c.node("DragReferenceSampler", (x + 780, 0), (340, 430))  # room for its previews
    c.link(*model, smp, "model")
    c.link(inv, "inversion", smp, "inversion")
    c.link(opt, "drag", smp, "drag")
    c.link(text, "CONDITIONING", smp, "conditioning")
    nodes.update(inversion=inv, optimizer=opt, sampler=smp, model=model)
    return nodes


STEP_NOTES = {
    "load": """
Load an SD 1.5 / 2.x checkpoint, your image, and a short prompt that describes it (empty works).
The same prompt is used to train the LoRA, to invert and to drag: change it only before step 3.
""",
    "pick": """
Click the handle (what to move), then the target (where to).
Each click pair is one drag; several pairs move together. Paint to limit what may change
(unpainted = everything). Moving a point re-runs only steps 5 and 6.
""",
    "lora": """
Fine-tunes a small LoRA on this one image so the model reproduces it faithfully (80 steps by default,
about 20 s on a fast GPU). Runs once per image: ComfyUI reuses it when only the points change.
save_name: also save it to models/loras to reuse later with the stock LoRA loader.
""",
    "invert": """
Walks the image back along the DDIM path and keeps every step. max_strength 0.8 covers every preset
(each picks its own depth: 0.7, 0.75 or 0.8). Deeper = more freedom to move, less fidelity.
""",
    "drag": """
The drag itself: optimises the noisy latent so the features under each handle move to the target,
while tracking where the handle went. preset = which paper; tracker / supervision / schedule swap
single parts; overrides changes any number, e.g. {"schedule.max_steps": 120}.
The trajectory preview draws each handle's path; 'Settings used' lists every value and its source.
gradient_checkpointing: less GPU memory (8 GB fits), a third slower.
""",
    "sample": """
Denoises the dragged latent next to the original; in the decoder the edit reads the original's
attention keys/values, so it keeps the original's look. 'reconstruction' is the unedited image as the
model sees it: if it already differs from your photo, train the LoRA longer (step 3).
""",
}


def step_by_step(name: str) -> dict:
    c = Canvas(name)
    ckpt, text, image = loaders(c, 0, 0)
    n_load = c.note((0, 860), (340, 170), STEP_NOTES["load"])
    pick = picker(c, image, 420)
    n_pick = c.note((420, 710), (480, 170), STEP_NOTES["pick"])
    parts = staged(c, ckpt, text, image, pick, None, 980)
    lora, inv, opt, smp = parts["lora"], parts["inversion"], parts["optimizer"], parts["sampler"]
    # move the stages apart so each group has room for its note
    lora["pos"] = [980, 0]
    n_lora = c.note((980, 380), (340, 190), STEP_NOTES["lora"])
    inv["pos"] = [980, 720]
    n_inv = c.note((980, 960), (340, 150), STEP_NOTES["invert"])
    opt["pos"] = [1400, 0]
    traj = c.node("PreviewImage", (1400, 610), (360, 380), title="Preview: handle trajectory")
    c.link(opt, "trajectory", traj, "images")
    settings = c.node("PreviewAny", (1400, 1040), (360, 260), title="Settings used")
    c.link(opt, "settings", settings, "source")
    n_drag = c.note((1400, 1350), (360, 230), STEP_NOTES["drag"])
    smp["pos"] = [1840, 0]
    save = c.node("SaveImage", (1840, 480), (420, 460), filename_prefix="drag/step_by_step")
    c.link(smp, "image", save, "images")
    recon = c.node("PreviewImage", (1840, 990), (420, 420), title="Preview: reconstruction (unedited)")
    c.link(smp, "reconstruction", recon, "images")
    n_smp = c.note((1840, 1460), (420, 170), STEP_NOTES["sample"])
    c.group("1. Model, prompt, image", [ckpt, text, image, n_load])
    c.group("2. Pick the drag points", [pick, n_pick])
    c.group("3. Identity LoRA (once per image)", [lora, n_lora])
    c.group("4. DDIM inversion (once per image)", [inv, n_inv])
    c.group("5. Drag: optimise the latent", [opt, traj, settings, n_drag])
    c.group("6. Sample beside the original, save", [smp, save, recon, n_smp])
    c.note((0, -330), (900, 220), START_NOTE)
    return c.workflow(offset=(60, 380), scale=0.6)


REFINE_NOTE = """
CHAINING WITH STOCK NODES
- Drag Identity LoRA saves the LoRA (save_name) to models/loras/drag_identity_00001.safetensors
  (numbered, never overwritten); 'Saved LoRA file' shows the name. The template "{reuse}"
  loads it with the stock LoraLoaderModelOnly, so a later session skips the training.
- The sampler's LATENT is the clean edited latent: a stock KSampler refines it at low denoise
  (0.2-0.4 sharpens details; higher drifts away from the edit). It uses the LoRA MODEL, so the
  refinement keeps the image's identity. Compare the two saved images.
""".replace("{reuse}", CARDS["reuse_identity_lora"].title)

REUSE_NOTE = """
REUSE A SAVED IDENTITY LORA
Run a workflow whose Drag Identity LoRA has save_name set (e.g. the template "{refine}") on this image
once; it writes models/loras/<save_name>_00001.safetensors. Pick that file in LoraLoaderModelOnly:
inversion and drag then start at once, even after restarting ComfyUI. The LoRA belongs to the image
it was trained on: use the same image (and prompt).
""".replace("{refine}", CARDS["refine_with_ksampler"].title)


def refine_with_ksampler(name: str) -> dict:
    c = Canvas(name)
    c.note((0, -300), (820, 250), START_NOTE)
    ckpt, text, image = loaders(c)
    pick = picker(c, image, 380)
    parts = staged(c, ckpt, text, image, pick, None, 900, save_name="drag_identity")
    lora, smp = parts["lora"], parts["sampler"]
    saved = c.node("PreviewAny", (900, 670), (340, 120), title="Saved LoRA file")
    c.link(lora, "lora_name", saved, "source")
    c.note((1280, -300), (740, 250), REFINE_NOTE)
    plain = c.node("SaveImage", (1680, 480), (400, 440), filename_prefix="drag/edit")
    c.link(smp, "image", plain, "images")
    neg = c.node("CLIPTextEncode", (2120, -150), (340, 110), title="CLIP Text Encode (negative)",
                 text="blurry, distorted, low quality")
    c.link(ckpt, "CLIP", neg, "clip")
    ks = c.node("KSampler", (2120, 0), (340, 290), seed=0, steps=20, cfg=5.0, sampler_name="dpmpp_2m",
                scheduler="karras", denoise=0.3)
    c.link(lora, "model", ks, "model")
    c.link(text, "CONDITIONING", ks, "positive")
    c.link(neg, "CONDITIONING", ks, "negative")
    c.link(smp, "latent", ks, "latent_image")
    dec = c.node("VAEDecode", (2120, 340), (340, 60))
    c.link(ks, "LATENT", dec, "samples")
    c.link(ckpt, "VAE", dec, "vae")
    refined = c.node("SaveImage", (2500, 0), (400, 440), filename_prefix="drag/refined")
    c.link(dec, "IMAGE", refined, "images")
    return c.workflow(scale=0.6)


def reuse_identity_lora(name: str) -> dict:
    c = Canvas(name)
    c.note((0, -300), (820, 250), START_NOTE)
    ckpt, text, image = loaders(c)
    pick = picker(c, image, 380)
    lora = c.node("LoraLoaderModelOnly", (900, 0), (340, 110), lora_name=SAVED_LORA, strength_model=1.0)
    c.link(ckpt, "MODEL", lora, "model")
    c.note((900, -300), (740, 250), REUSE_NOTE)
    parts = staged(c, ckpt, text, image, pick, (lora, "MODEL"), 900)
    parts["inversion"]["pos"] = [900, 170]
    save = c.node("SaveImage", (2060, 0), (400, 440), filename_prefix="drag/reused_lora")
    c.link(parts["sampler"], "image", save, "images")
    traj = c.node("PreviewImage", (1280, 610), (360, 380), title="Preview: handle trajectory")
    c.link(parts["optimizer"], "trajectory", traj, "images")
    return c.workflow(scale=0.6)


WORKFLOWS = {
    "dragdiffusion": lambda n: preset_workflow("DragDiffusion", n),
    "freedrag": lambda n: preset_workflow("FreeDrag", n),
    "stabledrag": lambda n: preset_workflow("StableDrag", n),
    "gooddrag": lambda n: preset_workflow("GoodDrag", n),
    "adaptivedrag_auto_mask": lambda n: preset_workflow("AdaptiveDrag", n),
    "step_by_step": step_by_step,
    "refine_with_ksampler": refine_with_ksampler,
    "reuse_identity_lora": reuse_identity_lora,
    "sdxl_drag": sdxl_workflow,
    "fastdrag": lambda n: one_pass_workflow("FastDrag", n),
    "regiondrag": lambda n: one_pass_workflow("RegionDrag", n),
}


def main():
    written = set()
    for key, make in WORKFLOWS.items():
        card = CARDS[key]
        workflow = make(key)
        errors = wg.problems(workflow, SPECS)
        if errors:
            sys.exit(f"{key}: " + "\n  ".join(errors))
        (wg.WORKFLOWS / f"{card.title}.json").write_text(json.dumps(workflow, indent=1) + "\n")
        thumbnails.save(thumbnails.thumbnail(card.picture, card.heading, card.description), wg.WORKFLOWS / f"{card.title}.jpg")
        written |= {f"{card.title}.json", f"{card.title}.jpg"}
        print(f"{card.title}.json: {len(workflow['nodes'])} nodes, {len(workflow['links'])} links, and its .jpg")
    # ComfyUI lists every .json here as a template: say which ones this script no longer writes
    for path in sorted(wg.WORKFLOWS.glob("*.json")) + sorted(wg.WORKFLOWS.glob("*.jpg")):
        if path.name not in written:
            print(f"not written by this script (delete it?): {path.name}")


if __name__ == "__main__":
    main()
