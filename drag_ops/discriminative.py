"""StableDrag (Cui et al. 2024): discriminative point tracking (Sec. 3.3, eq. 2-3) and confident
motion supervision (Sec. 3.4, eq. 4-5).

Tracking: per handle a 1x1xC filter z_i, initialised with the template feature f_i (the original
feature at the original handle; scaled to answer 1 on itself) and trained once per timestep, before
any drag step, to answer a Gaussian centred on the handle over the (2*r2+1)^2 patch of the original
features (eq. 3, L2 loss); then frozen. Each tracking scores the window around the current handle with

    S = lam * exp(-|F - f_i|_1 / C) + (1 - lam) * <F, z_i>                       (eq. 2)

and moves the handle to the argmax; the maximum is the handle's confidence s_i.

The paper writes exp(-|F - f_i|_1) without normalisation; with a sum over 640 channels that term is
0 everywhere but on the template itself, so the distance is the MEAN absolute difference over
channels (ours). The label width (sigma = 1 feature pixel) is not given in the paper either, and
the filter is fitted in closed form (see :func:`train_filters`) instead of by ~1000 iterations.

Supervision: DragDiffusion's point drag (eq. 1) while the tracking is confident; for a handle whose
confidence falls to s_i <= tau * s_1 (s_1 its confidence at the first tracking of the timestep) the
detached reference patch is the ORIGINAL template around the original handle instead (eq. 4-5).
"""

from __future__ import annotations

import torch

from . import rules
from .coords import MAX_RADIUS, sample_at, square_offsets
from .rules import Number
from .supervision import PointDragSupervision


def gaussian_labels(offsets: torch.Tensor, sigma: float) -> torch.Tensor:
    """Desired scores y_i over a patch: a Gaussian centred on the handle, [P]."""
    return torch.exp(-(offsets ** 2).sum(-1) / (2 * sigma ** 2))


def train_filters(patches: torch.Tensor, init: torch.Tensor, labels: torch.Tensor,
                  ridge: float = 0.01) -> torch.Tensor:
    """Eq. 3 for every handle at once: the filters z_i minimising |patches_i @ z_i - y|^2.

    patches [N, P, C] (detached original features), init [N, C] (the templates f_i), labels [P].
    Solved in closed form: the least change from the initialisation z0 that fits the labels,
    z = z0 + F^T (F F^T + mu I)^-1 (y - F z0), which is where gradient descent from z0 converges
    (the paper runs ~1000 iterations, ~1 s; this is one P x P solve, milliseconds). z0 is the
    template f_i scaled to answer 1 on itself (f_i / |f_i|^2): unscaled, its response |f_i|^2 (~800
    on SD features) is so far from the labels that the ridge would keep the filter from fitting.
    mu = ridge x the mean squared feature norm keeps the solve stable when neighbouring features are
    nearly equal.
    """
    F_ = patches.detach().double()
    f = init.detach().double()
    f = f / (f * f).sum(-1, keepdim=True).clamp_min(1e-12)
    y = labels.to(F_).expand(F_.shape[0], -1)
    residual = y - torch.bmm(F_, f[:, :, None])[..., 0]
    mu = ridge * (F_ * F_).sum(-1).mean(-1).clamp_min(1e-12)  # [N]
    Ft = F_.transpose(1, 2)
    small = min(F_.shape[1:])
    eye = torch.eye(small, dtype=F_.dtype, device=F_.device)
    if F_.shape[1] <= F_.shape[2]:  # fewer patch pixels than channels: solve in pixel space
        a = torch.linalg.solve(torch.bmm(F_, Ft) + mu[:, None, None] * eye, residual[..., None])
        delta = torch.bmm(Ft, a)[..., 0]
    else:  # the same solution, in channel space
        rhs = torch.bmm(Ft, residual[..., None])
        delta = torch.linalg.solve(torch.bmm(Ft, F_) + mu[:, None, None] * eye, rhs)[..., 0]
    return (f + delta).to(init.dtype)


