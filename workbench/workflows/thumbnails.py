"""Draws each workflow's thumbnail for ComfyUI's template browser: the method or workflow's name, a
picture of its idea, and the one-line description (ComfyUI shows no description of its own for a
custom node's template in 1.58, and in 1.27 only the file name again; see build.py).

Square, because both frontends show thumbnails in a square box (a 3:2 image gets bars). Drawn at
twice the size and scaled down, since PIL draws without anti-aliasing. Only Pillow's bundled font
is used, so the output does not depend on the fonts a machine has (Pillow >= 10.1).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 512
S = 2  # drawing scale
BG, PANEL, TEXT, MUTED = (31, 32, 35), (46, 48, 54), (244, 244, 245), (190, 192, 198)
HANDLE, TARGET, MASK = (239, 68, 68), (59, 130, 246), (34, 197, 94)  # the point picker's colours
SHAPE = (250, 204, 21)
ACCENT = {"dragdiffusion": (251, 146, 60), "freedrag": (74, 222, 128), "stabledrag": (192, 132, 252),
          "gooddrag": (56, 189, 248), "adaptivedrag": (244, 114, 182), "step_by_step": (96, 165, 250),
          "refine": (250, 204, 21), "reuse": (45, 212, 191), "sdxl": (163, 230, 53), "fastdrag": (250, 204, 21),
          "regiondrag": (45, 212, 191)}
PANEL_BOX = (24, 128, 488, 416)  # the picture's area, in 512-px coordinates


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size * S)


class Pen:
    """ImageDraw in 512-px coordinates, relative to an origin."""

    def __init__(self, img: Image.Image, origin=(0, 0)):
        self.d = ImageDraw.Draw(img)
        self.ox, self.oy = origin

    def at(self, x, y):
        return ((self.ox + x) * S, (self.oy + y) * S)

    def box(self, x0, y0, x1, y1):
        return (*self.at(x0, y0), *self.at(x1, y1))

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width=2, radius=0):
        self.d.rounded_rectangle(self.box(x0, y0, x1, y1), radius * S, fill=fill, outline=outline, width=width * S)

    def dot(self, x, y, r, fill, ring=None):
        self.d.ellipse(self.box(x - r, y - r, x + r, y + r), fill=fill, outline=ring, width=2 * S if ring else 0)

    def line(self, points, fill, width=2):
        self.d.line([self.at(*p) for p in points], fill=fill, width=width * S, joint="curve")

    def dashed(self, a, b, fill, width=2, dash=8):
        n = max(1, int(math.dist(a, b) // dash))
        for i in range(0, n, 2):
            self.line([lerp(a, b, i / n), lerp(a, b, min(1, (i + 1) / n))], fill, width)

    def dashed_rect(self, x0, y0, x1, y1, fill, width=2):
        for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
            self.dashed(a, b, fill, width, dash=6)

    def arrow(self, a, b, fill, width=3, head=10, dashed=False):
        if dashed:
            self.dashed(a, b, fill, width)
        else:
            self.line([a, b], fill, width)
        ang = math.atan2(b[1] - a[1], b[0] - a[0])
        wing = [(b[0] - head * math.cos(ang + s), b[1] - head * math.sin(ang + s)) for s in (0.45, -0.45)]
        self.d.polygon([self.at(*b), self.at(*wing[0]), self.at(*wing[1])], fill=fill)

    def text(self, x, y, s, size, fill=TEXT, anchor="mm", bold=False):
        self.d.text(self.at(x, y), s, font=font(size), fill=fill, anchor=anchor,
                    stroke_width=S if bold else 0, stroke_fill=fill)


def lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


# -- what the pictures share: a shape, its handle and target -----------------------------------------

def points(p: Pen, h, t, ghost=True):
    """The handle (red), the target (blue), the dashed move between them and (ghost) the shape's
    outline where it should end up."""
    if ghost:
        p.d.ellipse(p.box(t[0] - 34, t[1] - 34, t[0] + 34, t[1] + 34), outline=(140, 115, 30), width=3 * S)
    p.arrow(h, t, TEXT, width=3, dashed=True, head=12)
    p.dot(*h, 8, HANDLE, ring=TEXT)
    p.dot(*t, 8, TARGET, ring=TEXT)


def shape(p: Pen, c, r=34, fill=SHAPE):
    p.dot(*c, r, fill)


def label(p: Pen, x, y, s, fill=MUTED, anchor="mm", size=20):
    p.text(x, y, s, size, fill, anchor)


# -- one picture per workflow (coordinates inside the 464 x 288 panel) ------------------------------
# Cards show the image at about 256 px, half this size: labels are 19 px or more, lines 3 px.

H, T = (76, 214), (388, 86)


def fade(col, alpha, under=PANEL):
    return tuple(int(under[i] + (col[i] - under[i]) * alpha) for i in range(3))


def draw_dragdiffusion(p: Pen, accent):
    """Motion supervision pulls a patch one step toward the target; nearest-neighbour tracking
    finds the handle again inside a window around it."""
    shape(p, H)
    points(p, H, T)
    now = lerp(H, T, 0.5)
    p.line([H, now], HANDLE, width=4)
    p.dashed_rect(now[0] - 50, now[1] - 50, now[0] + 50, now[1] + 50, TEXT, width=3)
    p.rect(now[0] - 16, now[1] - 16, now[0] + 16, now[1] + 16, outline=accent, width=4)
    p.arrow(now, lerp(now, T, 0.4), accent, width=4, head=14)
    p.dot(*now, 6, HANDLE)
    label(p, now[0] + 30, now[1] - 68, "supervise", fill=accent, anchor="lm", size=21)
    label(p, now[0], now[1] + 72, "track", fill=TEXT, size=21)


def draw_freedrag(p: Pen, accent):
    """No tracking: a feature template moves along the handle-target line by a line search that
    steps forward by d or backs off when the template is lost."""
    shape(p, H)
    points(p, H, T)
    for k in range(1, 10):
        c = lerp(H, T, k / 10)
        p.line([(c[0] - 6, c[1] - 10), (c[0] + 6, c[1] + 10)], MUTED, width=3)
    for k, alpha in ((2, 0.35), (4, 0.65), (6, 1.0)):
        c = lerp(H, T, k / 10)
        p.rect(c[0] - 17, c[1] - 17, c[0] + 17, c[1] + 17, outline=fade(accent, alpha), width=4)
    c4, c6, c8 = (lerp(H, T, k / 10) for k in (4, 6, 8))
    p.arrow((c6[0] - 14, c6[1] - 44), (c8[0] - 14, c8[1] - 44), accent, width=4, head=14)
    p.arrow((c6[0] + 20, c6[1] + 40), (c4[0] + 20, c4[1] + 40), MUTED, width=3, head=12)
    label(p, c8[0] - 60, c8[1] - 80, "step d", fill=accent, size=21)
    label(p, c4[0] + 48, c4[1] + 72, "or back off", size=20, anchor="lm")
    label(p, 90, 112, "template", fill=accent, size=21)


def draw_stabledrag(p: Pen, accent):
    """A discriminative tracker scores a window around the handle; where its best score is low,
    supervision falls back to the original features."""
    shape(p, H)
    points(p, H, T)
    cx, cy = lerp(H, T, 0.5)
    n, cell = 9, 14
    x0, y0 = cx - n * cell / 2, cy - n * cell / 2
    peak = (5, 3)
    for i in range(n):
        for j in range(n):
            v = math.exp(-((i - peak[0]) ** 2 + (j - peak[1]) ** 2) / 4.0)
            p.rect(x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell - 1, y0 + (j + 1) * cell - 1,
                   fill=fade(accent, 0.15 + 0.85 * v), width=0)
    p.dot(x0 + (peak[0] + 0.5) * cell, y0 + (peak[1] + 0.5) * cell, 6, HANDLE, ring=TEXT)
    label(p, cx - 10, y0 + n * cell + 20, "tracker", fill=accent, size=21)
    bx, by, bh = 420, 96, 150
    p.rect(bx, by, bx + 22, by + bh, outline=MUTED, width=3)
    p.rect(bx + 4, by + bh * 0.25, bx + 18, by + bh - 4, fill=accent, width=0)
    p.line([(bx - 10, by + bh * 0.55), (bx + 32, by + bh * 0.55)], TEXT, width=3)
    label(p, bx + 32, by + bh + 18, "confidence", size=19, anchor="rm")


def draw_gooddrag(p: Pen, accent):
    """AlDD: a few drag steps, then one denoising step, repeated."""
    h, t = (62, 96), (402, 96)
    for k in (0, 1, 2):
        p.dot(*lerp(h, t, k / 3), 28, fade(SHAPE, 0.3 + 0.2 * k))
    shape(p, t, 28)
    p.arrow(h, t, TEXT, width=3, dashed=True)
    p.dot(*h, 8, HANDLE, ring=TEXT)
    p.dot(*t, 8, TARGET, ring=TEXT)
    x, y, w = 22, 168, 24
    for _ in range(3):
        for _ in range(3):
            p.rect(x, y, x + w, y + 44, fill=accent, width=0, radius=4)
            x += w + 5
        p.rect(x, y, x + w + 12, y + 44, fill=MASK, width=0, radius=4)
        x += w + 24
    label(p, 22, 244, "drag", fill=accent, anchor="lm", size=21)
    label(p, 110, 244, "denoise", fill=MASK, anchor="lm", size=21)


def superpixels(w: int, h: int, n: int = 35):
    """A Voronoi partition of a w x h box from seeded, jittered grid points (a label image)."""
    rng = np.random.RandomState(3)
    cols = 7
    rows = math.ceil(n / cols)
    seeds = np.array([((c + 0.5 + rng.uniform(-0.35, 0.35)) * w / cols, (r + 0.5 + rng.uniform(-0.35, 0.35)) * h / rows)
                      for r in range(rows) for c in range(cols)])
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    best, labels = np.full((h, w), np.inf), np.zeros((h, w), dtype=int)
    for i, (sx, sy) in enumerate(seeds):
        d = (xx - sx) ** 2 + (yy - sy) ** 2
        closer = d < best
        labels[closer], best[closer] = i, d[closer]
    return labels


def draw_adaptivedrag(p: Pen, accent, img: Image.Image):
    """Superpixels; those under the handle and along the drag form the mask (as the Drag Auto Mask
    preview shows it: cyan boundaries, kept region tinted)."""
    x0, y0, x1, y1 = PANEL_BOX
    w, h = (x1 - x0) * S, (y1 - y0) * S
    labels = superpixels(w, h)
    path = [lerp(H, T, k / 40) for k in range(41)]
    kept = {labels[min(h - 1, int(y * S)), min(w - 1, int(x * S))] for x, y in path}
    region = np.asarray(img.crop((x0 * S, y0 * S, x1 * S, y1 * S))).astype(float)
    inside = np.isin(labels, list(kept))
    region[inside] = region[inside] * 0.4 + np.array(accent) * 0.6
    edge = np.zeros_like(inside)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge = np.asarray(Image.fromarray(edge.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))) > 0
    region[edge] = (34, 211, 238)
    corners = Image.new("L", (w, h), 0)
    ImageDraw.Draw(corners).rounded_rectangle((0, 0, w - 1, h - 1), 12 * S, fill=255)  # the panel's own
    img.paste(Image.fromarray(region.astype(np.uint8)), (x0 * S, y0 * S), corners)
    shape(p, H)
    points(p, H, T, ghost=False)


def flow(p: Pen, boxes, y, h=60):
    """Boxes left to right with arrows between them: [(x0, x1, title, note, outline)]."""
    for i, (a, b, title, note, col) in enumerate(boxes):
        p.rect(a, y, b, y + h, fill=BG, outline=col, width=3, radius=8)
        p.text((a + b) / 2, y + h / 2 - (10 if note else 0), title, 21, TEXT)
        if note:
            p.text((a + b) / 2, y + h / 2 + 15, note, 16, MUTED)
        if i + 1 < len(boxes):
            p.arrow((b + 3, y + h / 2), (boxes[i + 1][0] - 3, y + h / 2), MUTED, width=3, head=10)


def draw_step_by_step(p: Pen, accent):
    """The six numbered groups; moving a point re-runs only the last two."""
    flow(p, [(8, 144, "1 Load", "", MUTED), (164, 300, "2 Points", "", accent),
             (320, 456, "3 LoRA", "once", MUTED)], 36)
    flow(p, [(8, 144, "4 Invert", "once", MUTED), (164, 300, "5 Drag", "", accent),
             (320, 456, "6 Sample", "", accent)], 176)
    p.line([(388, 98), (388, 136), (76, 136), (76, 170)], MUTED, width=3)
    p.arrow((76, 160), (76, 173), MUTED, width=3, head=10)
    p.arrow((232, 98), (232, 173), accent, width=4, head=12)
    label(p, 242, 118, "new points", fill=accent, anchor="lm", size=19)


def draw_refine(p: Pen, accent):
    """The edit's LATENT refined by a stock KSampler at low denoise; the LoRA saved on the way."""
    for cx, crisp in ((64, False), (400, True)):
        p.rect(cx - 52, 44, cx + 52, 148, fill=(30, 58, 95), width=0, radius=8)
        if crisp:
            p.dot(cx + 8, 96, 28, SHAPE)
        else:
            for r, a in ((36, 0.3), (32, 0.55), (28, 0.8)):
                p.dot(cx + 8, 96, r, fade((190, 160, 40), a, (30, 58, 95)))
    p.text(64, 170, "drag edit", 19, MUTED)
    p.text(400, 170, "refined", 19, MUTED)
    flow(p, [(140, 324, "KSampler", "denoise 0.3", accent)], 66)
    p.arrow((118, 96), (137, 96), MUTED, width=3, head=10)
    p.arrow((327, 96), (346, 96), MUTED, width=3, head=10)
    p.rect(104, 206, 360, 266, fill=BG, outline=MUTED, width=3, radius=8)
    p.text(232, 226, "identity LoRA saved", 20, TEXT)
    p.text(232, 250, "to models/loras", 16, MUTED)


