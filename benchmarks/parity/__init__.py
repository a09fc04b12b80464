"""Parity with the authors' code: each preset against the update loop of the code that produced its
paper's numbers, step by step, on one small random SD1.5-layout UNet (CPU, fp32).

    python benchmarks/parity/run.py AUTHORS_DIR [--methods all] [--case report|small]

AUTHORS_DIR holds the authors' repositories, fetched by whoever runs this (nothing of them is in
this project): DragDiffusion (Yujun-Shi/DragDiffusion), GoodDrag (zewei-Zhang/GoodDrag), FreeDrag
(LPengYang/FreeDrag) and AdaptiveDrag (Calvin11311/AdaptiveDrag), each in a folder of that name.
StableDrag has no public code.

- case.py: the model and the inputs both sides get, and the engine's side of a run;
- authors.py: the authors' side, their own functions driven with run-time shims (CPU, fp32, the
  UNet's intermediate features through hooks; see its docstring), never a modified copy;
- run.py: the table, and the reference outputs the engine's tests check (tests/fixtures/parity).
"""