class DiscriminativeTracker:
    """StableDrag's tracker (eq. 2-3); sets ``session.confidence`` [N] at every tracking."""

    name = "discriminative"
    reports_confidence = True
    RULES = {"radius": Number(1, MAX_RADIUS, whole=True),  # r2
             "weight": Number(0, 1),  # lambda (eq. 2)
             "label_sigma": Number(0, MAX_RADIUS, above=True), "ridge": Number(0, 1000, above=True)}

    def __init__(self, radius: int = 3, weight: float = 0.3, label_sigma: float = 1.0, ridge: float = 0.01):
        self.radius, self.weight, self.label_sigma, self.ridge = radius, weight, label_sigma, ridge
        rules.check(self)

    def begin(self, s) -> None:
        self._offsets = square_offsets(self.radius).to(s.orig_feats.device)
        self._template = sample_at(s.orig_feats, s.starts.to(s.orig_feats.device))  # f_i [N, C]
        patches = sample_at(s.orig_feats, s.starts.to(s.orig_feats.device)[:, None] + self._offsets)
        labels = gaussian_labels(self._offsets, self.label_sigma)
        self._filters = train_filters(patches, self._template, labels, self.ridge)
        s.confidence = None  # scores of a new filter: s_1 is taken afresh

    def scores(self, feats: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S (eq. 2) over the square window of radius r2 around each centre: ([N, P], positions [N, P, 2]).
        Window pixels outside the map are clamped to its border (they repeat a border pixel)."""
        h, w = feats.shape[-2:]
        pos = torch.round(centres.to(self._offsets))[:, None] + self._offsets  # [N, P, 2]
        pos = torch.stack([pos[..., 0].clamp(0, w - 1), pos[..., 1].clamp(0, h - 1)], -1)
        window = feats[0][:, pos[..., 1].long(), pos[..., 0].long()].permute(1, 2, 0).float()  # [N, P, C]
        distance = (window - self._template[:, None]).abs().mean(-1)
        response = torch.bmm(window, self._filters[:, :, None])[..., 0]
        return self.weight * torch.exp(-distance) + (1 - self.weight) * response, pos

    def track(self, s, feats: torch.Tensor) -> None:
        S, pos = self.scores(feats, s.handles)
        best = S.argmax(-1)
        s.handles = pos[torch.arange(len(best), device=best.device), best].to(s.handles)
        s.confidence = S.max(-1).values


class ConfidentSupervision(PointDragSupervision):
    """StableDrag's confident motion supervision (eq. 5): eq. 1 (the current handle's detached
    patch) while s_i > tau * s_1, eq. 4 (the original template around the original handle) once
    s_i <= tau * s_1. Needs a tracker that reports a confidence (the discriminative one).

    ``low`` holds, after each loss, which handles were supervised with the original template.
    """

    name = "confident"
    weight = "patch_sum"  # DragDiffusion's scale (the base class's setting; not one of StableDrag's)
    # the reference is chosen per handle and step (eq. 4-5), so it is not a setting here
    RULES = {"radius": PointDragSupervision.RULES["radius"], "step": PointDragSupervision.RULES["step"],
             "threshold": Number(0, 1)}  # tau

    def __init__(self, radius: int = 1, step: float | None = None, threshold: float = 0.4):
        self.radius, self.step, self.threshold = radius, step, threshold
        rules.check(self)

    def begin(self, s) -> None:
        super().begin(s)
        self._first = None
        self.low = torch.zeros(len(s.starts), dtype=torch.bool)

    def reference_patch(self, s, feats: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        current = sample_at(feats, patch).detach()
        if s.confidence is None:
            return current
        if self._first is None:
            self._first = s.confidence.detach().clone()  # s_1: the first tracking's confidence
        self.low = (s.confidence <= self.threshold * self._first).to(current.device)
        return torch.where(self.low[:, None, None], self.original.to(current), current)

    def conflicts(self, tracker, supervision, schedule) -> str | None:
        if not getattr(tracker, "reports_confidence", False):
            return (f"the confident supervision switches on the tracker's confidence, and the "
                    f"'{getattr(tracker, 'name', type(tracker).__name__)}' tracker reports none: "
                    "use the 'discriminative' tracker")
        return None