def draw_reuse(p: Pen, accent):
    """A saved identity LoRA loaded with the stock loader: no training before the drag."""
    p.d.polygon([p.at(16, 36), p.at(90, 36), p.at(114, 60), p.at(114, 156), p.at(16, 156)], fill=BG,
                outline=accent, width=3 * S)
    p.text(65, 98, "LoRA", 24, accent, bold=True)
    p.text(65, 176, "saved earlier", 17, MUTED)
    flow(p, [(140, 300, "LoraLoader", "stock node", accent), (322, 456, "Drag", "at once", TEXT)], 66)
    p.arrow((117, 96), (137, 96), MUTED, width=3, head=10)
    p.rect(140, 206, 300, 262, fill=BG, outline=MUTED, width=3, radius=8)
    p.text(220, 234, "train LoRA", 21, MUTED)
    p.line([(150, 214), (290, 254)], HANDLE, width=4)
    p.line([(150, 254), (290, 214)], HANDLE, width=4)


def draw_sdxl(p: Pen, accent):
    """The same drag at SDXL's 1024 px beside SD 1.5's 512: features at a quarter of the image, so the
    drag covers the same part of the picture."""
    p.rect(20, 112, 140, 232, fill=(30, 58, 95), width=0, radius=6)
    p.text(80, 252, "SD 1.5: 512", 19, MUTED)
    shape(p, (56, 190), r=14)
    p.arrow((56, 190), (106, 146), TEXT, width=3, dashed=True, head=9)
    p.rect(196, 16, 436, 256, fill=(30, 58, 95), outline=accent, width=3, radius=8)
    p.text(316, 276, "SDXL: 1024", 20, accent, bold=True)
    h, t = (248, 172), (364, 84)
    shape(p, h, r=28)
    points(p, h, t)
    label(p, 316, 228, "features 1/4 of the image", fill=TEXT, size=17)


