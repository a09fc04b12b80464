"""FreeDrag (Ling et al. 2024): feature dragging without point tracking.

Each handle i carries a template feature T_i and an intermediate target h_i on the line from its
start p_i to its target t_i. The supervision pulls the patch feature at h_i toward T_i (eq. 2);
after each optimisation step the line search decides whether the drag toward h_i is over and,
if so, adapts the template and picks the next intermediate target. The intermediate target IS
``session.handles``: there is nothing to track.

- F_r(h) (eq. 1): the MEAN of the features over the (2r+1)^2 square around h, r = 3 (the paper's
  Sec. 5.1; the authors' code uses 4). The template distance L = |F_r(h) - T|_1 / C (mean over
  channels): the scale on which the diffusion defaults l = 1, d = 5 are given.
- Adaptive template (Sec. 4.1, eq. 3-6): T <- lam F_r(h) + (1 - lam) T with
  lam = 1 / (1 + exp(a (L_end - b))), a = ln 9 / (0.6 l), b = 0.2 l; lam = 1 once the handle is done.
  The paper caps lam without giving the cap; we cap it at 0.5, its "well-optimised" value (eq. 5).
- A drag toward h lasts at most 5 optimisation steps and ends early once L < 0.5 l (Sec. 4.3);
  a handle whose L is already below 0.5 l is not optimised.
- Line search with backtracking (Sec. 4.2, eq. 7-9), with L_in / L_end the distance at the first
  / last step of the drag that just ended:
    L_end <= 0.5 l            -> the next h is the candidate (at 0.1 .. 1.0 of a segment of length d
                                 toward t) whose template distance is closest to l;
    0.5 l < L_end <= L_in     -> stay at h for another drag;
    otherwise                 -> step back by d and take the plain minimum over a 2d segment.
  The backtracking step stops at the start point (ours: the paper does not say what happens
  behind p_i), so h never leaves the segment [p_i, t_i]; a segment is cut at the target.
- A handle is done when |h - t| < 2 and L_end <= 0.5 l (Sec. 4.3).

The two strategies only work together (they share ``session.template``) and only at a single
timestep: the template is a feature at one noise level.
"""

from __future__ import annotations

import math

import torch

from . import rules
from .coords import MAX_RADIUS, sample_at, square_offsets
from .rules import Number


def patch_mean(feats: torch.Tensor, xy: torch.Tensor, radius: int) -> torch.Tensor:
    """F_r (eq. 1) at map coordinates xy [..., 2]: [..., C]."""
    offsets = square_offsets(radius, device=xy.device)
    return sample_at(feats, xy[..., None, :] + offsets).mean(-2)


