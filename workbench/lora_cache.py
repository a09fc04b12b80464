"""Identity LoRAs kept on disk between benchmark runs (`python -m workbench bench --lora-cache DIR`).

On the shapes world every optimising preset trains the same identity LoRA (world.adapt gives them
one recipe), and a LoRA step costs about as much as a drag update: run preset by preset, a task's
LoRA would be trained five times. The training draws its noise, crops and timesteps from its
settings' seed alone (drag_ops/lora.py), so the LoRA is a function of the model, the latent, the
conditioning, the settings, and (through float summation order) the torch build and thread count.
The key hashes all of them: a kept LoRA is the one a fresh run would train, bit for bit.

Files are written to a temporary name and renamed, so two runs sharing the folder never read a
half-written one (at worst both train it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from comfyui_drag.drag_ops.lora import LoraSettings, LoraWeights, train_identity_lora
from comfyui_drag.drag_ops.model import Conditioning, DiffusionModel


def _update(h, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


class LoraCache:
    def __init__(self, folder, model: DiffusionModel):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        for name, t in sorted(model.network.unet.state_dict().items()):
            h.update(name.encode())
            _update(h, t)
        _update(h, model.schedule.alphas_cumprod)
        self._model = h.hexdigest()

    def key(self, latent: torch.Tensor, cond: Conditioning, settings: LoraSettings) -> str:
        h = hashlib.sha256(self._model.encode())
        for t in (latent, cond.context, *(cond.added[k] for k in sorted(cond.added))):
            _update(h, t)
        h.update(repr(settings).encode())
        h.update(f"{torch.__version__} threads={torch.get_num_threads()}".encode())
        return h.hexdigest()[:32]

    def lora(self, model: DiffusionModel, image: torch.Tensor, cond: Conditioning,
             settings: LoraSettings) -> tuple[LoraWeights, float]:
        """(the LoRA, the seconds its training took when it was trained)."""
        latent = model.codec.encode(image.to(model.device))
        path = self.folder / f"{self.key(latent, cond, settings)}.safetensors"
        if path.exists():
            meta = json.loads(path.with_suffix(".json").read_text())
            state = {k: v.to(model.device) for k, v in load_file(str(path)).items()}
            return LoraWeights(state, meta["rank"], meta["alpha"], settings.targets, settings), meta["seconds"]
        t0 = time.perf_counter()
        lora = train_identity_lora(model, latent, cond, settings)
        seconds = time.perf_counter() - t0
        tmp = self.folder / f".{path.stem}.{os.getpid()}"
        meta = {"rank": lora.rank, "alpha": lora.alpha, "seconds": seconds, "settings": repr(settings)}
        Path(f"{tmp}.json").write_text(json.dumps(meta))
        os.replace(f"{tmp}.json", path.with_suffix(".json"))
        save_file({k: v.detach().to("cpu").contiguous() for k, v in lora.state.items()}, f"{tmp}.safetensors")
        os.replace(f"{tmp}.safetensors", path)  # last: a .safetensors present means its .json is too
        return lora, seconds
