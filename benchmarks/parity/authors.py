"""The authors' side of a parity run: their own update functions, called on the case's model and
inputs, with shims applied at run time only (nothing of theirs is copied or modified on disk).

Shims (all undone on exit):
- CUDA autocast, ``torch.cuda.amp.GradScaler`` and accelerate's fp16 ``Accelerator`` become plain
  fp32 (the scaler and the accelerator also record each loss); ``Tensor.cuda`` is the identity.
- Their pipelines replace the UNet's forward with a copy of an old diffusers forward that also returns
  the intermediate features [mid block, up_blocks 0..3]; here the same list comes from forward hooks
  around the installed diffusers' own forward (their copies pin old diffusers APIs).
- Their pipeline objects (which load SD from disk) are stand-ins holding the case's UNet and a
  ``DDIMScheduler`` configured as in their code; their methods (``invert``, ``step``,
  ``forward_unet_features``, GoodDrag's ``GoodDragger``) are theirs, bound to the stand-in. The VAE
  and the text encoder are replaced by the case's latent and prompt embedding.
- Imports they need only for their UIs (pytorch_lightning's seed_everything, matplotlib,
  torchvision, a module missing from the AdaptiveDrag repository) are stubs; files they write
  (AdaptiveDrag's debug masks) go to a temporary folder; their prints are swallowed.

The recorders (losses, handle paths) wrap their functions; arguments are prepared as their UI
functions (``run_drag``, ``GoodDragger.__init__``) prepare them, with their UI defaults.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from case import Case, Inputs, Record

REPOS = {"DragDiffusion": "DragDiffusion", "FreeDrag": "FreeDrag/FreeDrag--diffusion--version",
         "GoodDrag": "GoodDrag", "AdaptiveDrag": "AdaptiveDrag"}  # folders under AUTHORS_DIR
GITHUB = {"DragDiffusion": "Yujun-Shi/DragDiffusion", "FreeDrag": "LPengYang/FreeDrag",
          "GoodDrag": "zewei-Zhang/GoodDrag", "AdaptiveDrag": "Calvin11311/AdaptiveDrag"}


class Recorder:
    def __init__(self):
        self.losses, self.paths = [], []


REC = Recorder()


class _Scaler:
    """torch.cuda.amp.GradScaler in fp32: records the loss."""

    def __init__(self, *args, **kwargs):
        pass

    def scale(self, loss):
        REC.losses.append(float(loss.detach()))
        return loss

    def step(self, optimizer):
        optimizer.step()

    def update(self):
        pass


class _Accelerator:
    """accelerate.Accelerator(mixed_precision='fp16') in fp32: records the loss."""

    def __init__(self, *args, **kwargs):
        pass

    def prepare(self, *args):
        return args

    def backward(self, loss):
        REC.losses.append(float(loss.detach()))
        loss.backward()


class Captured(Exception):
    """Raised to leave GoodDrag's loop once the drag phase is over (what follows is sampling)."""

    def __init__(self, batch):
        self.batch = batch


class _Features:
    """The UNet's forward as the authors' override: (output, [mid, up_blocks 0..3]) on request.
    ``stop_next``: raise Captured with the next call's input (GoodDrag: the first sampling step)."""

    def __init__(self, unet):
        self.unet, self.stop_next = unet, False

    def __call__(self, sample, timestep, encoder_hidden_states=None, return_intermediates=False, **kwargs):
        if self.stop_next:
            raise Captured(sample.detach().clone())
        unet, feats = self.unet, []
        hooks = [m.register_forward_hook(lambda m, i, o: feats.append(o)) for m in [unet.mid_block, *unet.up_blocks]]
        try:
            out = type(unet).forward(unet, sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                     return_dict=False)[0]
        finally:
            for h in hooks:
                h.remove()
        return (out, feats) if return_intermediates else out


