"""The README's main command, run as the README runs it: a drag edit on the bundled shapes model."""

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_writes_its_images_and_moves_the_shape_toward_the_target(tmp_path):
    run = subprocess.run([sys.executable, "-m", "workbench", "demo", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("input.png", "output.png", "trajectory.png"):
        with Image.open(tmp_path / name) as img:
            assert img.size == (384, 384) and img.mode == "RGB"  # 64 x 64, zoomed 6x
    m = re.search(r"MD / initial ([\d.]+)\).*PSNR outside the mask ([\d.]+) dB", run.stdout)
    assert m, run.stdout
    ratio, outside = float(m[1]), float(m[2])
    assert ratio < 0.85  # the shape's handle point travelled at least 15% of the way (measured: 0.52)
    assert outside > 25.0  # the rest of the scene kept (measured: 30.4 dB)
