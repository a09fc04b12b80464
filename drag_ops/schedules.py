"""Drag schedules: when to optimise, track and denoise. Each drives a DragSession."""

from __future__ import annotations

import contextlib
import copy

import torch

from . import rules
from .rules import Choice, Flag, Number

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

    What GoodDrag's code (pipeline.py::GoodDragger.gooddrag_step, good_drag) does beyond Alg. 1 is
    four settings:
    - ``track_features``: "before_update" tracks on the features the J-th update's loss used (the code
      tracks right after optimizer.step() with the features computed before it, one update stale);
      "after_update" on a forward of the updated latent (Alg. 1 line 11: z_t^{k+1}).
    - ``retrack``: track once more at the start of every timestep, on the denoised latent, before
      its first update (the code's first_drag tracking).
    - ``patience``: stop after this many trackings in a row that moved no handle (the code's
      max_track_no_change: 10 in its UI, 5 in bench_gooddrag.py); 0 never.
    - ``denoise_on_stop``: when the drag stops (targets reached, or patience), the timestep it
      stopped at is still denoised here, without reference attention, and sampling (with it) starts
      one step lower (the code); False hands the latent to the sampler at the timestep reached.
    Stops are checked before each drag operation (the code checks before every update; handles only
    move at trackings), and with ``denoise_on_stop`` False also right after a timestep's last one.

    Passes: the forward after a drag operation's J-th update serves the next operation's first
    update; where a denoising step follows, it runs without gradients and its noise prediction is
    the denoising step's (same latent, same timestep). So K*J forwards with gradients and K/B
    without, for Alg. 1's K*J + K + K/B (plus one per timestep to re-track, if set).
    """

    name = "alternating"
    RULES = {"rounds_per_denoise": Number(1, 1000, whole=True),  # B
             "supervision_steps": Number(1, 100, whole=True),  # J
             "drag_rounds": Number(1, MAX_STEPS, whole=True),  # K
             "track_features": Choice(("before_update", "after_update")),
             "retrack": Flag(),
             "patience": Number(0, MAX_STEPS, whole=True),
             "denoise_on_stop": Flag()}

    def __init__(self, rounds_per_denoise: int = 10, supervision_steps: int = 3, drag_rounds: int = 70,
                 track_features: str = "after_update", retrack: bool = False, patience: int = 0,
                 denoise_on_stop: bool = False):
        self.rounds_per_denoise, self.supervision_steps, self.drag_rounds = \
            rounds_per_denoise, supervision_steps, drag_rounds
        self.track_features, self.retrack, self.patience, self.denoise_on_stop = \
            track_features, retrack, patience, denoise_on_stop
        rules.check(self)

    def total(self) -> int:
        return self.drag_rounds * self.supervision_steps  # K * J updates

    def denoise_steps(self) -> int:
        return self.drag_rounds // self.rounds_per_denoise  # K / B

    def _stalled(self) -> bool:
        return bool(self.patience) and self.unchanged >= self.patience

    def _stop(self, s) -> bool:
        return s.reached() or self._stalled()

    def _round(self, s, out, feats, before_denoise: bool):
        """One drag operation: J updates, then tracking. Returns the updated latent's (out, feats)."""
        for j in range(self.supervision_steps):  # Alg. 1 lines 7-9
            if j:
                out, feats = s.forward()
            s.update(out, feats)
        used = feats  # the features the last update's loss was computed from
        with torch.no_grad() if before_denoise else contextlib.nullcontext():
            out, feats = s.forward()
        before = s.handles.clone()
        s.track(used if self.track_features == "before_update" else feats)  # line 11
        self.unchanged = self.unchanged + 1 if torch.equal(before, s.handles) else 0
        return out, feats

    def run(self, s) -> None:
        self.unchanged = 0  # trackings in a row that moved no handle
        B, K = self.rounds_per_denoise, self.drag_rounds
        rounds = 0
        out, feats = s.forward()
        while True:  # one timestep per pass; (out, feats) are always the current latent's
            if self._stalled():  # GoodDrag's code: no drag at this timestep, sampling takes over
                return
            if self.retrack:
                s.track(feats)
            in_step = 0
            while in_step < B and rounds < K:
                if self._stop(s):
                    if self.denoise_on_stop:
                        s.denoise(out)
                    return
                in_step += 1
                rounds += 1
                out, feats = self._round(s, out, feats, before_denoise=in_step == B or rounds == K)
            if not self.denoise_on_stop and self._stop(s):
                return
            s.denoise(out)  # line 13
            if rounds >= K:
                return
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
