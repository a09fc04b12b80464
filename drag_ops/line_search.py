"""FreeDrag (Ling et al. 2024): feature dragging without point tracking.

Each handle i carries a template feature T_i and an intermediate target h_i on the line from its
start p_i to its target t_i. The supervision pulls the features at h_i toward T_i (eq. 2); after
the optimisation steps of a drag the line search decides whether the drag toward h_i is over and,
if so, adapts the template and picks the next intermediate target. The intermediate target IS
``session.handles``: there is nothing to track.

- The template (``template``): "patch" keeps the (2r+1)^2 features of the square around the point
  and L is the mean |F(h + q) - T(q)| over its pixels and channels (the authors' code,
  utils/freedrag_utils.py: Loss_l1 between the patches); "aggregate" keeps the patch's mean feature,
  F_r of eq. 1 (a sum there, divided here by the pixel count so that l keeps its scale), and L is the
  channel mean of |F_r(h) - T|. r = 4 in the code (win_r), 3 in the paper's Sec. 5.1.
- Adaptive template (Sec. 4.1, eq. 3-6): T <- lam F(h) + (1 - lam) T with
  lam = 1 / (1 + exp(a (L_end - b))), a = ln 9 / (0.6 l), b = 0.2 l; lam = 1 once the handle is done.
  The paper caps lam without giving the cap (``max_update``); the code does not cap it (1), which the
  formula itself keeps below 0.68.
- A drag toward h lasts at most 5 optimisation steps (``steps_per_target``) and ends early once
  L < 0.5 l (Sec. 4.3). ``drags``: "joint" is the code's loop (freedrag_update): one drag for all
  handles at once, every handle in the loss, ended early when every handle's loss at the last
  update was below 0.5 l, then one more forward for L_end; "per_handle" is the paper read per
  handle: each handle's drag ends on its own, on the loss after the update, and a handle already
  below 0.5 l (or done) is left out of the loss.
- Line search with backtracking (Sec. 4.2, eq. 7-9), with L_in / L_end the loss at the first
  update of the drag that just ended / after its last:
    L_end < 0.5 l             -> the next h is the candidate (at 0.1 .. 1.0 of a segment of length d
                                 toward t) whose template distance is closest to l;
    0.5 l <= L_end < L_in     -> stay at h for another drag;
    otherwise                 -> step back and take the plain minimum over a 2d segment.
  How far back (``rollback``): "remaining" by min(d, |t - h|), as the code (which may leave the
  segment behind p_i); "start" by d but never behind p_i (ours: the paper does not say). A segment is
  cut at the target.
- A handle is done when |h - t| < 2 and L_end <= 0.5 l (Sec. 4.3); in "joint" drags this is judged
  anew at the end of every drag (the code's update_signs), in "per_handle" drags it is final.

The two strategies only work together (they share ``session.template``) and only at a single
timestep: the template is a feature at one noise level.
"""

from __future__ import annotations

import math

import torch

from . import rules
from .coords import MAX_RADIUS, sample_at, square_offsets
from .rules import Choice, Number


def patch_features(feats: torch.Tensor, xy: torch.Tensor, radius: int) -> torch.Tensor:
    """The features of the (2r+1)^2 square around map coordinates xy [..., 2]: [..., P, C]."""
    offsets = square_offsets(radius, device=xy.device)
    return sample_at(feats, xy[..., None, :] + offsets)


