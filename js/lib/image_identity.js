// Which image the picker's points belong to, so that points placed on one image are not carried
// onto another (where they would lie outside it, or silently drag the wrong content). No DOM.
//
// An image is known by its size and a coarse grey thumbnail (its "print"). The same picture reached
// another way (the Load Image file, the node's executed copy, a JPEG decoded by another library)
// gives the same size and a thumbnail within a few grey levels; another picture does not. The print
// is stored with the workflow (node.properties), so reopening a saved workflow keeps its points.

export const SAMPLE = 32; // the glue hands in the image scaled to SAMPLE x SAMPLE RGBA
export const CELLS = 8; // the print's thumbnail is CELLS x CELLS grey levels
const TOLERANCE = 4; // mean absolute grey difference (0..255) still counted as the same picture

/** Print of a width x height image from its RGBA pixels scaled to sampleW x sampleH. */
export function imagePrint(width, height, rgba, sampleW = SAMPLE, sampleH = SAMPLE) {
  if (!(width > 0 && height > 0)) throw new Error(`image size must be positive, got ${width}x${height}`);
  if (rgba.length !== sampleW * sampleH * 4)
    throw new Error(`expected ${sampleW}x${sampleH} RGBA pixels, got ${rgba.length} values`);
  const sum = new Float64Array(CELLS * CELLS);
  const count = new Float64Array(CELLS * CELLS);
  for (let y = 0; y < sampleH; y++) {
    const row = Math.floor((y * CELLS) / sampleH) * CELLS;
    for (let x = 0; x < sampleW; x++) {
      const i = (y * sampleW + x) * 4;
      const cell = row + Math.floor((x * CELLS) / sampleW);
      sum[cell] += 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
      count[cell] += 1;
    }
  }
  let grey = "";
  for (let c = 0; c < sum.length; c++) grey += Math.round(sum[c] / Math.max(count[c], 1)).toString(16).padStart(2, "0");
  return { w: width, h: height, grey };
}

/** A print as stored: {w, h, grey} with CELLS^2 hex bytes. Anything else (hand-edited, older) is no print. */
export function isPrint(p) {
  return !!p && Number.isInteger(p.w) && Number.isInteger(p.h) && p.w > 0 && p.h > 0 &&
    typeof p.grey === "string" && p.grey.length === 2 * CELLS * CELLS && /^[0-9a-f]*$/.test(p.grey);
}

export function sameImage(a, b) {
  if (!isPrint(a) || !isPrint(b) || a.w !== b.w || a.h !== b.h) return false;
  let diff = 0;
  for (let i = 0; i < a.grey.length; i += 2)
    diff += Math.abs(parseInt(a.grey.slice(i, i + 2), 16) - parseInt(b.grey.slice(i, i + 2), 16));
  return diff / (CELLS * CELLS) <= TOLERANCE;
}

/**
 * What to do with the points when the picker has shown an image.
 *   record:     the print stored with the points (null: none stored, e.g. a workflow saved before
 *               prints existed, or a shipped example that places its points on the image it opens on)
 *   shown:      the print of the image now shown
 *   hasPoints:  whether there are points (pairs or a pending handle)
 *   firstImage: whether this is the first image the widget shows since its workflow was loaded
 * Returns {clear, record}: clear the points (they belong to another image); record = the print to
 * store now, or null to leave the stored one.
 * Without a record, the points belong to the first image shown: the workflow opens on its own
 * image. A later one (its own image failed to load and the user picked another) is another image.
 */
export function pointsOnImage(record, shown, hasPoints, firstImage) {
  if (!hasPoints) return { clear: false, record: null }; // nothing to keep; placing a point records the image
  if (!isPrint(record)) return firstImage ? { clear: false, record: shown } : { clear: true, record: shown };
  if (sameImage(record, shown)) return { clear: false, record: null };
  return { clear: true, record: shown };
}

/** The print to store after the points were edited on the shown image (null: leave it). */
export function recordAfterEdit(record, shown, hasPoints) {
  return hasPoints && isPrint(shown) && !sameImage(record, shown) ? shown : null;
}
