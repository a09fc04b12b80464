"""What the registry package holds (the git-tracked files minus .comfyignore): the nodes, the engine,
the front end and the example workflows, and none of the workbench (evaluation, training, the CLI)
or the tests; and that much alone imports and builds its nodes' engine, so nothing left out is
needed at run time."""

import fnmatch
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".comfyignore").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """gitignore matching for the pattern forms .comfyignore uses: `name` matches a file or folder of
    that name anywhere, `name/` a folder (and so everything under it)."""
    parts = path.split("/")
    for pattern in patterns:
        if "/" in pattern.rstrip("/"):
            raise AssertionError(f".comfyignore pattern {pattern!r}: extend ignored() to anchored patterns")
        folder_only = pattern.endswith("/")
        name = pattern.rstrip("/")
        candidates = parts[:-1] if folder_only else parts
        if any(fnmatch.fnmatchcase(p, name) for p in candidates):
            return True
    return False


@pytest.fixture(scope="module")
def shipped() -> list[str]:
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout: {e}")
    patterns = ignore_patterns()
    return [f for f in files.splitlines() if not ignored(f, patterns)]


def test_the_matcher_reads_gitignore_patterns_as_git_does():
    assert ignored("workbench/shapes/world.py", ["workbench/"])
    assert not ignored("workbench", ["workbench/"])  # a file of that name is no folder
    assert ignored("a/b/conftest.py", ["conftest.py"]) and not ignored("nodes/x.py", ["conftest.py"])


def test_the_package_holds_no_evaluation_training_or_test_code(shipped):
    assert {"__init__.py", "nodes/extension.py", "drag_ops/pipeline.py", "js/drag_point_picker.js",
            "LICENSE", "README.md", "pyproject.toml", "requirements.txt"} <= set(shipped)
    assert any(f.startswith("example_workflows/") and f.endswith(".json") for f in shipped)
    left_in = [f for f in shipped if f.split("/")[0] in {"workbench", "tests", ".ci"}
               or pathlib.PurePath(f).stem in {"cli", "metrics", "datasets", "benchmark", "train", "conftest"}]
    assert not left_in, left_in
    assert not [f for f in shipped if f.endswith((".safetensors", ".ckpt", ".pt"))]  # no weights


def test_pyproject_includes_nothing_back():
    # [tool.comfy].includes overrides .comfyignore in the package
    text = (ROOT / "pyproject.toml").read_text()
    assert "includes = []" in text


def test_the_package_alone_imports_and_lists_its_presets(shipped, tmp_path):
    """Copy only the shipped files and import the pack from there, as ComfyUI would (no repository
    root on sys.path, so neither workbench nor pack_loader can be found)."""
    pack = tmp_path / "comfyui-drag-editing"
    for f in shipped:
        (pack / f).parent.mkdir(parents=True, exist_ok=True)
        (pack / f).write_bytes((ROOT / f).read_bytes())
    code = (
        "import importlib, importlib.util, pathlib, sys\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "spec = importlib.util.spec_from_file_location('pack', root / '__init__.py', submodule_search_locations=[str(root)])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)\n"
        "mods = [p.stem for p in (root / 'drag_ops').glob('*.py') if p.stem != '__init__']\n"
        "[importlib.import_module('pack.drag_ops.' + n) for n in mods]\n"
        "[importlib.import_module('pack.nodes.' + n) for n in ('bridge', 'runtime', 'values', 'method', 'auto_mask_engine')]\n"
        "from pack.drag_ops.presets import PRESETS, preset\n"
        "[preset(n) for n in PRESETS]\n"
        "assert not [n for n in sys.modules if n.split('.')[0] in ('workbench', 'pack_loader', 'comfyui_drag')]\n"
        "print(len(mods), len(PRESETS))\n")
    run = subprocess.run([sys.executable, "-c", code, str(pack)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