def draw_fastdrag(p: Pen, accent):
    """The latent warped in one step: each point moves by the drag scaled down linearly to zero at the
    circle around the region, so the content stretches toward the target."""
    centre, radius = (212, 136), 118
    p.d.ellipse(p.box(centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
                outline=MUTED, width=2 * S)
    h, t = (182, 136), (272, 136)
    for dx, dy in ((-70, -50), (0, -62), (70, -50), (-70, 50), (0, 62), (70, 50), (-60, 0)):
        a = (h[0] + dx, h[1] + dy)
        share = max(0.0, 1 - math.dist(a, h) / (radius + 40))
        p.arrow(a, (a[0] + 90 * share, a[1]), fade(accent, 0.3 + 0.7 * share), width=4, head=12)
        p.dot(*a, 5, MUTED)
    points(p, h, t, ghost=False)
    label(p, 232, 268, "one step, no training", fill=accent, size=20)


def draw_regiondrag(p: Pen, accent):
    """A handle region's inverted latent copied onto its target region at every sampling step."""
    src, dst = (40, 70, 170, 200), (290, 40, 420, 170)
    p.rect(*src, fill=fade(HANDLE, 0.35), outline=HANDLE, width=3, radius=6)
    p.rect(*dst, fill=fade(TARGET, 0.35), outline=TARGET, width=3, radius=6)
    for fy in (0.25, 0.5, 0.75):
        a = (src[2] - 10, src[1] + (src[3] - src[1]) * fy)
        b = (dst[0] + 10, dst[1] + (dst[3] - dst[1]) * fy)
        p.arrow(a, b, accent, width=3, head=11)
    shape(p, (105, 135), r=30)
    p.dot(105, 135, 7, HANDLE)
    p.dot(355, 105, 7, TARGET)
    label(p, 232, 250, "copy at every step", fill=accent, size=20)


PICTURES = {"dragdiffusion": draw_dragdiffusion, "freedrag": draw_freedrag, "stabledrag": draw_stabledrag,
            "gooddrag": draw_gooddrag, "adaptivedrag": draw_adaptivedrag, "step_by_step": draw_step_by_step,
            "refine": draw_refine, "reuse": draw_reuse, "sdxl": draw_sdxl, "fastdrag": draw_fastdrag,
            "regiondrag": draw_regiondrag}


def thumbnail(picture: str, heading: str, description: str) -> Image.Image:
    """The card image: heading, picture, one-line description."""
    img = Image.new("RGB", (SIZE * S, SIZE * S), BG)
    p = Pen(img)
    accent = ACCENT[picture]
    # 1.58 lays a "Node graph" badge over the top 60 px (at this size): the heading sits below it
    p.text(SIZE / 2, 94, heading, 40 if len(heading) < 16 else 34, accent, bold=True)
    p.rect(*PANEL_BOX, fill=PANEL, width=0, radius=12)
    inner = Pen(img, PANEL_BOX[:2])
    if picture == "adaptivedrag":  # recolours the panel's pixels
        draw_adaptivedrag(inner, accent, img)
    else:
        PICTURES[picture](inner, accent)
    assert font(23).getlength(description) <= (SIZE - 40) * S, f"description longer than one line: {description!r}"
    p.text(SIZE / 2, 458, description, 23, TEXT)
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def save(img: Image.Image, path) -> None:
    img.save(path, "JPEG", quality=85, optimize=True)
