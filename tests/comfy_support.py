"""Run the pack inside a real ComfyUI, in this process, on a tiny random SD1.5-shaped checkpoint.

Set COMFYUI_PATH to a ComfyUI checkout (and use a Python that has ComfyUI's requirements);
without it every test that uses these fixtures is skipped.

What the harness does, once per test session:
  - puts ComfyUI on sys.path and starts it the way its main.py does, minus the server:
    CPU only, every model / input / output / temp folder inside a temp directory;
  - links this repository into a temp custom_nodes folder and lets ComfyUI load it
    (so the pack is imported exactly as a user's ComfyUI imports it);
  - writes a random checkpoint that ComfyUI detects as SD1.5 (model_channels 320,
    context_dim 768, but only two levels of one res block; a TAESD VAE; a CLIP-L text encoder)
    and a small test image;
  - executes prompt graphs (API format) with ComfyUI's own PromptExecutor.

Test modules import the fixtures they use:  from comfy_support import comfyui  # noqa: F401
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import sys
import uuid
from dataclasses import dataclass, field

import pytest

ENV = "COMFYUI_PATH"
SKIP_REASON = "set COMFYUI_PATH to a ComfyUI checkout to run the integration tests"
PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
PACK_FOLDER = "comfyui_drag"  # the pack's folder name inside custom_nodes

CHECKPOINT = "tiny_sd15.safetensors"
IMAGE = "drag_test.png"
IMAGE_SIZE = 64  # pixels; the latent is 8x8
SEED = 1234

# The tiny UNet in ComfyUI's own config format (what its detection reads back from the file):
# SD1.5's widths and attention layout (attention at the first level only, like SD1.5's last
# level has none), but two levels of one res block instead of four levels of two.
TINY_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1], "channel_mult": [1, 1],
    "transformer_depth": [1, 0], "transformer_depth_output": [1, 1, 0, 0], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}


def lora_and_inversion_graph(lora_steps: int, max_strength: float, save_name: str = "") -> dict:
    """The head every drag graph shares: checkpoint, prompt, image, identity LoRA (node 4) and
    DDIM inversion (node 5) of the LoRA'd model."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a yellow disc"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "4": {"class_type": "DragIdentityLoRA", "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0], "rank": 4,
            "steps": lora_steps, "learning_rate": 1e-3, "batch_size": 1, "seed": 0, "save_name": save_name}},
        "5": {"class_type": "DragDDIMInversion", "inputs": {
            "model": ["4", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0],
            "max_strength": max_strength, "num_steps": 10}},
    }


POINTS = json.dumps([{"handle": [20, 24], "target": [30, 26]}])


# the tiny checkpoint has two decoder levels: its features come from up_blocks[1]
BLOCKS = '"drag.features.blocks": [1]'


def drag_graph(preset="DragDiffusion", overrides='{"schedule.max_steps": 4}', tracker="preset"):
    overrides = "{" + BLOCKS + ", " + overrides.strip()[1:]
    return {
        **lora_and_inversion_graph(2, 0.8),
        "6": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": POINTS, "mask": ""}},
        "7": {"class_type": "DragLatentOptimizer", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "conditioning": ["2", 0], "points": ["6", 0],
            "preset": preset, "tracker": tracker, "supervision": "preset", "schedule": "preset",
            "mask": ["6", 1], "overrides": overrides}},
        "8": {"class_type": "DragReferenceSampler", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "drag": ["7", 0], "conditioning": ["2", 0],
            "reference_attention": True, "start_block": -1}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 1], "filename_prefix": "drag"}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["7", 2], "filename_prefix": "trajectory"}},
    }


def comfyui_path() -> pathlib.Path | None:
    value = os.environ.get(ENV)
    return pathlib.Path(value).resolve() if value else None


requires_comfyui = pytest.mark.skipif(comfyui_path() is None, reason=SKIP_REASON)


# -- start-up ------------------------------------------------------------------------------------

