"""Drag schedules: when to optimise, track and denoise. Each drives a DragSession."""

from __future__ import annotations


class SingleTimestep:
    """DragDiffusion: every motion-supervision step at the inversion timestep t; one forward per
    step serves both tracking (with the previous update's features) and the next loss."""

    name = "single"

    def __init__(self, max_steps: int = 80):
        self.max_steps = max_steps

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
    """GoodDrag AlDD (Sec. 4.1, Alg. 1): B tracking rounds of J supervision steps each, then
    one denoising step; repeated until K = B * (denoise steps) drag rounds are used."""

    name = "alternating"

    def __init__(self, rounds_per_denoise: int = 10, supervision_steps: int = 3, drag_rounds: int = 70):
        self.B, self.J, self.K = rounds_per_denoise, supervision_steps, drag_rounds

    def total(self) -> int:
        return self.K * self.J

    def denoise_steps(self) -> int:
        return -(-self.K // self.B)

    def run(self, s) -> None:
        for rnd in range(self.K):
            if rnd and rnd % self.B == 0:
                s.denoise()
            for j in range(self.J):
                out, feats = s.forward()
                if j == 0 and rnd:
                    s.track(feats)  # the round's first forward sees the previous round's result
                    if s.reached():
                        return
                s.update(out, feats)
        out, feats = s.forward()
        s.track(feats)