def _stub(name: str, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


@contextlib.contextmanager
def authors_code(folder: Path, unet):
    """sys.path, stubs and fp32 shims for one repository; everything is restored on exit."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: fetch the authors' repository there")
    before = set(sys.modules)
    saved = {"path": list(sys.path), "cwd": os.getcwd(), "autocast": torch.autocast,
             "scaler": torch.cuda.amp.GradScaler, "cuda": torch.Tensor.cuda, "empty": torch.cuda.empty_cache}
    stubs = {"pytorch_lightning": _stub("pytorch_lightning", seed_everything=lambda *a, **k: None),
             "drag_pipeline_nocontrol_sam_area_dmask_noiseloss": _stub("drag_pipeline_nocontrol_sam_area_dmask_noiseloss",
                                                                      DragPipeline=object)}
    for name, attrs in (("matplotlib", {}), ("matplotlib.pyplot", {}), ("torchvision", {}),
                        ("torchvision.transforms", {}), ("torchvision.utils", {"save_image": lambda *a, **k: None})):
        try:
            importlib.import_module(name)
        except ImportError:
            stubs[name] = _stub(name, **attrs)
            if "." in name:  # reachable as an attribute of its stub parent too
                setattr(stubs[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], stubs[name])
    try:
        importlib.import_module("diffusers.models.unet_2d_condition")
    except ImportError:
        from diffusers.models.unets import unet_2d_condition
        stubs["diffusers.models.unet_2d_condition"] = unet_2d_condition
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)
    sys.path.insert(0, str(folder))
    torch.autocast = lambda *a, **k: contextlib.nullcontext()
    torch.cuda.amp.GradScaler = _Scaler
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.cuda.empty_cache = lambda: None
    features = _Features(unet)
    unet.forward = features
    REC.__init__()
    tmp = tempfile.TemporaryDirectory()
    os.chdir(tmp.name)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield features
    finally:
        os.chdir(saved["cwd"])
        tmp.cleanup()
        del unet.forward
        sys.path[:] = saved["path"]
        torch.autocast, torch.cuda.amp.GradScaler = saved["autocast"], saved["scaler"]
        torch.Tensor.cuda, torch.cuda.empty_cache = saved["cuda"], saved["empty"]
        for name in set(sys.modules) - before:  # every repository has its own `utils`
            del sys.modules[name]


def _scheduler():
    from diffusers import DDIMScheduler
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def _stand_in(pipeline_class, unet, inputs: Inputs):
    """Their DragPipeline's methods bound to an object holding the case's UNet and scheduler."""
    model = SimpleNamespace(unet=unet, scheduler=_scheduler())
    for name in ("invert", "inv_step", "step", "forward_unet_features"):
        setattr(model, name, types.MethodType(getattr(pipeline_class, name), model))
    model.image2latent = lambda image: inputs.latent.clone()
    model.get_text_embeddings = lambda prompt: inputs.context.clone()
    # FreeDrag's invert encodes the prompt itself: the tokenizer's ids go to a text encoder that
    # answers with the case's prompt embedding
    model.tokenizer = lambda *a, **k: SimpleNamespace(input_ids=torch.zeros(1, 77, dtype=torch.long))
    model.text_encoder = lambda ids: (inputs.context.clone(),)
    return model


def _set_attention(unet, attention: str):
    """Their UIs call unet.set_default_attn_processor() when no LoRA is given (classic attention);
    'sdpa' is diffusers' default kernel, for the float-noise envelope."""
    if attention == "classic":
        unet.set_default_attn_processor()
    else:
        from diffusers.models.attention_processor import AttnProcessor2_0
        unet.set_attn_processor(AttnProcessor2_0())


def _points(case: Case, sup_h: int, sup_w: int):
    """As their run_drag: (row, col) at the feature resolution, rounded (half to even)."""
    H = W = case.image
    handles, targets = [], []
    for h, t in case.pairs:
        for xy, into in ((h, handles), (t, targets)):
            into.append(torch.round(torch.tensor([xy[1] / H * sup_h, xy[0] / W * sup_w])))
    return handles, targets


def _mask(inputs: Inputs, sup_h: int, sup_w: int) -> torch.Tensor:
    """As their run_drag: 0/255 -> 0/1, [1, 1, H, W], nearest to the feature resolution."""
    mask = torch.from_numpy(inputs.mask).float() / 255.0
    mask[mask > 0.0] = 1.0
    return F.interpolate(mask[None, None], (sup_h, sup_w), mode="nearest")


def _record_tracking(module, name: str):
    """Wrap module.name (a point tracker returning the handle list) to record (x, y) per call."""
    inner = getattr(module, name)

    def tracked(*args, **kwargs):
        out = inner(*args, **kwargs)
        REC.paths.append([[float(p[1]), float(p[0])] for p in out])
        return out
    setattr(module, name, tracked)


def _xy(points) -> list:
    return [[float(p[1]), float(p[0])] for p in points]


def _invert(model, inputs: Inputs, n: int):
    image = torch.zeros(1, 3, 8, 8)  # only its batch size is read: image2latent is the case's latent
    z, latents = model.invert(image, "", encoder_hidden_states=inputs.context.clone(), guidance_scale=1.0,
                              num_inference_steps=50, num_actual_inference_steps=n, return_intermediates=True)
    return z, torch.cat(latents)


def _args(case: Case, **values):
    sup = case.image // 2
    return SimpleNamespace(prompt="", n_inference_step=50, guidance_scale=1.0, unet_feature_idx=[3],
                           sup_res_h=sup, sup_res_w=sup, **values)


# -- the four methods ---------------------------------------------------------------------------

def dragdiffusion(root: Path, case: Case, unet, inputs: Inputs, attention: str = "classic") -> tuple[Record, torch.Tensor]:
    """utils/drag_utils.py::drag_diffusion_update with utils/ui_utils.py::run_drag's arguments."""
    with authors_code(root / REPOS["DragDiffusion"], unet):
        pipeline = importlib.import_module("drag_pipeline")
        utils = importlib.import_module("utils.drag_utils")
        model = _stand_in(pipeline.DragPipeline, unet, inputs)
        _set_attention(unet, attention)
        n = round(0.7 * 50)
        args = _args(case, n_actual_inference_step=n, r_m=1, r_p=3, lam=0.1, lr=0.01,
                     n_pix_step=case.budgets["DragDiffusion"]["n_pix_step"])
        handles, targets = _points(case, args.sup_res_h, args.sup_res_w)
        mask = _mask(inputs, args.sup_res_h, args.sup_res_w)
        z, trajectory = _invert(model, inputs, n)
        model.scheduler.set_timesteps(50)
        t = model.scheduler.timesteps[50 - n]
        _record_tracking(utils, "point_tracking")
        out = utils.drag_diffusion_update(model, z.clone(), inputs.context.clone(), t, handles, targets, mask, args)
        return Record(list(REC.losses), list(REC.paths), len(REC.losses), out.detach().clone(), z.clone()), trajectory


def freedrag(root: Path, case: Case, unet, inputs: Inputs, attention: str = "classic") -> tuple[Record, torch.Tensor]:
    """utils/freedrag_utils.py::freedrag_update (win_r = 4) with drag_ui.py's defaults (l_expected 1,
    d_max 5, lam 10, latent lr 0.01, max_step 300) as utils/ui_utils.py::run_drag passes them. Its
    path: the intermediate targets each line search (get_current_target) returns."""
    with authors_code(root / REPOS["FreeDrag"], unet):
        pipeline = importlib.import_module("drag_pipeline")
        utils = importlib.import_module("utils.freedrag_utils")
        model = _stand_in(pipeline.DragPipeline, unet, inputs)
        _set_attention(unet, attention)
        n = round(0.7 * 50)
        budget = case.budgets["FreeDrag"]
        args = _args(case, n_actual_inference_step=n, lam=10.0, lr=0.01, l_expected=budget["l_expected"], d_max=5.0,
                     max_step=budget["max_step"])
        handles, targets = _points(case, args.sup_res_h, args.sup_res_w)
        mask = _mask(inputs, args.sup_res_h, args.sup_res_w)
        z, trajectory = _invert(model, inputs, n)
        model.scheduler.set_timesteps(50)
        t = model.scheduler.timesteps[50 - n]
        inner = utils.get_current_target
        made_at = []

        def planned(*a, **k):
            out = inner(*a, **k)
            REC.paths.append(_xy(out))
            made_at.append(len(REC.losses))
            return out
        utils.get_current_target = planned
        out = utils.freedrag_update(model, z.clone(), t, handles, targets, mask, args)
        # a plan made once the budget is spent is never dragged to (the loop ends before its first update)
        paths = [p for p, at in zip(REC.paths, made_at) if at < args.max_step]
        return Record(list(REC.losses), paths, len(REC.losses), out.detach().clone(), z.clone()), trajectory


def gooddrag(root: Path, case: Case, unet, inputs: Inputs, attention: str = "classic") -> tuple[Record, torch.Tensor]:
    """pipeline.py::GoodDragger.good_drag with gooddrag_ui.py's defaults (r1 4, r2 12, d 4, lambda 0.2,
    lr 0.02, strength 0.75, max_drag_per_track 3, early stop 10, drag_loss_threshold 0), stopped when
    the drag phase is over: the latent is the one its first reference-attention step receives."""
    with authors_code(root / REPOS["GoodDrag"], unet) as features:
        pipeline = importlib.import_module("pipeline")
        vae = torch.nn.Module()
        vae.encoder = torch.nn.Identity()
        stand_in = SimpleNamespace(unet=unet, vae=vae, text_encoder=torch.nn.Module(), tokenizer=None)
        stand_in.to = lambda device: stand_in

        class _Pipeline:
            @staticmethod
            def from_pretrained(path, scheduler=None, **kwargs):
                stand_in.scheduler = scheduler
                return stand_in

        pipeline.StableDiffusionPipeline = _Pipeline
        pipeline.override_forward = lambda unet: features
        pipeline.Accelerator = _Accelerator
        budget = case.budgets["GoodDrag"]
        H = case.image
        dragger = pipeline.GoodDragger("cpu", "random SD1.5-layout UNet", "", H, H, 0.75, r1=4, r2=12, beta=4,
                                       drag_end_step=budget["drag_end_step"],
                                       track_per_denoise=budget["track_per_denoise"], lam=0.2, latent_lr=0.02,
                                       n_inference_step=50, guidance_scale=1.0, feature_idx=3, compare_mode=False,
                                       vae_path="default", lora_path="", seed=42, max_drag_per_track=3,
                                       drag_loss_threshold=0, once_drag=False, max_track_no_change=10)
        _set_attention(unet, attention)
        dragger.image2latent = lambda image: inputs.latent.clone()
        dragger.get_text_embeddings = lambda prompt: inputs.context.clone()
        image = torch.zeros(1, 3, 8, 8)
        z, latents = dragger.invert(image, "", return_intermediates=True)
        trajectory = torch.cat(latents)
        _record_tracking(pipeline, "point_tracking")

        def masactrl():  # the drag phase is over: the next UNet call samples [original, edited]
            features.stop_next = True
        dragger.set_latent_masactrl = masactrl
        points = [list(p) for pair in case.pairs for p in pair]
        try:
            dragger.good_drag(image, points, inputs.mask)
            raise RuntimeError("GoodDrag's loop ended without switching to reference attention")
        except Captured as done:
            latent = done.batch[1:]
        return Record(list(REC.losses), list(REC.paths), len(REC.losses), latent, z.clone()), trajectory


def adaptivedrag(root: Path, case: Case, unet, inputs: Inputs, labels: np.ndarray, attention: str = "classic",
                 lookup: str = "fixed") -> tuple[Record, torch.Tensor]:
    """utils/drag_utils_nocontrol_sam_area_dmask_noiseloss.py::drag_diffusion_update with drag_ui.py's
    defaults (strength 0.8, lambda 0.1, lr 0.01, n_pix_step 160) and run_drag's superpixels (SLIC,
    200 segments, compactness 10: ``labels``; centroids from regionprops(labels + 1)), the case's
    mask in place of the SAM 2 segment of the handle.

    lookup 'code': their utils/pos_super_seg.py::cal_super_seg_dis as it is, which reads the label at
    segments[x, y] (feature x as the image's row) and the centroid of the next label (regionprops of
    labels + 1 on labels from 1); 'fixed': the same distance for the superpixel under the handle
    (segments[2y, 2x] and its own centroid), as the preset computes it.
    """
    from scipy.spatial import distance
    from skimage.measure import regionprops

    with authors_code(root / REPOS["AdaptiveDrag"], unet):
        pipeline = importlib.import_module("drag_pipeline")
        utils = importlib.import_module("utils.drag_utils_nocontrol_sam_area_dmask_noiseloss")
        model = _stand_in(pipeline.DragPipeline, unet, inputs)
        _set_attention(unet, attention)
        n = round(0.8 * 50)
        args = _args(case, n_actual_inference_step=n, r_m=5, r_p=15, lam=0.1, lr=0.01,
                     n_pix_step=case.budgets["AdaptiveDrag"]["n_pix_step"])
        handles, targets = _points(case, args.sup_res_h, args.sup_res_w)
        mask = _mask(inputs, args.sup_res_h, args.sup_res_w)
        centroids = np.array([props.centroid for props in regionprops(labels + 1)])
        if lookup == "fixed":
            scale = labels.shape[0] // args.sup_res_h
            by_label = {int(p.label) - 1: np.array(p.centroid) for p in regionprops(labels + 1)}

            def spacing(segments, centroids, x, y):
                own = by_label[int(segments[scale * y, scale * x])]
                others = np.array([c for k, c in by_label.items() if k != int(segments[scale * y, scale * x])])
                return int(distance.cdist([own], others).min())
            utils.cal_super_seg_dis = spacing
        z, trajectory = _invert(model, inputs, n)
        model.scheduler.set_timesteps(50)
        t = model.scheduler.timesteps[50 - n]
        radii = [(int(utils.cal_super_seg_dis(labels, centroids, int(h[1]), int(h[0])) // 7),
                  int((2 * utils.cal_super_seg_dis(labels, centroids, int(h[1]), int(h[0]))) // 5)) for h in handles]
        _record_tracking(utils, "point_tracking")
        out = utils.drag_diffusion_update(model, z.clone(), inputs.context.clone(), t, copy.deepcopy(handles), targets,
                                          mask, args, labels, centroids, "", "", "default", 200)
        return (Record(list(REC.losses), list(REC.paths), len(REC.losses), out.detach().clone(), z.clone(), radii),
                trajectory)


def run(method: str, root: Path, case: Case, unet, inputs: Inputs, labels=None, attention: str = "classic", **kw):
    if method == "AdaptiveDrag":
        return adaptivedrag(root, case, unet, inputs, labels, attention, **kw)
    return {"DragDiffusion": dragdiffusion, "FreeDrag": freedrag, "GoodDrag": gooddrag}[method](
        root, case, unet, inputs, attention)