@dataclass
class Run:
    """One executed prompt: success, every node's outputs, UI outputs, messages, progress."""

    success: bool
    outputs: dict  # node id -> tuple of output values (first batch entry of each output)
    ui: dict  # node id -> the node's UI dict (e.g. saved images)
    messages: list  # (event, data) as ComfyUI's executor reported them
    progress: list = field(default_factory=list)  # (node id, value, total, has_preview)

    @property
    def error(self) -> dict | None:
        for event, data in self.messages:
            if event in ("execution_error", "execution_interrupted"):
                return {"event": event, **data}
        return None

    @property
    def interrupted(self) -> bool:
        return any(event == "execution_interrupted" for event, _ in self.messages)


class _Server:
    """The part of ComfyUI's PromptServer the executor talks to; records what it is sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.sent = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data))

    def queue_updated(self):
        pass


class ComfyUI:
    """ComfyUI started in-process; one per test session (ComfyUI's state is process-global)."""

    def __init__(self, checkout: pathlib.Path, root: pathlib.Path, cpu: bool = True):
        self.cpu = cpu  # False: ComfyUI picks its device as main.py would (benchmarks on a GPU)
        self.checkout, self.root = checkout, root
        self.models = root / "models"
        self.input, self.output = root / "input", root / "output"
        self._start()
        self.checkpoint = self.models / "checkpoints" / CHECKPOINT
        write_tiny_checkpoint(self.checkpoint, SEED)
        write_test_image(self.input / IMAGE, SEED)
        self._executor = None
        self._on_progress = None
        self._progress: list = []

    # ComfyUI's modules, for tests that call them directly
    @property
    def nodes(self):
        import nodes
        return nodes

    @property
    def pack_nodes(self) -> dict:
        """{node id: class} of the pack's V3 nodes, as its comfy_entrypoint() lists them to ComfyUI."""
        extension = asyncio.run(self.pack.comfy_entrypoint())
        return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}

    def pack_module(self, name: str):
        """A module of the pack as ComfyUI imported it, e.g. pack_module("drag_ops.errors").
        (Its classes differ from the comfyui_drag copy the other tests import.)"""
        return sys.modules[f"{self.pack.__name__}.{name}"]

    @property
    def version(self) -> str:
        import comfyui_version
        return comfyui_version.__version__

    def _start(self):
        path = str(self.checkout)
        if path not in sys.path:
            sys.path.insert(0, path)
        for name in ("nodes", "utils", "folder_paths"):
            mod = sys.modules.get(name)
            if mod is not None and not str(getattr(mod, "__file__", "") or "").startswith(path):
                raise RuntimeError(f"a module named {name!r} from {mod.__file__} is already imported; "
                                   "ComfyUI needs that name")
        import comfy.options  # noqa: F401  (argument parsing stays off: defaults, then ours)
        from comfy.cli_args import args
        args.cpu = self.cpu
        args.disable_all_custom_nodes = False
        import utils.extra_config  # noqa: F401  (claims the name `utils` for ComfyUI's package, as main.py does)
        import folder_paths

        for name, (paths, exts) in list(folder_paths.folder_names_and_paths.items()):
            folder = self.root / "custom_nodes" if name == "custom_nodes" else self.models / name
            folder.mkdir(parents=True, exist_ok=True)
            folder_paths.folder_names_and_paths[name] = ([str(folder)], exts)
        for folder, setter in ((self.input, folder_paths.set_input_directory),
                               (self.output, folder_paths.set_output_directory),
                               (self.root / "temp", folder_paths.set_temp_directory),
                               (self.root / "user", folder_paths.set_user_directory)):
            folder.mkdir(parents=True, exist_ok=True)
            setter(str(folder))
        link = self.root / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)

        import comfy.model_management
        import comfy.utils
        import execution  # noqa: F401
        import nodes
        assert comfy.model_management.get_torch_device().type == "cpu" or not self.cpu

        async def init():
            await nodes.init_public_apis()
            await nodes.init_external_custom_nodes()
        asyncio.run(init())
        if PACK_FOLDER not in nodes.LOADED_MODULE_DIRS:
            raise RuntimeError(f"ComfyUI could not import the pack from {link}; see the log above")
        init = str(link / "__init__.py")
        self.pack = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == init)
        comfy.utils.set_progress_bar_global_hook(self._progress_hook)

    def _progress_hook(self, value, total, preview=None, prompt_id=None, node_id=None):
        import comfy.model_management
        from comfy_execution.utils import get_executing_context
        ctx = get_executing_context()
        node = node_id or (ctx.node_id if ctx is not None else None)
        self._progress.append((node, value, total, preview is not None))
        if self._on_progress is not None:
            self._on_progress(node, value, total, preview)
        comfy.model_management.throw_exception_if_processing_interrupted()

    # -- running graphs --------------------------------------------------------------------------
    def execute(self, prompt: dict, *, targets=None, fresh: bool = False, on_progress=None) -> Run:
        """Validate and execute an API-format prompt, as the server's queue would.

        targets: node ids to run (with what they depend on) instead of the graph's output nodes,
        for graphs that end in a MODEL or LATENT. The executor, and so ComfyUI's node cache,
        persists between calls unless fresh. on_progress(node, value, total, preview) is called
        on every progress-bar update and may call interrupt() (the cancel button)."""
        import execution
        if fresh or self._executor is None:
            self._executor = execution.PromptExecutor(_Server(), cache_type=execution.CacheType.CLASSIC)
        prompt_id = str(uuid.uuid4())
        if targets is None:
            valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        else:
            async def validate():
                done = {}
                return [await execution.validate_inputs(prompt_id, prompt, t, done) for t in targets]
            checks = asyncio.run(validate())
            node_errors = {t: errors for (ok, errors, t) in checks if not ok}
            valid, error, outputs = not node_errors, None, list(targets)
        if not valid:
            raise AssertionError(f"ComfyUI rejected the prompt: {error} {node_errors}")
        self._progress, self._on_progress = [], on_progress
        try:
            self._executor.execute(prompt, prompt_id, {}, outputs)
        finally:
            self._on_progress = None
        ex = self._executor
        results = {}
        for node_id in prompt:
            data = ex.caches.outputs.get(node_id)
            if data is not None:
                results[node_id] = tuple(out[0] if isinstance(out, list) and out else out for out in data)
        return Run(ex.success and not any(e == "execution_error" for e, _ in ex.status_messages),
                   results, dict(ex.history_result.get("outputs", {})), list(ex.status_messages),
                   list(self._progress))

    @contextlib.contextmanager
    def watch_progress(self, on_progress=None):
        """Record progress-bar updates made outside execute(): yields the list of
        (node, value, total, preview) they append to."""
        seen = []

        def record(node, value, total, preview):
            seen.append((node, value, total, preview))
            if on_progress is not None:
                on_progress(node, value, total, preview)
        previous, self._on_progress = self._on_progress, record
        try:
            yield seen
        finally:
            self._on_progress = previous

    @staticmethod
    def interrupt():
        import nodes
        nodes.interrupt_processing(True)

    # -- loading directly (for tests that look inside objects) -----------------------------------
    def load_checkpoint(self):
        """(MODEL, CLIP, VAE) through the stock CheckpointLoaderSimple."""
        import torch
        with torch.inference_mode():  # as ComfyUI's executor runs every node
            return self.nodes.CheckpointLoaderSimple().load_checkpoint(CHECKPOINT)[:3]


