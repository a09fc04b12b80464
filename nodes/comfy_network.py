"""ComfyUI's own loaded model as the engine's Network: no second copy of the UNet.

Every stage of an edit runs the way a KSampler runs (comfy.samplers.CFGGuider at CFG 1 with the
user's prompt, on a clone of the MODEL): ComfyUI loads the weights under its memory management,
builds the model's inputs from the CONDITIONING for that model type, and applies every patch the
MODEL carries (weight patches such as LoraLoader's, model_options patches such as FreeU's or
PAG's, wrappers). The stage itself is the "sampler" the guider calls; each engine forward is one
call of the guider, whose denoised prediction is turned back into the raw model output (epsilon
or v) with the MODEL's own sampling maths.

What the engine adds lives on the clone only: the identity LoRA as ordinary weight patches,
mutual self-attention as attn1 replace patches (composed with any the user has), decoder features
from forward hooks on the output blocks' last modules, and (for gradient stages) trainable views
of ComfyUI's weights, which it created under inference mode.

ComfyUI is imported inside functions only: this module imports without it.
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack, contextmanager

import torch

from ..drag_ops import families
from ..drag_ops.errors import DragInputError
from ..drag_ops.lora import kohya_state_dict
from ..drag_ops.network import AttentionLayer, Stage, capture_outputs, mutual_attention_kv

# Backpropagating through the UNet keeps every layer's activations for the backward pass: the
# drag's peak was ~10x a plain forward's on SD 1.5 at 512x512 (workbench/benchmarks/perf.py, CPU fp32), so a
# gradient stage asks ComfyUI for ten times its inference estimate.
GRAD_MEMORY_FACTOR = 10

# diffusers' names for the layers a preset's LoRA targets, as ComfyUI's UNet names them
LORA_NAMES = {"conv1": "in_layers.2", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
              "time_emb_proj": "emb_layers.1"}


class ComfyNetwork:
    """A ComfyUI MODEL (ModelPatcher of an SD 1.x/2.x or SDXL UNet) as the engine's Network. The
    family (drag_ops/families.py) is ComfyUI's model class: SDXL for comfy.model_base.SDXL (SDXL base,
    its fine-tunes and merges, and the distilled SSD-1B / Vega / KOALA layouts), else SD 1.x/2.x."""

    def __init__(self, patcher, gradient_checkpointing: bool | None = None):
        self.patcher = patcher
        self.family = comfy_family(patcher)
        # None: the family's default (on for SDXL)
        self.gradient_checkpointing = self.family.gradient_checkpointing if gradient_checkpointing is None \
            else gradient_checkpointing
        self._config = patcher.model.model_config.unet_config
        self._predictor = None  # (guider, extra_args) while a stage runs

    # -- layout ------------------------------------------------------------------------------
    @property
    def _unet(self):
        return self.patcher.model.diffusion_model

    @property
    def device(self) -> torch.device:
        return self.patcher.load_device

    @property
    def dtype(self) -> torch.dtype:
        return self.patcher.model_dtype()

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self._config["channel_mult"]) - 1)

    @property
    def context_width(self) -> int:
        return self._config["context_dim"]

    @property
    def decoder_levels(self) -> int:
        return len(self._config["channel_mult"])

    def _res_blocks(self) -> list[int]:
        res = self._config["num_res_blocks"]
        return [res] * self.decoder_levels if isinstance(res, int) else list(res)

    def level_channels(self, level: int) -> int:
        return self._config["model_channels"] * list(reversed(self._config["channel_mult"]))[level]

    def _level_output(self, level: int) -> torch.nn.Module:
        """The module whose output is decoder level `level`'s (diffusers' up_blocks[level]): the last
        child of the level's last output block (a hook on the block itself never fires: ComfyUI
        calls its children one by one)."""
        last = sum(r + 1 for r in list(reversed(self._res_blocks()))[:level + 1]) - 1
        return self._unet.output_blocks[last][-1]

    def _attention_keys(self) -> list[tuple[AttentionLayer, tuple]]:
        """Every transformer block's self-attention in forward order, with ComfyUI's patch key
        (block name, block id, transformer index)."""
        import comfy.ldm.modules.attention as attention
        unet, out = self._unet, []
        per_level = [r + 1 for r in reversed(self._res_blocks())]
        groups = [("input", i, b, -1) for i, b in enumerate(unet.input_blocks)] + [("middle", 0, unet.middle_block, -1)]
        groups += [("output", i, b, _level_of(i, per_level)) for i, b in enumerate(unet.output_blocks)]
        for kind, block_id, block, level in groups:
            path = "middle_block" if kind == "middle" else f"{kind}_blocks.{block_id}"
            for name, mod in block.named_modules():
                if isinstance(mod, attention.SpatialTransformer):
                    for j, _ in enumerate(mod.transformer_blocks):
                        out.append((AttentionLayer(f"{path}.{name}.transformer_blocks.{j}.attn1", level),
                                    (kind, block_id, j)))
        return out

    def attention_layers(self) -> list[AttentionLayer]:
        return [layer for layer, _ in self._attention_keys()]

    def _pooled_width(self) -> int:
        return self._config["adm_in_channels"] - 6 * 256  # the rest: six 256-wide size/crop embeddings

    def empty_options(self) -> dict:
        """The options of an empty prompt's CONDITIONING beside its zero context: SDXL's zero pooled prompt."""
        return {"pooled_output": torch.zeros(1, self._pooled_width())} if self.family is families.SDXL else {}

    def check_conditioning(self, cond, input: str = "conditioning") -> None:
        """SDXL also conditions on the pooled prompt, which ComfyUI's CLIP Text Encode puts beside the
        context with an SDXL CLIP; without it ComfyUI would fail inside the first stage."""
        if self.family is not families.SDXL or cond.native is None:
            return
        width = self._pooled_width()
        pooled = cond.native[0][1].get("pooled_output")
        if not torch.is_tensor(pooled) or pooled.dim() != 2 or pooled.shape[-1] != width:
            raise DragInputError(f"SDXL needs the pooled prompt ({width} wide) that CLIP Text Encode gives with the "
                                 "SDXL checkpoint's CLIP; this conditioning has none", input=input)

    # -- stages ------------------------------------------------------------------------------
    def run(self, stage: Stage, cond, latent_hw, body):
        import comfy.model_management as mm
        import comfy.samplers

        if cond.native is None:
            raise DragInputError("the conditioning did not come from ComfyUI", input="conditioning")
        patcher = self.patcher.clone()
        if stage.lora is not None:
            add_lora_patches(patcher, kohya_state_dict(stage.lora, self, torch.float32))
        keys = self._attention_keys()
        for i in stage.reference:
            _mutual_attention_patch(patcher, keys[i][1])
        if stage.grad:
            _copy_inputs_of_patches(patcher)
        guider = comfy.samplers.CFGGuider(patcher)
        guider.set_conds(cond.native, [])
        guider.set_cfg(1.0)  # the prompt's prediction alone, as every paper's drag uses it
        shape = (stage.batch, patcher.model.latent_format.latent_channels, *latent_hw)
        sampler = _StageSampler(self, patcher, stage, body)
        with torch.inference_mode(False):
            if stage.grad:
                need = patcher.model.memory_required(shape) * GRAD_MEMORY_FACTOR
                mm.load_models_gpu([patcher], memory_required=need, force_full_load=True)
            zeros = torch.zeros(shape)
            sampling = patcher.get_model_object("model_sampling")
            sigmas = torch.stack([sampling.sigma_max, sampling.sigma_min]).float().cpu()
            guider.sample(zeros, zeros, sampler, sigmas, seed=0)
        return sampler.result

    def predict(self, z, t, cond, levels=()):
        if self._predictor is None:
            raise RuntimeError("ComfyNetwork.predict outside a stage (DiffusionModel.run)")
        guider, extra, sampling = self._predictor
        dev = self.device
        z = z.to(dev, torch.float32)
        steps = torch.as_tensor(t, dtype=torch.float32, device=dev).reshape(-1).expand(z.shape[0])
        sigma = sampling.sigma(steps).to(dev, torch.float32)
        s = sigma.reshape(-1, 1, 1, 1)
        # the model maths is affine in its input and output: x with calculate_input(x) = z, and the
        # raw output back from the denoised prediction D = a*x + b*out
        one, zero = torch.ones_like(s), torch.zeros_like(s)
        x = z / sampling.calculate_input(s, one)
        a, b = sampling.calculate_denoised(s, zero, one), sampling.calculate_denoised(s, one, zero)
        captured: list[torch.Tensor] = []
        with capture_outputs([self._level_output(level) for level in levels], captured):
            denoised = guider(x, sigma, **extra).float()
        return (denoised - a * x) / b, captured

    # -- LoRA --------------------------------------------------------------------------------
    def lora_root(self) -> torch.nn.Module:
        return self._unet

    def lora_targets(self, targets):
        return [LORA_NAMES.get(t, t) for t in targets]

    def lora_file_key(self, module: str) -> str:
        """Kohya's name for a LoRA on this module, in diffusers' layout where ComfyUI knows the
        counterpart (the names other programs load too), else in ComfyUI's own."""
        import comfy.utils
        if not hasattr(self, "_diffusers_names"):
            to_ldm = comfy.utils.unet_to_diffusers(self._config)
            self._diffusers_names = {v: k for k, v in to_ldm.items()}
        name = self._diffusers_names.get(f"{module}.weight", f"{module}.weight")[:-len(".weight")]
        return "lora_unet_" + name.replace(".", "_")


