"""Drag schedules: when to optimise, track and denoise. Each drives a DragSession."""

from __future__ import annotations

import contextlib
import copy

import torch

from . import rules
from .rules import Number

MAX_STEPS = 10_000  # of any drag budget: a shared workflow cannot ask for days of updates


class SingleTimestep:
    """DragDiffusion: every motion-supervision step at the inversion timestep t; one forward per
    step serves both tracking (with the previous update's features) and the next loss."""

    name = "single"
    RULES = {"max_steps": Number(1, MAX_STEPS, whole=True)}

    def __init__(self, max_steps: int = 80):
        self.max_steps = max_steps
        rules.check(self)

    def total(self) -> int:
        return self.max_steps

    def run(self, s) -> None:
        for it in range(self.max_steps):
            out, feats = s.forward()
            if it:
                s.track(feats)
            if s.reached():
                return
            s.update(out, feats)


class AlternatingDragDenoise:
    """GoodDrag AlDD (Sec. 3.3, Alg. 1): K drag operations (``drag_rounds``); each is J
    motion-supervision steps (``supervision_steps``) at the current timestep followed by point
    tracking on the result; after every B-th drag operation (``rounds_per_denoise``) one DDIM
    denoising step takes the latent (and the original's features, the references) to the next
    timestep. K = 70, B = 10 give 7 denoising steps, so the drag ends at step T - K/B.

    Passes: the forward that tracks a drag operation's result also serves the next operation's
    first step; where a denoising step follows, that forward runs without gradients and its noise
    prediction is the denoising step's (same latent, same timestep). So K*J forwards with
    gradients and K/B without, for Alg. 1's K*J + K + K/B.

    Like the other schedules (not Alg. 1) it stops once every handle is within reach; the
    remaining denoising is then the sampler's.
    """

    name = "alternating"
    RULES = {"rounds_per_denoise": Number(1, 1000, whole=True),  # B
             "supervision_steps": Number(1, 100, whole=True),  # J
             "drag_rounds": Number(1, MAX_STEPS, whole=True)}  # K

    def __init__(self, rounds_per_denoise: int = 10, supervision_steps: int = 3, drag_rounds: int = 70):
        self.rounds_per_denoise, self.supervision_steps, self.drag_rounds = \
            rounds_per_denoise, supervision_steps, drag_rounds
        rules.check(self)

    def total(self) -> int:
        return self.drag_rounds * self.supervision_steps  # K * J updates

    def denoise_steps(self) -> int:
        return self.drag_rounds // self.rounds_per_denoise  # K / B

    def run(self, s) -> None:
        out, feats = s.forward()
        for rnd in range(self.drag_rounds):  # K
            for j in range(self.supervision_steps):  # J; Alg. 1 lines 7-9
                if j:
                    out, feats = s.forward()
                s.update(out, feats)
            denoise = (rnd + 1) % self.rounds_per_denoise == 0  # every B-th; line 12
            last = rnd + 1 == self.drag_rounds
            with torch.no_grad() if denoise or last else contextlib.nullcontext():
                out, feats = s.forward()
            s.track(feats)  # line 11, on z_t^{k+1} at t
            if s.reached():
                return
            if denoise:
                s.denoise(out)  # line 13
                if not last:
                    out, feats = s.forward()


class PositionSupervisedBacktracking:
    """AdaptiveDrag (Sec. 3.4.1, Fig. 4): an adaptive number of drag steps at one timestep.

    After each motion-supervision update the handles are tracked and the move is judged against
    the last accepted position a_i of every still-active handle:
      - moved away from the target (cosine between h_i - a_i and the start-to-target direction
        t_i - p_i below 0): the update is undone (latent, Adam state and handles restored) and
        retried from the same point with half the learning rate, at most ``max_retries`` times in
        a row (after that the update is kept: the budget is what stops a stuck drag);
      - moved toward it by at least the ideal distance l_i / n (l_i = |t_i - p_i|): accepted,
        a_i = h_i;
      - moved less (or not at all): kept, and the optimisation goes on from the current point
        with a_i unchanged (the paper's "reusing h_i^k as h_i^{k-1}").
    The loop ends when every handle is within reach or after ``max_steps`` updates (rejected
    ones count: the paper's n_max and its "maximum initial optimization step is 300").

    n (the "user-defined number of steps") is not given in the paper; 80 is DragDiffusion's fixed
    step count, which the paper names as the baseline this schedule replaces. ``max_retries`` and
    the halving of the step on a retry are ours: an undone update retried unchanged would repeat.
    """

    name = "adaptive"
    RULES = {"n": Number(1, MAX_STEPS, whole=True), "max_steps": Number(1, MAX_STEPS, whole=True),
             "max_retries": Number(0, 100, whole=True), "retry_lr_factor": Number(0, 1, above=True)}

    def __init__(self, n: int = 80, max_steps: int = 300, max_retries: int = 3, retry_lr_factor: float = 0.5):
        self.n, self.max_steps, self.max_retries, self.retry_lr_factor = n, max_steps, max_retries, retry_lr_factor
        rules.check(self)
        self.verdicts: list[str] = []  # per update: "accept", "short", "reject" (undone) or "forced"

    def total(self) -> int:
        return self.max_steps

    def judge(self, s, anchor, before, after) -> str:
        direction = s.targets - s.starts
        ideal = direction.norm(dim=-1) / self.n
        verdict = "accept"
        for i in range(len(after)):
            if float((s.targets[i] - before[i]).norm()) < s.settings.reach_distance:
                continue  # already reached before this update
            move = after[i] - anchor[i]
            dist = float(move.norm())
            if dist > 1e-6 and float(torch.nn.functional.cosine_similarity(move, direction[i], dim=0)) < 0:
                return "reject"
            if dist < float(ideal[i]):
                verdict = "short"
        return verdict

    def run(self, s) -> None:
        self.verdicts = []
        anchor = s.handles.clone()
        out, feats = s.forward()
        retries = 0
        base_lr = [g["lr"] for g in s.opt.param_groups]
        while s.steps < self.max_steps and not s.reached():
            saved = (s.latent.detach().clone(), copy.deepcopy(s.opt.state_dict()), s.handles.clone(), len(s.history))
            for g, lr in zip(s.opt.param_groups, base_lr):
                g["lr"] = lr * self.retry_lr_factor ** retries
            s.update(out, feats)
            new_out, new_feats = s.forward()
            s.track(new_feats)
            verdict = self.judge(s, anchor, saved[2], s.handles)
            if verdict == "reject" and retries < self.max_retries:
                retries += 1
                with torch.no_grad():
                    s.latent.copy_(saved[0])
                s.opt.load_state_dict(saved[1])
                s.handles = saved[2]
                del s.history[saved[3]:]
                out, feats = s.forward()  # the last forward's graph was used by the undone update
            else:
                if verdict == "reject":
                    verdict = "forced"  # out of retries: keep it, the step budget bounds the rest
                retries = 0
                if verdict == "accept":
                    anchor = s.handles.clone()
                out, feats = new_out, new_feats
            self.verdicts.append(verdict)
        for g, lr in zip(s.opt.param_groups, base_lr):
            g["lr"] = lr