# -- calling a node directly ---------------------------------------------------------------------

def run_node(node, *args, hidden: dict | None = None, **inputs):
    """Run a V3 node as ComfyUI's executor does (execution._async_map_node_over_list): the class
    checked, a locked clone of it carrying the hidden inputs (by io.Hidden name, e.g.
    {"unique_id": "7"}), its FUNCTION called with the inputs by name, under inference mode.
    Positional args are named in the schema's input order. Returns the NodeOutput: index or unpack
    it like the node's outputs; .ui holds its UI output."""
    import torch
    from comfy_api.internal import make_locked_method_func
    from comfy_api.latest import io

    names = [i.id for i in node.define_schema().inputs]
    if len(args) > len(names):
        raise TypeError(f"{node.__name__} has {len(names)} inputs, {len(args)} were given")
    clash = set(names[:len(args)]) & set(inputs)
    if clash:
        raise TypeError(f"{node.__name__}: {sorted(clash)} given by position and by name")
    node.VALIDATE_CLASS()
    clone = node.PREPARE_CLASS_CLONE({io.Hidden[k]: v for k, v in (hidden or {}).items()})
    execute = make_locked_method_func(node, node.FUNCTION, clone)
    with torch.inference_mode():
        return execute(**dict(zip(names, args)), **inputs)


