"""Each preset against its authors' update loop on the same random SD1.5-layout UNet (CPU, fp32).

    python benchmarks/parity/run.py AUTHORS_DIR [--methods DragDiffusion,GoodDrag] [--case report]
    python benchmarks/parity/run.py AUTHORS_DIR --case small --write tests/fixtures/parity

AUTHORS_DIR: a folder with the authors' repositories (see __init__.py); fetch them yourself.

For each method it runs (1) the authors' code as their UI runs it (classic attention, since their
UIs call set_default_attn_processor without a LoRA), (2) the authors' code again with diffusers'
SDPA attention kernel and (3) again with another torch thread count: the float-noise envelope is the
larger of the two distances, how far the code drifts from itself when only the order of its sums
changes (Adam divides each gradient entry by its own running size, so entries near zero, as the
mask term's L1 makes them, turn float noise into steps of the learning rate's size); (4) the preset,
from the authors' inverted latent. It prints the loss at the first update, the handle paths side by
side (FreeDrag has no tracking: the intermediate targets its line search picks), the update where
each loop stopped, and the final latent's difference (max |a - b| and ||a - b|| / ||a - z_T||, the
drag's change) against the envelope. With --write it stores the authors' side (losses, paths, stop,
final latent) and the envelope in a JSON file per method, which tests/test_parity.py checks the
engine against.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
import pack_loader  # noqa: E402

pack_loader.load()
import authors  # noqa: E402
import case as cases  # noqa: E402
from case import METHODS, difference, run_engine  # noqa: E402

STABLEDRAG = "StableDrag: no public code (the preset follows the paper and DragDiffusion's code); not compared."


def compare(method: str, root: pathlib.Path, case, *, quiet: bool = False) -> dict:
    torch.manual_seed(0)
    unet = cases.build_unet(case)
    inputs = cases.build_inputs(case)
    labels = cases.segments(case, inputs) if method == "AdaptiveDrag" else None
    started = time.time()
    theirs, trajectory = authors.run(method, root, case, unet, inputs, labels, "classic")
    again, _ = authors.run(method, root, case, unet, inputs, labels, "sdpa")
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)  # another summation order in convolutions and matmuls
    try:
        threaded, _ = authors.run(method, root, case, unet, inputs, labels, "classic")
    finally:
        torch.set_num_threads(threads)
    ours = run_engine(method, case, unet, inputs, trajectory, labels)
    kernel = difference(again.latent, theirs.latent, theirs.start)
    thread = difference(threaded.latent, theirs.latent, theirs.start)
    out = {"method": method, "theirs": theirs, "again": again, "threaded": threaded, "ours": ours,
           "trajectory": trajectory,
           "envelope": {k: max(kernel[k], thread[k]) for k in kernel}, "kernel": kernel, "threads": thread,
           "difference": difference(ours.latent, theirs.latent, theirs.start),
           "same_kernel": difference(ours.latent, again.latent, again.start),
           "seconds": time.time() - started}
    if method == "AdaptiveDrag":
        out["code_lookup"], _ = authors.run(method, root, case, unet, inputs, labels, "classic", lookup="code")
    return out


def agreement(a: list, b: list) -> str:
    n = min(len(a), len(b))
    same = next((i for i in range(n) if a[i] != b[i]), n)
    text = f"{same}/{max(len(a), len(b))} identical"
    return text + ("" if same == n and len(a) == len(b) else f" (first difference at #{same + 1})")


def fmt_path(path: list) -> str:
    return " ".join("(" + ",".join(f"{v:g}" for v in xy) + ")" for xy in path)


def report(r: dict, show_paths: int = 12) -> str:
    t, e, o = r["theirs"], r["again"], r["ours"]
    loss_rel = abs(o.losses[0] - t.losses[0]) / max(abs(t.losses[0]), 1e-12) if o.losses and t.losses else float("nan")
    lines = [f"== {r['method']} ({r['seconds']:.0f} s)",
             f"loss at step 0     authors {t.losses[0]:.6g}   preset {o.losses[0]:.6g}   rel diff {loss_rel:.2e}",
             f"{'line searches' if r['method'] == 'FreeDrag' else 'trackings':18} {agreement(t.paths, o.paths)}"
             f"   (authors vs authors-SDPA: {agreement(t.paths, e.paths)})",
             f"updates at stop    authors {t.steps}   preset {o.steps}   authors-SDPA {e.steps}",
             f"final latent       preset vs authors: max {r['difference']['max_abs']:.2e}, rel {r['difference']['rel']:.2e}"
             f"   envelope: max {r['envelope']['max_abs']:.2e}, rel {r['envelope']['rel']:.2e} (authors vs authors with "
             f"SDPA attention: max {r['kernel']['max_abs']:.2e}, rel {r['kernel']['rel']:.2e}; with another thread "
             f"count: max {r['threads']['max_abs']:.2e}, rel {r['threads']['rel']:.2e}, "
             f"{agreement(t.paths, r['threaded'].paths)}, {r['threaded'].steps} updates)",
             f"same kernel        preset (SDPA) vs authors-SDPA: {agreement(e.paths, o.paths)}, updates {e.steps} vs "
             f"{o.steps}, final latent max {r['same_kernel']['max_abs']:.2e}, rel {r['same_kernel']['rel']:.2e}"]
    if t.radii:
        lines.append(f"radii (r_m, r_p)   authors {t.radii}   preset {o.radii}")
    if "code_lookup" in r:
        c = r["code_lookup"]
        lines.append(f"with the code's own radius lookup (segments[x, y], next label's centroid): radii {c.radii}, "
                     f"trackings vs preset {agreement(c.paths, o.paths)}, updates {c.steps}, final latent rel "
                     f"{difference(o.latent, c.latent, c.start)['rel']:.2e}")
    n = max(len(t.paths), len(o.paths))
    for i in range(min(n, show_paths)):
        a = fmt_path(t.paths[i]) if i < len(t.paths) else "-"
        b = fmt_path(o.paths[i]) if i < len(o.paths) else "-"
        lines.append(f"  #{i + 1:<3} authors {a:34} preset {b}{'' if a == b else '   <-- differs'}")
    if n > show_paths:
        lines.append(f"  ... {n - show_paths} more")
    return "\n".join(lines)


def fixture(r: dict, case, root: pathlib.Path, command: str) -> dict:
    t = r["theirs"]
    return {
        "method": r["method"], "case": case.name, "command": command,
        "authors_repository": authors.GITHUB[r["method"]], "authors_commit": commit_of(root, r["method"]),
        "made_with": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()},
        "losses": t.losses, "paths": t.paths, "updates": t.steps, "radii": t.radii,
        "start": t.start.flatten().tolist(), "latent": t.latent.flatten().tolist(),
        "shape": list(t.latent.shape), "envelope": r["envelope"],
        "envelope_parts": {"sdpa_attention": r["kernel"], "other_thread_count": r["threads"]},
        "inversion_steps": int(r["trajectory"].shape[0] - 1),
    }


def commit_of(root: pathlib.Path, method: str) -> str | None:
    """The commit of the repository holding the method's code, if it is a git checkout (else None)."""
    import subprocess
    folder = root / authors.REPOS[method].split("/")[0]
    try:
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = folder / "COMMIT"
        return marker.read_text().strip() if marker.exists() else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("authors", type=pathlib.Path, help="folder with the authors' repositories")
    parser.add_argument("--methods", default="all", help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--case", default="report", choices=sorted(cases.CASES))
    parser.add_argument("--write", type=pathlib.Path, help="store the authors' side as JSON fixtures here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the fixtures use 1, as the tests)")
    parser.add_argument("--paths", type=int, default=12, help="path entries shown per method")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = METHODS if args.methods == "all" else tuple(args.methods.split(","))
    case = cases.CASES[args.case]
    print(f"case {case.name}: latent {case.latent}x{case.latent}, image {case.image}, UNet {case.channels} "
          f"(16 transformer blocks), pairs {case.pairs}, mask {case.mask}, fp32 CPU, {args.threads} thread(s)")
    for method in methods:
        r = compare(method, args.authors, case)
        print(report(r, args.paths), flush=True)
        if args.write:
            args.write.mkdir(parents=True, exist_ok=True)
            command = " ".join(["python benchmarks/parity/run.py", "AUTHORS_DIR", "--case", case.name,
                                "--methods", method, "--write", str(args.write)])
            (args.write / f"{method.lower()}.json").write_text(json.dumps(fixture(r, case, args.authors, command)))
    print(STABLEDRAG)


if __name__ == "__main__":
    main()
