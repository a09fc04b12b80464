import { test } from "node:test";
import assert from "node:assert/strict";
import {
  fitTransform, imageToView, viewToImage, viewToPixel, pixelToView, isInsideImage, hitTest,
  emptyState, addPoint, movePoint, removePair, clearPoints, UndoStack,
} from "../../js/lib/geometry.js";

test("wide image is letterboxed top and bottom", () => {
  const t = fitTransform(200, 100, 400, 400);
  assert.equal(t.scale, 2);
  assert.deepEqual([t.ox, t.oy], [0, 100]);
  assert.deepEqual(imageToView(t, [0, 0]), [0, 100]);
  assert.deepEqual(imageToView(t, [200, 100]), [400, 300]);
});

test("tall image is pillarboxed left and right", () => {
  const t = fitTransform(30, 120, 300, 240);
  assert.equal(t.scale, 2);
  assert.deepEqual([t.ox, t.oy], [120, 0]);
  assert.deepEqual(viewToImage(t, [120, 0]), [0, 0]);
  assert.deepEqual(viewToImage(t, [180, 240]), [30, 120]);
});

test("image <-> view round trip for non-square sizes", () => {
  for (const [w, h, vw, vh] of [[640, 427, 512, 400], [97, 301, 333, 211], [1, 1, 10, 5]]) {
    const t = fitTransform(w, h, vw, vh);
    for (const p of [[0, 0], [w / 3, h / 2], [w - 0.25, h - 0.5]]) {
      const back = viewToImage(t, imageToView(t, p));
      assert.ok(Math.abs(back[0] - p[0]) < 1e-9 && Math.abs(back[1] - p[1]) < 1e-9, `${w}x${h} ${p}`);
    }
  }
});

test("degenerate sizes give no transform", () => {
  assert.equal(fitTransform(0, 10, 10, 10), null);
  assert.equal(fitTransform(10, 10, 0, 10), null);
});

test("clicks map to pixels and pixels' centres map back to the same pixel", () => {
  const t = fitTransform(300, 200, 450, 450); // scale 1.5, oy 75
  assert.deepEqual(viewToPixel(t, [0, 75]), [0, 0]);
  assert.deepEqual(viewToPixel(t, [449.9, 374.9]), [299, 199]);
  assert.deepEqual(viewToPixel(t, [-20, 10]), [0, 0], "clamped into the image");
  assert.deepEqual(viewToPixel(t, [1000, 1000]), [299, 199]);
  for (const p of [[0, 0], [17, 123], [299, 199]]) assert.deepEqual(viewToPixel(t, pixelToView(t, p)), p);
  assert.ok(isInsideImage(t, viewToImage(t, [10, 80])));
  assert.ok(!isInsideImage(t, viewToImage(t, [10, 70])), "letterbox band is outside");
});

test("hit testing finds the nearest point within the radius", () => {
  const t = fitTransform(100, 50, 200, 200); // scale 2, oy 50
  let s = emptyState();
  s = addPoint(s, [10, 10]);
  s = addPoint(s, [40, 20]);
  s = addPoint(s, [12, 10]);
  const at = (p) => pixelToView(t, p);
  assert.deepEqual(hitTest(s, t, at([10, 10])), { index: 0, which: "handle" });
  assert.deepEqual(hitTest(s, t, at([40, 20])), { index: 0, which: "target" });
  assert.deepEqual(hitTest(s, t, at([12, 10])), { index: 1, which: "pending" });
  const [x, y] = at([40, 20]);
  assert.deepEqual(hitTest(s, t, [x + 5, y + 5]), { index: 0, which: "target" });
  assert.equal(hitTest(s, t, [x + 7, y + 7]), null);
  assert.equal(hitTest(emptyState(), t, [0, 0]), null);
});

test("later pair wins a tie", () => {
  const t = fitTransform(10, 10, 10, 10);
  let s = emptyState();
  for (const p of [[5, 5], [1, 1], [5, 5], [9, 9]]) s = addPoint(s, p);
  assert.deepEqual(hitTest(s, t, pixelToView(t, [5, 5])), { index: 1, which: "handle" });
});

test("pair list operations are immutable", () => {
  const s0 = emptyState();
  const s1 = addPoint(s0, [1, 2]);
  assert.deepEqual(s1, { pairs: [], pending: [1, 2] });
  const s2 = addPoint(s1, [3, 4]);
  assert.deepEqual(s2, { pairs: [{ handle: [1, 2], target: [3, 4] }], pending: null });
  const s3 = movePoint(s2, { index: 0, which: "target" }, [7, 8]);
  assert.deepEqual(s3.pairs[0], { handle: [1, 2], target: [7, 8] });
  assert.deepEqual(s2.pairs[0].target, [3, 4]);
  const s4 = addPoint(addPoint(s3, [5, 5]), [6, 6]);
  assert.equal(s4.pairs.length, 2);
  assert.deepEqual(removePair(s4, { index: 0, which: "handle" }).pairs, [{ handle: [5, 5], target: [6, 6] }]);
  assert.equal(s4.pairs.length, 2);
  const s5 = addPoint(s4, [9, 9]);
  assert.deepEqual(movePoint(s5, { index: 2, which: "pending" }, [0, 1]).pending, [0, 1]);
  assert.deepEqual(removePair(s5, { index: 2, which: "pending" }), { pairs: s4.pairs, pending: null });
  assert.deepEqual(clearPoints(), emptyState());
});

test("undo restores earlier states in reverse order and is bounded", () => {
  const undo = new UndoStack(3);
  let s = emptyState();
  const history = [];
  for (const p of [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]) {
    undo.push(s);
    history.push(s);
    s = addPoint(s, p);
  }
  assert.equal(undo.size, 3);
  assert.deepEqual(undo.pop(), history[4]);
  assert.deepEqual(undo.pop(), history[3]);
  assert.deepEqual(undo.pop(), history[2]);
  assert.equal(undo.pop(), undefined);
});