# -- generated files -----------------------------------------------------------------------------

def _random_like(name: str, shape, generator):
    """Seeded weights that keep activations in range: norms 1, biases 0, fan-in scaled matrices."""
    import torch
    if len(shape) == 0:
        return torch.zeros(())
    if name.endswith("bias"):
        return torch.zeros(shape)
    if len(shape) == 1:
        return torch.ones(shape)
    fan_in = 1
    for s in shape[1:]:
        fan_in *= s
    std = 0.02 if "embedding" in name else fan_in ** -0.5
    return torch.randn(shape, generator=generator) * std


def _random_state(module, generator, prefix: str, dtype) -> dict:
    return {prefix + k: _random_like(k, tuple(v.shape), generator).to(dtype)
            for k, v in module.state_dict().items() if v.dtype.is_floating_point}


def write_tiny_checkpoint(path: pathlib.Path, seed: int = SEED, unet: dict = TINY_UNET) -> None:
    """A checkpoint ComfyUI's CheckpointLoaderSimple loads as SD1.5: random UNet (ComfyUI's LDM
    layout, TINY_UNET unless another layout is given), random TAESD VAE, random 12-layer CLIP-L
    (ComfyUI's SD1.5 text encoder is built from a fixed config, so fewer layers would leave
    weights uninitialised)."""
    import json

    import comfy.clip_model
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    import comfy.supported_models
    import comfy.taesd.taesd
    import safetensors.torch
    import torch

    if path.exists():
        return
    gen = torch.Generator().manual_seed(seed)
    ops = comfy.ops.disable_weight_init
    unet_config = comfy.supported_models.SD15(dict(unet)).unet_config
    with torch.device("meta"):
        unet = openaimodel.UNetModel(**unet_config, device="meta", operations=ops)
        taesd = comfy.taesd.taesd.TAESD()
    clip_config = json.loads((pathlib.Path(comfy.clip_model.__file__).parent / "sd1_clip_config.json").read_text())
    clip = comfy.clip_model.CLIPTextModel(clip_config, torch.float16, "meta", ops)

    sd = _random_state(unet, gen, "model.diffusion_model.", torch.float16)
    sd.update(_random_state(taesd, gen, "first_stage_model.", torch.float32))
    sd["first_stage_model.vae_scale"] = torch.tensor(0.18215)  # SD1.5 latent scale, as ComfyUI's TAESD loader sets
    sd["first_stage_model.vae_shift"] = torch.tensor(0.0)
    sd.update(_random_state(clip, gen, "cond_stage_model.transformer.", torch.float16))
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(sd, str(path))


