"""Model access: the UNet forward that returns the noise prediction and decoder features,
and the latent codec (VAE) interface.

Everything model-specific is read from the models' configs (latent channels, VAE scale,
block layout), so the same code runs a tiny test model and SD 1.5.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from . import rules
from .errors import DragInputError
from .rules import Items, Number
from .schedule import DDIMSchedule

MAX_FEATURE_SIZE = 4096  # feature pixels a side (SD at 512 px: 256)


def autocast(device: torch.device, weight_dtype: torch.dtype = torch.float32):
    """Mixed precision for a UNet with weights of `weight_dtype`: fp16 autocast on CUDA (as the papers
    run; bf16 for bf16 weights), the weights' own half type on other devices, none for fp32 on the
    CPU. Callers keep their latents and losses in fp32; only the network's maths runs in half."""
    kind = torch.device(device).type
    half = weight_dtype if weight_dtype in (torch.float16, torch.bfloat16) else None
    if kind == "cuda":
        return torch.autocast("cuda", dtype=half or torch.float16)
    return torch.autocast(kind, dtype=half) if half else nullcontext()


class LatentCodec(Protocol):
    """Image <-> latent. Images are [B, 3, H, W] in [-1, 1]; latents are already scaled."""

    downscale: int  # image pixels per latent pixel
    latent_channels: int

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...  # posterior mean, scaled

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


class DiffusersVAECodec:
    """A diffusers AutoencoderKL as a LatentCodec (posterior mean, config scaling factor)."""

    def __init__(self, vae, scaling_factor: float | None = None):
        self.vae = vae
        cfg = vae.config
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else cfg.scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.downscale = 2 ** (len(cfg.block_out_channels) - 1)
        self.latent_channels = cfg.latent_channels

    def _param(self):
        return next(self.vae.parameters())

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        p = self._param()
        mean = self.vae.encode(images.to(p.device, p.dtype)).latent_dist.mean
        return ((mean - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        p = self._param()
        z = latents.to(p.device, p.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.float().clamp(-1, 1)


@dataclass
class Conditioning:
    """What the UNet is conditioned on: text context [1, L, D] plus extra kwargs (SDXL's)."""

    context: torch.Tensor
    added: dict = field(default_factory=dict)

    def detached(self) -> "Conditioning":
        """A copy usable in autograd (ComfyUI's tensors are inference tensors)."""
        return Conditioning(self.context.clone(), {k: v.clone() for k, v in self.added.items()})

    def batch(self, n: int) -> "Conditioning":
        def rep(x):
            return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else x
        return Conditioning(rep(self.context), {k: rep(v) for k, v in self.added.items()})


@dataclass
class FeatureSpec:
    """Which decoder features the drag looks at and at which resolution.

    blocks: indices into ``unet.up_blocks``; their outputs are resized (bilinear) to the
    feature size and concatenated along channels. size None means half the image size.
    """

    blocks: tuple[int, ...] = (2,)
    size: tuple[int, int] | None = None  # (height, width)

    # which blocks exist depends on the model: DiffusionModel.check_features
    RULES = {"blocks": Items(Number(-64, 63, whole=True), 1, 16),
             "size": Items(Number(1, MAX_FEATURE_SIZE, whole=True), 2, 2, optional=True,
                           label="[height, width] in feature pixels")}

    def __post_init__(self):
        rules.check(self)

    def resolve(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return self.size or (image_hw[0] // 2, image_hw[1] // 2)


class DiffusionModel:
    """A UNet (diffusers UNet2DConditionModel), its codec and its DDIM schedule."""

    def __init__(self, unet, codec: LatentCodec, schedule: DDIMSchedule, gradient_checkpointing: bool = False):
        self.unet, self.codec, self.schedule = unet, codec, schedule
        # recompute activations in backward: SD 1.5 at 512x512 then fits 8 GB, at ~30% more time
        self.gradient_checkpointing = gradient_checkpointing

    @contextmanager
    def backprop_memory(self):
        """Wrap loops that backpropagate through the UNet (drag, LoRA)."""
        if not self.gradient_checkpointing:
            yield
            return
        self.unet.enable_gradient_checkpointing()
        try:
            yield
        finally:
            self.unet.disable_gradient_checkpointing()

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downscale x UNet downsampling)."""
        return self.codec.downscale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def check_features(self, spec: FeatureSpec) -> None:
        n = len(self.unet.up_blocks)
        bad = [b for b in spec.blocks if not -n <= b < n]
        if not spec.blocks or bad:
            raise DragInputError(f"feature blocks {list(spec.blocks)} do not exist: this UNet has up_blocks "
                                 f"0..{n - 1}", input="overrides")

    def forward(self, z: torch.Tensor, t, cond: Conditioning,
                features: FeatureSpec | None = None, feature_hw: tuple[int, int] | None = None):
        """Model output for latents z at timestep t, and (if asked) decoder features.

        Returns (model_out, feats) with feats [B, C, Hf, Wf] float32 or None.
        """
        dev, dt = self.device, self.dtype
        cond = cond.batch(z.shape[0])
        added = {k: v.to(dev, dt) for k, v in cond.added.items()} or None
        captured: list[torch.Tensor] = []
        with self._capture(features.blocks if features else (), captured), autocast(dev, dt):
            out = self.unet(z.to(dev, dt), t, encoder_hidden_states=cond.context.to(dev, dt),
                            added_cond_kwargs=added, return_dict=False)[0]
        feats = None
        if features:
            feats = torch.cat([F.interpolate(f.float(), size=feature_hw, mode="bilinear", align_corners=False)
                               for f in captured], dim=1)
        return out.float(), feats

    @contextmanager
    def _capture(self, blocks: Sequence[int], into: list):
        handles = [self.unet.up_blocks[b].register_forward_hook(lambda m, i, o: into.append(o))
                   for b in blocks]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