def comfy_family(patcher):
    """The model family of a ComfyUI MODEL, from ComfyUI's model class."""
    import comfy.model_base
    return families.SDXL if isinstance(patcher.model, comfy.model_base.SDXL) else families.SD


def _level_of(block_id: int, per_level: list[int]) -> int:
    for level, n in enumerate(per_level):
        if block_id < n:
            return level
        block_id -= n
    return len(per_level) - 1


def add_lora_patches(patcher, lora_sd: dict, strength: float = 1.0):
    """Add a kohya-format LoRA to a ModelPatcher as ComfyUI's LoraLoader does (in place: pass a
    clone). Every module of the LoRA must exist in the model."""
    import comfy.lora
    key_map = comfy.lora.model_lora_keys_unet(patcher.model, {})
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in lora_sd}
    unknown = sorted(m for m in modules if m not in key_map)
    if unknown:
        raise DragInputError(f"{len(unknown)} of {len(modules)} LoRA modules do not exist in this MODEL "
                             f"(e.g. {unknown[0]}): the LoRA was made for a different model", input="model")
    added = patcher.add_patches(comfy.lora.load_lora(lora_sd, key_map), strength)
    if len(added) != len(modules):
        raise RuntimeError(f"ComfyUI applied {len(added)} of {len(modules)} LoRA modules")
    return patcher