def write_test_image(path: pathlib.Path, seed: int = SEED, size: int = IMAGE_SIZE) -> None:
    """A small RGB picture: a bright disc and a dark square on a smooth background."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.3 + 0.4 * x, 0.4 + 0.2 * y, 0.6 - 0.3 * x * y], axis=-1)
    disc = (x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.15 ** 2
    img[disc] = (0.95, 0.8, 0.2)
    img[int(0.6 * size):int(0.8 * size), int(0.6 * size):int(0.8 * size)] = (0.1, 0.15, 0.4)
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)


def make_comfy_model(config_class: str, unet_config: dict, *, model_type: str | None = None,
                     seed: int = SEED, device: str = "cpu"):
    """A ComfyUI MODEL (ModelPatcher) built from one of ComfyUI's supported model configs,
    with random weights (device "meta": no weights at all, for models that are only inspected).
    Made under inference mode, as ComfyUI's loaders run."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    model_config = getattr(comfy.supported_models, config_class)(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    with torch.inference_mode():
        if model_type is None:
            model = model_config.get_model({}, device=device)
        else:
            model = comfy.model_base.BaseModel(model_config, model_type=comfy.model_base.ModelType[model_type],
                                               device=device)
        if device != "meta":
            gen = torch.Generator().manual_seed(seed)
            model.diffusion_model.load_state_dict(_random_state(model.diffusion_model, gen, "", torch.float32))
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


# -- the same weights in the standalone engine (parity of the two backends) ---------------------

def diffusers_unet_config(model_patcher) -> dict:
    """The UNet2DConditionModel config equivalent to a ComfyUI SD1.x/2.x or SDXL MODEL (any depth)."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import torch

    base = model_patcher.model
    kind = type(base).__name__
    assert isinstance(base.diffusion_model, openaimodel.UNetModel)
    cfg = base.model_config.unet_config

    mult, width = list(cfg["channel_mult"]), cfg["model_channels"]
    if mult[0] != 1:
        raise ValueError(f"this MODEL ({kind}) has channel_mult {mult}")
    levels = len(mult)
    res = cfg["num_res_blocks"]
    res = [res] * levels if isinstance(res, int) else list(res)
    if len(set(res)) != 1:  # ComfyUI's own key map (and LoRA loading) assume this too
        raise ValueError(f"this MODEL ({kind}) has a different number of res blocks per level {res}")
    channels = [width * m for m in mult]

    def per_level(depths, counts, where):
        out, i = [], 0
        for n in counts:
            level = set(depths[i:i + n])
            i += n
            if len(level) != 1:
                raise ValueError(f"this MODEL ({kind}) mixes transformer depths {sorted(level)} in one {where} level")
            out.append(level.pop())
        return out

    down = per_level(list(cfg["transformer_depth"]), res, "down")
    # transformer_depth_output lists the output blocks last first (how ComfyUI detects them)
    up = per_level(list(reversed(cfg["transformer_depth_output"])), [r + 1 for r in reversed(res)], "up")
    mid = cfg.get("transformer_depth_middle", down[-1])
    if mid is None or mid < 1:
        raise ValueError(f"this MODEL ({kind}) has no attention in its middle block")
    if down[-1] and down[-1] != mid:
        raise ValueError(f"this MODEL ({kind}) has middle depth {mid} but last-level depth {down[-1]}")
    down_types = tuple("CrossAttnDownBlock2D" if d else "DownBlock2D" for d in down)
    up_types = tuple("CrossAttnUpBlock2D" if d else "UpBlock2D" for d in up)
    down[-1] = down[-1] or mid  # diffusers reads the middle block's depth from the last level

    heads_cfg, head_channels = cfg.get("num_heads", -1), cfg.get("num_head_channels", -1)
    heads = [c // head_channels if head_channels != -1 else heads_cfg for c in channels]
    added = {}
    if type(base).__name__ == "SDXL":  # the pooled prompt and six size/crop numbers, each a 256-wide embedding
        added = dict(addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=cfg["adm_in_channels"])

    return dict(
        **added,
        sample_size=64,
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        down_block_types=down_types, up_block_types=up_types,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(channels),
        layers_per_block=res[0],
        transformer_layers_per_block=tuple(down),
        reverse_transformer_layers_per_block=tuple(up),
        attention_head_dim=tuple(heads),  # diffusers' name for the number of heads (its issue 2011)
        cross_attention_dim=cfg["context_dim"],
        use_linear_projection=bool(cfg.get("use_linear_in_transformer")),
        upcast_attention=cfg.get("attn_precision") == torch.float32,
        time_embedding_dim=width * 4,
        flip_sin_to_cos=True, freq_shift=0, norm_num_groups=32, norm_eps=1e-5,
    )


def diffusers_twin(model_patcher):
    """A diffusers UNet2DConditionModel holding the weights ComfyUI computes for this MODEL (its
    patches applied), mapped with ComfyUI's own key map: the standalone engine's view of the model."""
    import comfy.utils
    import torch
    from diffusers import UNet2DConditionModel

    with torch.inference_mode(False):
        unet = UNet2DConditionModel(**diffusers_unet_config(model_patcher))
        key_map = comfy.utils.unet_to_diffusers(model_patcher.model.model_config.unet_config)
        weights = patched_weights(model_patcher)
        shapes = {k: v.shape for k, v in unet.state_dict().items()}
        state = {k: weights[key_map[k]].detach().clone().float().reshape(shapes[k]) for k in shapes}
        unet.load_state_dict(state, strict=True)
    return unet.eval().requires_grad_(False)


def patched_weights(model_patcher) -> dict:
    """The UNet weights as ComfyUI computes them for sampling (its patches applied), as copies."""
    import comfy.model_management as mm
    import torch

    with torch.inference_mode():
        mm.load_models_gpu([model_patcher], force_full_load=True)
        return {k: v.clone() for k, v in model_patcher.model.diffusion_model.state_dict().items()}


def assert_model_clean(model_patcher, flags: dict | None = None):
    """Nothing of a drag left on ComfyUI's model: no LoRA layer, hook or forward override, and the
    parameters' requires_grad flags as given (as loaded, when flags is None: untouched)."""
    from peft.tuners.lora import LoraLayer
    unet = model_patcher.model.diffusion_model
    for name, m in unet.named_modules():
        assert not isinstance(m, LoraLayer), name
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks), name
        assert "forward" not in vars(m), name
    assert not any("lora" in name for name, _ in unet.named_parameters())
    if flags is not None:
        assert {k: p.requires_grad for k, p in unet.named_parameters()} == flags