def patch_mean(feats: torch.Tensor, xy: torch.Tensor, radius: int) -> torch.Tensor:
    """F_r (eq. 1, divided by the pixel count) at map coordinates xy [..., 2]: [..., C]."""
    return patch_features(feats, xy, radius).mean(-2)


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
             "max_update": Number(0, 1, above=True),  # the cap on lambda (eq. 4)
             "template": Choice(("patch", "aggregate"))}

    def __init__(self, radius: int = 4, target_distance: float = 1.0, max_update: float = 1.0,
                 template: str = "patch"):
        self.radius, self.target_distance, self.max_update, self.template = \
            radius, target_distance, max_update, template
        rules.check(self)

    def begin(self, s) -> None:
        self.ensure_template(s)

    def describe(self, feats: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """What a template is compared with at xy [..., 2]: [..., P, C] ("patch") or [..., C]."""
        xy = xy.to(feats.device)
        if self.template == "patch":
            return patch_features(feats, xy, self.radius)
        return patch_mean(feats, xy, self.radius)

    def distance(self, described: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """L: the mean |difference| over the template's pixels (if any) and channels."""
        dims = (-2, -1) if self.template == "patch" else (-1,)
        return (described - template).abs().mean(dims)

    def ensure_template(self, s) -> None:
        """T_0 = the description of p_0 on the original features (the tracker's begin may need it first)."""
        if getattr(s, "template", None) is None or getattr(s, "_template_k", None) != s.k:
            s.template = self.describe(s.orig_feats, s.starts)
            s._template_k = s.k

    def distances(self, s, feats: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """L per handle (with gradient) at the intermediate targets (or at `at` [N, K, 2] -> [N, K])."""
        xy = s.handles if at is None else at
        template = s.template if at is None else s.template[:, None]
        return self.distance(self.describe(feats, xy), template.to(feats))

    def loss(self, s, feats: torch.Tensor) -> torch.Tensor:
        L = self.distances(s, feats)
        optimise = s.tracker.optimised(s, L.detach()) if hasattr(s, "tracker") else s.active
        return (L * optimise.to(L)).sum()

    def update_weight(self, L_end: torch.Tensor) -> torch.Tensor:
        """lam (eq. 4) with a = ln 9 / (0.6 l), b = 0.2 l (eq. 5-6), capped at max_update."""
        l = self.target_distance
        a, b = math.log(9) / (0.6 * l), 0.2 * l
        return torch.sigmoid(-a * (L_end - b)).clamp(max=self.max_update)

    def adapt(self, s, feats: torch.Tensor, L_end: torch.Tensor, which: torch.Tensor, done: torch.Tensor) -> None:
        """Eq. 3 for the handles in `which` (bool [N]); lam = 1 for those now done."""
        lam = torch.where(done, torch.ones_like(L_end), self.update_weight(L_end))
        lam = (lam * which.to(lam)).to(s.template)
        lam = lam.reshape(-1, *[1] * (s.template.dim() - 1))
        current = self.describe(feats, s.handles).to(s.template)
        s.template = lam * current + (1 - lam) * s.template

    def conflicts(self, tracker, supervision, schedule) -> str | None:
        if not isinstance(tracker, LineSearchTracker):
            return ("the adaptive-template supervision pulls content to FreeDrag's intermediate targets, "
                    f"which only the 'line_search' tracker sets (got '{_name(tracker)}')")
        return None


class LineSearchTracker:
    """FreeDrag's line search with backtracking (eq. 7-9), in place of point tracking.

    ``max_step`` is FreeDrag's d (feature pixels); ``steps_per_target`` the optimisation steps
    per intermediate target (5); ``drags`` and ``rollback`` as in the module doc. The template
    distance l is the supervision's. ``plans`` holds the intermediate targets of every drag.
    """

    name = "line_search"
    RULES = {"max_step": Number(0, MAX_RADIUS, above=True),  # d, feature pixels
             "steps_per_target": Number(1, 1000, whole=True), "candidates": Number(1, 1000, whole=True),
             "drags": Choice(("joint", "per_handle")), "rollback": Choice(("remaining", "start"))}

    def __init__(self, max_step: float = 5.0, steps_per_target: int = 5, candidates: int = 10,
                 drags: str = "joint", rollback: str = "remaining"):
        self.max_step, self.steps_per_target, self.candidates = max_step, steps_per_target, candidates
        self.drags, self.rollback = drags, rollback
        rules.check(self)

    # -- the line ------------------------------------------------------------------------
    def search(self, s, feats: torch.Tensor, origin: torch.Tensor, length: torch.Tensor,
               aim: torch.Tensor) -> torch.Tensor:
        """S (eq. 7-8): of the candidates at 0.1 .. 1.0 of the segment from `origin` toward the
        target (length `length` [N], cut at the target), the one whose template distance is closest
        to `aim` [N] (0: the plain minimum). Returns [N, 2]."""
        toward = s.targets - origin
        remaining = toward.norm(dim=-1).clamp_min(1e-8)
        end = origin + torch.clamp(length / remaining, max=1.0)[:, None] * toward
        j = (torch.arange(1, self.candidates + 1, dtype=torch.float32) / self.candidates)[None, :, None]
        cands = (1 - j) * origin[:, None] + j * end[:, None]  # [N, K, 2]
        with torch.no_grad():
            L = self._sup(s).distances(s, feats, at=cands).cpu()
        pick = (L - aim[:, None]).abs().argmin(-1)
        return cands[torch.arange(len(pick)), pick]

    def _sup(self, s) -> AdaptiveTemplateSupervision:
        return s.supervision

    def _back(self, s) -> torch.Tensor:
        """Where the backtracking search starts: behind the intermediate target (see ``rollback``)."""
        toward = s.targets - s.handles
        remaining = toward.norm(dim=-1)
        u = toward / remaining.clamp_min(1e-8)[:, None]
        if self.rollback == "remaining":
            back_by = torch.clamp(self.max_step / remaining.clamp_min(1e-8), max=1.0) * remaining
        else:
            back_by = torch.clamp((s.handles - s.starts).norm(dim=-1), max=self.max_step)
        return s.handles - back_by[:, None] * u

    def _replan(self, s, feats: torch.Tensor, L_end: torch.Tensor, move: torch.Tensor) -> list[str]:
        """Eq. 9 for the handles in `move`: the next intermediate target. Returns each one's event."""
        l = self._sup(s).target_distance
        n = len(L_end)
        d = torch.full((n,), float(self.max_step))
        forward = self.search(s, feats, s.handles, d, torch.full((n,), l))
        backtracked = self.search(s, feats, self._back(s), 2 * d, torch.zeros(n))
        good, stay = L_end < 0.5 * l, L_end < self.L_in
        new = torch.where(good[:, None], forward, torch.where(stay[:, None], s.handles, backtracked))
        s.handles = torch.where(move[:, None], new, s.handles)
        return ["next" if good[i] else "stay" if stay[i] else "back" for i in range(n)]

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
        self.plans = [s.handles.tolist()]
        with torch.no_grad():
            self.L_in = sup.distances(s, s.orig_feats).cpu()
        self.L_step = self.L_in.clone()  # the loss at the latent the next update starts from

    def optimised(self, s, L: torch.Tensor) -> torch.Tensor:
        """Which handles the loss includes: all ("joint"), or those still above 0.5 l and not done."""
        if self.drags == "joint":
            return torch.ones_like(L)
        return (L >= 0.5 * self._sup(s).target_distance).to(L) * s.active.to(L)

    def track(self, s, feats: torch.Tensor) -> None:
        if self.drags == "joint":
            self._track_joint(s, feats)
        else:
            self._track_per_handle(s, feats)

    def _track_joint(self, s, feats: torch.Tensor) -> None:
        """The code's loop: after the update that just happened, end the drag of every handle if it was
        the 5th or every handle's loss at that update was below 0.5 l (L_step)."""
        sup = self._sup(s)
        l = sup.target_distance
        with torch.no_grad():
            L = sup.distances(s, feats).cpu()
        self.count += 1
        n = len(L)
        if not (int(self.count[0]) >= self.steps_per_target or bool((self.L_step < 0.5 * l).all())):
            self.events.append(["drag"] * n)
            self.L_step = L
            return
        near = (s.targets - s.handles).norm(dim=-1).cpu() < s.settings.reach_distance
        self.done = near & (L <= 0.5 * l)
        dev = s.template.device
        sup.adapt(s, feats, L.to(dev), torch.ones(n, dtype=torch.bool, device=dev), self.done.to(dev))
        events = ["done"] * n
        if not self.done.all():
            moved = self._replan(s, feats, L, ~self.done)
            events = ["done" if self.done[i] else moved[i] for i in range(n)]
            self.plans.append(s.handles.tolist())
        with torch.no_grad():
            self.L_in = sup.distances(s, feats).cpu()  # the next drag's loss at its first update
        self.L_step = self.L_in.clone()
        self.count.zero_()
        self.events.append(events)

    def _track_per_handle(self, s, feats: torch.Tensor) -> None:
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
            dev = s.template.device
            sup.adapt(s, feats, L.to(dev), finished.to(dev), now_done.to(dev))
            move = finished & ~now_done
            moved = self._replan(s, feats, L, move)
            with torch.no_grad():
                L_new = sup.distances(s, feats).cpu()
            self.L_in = torch.where(move, L_new, self.L_in)
            self.count[finished] = 0
            self.done |= now_done
            for i in torch.nonzero(finished).flatten().tolist():
                events[i] = "done" if now_done[i] else moved[i]
            if move.any():
                self.plans.append(s.handles.tolist())
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