def template_distance(features: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """L = |F_r - T|_1 / C over the last dimension."""
    return (features - template).abs().mean(-1)


def _name(obj) -> str:
    return getattr(obj, "name", type(obj).__name__)


class AdaptiveTemplateSupervision:
    """FreeDrag's feature dragging loss (eq. 2) toward the adaptive template (eq. 3-6).

    ``target_distance`` is FreeDrag's l: the template distance the line search aims for.
    Works only with the line-search tracker, which moves the intermediate targets.
    """

    name = "adaptive_template"
    RULES = {"radius": Number(0, MAX_RADIUS, whole=True),  # r (eq. 1)
             "target_distance": Number(0, 1000, above=True),  # l
             "max_update": Number(0, 1, above=True)}  # the cap on lambda (eq. 4)

    def __init__(self, radius: int = 3, target_distance: float = 1.0, max_update: float = 0.5):
        self.radius, self.target_distance, self.max_update = radius, target_distance, max_update
        rules.check(self)

    def begin(self, s) -> None:
        self.ensure_template(s)

    def ensure_template(self, s) -> None:
        """T_0 = F_r(p_0) on the original features (the tracker's begin may need it first)."""
        if getattr(s, "template", None) is None or getattr(s, "_template_k", None) != s.k:
            s.template = patch_mean(s.orig_feats, s.starts.to(s.orig_feats.device), self.radius)
            s._template_k = s.k

    def distances(self, s, feats: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """L per handle (with gradient) at the intermediate targets (or at `at` [N, K, 2] -> [N, K])."""
        xy = s.handles if at is None else at
        template = s.template if at is None else s.template[:, None]
        return template_distance(patch_mean(feats, xy.to(feats.device), self.radius), template.to(feats))

    def loss(self, s, feats: torch.Tensor) -> torch.Tensor:
        L = self.distances(s, feats)
        optimise = (L.detach() >= 0.5 * self.target_distance).float() * s.active.to(L)
        return (L * optimise).sum()

    def update_weight(self, L_end: torch.Tensor) -> torch.Tensor:
        """lam (eq. 4) with a = ln 9 / (0.6 l), b = 0.2 l (eq. 5-6), capped at max_update."""
        l = self.target_distance
        a, b = math.log(9) / (0.6 * l), 0.2 * l
        return torch.sigmoid(-a * (L_end - b)).clamp(max=self.max_update)

    def adapt(self, s, feats: torch.Tensor, L_end: torch.Tensor, which: torch.Tensor, done: torch.Tensor) -> None:
        """Eq. 3 for the handles in `which` (bool [N]); lam = 1 for those now done."""
        lam = torch.where(done, torch.ones_like(L_end), self.update_weight(L_end))
        lam = (lam * which.to(lam)).to(s.template)[:, None]
        current = patch_mean(feats, s.handles.to(feats.device), self.radius).to(s.template)
        s.template = lam * current + (1 - lam) * s.template

    def conflicts(self, tracker, supervision, schedule) -> str | None:
        if not isinstance(tracker, LineSearchTracker):
            return ("the adaptive-template supervision pulls content to FreeDrag's intermediate targets, "
                    f"which only the 'line_search' tracker sets (got '{_name(tracker)}')")
        return None


class LineSearchTracker:
    """FreeDrag's line search with backtracking (eq. 7-9), in place of point tracking.

    ``max_step`` is FreeDrag's d (feature pixels); ``steps_per_target`` the optimisation steps
    per intermediate target (5). The template distance l is the supervision's.
    """

    name = "line_search"
    RULES = {"max_step": Number(0, MAX_RADIUS, above=True),  # d, feature pixels
             "steps_per_target": Number(1, 1000, whole=True), "candidates": Number(1, 1000, whole=True)}

    def __init__(self, max_step: float = 5.0, steps_per_target: int = 5, candidates: int = 10):
        self.max_step, self.steps_per_target, self.candidates = max_step, steps_per_target, candidates
        rules.check(self)

    # -- the line ------------------------------------------------------------------------
    def _direction(self, s) -> torch.Tensor:
        delta = s.targets - s.starts
        return delta / delta.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def search(self, s, feats: torch.Tensor, origin: torch.Tensor, length: torch.Tensor,
               aim: torch.Tensor) -> torch.Tensor:
        """S (eq. 7-8): of the candidates at 0.1 .. 1.0 of the segment from `origin` toward the
        target (length `length` [N], cut at the target), the one whose template distance is closest
        to `aim` [N] (0: the plain minimum). Returns [N, 2]."""
        u = self._direction(s)
        room = ((s.targets - origin) * u).sum(-1).clamp_min(0)
        seg = torch.minimum(length, room)
        j = torch.arange(1, self.candidates + 1, dtype=torch.float32) / self.candidates
        cands = origin[:, None] + (j[None, :, None] * seg[:, None, None]) * u[:, None]  # [N, K, 2]
        with torch.no_grad():
            L = self._sup(s).distances(s, feats, at=cands).cpu()
        pick = (L - aim[:, None]).abs().argmin(-1)
        return cands[torch.arange(len(pick)), pick]

    def _sup(self, s) -> AdaptiveTemplateSupervision:
        return s.supervision

    # -- strategy interface ----------------------------------------------------------------
    def begin(self, s) -> None:
        sup = self._sup(s)
        sup.ensure_template(s)
        n = len(s.starts)
        l = sup.target_distance
        self.count = torch.zeros(n, dtype=torch.long)
        self.done = torch.zeros(n, dtype=torch.bool)
        self.events: list[list[str]] = []  # per tracking, per handle: "drag", "next", "stay", "back", "done"
        d = torch.full((n,), float(self.max_step))
        s.handles = self.search(s, s.orig_feats, s.handles.clone(), d, torch.full((n,), l))
        with torch.no_grad():
            self.L_in = sup.distances(s, s.orig_feats).cpu()

    def track(self, s, feats: torch.Tensor) -> None:
        sup = self._sup(s)
        l = sup.target_distance
        with torch.no_grad():
            L = sup.distances(s, feats).cpu()
        live = ~self.done
        self.count += live.long()
        finished = live & ((L < 0.5 * l) | (self.count >= self.steps_per_target))
        events = ["done" if dn else "drag" for dn in self.done.tolist()]
        if finished.any():
            near = (s.targets - s.handles).norm(dim=-1) < s.settings.reach_distance
            now_done = finished & near & (L <= 0.5 * l)
            sup.adapt(s, feats, L.to(s.template.device), finished.to(s.template.device),
                      now_done.to(s.template.device))
            n = len(L)
            d = torch.full((n,), float(self.max_step))
            forward = self.search(s, feats, s.handles, d, torch.full((n,), l))
            u = self._direction(s)
            back_by = torch.minimum(d, (s.handles - s.starts).norm(dim=-1))
            behind = s.handles - back_by[:, None] * u
            backtracked = self.search(s, feats, behind, 2 * d, torch.zeros(n))
            good, stay = L <= 0.5 * l, L <= self.L_in
            new = torch.where(good[:, None], forward, torch.where(stay[:, None], s.handles, backtracked))
            move = finished & ~now_done
            s.handles = torch.where(move[:, None], new, s.handles)
            with torch.no_grad():
                L_new = sup.distances(s, feats).cpu()
            self.L_in = torch.where(move, L_new, self.L_in)
            self.count[finished] = 0
            self.done |= now_done
            for i in torch.nonzero(finished).flatten().tolist():
                events[i] = "done" if now_done[i] else "next" if good[i] else "stay" if stay[i] else "back"
        self.events.append(events)

    def settled(self, s) -> torch.Tensor:
        """Handles FreeDrag counts as done: near the target AND dragged there (L_end <= 0.5 l)."""
        return self.done.to(s.handles.device)

    def conflicts(self, tracker, supervision, schedule) -> str | None:
        if not isinstance(supervision, AdaptiveTemplateSupervision):
            return ("the 'line_search' tracker does not track content, it moves FreeDrag's intermediate "
                    "targets: it needs the 'adaptive_template' supervision, which drags content to them "
                    f"(got '{_name(supervision)}')")
        if getattr(schedule, "name", None) != "single":
            return ("the 'line_search' tracker and its adaptive template hold features of one timestep: "
                    f"use the 'single' schedule (got '{_name(schedule)}')")
        return None
