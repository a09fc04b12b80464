"""Means with 95% confidence intervals over the tasks of one or more shapes-benchmark runs.

    python -m workbench bench --presets all --tasks 24 --task-seed 3 --json out/bench/seed3.json   (and 4, 5)
    python -m workbench.benchmarks.bench_ci out/bench/seed3.json out/bench/seed4.json out/bench/seed5.json

The tasks of all files are pooled (a task is one (seed, task) pair) and each mean's interval is the
2.5th-97.5th percentile of the mean over bootstrap resamples of the tasks (with replacement; the
move-only columns resample the move tasks). Also prints each file's own means, so that a seed that
disagrees with the others shows.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import numpy as np

COLUMNS = (  # (header, metric, rows: "moves" or "all", format)
    ("move MD / initial", "md_ratio", "moves", "{:.2f}"),
    ("identity kept (moves)", "identity", "moves", "{:.0%}"),
    ("MD / initial (all)", "md_ratio", "all", "{:.2f}"),
    ("identity (all)", "identity", "all", "{:.0%}"),
    ("PSNR outside mask", "psnr_outside", "all", "{:.1f} dB"),
    ("DAI (gamma 1)", "dai_1", "all", "{:.3f}"),
    ("s / task (median)", "seconds", "all", "{:.0f}"),  # a median: a paused or shared machine makes outliers
)


def values(rows: list, metric: str, subset: str) -> np.ndarray:
    rows = [r for r in rows if subset == "all" or r["kind"] == "move"]
    out = [float(r[metric]) for r in rows if r.get(metric) is not None and math.isfinite(float(r[metric]))]
    return np.array(out, dtype=np.float64)


def bootstrap(x: np.ndarray, resamples: int, rng) -> tuple[float, float, float]:
    """(mean, low, high): the 95% percentile interval of the mean over resampled tasks."""
    if len(x) == 0:
        return (float("nan"),) * 3
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def table(rows_by_method: dict, resamples: int, seed: int, intervals: bool = True) -> str:
    rng = np.random.default_rng(seed)
    head = "| preset | tasks | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for method, rows in rows_by_method.items():
        cells = []
        for _, metric, subset, fmt in COLUMNS:
            x = values(rows, metric, subset)
            mean, low, high = bootstrap(x, resamples, rng)
            if math.isnan(mean):
                cells.append("-")
            elif metric == "seconds":
                cells.append(fmt.format(float(np.median(x))))
            elif intervals:
                cells.append(f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}]")
            else:
                cells.append(fmt.format(mean))
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path, help="workbench/cli.py bench --json outputs")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap")
    args = parser.parse_args(argv)
    pooled: dict[str, list] = {}
    per_file = []
    for path in args.files:
        report = json.loads(path.read_text())
        seed = report.get("task_seed")
        per_file.append((path, seed, report["results"]))
        for method, rows in report["results"].items():
            pooled.setdefault(method, []).extend({**r, "task": f"{seed}:{r['task']}"} for r in rows)
    seeds = ", ".join(str(s) for _, s, _ in per_file)
    print(f"task seeds {seeds}: means [95% bootstrap interval over tasks, {args.resamples} resamples]\n")
    print(table(pooled, args.resamples, args.seed))
    for path, seed, results in per_file:
        print(f"\n{path} (task seed {seed}): means")
        print(table(results, args.resamples, args.seed, intervals=False))


if __name__ == "__main__":
    main()