# -- fixtures ------------------------------------------------------------------------------------

_RUNTIME: ComfyUI | None = None


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory) -> ComfyUI:
    """ComfyUI running in this process with the pack loaded (skips without COMFYUI_PATH)."""
    global _RUNTIME
    checkout = comfyui_path()
    if checkout is None:
        pytest.skip(SKIP_REASON)
    if not (checkout / "comfy").is_dir() or not (checkout / "nodes.py").is_file():
        pytest.fail(f"{ENV}={checkout} is not a ComfyUI checkout (no comfy/ and nodes.py)")
    if _RUNTIME is None:
        logging.getLogger().setLevel(logging.INFO)
        _RUNTIME = ComfyUI(checkout, tmp_path_factory.mktemp("comfyui"))
    return _RUNTIME


@pytest.fixture(scope="session")
def tiny_sd15(comfyui):
    """(MODEL, CLIP, VAE) of the tiny checkpoint, loaded once by the stock loader.
    Tests must not change them (clone first, as a node would)."""
    return comfyui.load_checkpoint()


@pytest.fixture(scope="session")
def prompt_and_image(comfyui, tiny_sd15):
    """(CONDITIONING of "a yellow disc" from the tiny checkpoint's CLIP, IMAGE of the test picture), as
    the stock CLIPTextEncode and LoadImage make them. Shared: tests must not change them."""
    import torch
    with torch.inference_mode():
        cond = comfyui.nodes.CLIPTextEncode().encode(tiny_sd15[1], "a yellow disc")[0]
        image = comfyui.nodes.LoadImage().load_image(IMAGE)[0]
    return cond, image


@pytest.fixture(scope="session")
def bridge(comfyui):
    """The pack's bridge module as ComfyUI imported it."""
    return comfyui.pack_module("nodes.bridge")