def _mutual_attention_patch(patcher, key):
    """attn1 replace at one transformer block: queries as usual, keys and values from the first half
    of the batch (the original). A replace the user already has at that block is kept and given
    those keys and values, so the two compose."""
    import comfy.ldm.modules.attention as attention
    kind, block_id, index = key
    existing = patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    inner = existing.get(key) or existing.get((kind, block_id))

    def mutual(q, k, v, extra_options):
        k, v = mutual_attention_kv(k), mutual_attention_kv(v)
        if inner is not None:
            return inner(q, k, v, extra_options)
        return attention.optimized_attention(q, k, v, extra_options["n_heads"])

    patcher.set_model_attn1_replace(mutual, kind, block_id, index)


def _copy_inputs_of_patches(patcher):
    """Make the user's patches (FreeU, attention patches...) safe to backpropagate through: some
    edit activations in place (FreeU_V2 scales half of its input's channels), which is harmless in
    a KSampler but would overwrite what autograd kept for the drag's backward pass. Each patch gets
    copies of its tensor arguments, and what autograd saves inside it is saved as a copy. The
    clone's model_options are its own: the MODEL the user passed keeps its patches as they are."""
    patches = patcher.model_options.get("transformer_options", {}).get("patches", {})
    for name, functions in patches.items():
        patches[name] = [_on_copies(f) for f in functions]


def _on_copies(function):
    def patch(*args, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(torch.clone, lambda saved: saved):
            return function(*[a.clone() if torch.is_tensor(a) else a for a in args], **kwargs)
    return patch


class _StageSampler:
    """The "sampler" the guider runs: the stage's body, with the guider as the network's forward."""

    def __init__(self, network: ComfyNetwork, patcher, stage: Stage, body):
        self.network, self.patcher, self.stage, self.body = network, patcher, stage, body
        self.result = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        network = self.network
        sampling = self.patcher.get_model_object("model_sampling")
        network._predictor = (model_wrap, extra_args, sampling)
        try:
            with ExitStack() as stack:
                if self.stage.grad:
                    stack.enter_context(trainable_weights(network.lora_root()))
                    if network.gradient_checkpointing:
                        stack.enter_context(checkpointed_blocks(network.lora_root()))
                else:  # ComfyUI's weights ask for gradients; a stage that takes none must not record any
                    stack.enter_context(torch.no_grad())
                self.result = self.body()
        finally:
            network._predictor = None
        return latent_image  # the stage's result is the body's, not a sampled latent


@contextmanager
def trainable_weights(module: torch.nn.Module):
    """While inside, every inference-mode parameter and buffer of module is replaced by a normal
    tensor on the same storage (no copy), so autograd may save it for the backward pass; the
    originals are put back on exit."""
    swapped = []
    with torch.inference_mode(False):
        for mod in module.modules():
            for table in (mod._parameters, mod._buffers):
                for name, value in list(table.items()):
                    if value is None or not value.is_inference():
                        continue
                    view = torch.empty(0, dtype=value.dtype, device=value.device)
                    view.set_(value.untyped_storage(), value.storage_offset(), value.shape, value.stride())
                    table[name] = torch.nn.Parameter(view, requires_grad=False) if table is mod._parameters else view
                    swapped.append((table, name, value))
    try:
        yield
    finally:
        for table, name, value in reversed(swapped):
            table[name] = value


@contextmanager
def checkpointed_blocks(unet: torch.nn.Module):
    """Gradient checkpointing on each layer of the input, middle and output blocks: activations
    are recomputed in the backward pass instead of kept (less memory, about a third more time)."""
    from torch.utils.checkpoint import checkpoint
    layers = [layer for blocks in (unet.input_blocks, [unet.middle_block], unet.output_blocks)
              for block in blocks for layer in block]
    for layer in layers:
        forward = layer.forward
        layer.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)
    try:
        yield
    finally:
        for layer in layers:
            with contextlib.suppress(AttributeError):
                del layer.forward
