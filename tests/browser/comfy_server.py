"""A real ComfyUI server per frontend version, for the browser tests (headless Chromium, playwright-core).

Every browser test module runs once per entry of FRONTENDS (the `frontend` fixture, conftest.py):
the frontend ComfyUI pins in its requirements (whatever `comfyui_frontend_package` is installed
beside it) and the newest release this pack is tested with, served with --front-end-root, the
newest one with each of its renderers (the classic LiteGraph canvas and Nodes 2.0, Vue components).
The newest one is fetched once with `pip download` into out/frontends/ (the registry is the only
network these machines reach). One server per version serves the whole session (conftest.py).

Needs COMFYUI_PATH (a ComfyUI checkout), Chromium (/usr/bin/chromium or $CHROMIUM), node and
`npm ci` at the repository root (playwright-core). Each server runs with a temporary
--base-directory, so the checkout's own custom_nodes, input and user folders are left untouched.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMFYUI = os.environ.get("COMFYUI_PATH")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The newest comfyui-frontend-package release the widget is tested with (pyproject states it too).
NEWEST_FRONTEND = "1.58.1"


@dataclass(frozen=True)
class Frontend:
    version: str  # "pinned" (the one ComfyUI requires) or a comfyui-frontend-package version
    vue_nodes: bool = False  # the Nodes 2.0 renderer (setting Comfy.VueNodes.Enabled)

    @property
    def id(self) -> str:
        return self.version + ("-vue" if self.vue_nodes else "")


# Nodes 2.0 is a user setting in 1.58.1; the pinned 1.27.10 has it only as a hidden experiment.
FRONTENDS = (Frontend("pinned"), Frontend(NEWEST_FRONTEND), Frontend(NEWEST_FRONTEND, vue_nodes=True))


def why_skip() -> str | None:
    if not COMFYUI or not (pathlib.Path(COMFYUI) / "main.py").is_file():
        return "COMFYUI_PATH does not point at a ComfyUI checkout (set it to run the browser tests)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if not shutil.which("node"):
        return "node is not installed"
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        return "playwright-core missing: run `npm ci` at the repository root"
    return None


def frontend_root(version: str) -> pathlib.Path:
    """The static folder of comfyui-frontend-package==version, downloaded once into out/frontends/."""
    folder = ROOT / "out" / "frontends" / version
    static = folder / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        wheels = ROOT / "out" / "frontends" / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                        f"comfyui-frontend-package=={version}"], check=True)
        wheel = next(wheels.glob(f"comfyui_frontend_package-{version}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(folder)
    return static


def installed_frontend_version() -> str:
    from importlib.metadata import version
    return version("comfyui_frontend_package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    base: pathlib.Path  # the server's --base-directory (input/, output/, user/, custom_nodes/, models/)
    frontend: str  # the frontend version it serves

    @property
    def log(self) -> str:
        return (self.base / "server.log").read_text()

    def out_dir(self, frontend: Frontend) -> pathlib.Path:
        """Where a test writes its screenshots: out/browser/<version>[-vue]/."""
        out = ROOT / "out" / "browser" / (self.frontend + ("-vue" if frontend.vue_nodes else ""))
        out.mkdir(parents=True, exist_ok=True)
        return out


def start(base: pathlib.Path, frontend: str, ready_node: str = "DragPointPicker"):
    """Start ComfyUI on a free port with the pack linked into base/custom_nodes; a generator that
    yields a Server once ready_node is served and stops the server when closed."""
    (base / "custom_nodes").mkdir(exist_ok=True)
    link = base / "custom_nodes" / "comfyui_drag"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    (base / "input").mkdir(exist_ok=True)
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        # Skip the first-run template dialog and hide the minimap: both would cover the canvas.
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}))
    port = _free_port()
    cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
           "--port", str(port), "--base-directory", str(base), "--disable-auto-launch"]
    version = installed_frontend_version()
    if frontend != "pinned":
        cmd += ["--front-end-root", str(frontend_root(frontend))]
        version = frontend
    log = open(base / "server.log", "w")
    # One torch thread, as tests/conftest.py sets for the in-process tests: with the cores shared,
    # OpenMP barriers stall (step_by_step.json on the tiny checkpoint ran 44 s with two threads and
    # 9 s with one, with other work on the machine).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=COMFYUI, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited ({proc.returncode}):\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/object_info/{ready_node}", timeout=5) as r:
                    if ready_node in json.load(r):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"ComfyUI did not serve {ready_node} in time:\n{(base / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield Server(url, base, version)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_driver(script: str, *args: str, timeout: int = 600) -> dict:
    """Run a node script from tests/browser/ and return the JSON object it prints."""
    p = subprocess.run(["node", str(ROOT / "tests" / "browser" / script), *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert not result.get("error"), result["error"]
    return result
