// Pure geometry and state for the point picker: no DOM, no ComfyUI.
// Points are image pixels [x, y] (x right, y down); "view" is the canvas in CSS pixels.

/** Fit an imgW x imgH image centred inside viewW x viewH, keeping its aspect (letterboxing). */
export function fitTransform(imgW, imgH, viewW, viewH) {
  if (!(imgW > 0 && imgH > 0 && viewW > 0 && viewH > 0)) return null;
  const scale = Math.min(viewW / imgW, viewH / imgH);
  return { scale, ox: (viewW - imgW * scale) / 2, oy: (viewH - imgH * scale) / 2, imgW, imgH };
}

export function imageToView(t, [x, y]) {
  return [t.ox + x * t.scale, t.oy + y * t.scale];
}

/** Continuous image coordinates of a view point (0..imgW, may lie outside the image). */
export function viewToImage(t, [x, y]) {
  return [(x - t.ox) / t.scale, (y - t.oy) / t.scale];
}

export function isInsideImage(t, [x, y]) {
  return x >= 0 && y >= 0 && x < t.imgW && y < t.imgH;
}

/** The pixel a view point falls on, clamped into the image: integer [col, row]. */
export function viewToPixel(t, viewPt) {
  const [x, y] = viewToImage(t, viewPt);
  return [clampInt(x, t.imgW), clampInt(y, t.imgH)];
}

/** View position of a pixel's centre, where its marker is drawn. */
export function pixelToView(t, [x, y]) {
  return imageToView(t, [x + 0.5, y + 0.5]);
}

function clampInt(v, n) {
  return Math.min(n - 1, Math.max(0, Math.floor(v)));
}

/**
 * The point under a view position: {index, which: "handle"|"target"|"pending"} or null.
 * Nearest wins; on a tie the later pair (drawn on top) wins.
 */
export function hitTest(state, t, viewPt, radius = 8) {
  let best = null;
  let bestD = radius * radius;
  const consider = (p, index, which) => {
    const [vx, vy] = pixelToView(t, p);
    const d = (vx - viewPt[0]) ** 2 + (vy - viewPt[1]) ** 2;
    if (d <= bestD) {
      bestD = d;
      best = { index, which };
    }
  };
  state.pairs.forEach((pair, i) => {
    consider(pair.handle, i, "handle");
    consider(pair.target, i, "target");
  });
  if (state.pending) consider(state.pending, state.pairs.length, "pending");
  return best;
}

// Picker state: {pairs: [{handle, target}], pending: [x, y] | null}. Operations return new objects.

export const emptyState = () => ({ pairs: [], pending: null });

/** First click places a handle (pending), the next one its target. */
export function addPoint(state, p) {
  if (!state.pending) return { pairs: state.pairs, pending: [...p] };
  return { pairs: [...state.pairs, { handle: state.pending, target: [...p] }], pending: null };
}

export function movePoint(state, ref, p) {
  if (ref.which === "pending") return { pairs: state.pairs, pending: [...p] };
  const pairs = state.pairs.map((pair, i) => (i === ref.index ? { ...pair, [ref.which]: [...p] } : pair));
  return { pairs, pending: state.pending };
}

/** Remove the pair a point belongs to (or the pending handle). */
export function removePair(state, ref) {
  if (ref.which === "pending") return { pairs: state.pairs, pending: null };
  return { pairs: state.pairs.filter((_, i) => i !== ref.index), pending: state.pending };
}

export const clearPoints = () => emptyState();

/** Bounded stack of snapshots for undo. */
export class UndoStack {
  constructor(limit = 50) {
    this.limit = limit;
    this.items = [];
  }
  push(snapshot) {
    this.items.push(snapshot);
    if (this.items.length > this.limit) this.items.shift();
  }
  pop() {
    return this.items.pop();
  }
  get size() {
    return this.items.length;
  }
}
