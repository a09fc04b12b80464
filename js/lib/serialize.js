// Point pairs <-> text of the node's `points` input. No DOM, no ComfyUI.
// Canonical form (what drag_ops/points.py expects): [{"handle": [x, y], "target": [x, y]}, ...],
// image pixels. Reading also accepts the forms the Python parser accepts: {"pairs": [...]},
// alternating [[hx, hy], [tx, ty], ...] (optionally {"points": [...]}) and flat [hx, hy, tx, ty, ...].

/** One pair per line so the text stays readable and diffable in the textarea. */
export function pairsToText(pairs) {
  if (!pairs.length) return "[]";
  const line = ({ handle, target }) =>
    `{"handle": [${num(handle[0])}, ${num(handle[1])}], "target": [${num(target[0])}, ${num(target[1])}]}`;
  return "[\n  " + pairs.map(line).join(",\n  ") + "\n]";
}

function num(v) {
  if (!Number.isFinite(v)) throw new Error(`coordinate ${v} is not a finite number`);
  return JSON.stringify(v);
}

/** Parse point text into [{handle, target}]; empty text is no pairs. Throws Error with a readable message. */
export function textToPairs(text) {
  if (text == null || !String(text).trim()) return [];
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`not valid JSON (${e.message})`);
  }
  return objectToPairs(data);
}

export function objectToPairs(data) {
  if (data && !Array.isArray(data) && typeof data === "object") {
    if (Array.isArray(data.pairs)) data = data.pairs;
    else if (Array.isArray(data.points)) data = data.points;
    else throw new Error("expected a list of pairs or an object with 'pairs' or 'points'");
  }
  if (!Array.isArray(data)) throw new Error("expected a list of pairs");
  if (!data.length) return [];
  if (data[0] && typeof data[0] === "object" && !Array.isArray(data[0])) {
    return data.map((p, i) => {
      if (!p || typeof p !== "object" || !("handle" in p) || !("target" in p))
        throw new Error(`pair ${i + 1} must have "handle" and "target"`);
      return { handle: xy(p.handle, `pair ${i + 1} handle`), target: xy(p.target, `pair ${i + 1} target`) };
    });
  }
  let pts;
  if (Array.isArray(data[0])) {
    pts = data.map((p, i) => xy(p, `point ${i + 1}`));
  } else {
    if (data.length % 2) throw new Error(`a flat list needs x, y for every point; got ${data.length} numbers`);
    pts = [];
    for (let i = 0; i < data.length; i += 2) pts.push(xy([data[i], data[i + 1]], `point ${i / 2 + 1}`));
  }
  if (pts.length % 2) throw new Error(`${pts.length} points given; they come in handle, target pairs`);
  const pairs = [];
  for (let i = 0; i < pts.length; i += 2) pairs.push({ handle: pts[i], target: pts[i + 1] });
  return pairs;
}

function xy(p, what) {
  if (!Array.isArray(p) || p.length !== 2 || !p.every((v) => typeof v === "number" && Number.isFinite(v)))
    throw new Error(`${what} must be [x, y] with two finite numbers, got ${JSON.stringify(p)}`);
  return [p[0], p[1]];
}
