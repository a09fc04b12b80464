"""The README's node reference, written from the nodes' own definitions (their V3 schemas, as
ComfyUI's /object_info serves them), so it cannot drift from the code:

    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.readme_nodes

rewrites the part of README.md between BEGIN and END. tests/test_readme.py checks that README.md
holds what this writes.
"""

from __future__ import annotations

import os
import sys

import pack_loader

README = pack_loader.ROOT / "README.md"
BEGIN = "<!-- nodes: written by `python -m workbench.readme_nodes` from the node definitions; edit those, not this -->"
END = "<!-- end of nodes -->"


def cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def kind_and_default(kind, opts: dict) -> tuple[str, str]:
    """(type column, default column) of one input."""
    if isinstance(kind, (list, tuple)) or kind == "COMBO":
        options = list(kind) if isinstance(kind, (list, tuple)) else list(opts.get("options", []))
        default = opts.get("default", options[0] if options else "")
        return "one of " + ", ".join(f"`{o}`" for o in options), f"`{default}`"
    if kind in ("INT", "FLOAT"):
        limits = [f"{opts[k]}" for k in ("min", "max") if k in opts]
        span = f" ({' to '.join(limits)})" if len(limits) == 2 else ""
        return kind, f"{opts.get('default', '')}{span}"
    if kind == "BOOLEAN":
        return kind, str(opts.get("default", False)).lower()
    if kind == "STRING":
        default = opts.get("default", "")
        return kind, f"`{cell(default)}`" if default else "empty"
    return str(kind), ""


def node_markdown(info: dict) -> str:
    lines = [f"### {info['display_name']}", "", f"`{info['name']}`: {cell(info.get('description', ''))}", "",
             "| input | type | default | |", "|---|---|---|---|"]
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            kind, default = kind_and_default(spec[0], opts)
            label = f"`{name}`" + (" (optional)" if group == "optional" else "")
            lines.append(f"| {label} | {cell(kind)} | {default} | {cell(opts.get('tooltip', ''))} |")
    lines += ["", "| output | type | |", "|---|---|---|"]
    tips = info.get("output_tooltips") or [""] * len(info["output"])
    for name, kind, tip in zip(info["output_name"], info["output"], tips):
        lines.append(f"| `{name}` | {kind} | {cell(tip or '')} |")
    return "\n".join(lines)


def node_infos() -> list[dict]:
    from .workflows import workflow_graph as wg
    return [cls.GET_NODE_INFO_V1() for cls in wg.pack_node_classes()]


def section(infos: list[dict]) -> str:
    return "\n\n".join([BEGIN, *(node_markdown(i) for i in infos), END])


def replaced(readme: str, new_section: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold the node section's markers once each: {BEGIN} ... {END}")
    head, rest = readme.split(BEGIN)
    return head + new_section + rest.split(END, 1)[1]


def main() -> None:
    # ComfyUI is a checkout, not an installed package: comfy_api (the node schemas) comes from COMFYUI_PATH
    if not os.environ.get("COMFYUI_PATH"):
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (the node definitions use its comfy_api)")
    sys.path.append(os.environ["COMFYUI_PATH"])
    README.write_text(replaced(README.read_text(), section(node_infos())))
    print(f"wrote the node reference into {README.relative_to(pack_loader.ROOT)}")


if __name__ == "__main__":
    main()
