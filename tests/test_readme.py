"""The README holds what the code says: the node reference is what workbench/readme_nodes.py writes
from the nodes' own definitions, and every `python -m ...` command in the documentation names a
module that exists."""

import importlib.util
import pathlib
import re

from comfy_support import comfyui, requires_comfyui  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ["README.md", "workbench/RESULTS.md", "workbench/shapes/README.md"]


@requires_comfyui
def test_the_node_reference_is_written_from_the_node_definitions(comfyui):
    from workbench import readme_nodes
    readme = readme_nodes.README.read_text()
    infos = readme_nodes.node_infos()
    assert {i["name"] for i in infos} == set(comfyui.pack_nodes)
    expected = readme_nodes.replaced(readme, readme_nodes.section(infos))
    assert readme == expected, "README.md's node reference is stale: run python -m workbench.readme_nodes"
    for info in infos:  # every input and output is there, under the name the node gives it
        part = readme.split(f"### {info['display_name']}\n", 1)[1].split("\n### ", 1)[0]
        names = [*info["input"].get("required", {}), *info["input"].get("optional", {}), *info["output_name"]]
        assert all(f"| `{n}`" in part for n in names), info["name"]


def test_every_documented_module_command_names_a_module():
    commands = {m for doc in DOCS for m in re.findall(r"python -m ([\w.]+)", (ROOT / doc).read_text())}
    assert "workbench" in commands and "workbench.readme_nodes" in commands
    missing = sorted(m for m in commands - {"pytest"} if importlib.util.find_spec(m) is None)
    assert not missing, missing


def test_the_readme_shows_its_picture_and_links_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert "docs/drag_example.png" in links
    assert not [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
