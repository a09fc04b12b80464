"""The training-free presets (drag_ops/one_pass.py), with each value's source in the format of
presets.SOURCES: "code: repository file::function", "paper: part", "ours: why"."""

from __future__ import annotations

from .latent_warp import LatentWarp
from .one_pass import AttentionReplay, OnePassConfig
from .region_copy import RegionCopy


def fastdrag() -> OnePassConfig:
    """FastDrag (Zhao et al., NeurIPS 2024) as its code runs a drag (XuanjiaZ/FastDrag: drag_ui.py's defaults,
    utils/ui_utils.py::run_drag with task "continuous drag"): 10 DDIM steps, strength 0.7, no LoRA, the
    latent warpage with BNNI fill, the inversion's keys and values in the decoder's self-attention for
    the last half of the schedule. The code swaps in an LCM-distilled UNet (LCM_Dreamshaper_v7); the pack
    runs the MODEL it is given."""
    return OnePassConfig(num_steps=10, inversion_strength=0.7, inversion="ddim", edit=LatentWarp(),
                         attention=AttentionReplay(layers="decoder", fraction=0.5), seed=42)


def regiondrag() -> OnePassConfig:
    """RegionDrag (Lu et al., ECCV 2024) as its evaluation runs (Visual-AI/RegionDrag: run_eval.py,
    region_utils/drag.py::drag, method 'Encode then CP'): 20 steps, DDPM inversion with recorded noise to
    half the schedule, the handle regions fully re-noised, their inverted latent copied onto the target
    regions and the inversion's keys and values in every self-attention at every step, the latent
    outside the mask held to the inversion's and the input's pixels pasted back outside it. The code also
    conditions on the image through IP-Adapter Plus (scale 0.5), whose weights the pack does not load:
    apply an IP-Adapter to the MODEL in ComfyUI for the same."""
    return OnePassConfig(num_steps=20, inversion_strength=0.5, inversion="sde",
                         edit=RegionCopy(noise_scale=1.0, copy_until=0.0, paste_outside=True),
                         attention=AttentionReplay(layers="all", fraction=1.0), seed=42)


ONE_PASS_PRESETS = {"FastDrag": fastdrag, "RegionDrag": regiondrag}

_FD = "code: FastDrag"  # XuanjiaZ/FastDrag
_RD = "code: RegionDrag"  # Visual-AI/RegionDrag (LuJingyi-John/RegionDrag)

ONE_PASS_SOURCES = {
    "FastDrag": {
        "num_steps": f"{_FD} drag_ui.py n_inference_step 10 (drag_bench_evaluation/run_fast_drag.py: 10)",
        "inversion_strength": f"{_FD} drag_ui.py inversion_strength 0.7 (7 of the 10 steps)",
        "inversion": f"{_FD} drag_pipeline.py::DragPipeline.invert (deterministic DDIM inversion, guidance 1)",
        "edit": f"{_FD} utils/continuous_drag.py::drag_stretch_multipoint_ratio_interp (paper: latent warpage "
                "function, one-step warpage optimisation); the region is the mask at the latent's size "
                "(utils/ui_utils.py::run_drag: nearest to half the image, then an antialiased bilinear resize, "
                "any coverage kept), points rounded at half the image size",
        "edit.fill": f"{_FD} continuous_drag.py::interpolation (a row-major scan: filled holes serve later ones; "
                     "the paper's BNNI reads only the valid pixels around a hole: 'simultaneous')",
        "edit.collisions": f"{_FD} drag_stretch_multipoint_ratio_interp move_mode 'not recover' (the first pixel "
                           "to land on a place keeps it; 'mean' is the code's 'mean when recover')",
        "edit.paste_outside": f"{_FD} utils/ui_utils.py::run_drag (samples the whole image from the warped latent, "
                              "no blend: off); ours: on keeps the rest of the image exactly, as RegionDrag's code does",
        "attention": f"{_FD} utils/unet_drag/attention_processor.py::AttnProcessor (the self-attention keys and "
                     "values of the 'up' blocks saved in inversion replace the sampling's; paper: "
                     "consistency-preserving strategy)",
        "attention.fraction": f"{_FD} AttnProcessor (replaced where iter_cur >= 5 of 10: the last half of the "
                              "schedule)",
        "seed": f"{_FD} utils/ui_utils.py::run_drag seed_everything(42) (nothing in FastDrag draws noise)",
    },
    "RegionDrag": {
        "num_steps": f"{_RD} run_eval.py steps 20 (ui.py: 20)",
        "inversion_strength": f"{_RD} run_eval.py start_t 0.5 (10 of the 20 steps)",
        "inversion": f"{_RD} region_utils/drag.py::forward with sde=True and cycle_sde.py::Sampler.forward_sde "
                     "(DDPM inversion recording the noise that returns each step; paper: inversion); the "
                     "engine's DDIM timesteps, where the code steps DPMSolver's",
        "edit": f"{_RD} region_utils/drag.py::backward, copy_and_paste of the inverted latent at each step; regions "
                "from the mask and point pairs as ui_utils.py::region_to_points (paper: region-to-point mapping)",
        "edit.noise_scale": f"{_RD} run_eval.py noise_scale 1.0 (drag.py::blur_source; the UI's default: 0.6)",
        "edit.copy_until": f"{_RD} drag.py::backward (copies while t >= int(end_t * steps) = 4, a timestep, so at "
                           "every step; end_t = 0.2 read as the share of the timesteps its name says: 0.2)",
        "edit.paste_outside": f"{_RD} drag.py::postprocess (the input's pixels outside the mask) and backward "
                              "(torch.where(mask == 1, latent, hook_latent) at each step); ours: the target "
                              "region counts as editable",
        "attention": f"{_RD} drag.py::drag register('copy' / 'paste'): the keys and values of every transformer "
                     "block's self-attention from the inversion at the same step (paper: attention swapping)",
        "seed": f"{_RD} run_eval.py seed 42 (the inversion's and the handle regions' noise)",
    },
}
