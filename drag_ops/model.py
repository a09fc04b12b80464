"""Model access: a DiffusionModel is a network (drag_ops/network.py), a latent codec (VAE) and a
DDIM schedule; its forward returns the model output and decoder features.

Everything model-specific is read from the models' configs (latent channels, VAE scale,
block layout), so the same code runs a tiny test model and SD 1.5.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

import torch
import torch.nn.functional as F

from . import rules
from .errors import DragInputError
from .network import Network, Stage
from .rules import Items, Number
from .ddim import DDIMSchedule

T = TypeVar("T")
MAX_FEATURE_SIZE = 4096  # feature pixels a side (SD at 512 px: 256)


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
    """What the network is conditioned on: text context [1, L, D] plus extra kwargs (SDXL's).
    native: the host's own form of the same prompt (ComfyUI's CONDITIONING), for a network that
    builds its inputs the host's way; the engine never looks inside it."""

    context: torch.Tensor
    added: dict = field(default_factory=dict)
    native: object | None = None

    def detached(self) -> "Conditioning":
        """A copy usable in autograd (ComfyUI's tensors are inference tensors)."""
        return Conditioning(self.context.clone(), {k: v.clone() for k, v in self.added.items()}, self.native)

    def batch(self, n: int) -> "Conditioning":
        def rep(x):
            return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else x
        return Conditioning(rep(self.context), {k: rep(v) for k, v in self.added.items()}, self.native)


@dataclass
class FeatureSpec:
    """Which decoder features the drag looks at and at which resolution.

    blocks: indices into ``unet.up_blocks``; their outputs are resized (bilinear) to the
    feature size and concatenated along channels. size None means the image size divided by
    scale: image pixels per feature pixel (2, half the image, as the papers on SD 1.5; a model
    family made for larger images sets more, drag_ops/families.py).
    """

    blocks: tuple[int, ...] = (2,)
    size: tuple[int, int] | None = None  # (height, width)
    scale: int = 2

    # which blocks exist depends on the model: DiffusionModel.check_features
    RULES = {"blocks": Items(Number(-64, 63, whole=True), 1, 16),
             "size": Items(Number(1, MAX_FEATURE_SIZE, whole=True), 2, 2, optional=True,
                           label="[height, width] in feature pixels"),
             "scale": Number(1, 64, whole=True)}

    def __post_init__(self):
        rules.check(self)

    def resolve(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return self.size or (max(image_hw[0] // self.scale, 1), max(image_hw[1] // self.scale, 1))


class DiffusionModel:
    """A network (drag_ops/network.py), its latent codec and its DDIM schedule."""

    def __init__(self, network: Network, codec: LatentCodec, schedule: DDIMSchedule, lora=None):
        self.network, self.codec, self.schedule = network, codec, schedule
        self.lora = lora  # a LoraWeights active in every stage (the identity LoRA of run_edit)

    def with_lora(self, lora) -> "DiffusionModel":
        """The same model with an adapter (LoraWeights) active in every stage it runs."""
        return DiffusionModel(self.network, self.codec, self.schedule, lora)

    @property
    def device(self) -> torch.device:
        return self.network.device

    @property
    def dtype(self) -> torch.dtype:
        return self.network.dtype

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downscale x network downsampling)."""
        return self.codec.downscale * self.network.downsampling

    def check_features(self, spec: FeatureSpec) -> None:
        n = self.network.decoder_levels
        bad = [b for b in spec.blocks if not -n <= b < n]
        if not spec.blocks or bad:
            raise DragInputError(f"feature blocks {list(spec.blocks)} do not exist: this UNet has up_blocks "
                                 f"0..{n - 1}", input="overrides")

    def run(self, stage: Stage, cond: Conditioning, latent_hw: tuple[int, int], body: Callable[[], T]) -> T:
        """Run one stage of an edit (every forward of the stage inside body) in the network's frame."""
        if self.lora is not None:
            stage = dataclasses.replace(stage, lora=self.lora)
        return self.network.run(stage, cond, tuple(latent_hw), body)

    def forward(self, z: torch.Tensor, t, cond: Conditioning,
                features: FeatureSpec | None = None, feature_hw: tuple[int, int] | None = None):
        """Model output for latents z at timestep t, and (if asked) decoder features.

        Returns (model_out, feats) with feats [B, C, Hf, Wf] float32 or None.
        """
        n = self.network.decoder_levels
        levels = [b % n for b in features.blocks] if features else []
        out, captured = self.network.predict(z, t, cond.batch(z.shape[0]), levels)
        feats = None
        if features:
            feats = torch.cat([F.interpolate(f.float(), size=feature_hw, mode="bilinear", align_corners=False)
                               for f in captured], dim=1)
        return out.float(), feats
