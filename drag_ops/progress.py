"""Progress and cancel: every long loop calls the callback once per step.

callback(stage, step, total, preview) where preview is None or a dict the caller may draw
(e.g. {"x0": latent, "handles": [[x, y], ...], "targets": ...} in image pixels; the drag's also
holds "latent", the optimised latent after that update). Raising from
the callback cancels: the engine's finally blocks then remove whatever it installed.
"""

from __future__ import annotations

from typing import Callable, Optional

Callback = Callable[[str, int, int, Optional[dict]], None]


def report(callback: Callback | None, stage: str, step: int, total: int, preview: dict | None = None) -> None:
    if callback is not None:
        callback(stage, step, total, preview)
