"""The picture at the top of README.md: the demo's edit on the bundled shapes model, before (the
handle, the target and the editable region) beside after (with the handle's tracked path).

    python -m workbench.readme_picture        writes docs/drag_example.png
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

import pack_loader

from .cli import main as cli_main

OUT = pack_loader.ROOT / "docs" / "drag_example.png"
GAP, CAPTION = 12, 26


def compose(before: Image.Image, after: Image.Image) -> Image.Image:
    w, h = before.size
    sheet = Image.new("RGB", (2 * w + GAP, h + CAPTION), (255, 255, 255))
    sheet.paste(before, (0, CAPTION))
    sheet.paste(after, (w + GAP, CAPTION))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), "before: handle (red) to target (blue), editable region bright", fill=(0, 0, 0))
    draw.text((w + GAP + 4, 6), "after: DragDiffusion, the handle's path in yellow", fill=(0, 0, 0))
    return sheet


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cli_main(["demo", "--out", tmp])
        with Image.open(Path(tmp) / "input.png") as before, Image.open(Path(tmp) / "trajectory.png") as after:
            sheet = compose(before.convert("RGB"), after.convert("RGB"))
    OUT.parent.mkdir(exist_ok=True)
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(pack_loader.ROOT)} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
