import { test } from "node:test";
import assert from "node:assert/strict";
import { imagePrint, isPrint, sameImage, pointsOnImage, recordAfterEdit, SAMPLE, CELLS } from "../../js/lib/image_identity.js";

// A SAMPLE x SAMPLE RGBA picture from a function of (x, y) -> [r, g, b].
function picture(fn, n = SAMPLE) {
  const data = new Uint8ClampedArray(n * n * 4);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const [r, g, b] = fn(x, y);
      data.set([r, g, b, 255], (y * n + x) * 4);
    }
  return data;
}

const disc = (x, y) => ((x - 12) ** 2 + (y - 14) ** 2 < 64 ? [240, 200, 40] : [40, 60, 90 + 4 * x]);
const square = (x, y) => (x > 16 && y > 16 ? [200, 60, 60] : [40, 60, 90 + 4 * x]);

test("a print is the size and a grey thumbnail", () => {
  const p = imagePrint(320, 180, picture(() => [255, 255, 255]));
  assert.deepEqual([p.w, p.h], [320, 180]);
  assert.equal(p.grey, "ff".repeat(CELLS * CELLS));
  assert.ok(isPrint(p));
  const half = imagePrint(10, 10, picture((x) => (x < SAMPLE / 2 ? [0, 0, 0] : [255, 255, 255])));
  assert.equal(half.grey.slice(0, 2 * CELLS), "00000000ffffffff", "left half black, right half white");
});

test("the same picture decoded slightly differently is the same image", () => {
  const a = imagePrint(512, 512, picture(disc));
  // what another JPEG decoder or a PNG round trip does: a grey level or two here and there
  const b = imagePrint(512, 512, picture((x, y) => disc(x, y).map((v, i) => v + ((x * 7 + y * 3 + i) % 5) - 2)));
  assert.notEqual(a.grey, b.grey);
  assert.ok(sameImage(a, b));
  assert.ok(sameImage(a, { ...a }));
});

test("another picture, or the same one at another size, is another image", () => {
  const a = imagePrint(512, 512, picture(disc));
  assert.ok(!sameImage(a, imagePrint(512, 512, picture(square))), "same size, other content");
  assert.ok(!sameImage(a, imagePrint(256, 256, picture(disc))), "resized: pixel coordinates differ");
  assert.ok(!sameImage(a, imagePrint(512, 512, picture((x, y) => disc(x, y).map((v) => 255 - v)))), "inverted");
});

test("anything but a well-formed print is no print", () => {
  const good = imagePrint(8, 8, picture(disc));
  for (const bad of [null, undefined, {}, "abc", { w: 8, h: 8 }, { ...good, grey: good.grey.slice(2) },
    { ...good, grey: "zz" + good.grey.slice(2) }, { ...good, w: 0 }, { ...good, h: 1.5 }]) {
    assert.ok(!isPrint(bad), JSON.stringify(bad));
    assert.ok(!sameImage(bad, good));
  }
  assert.throws(() => imagePrint(0, 5, picture(disc)), /positive/);
  assert.throws(() => imagePrint(5, 5, new Uint8ClampedArray(12)), /RGBA/);
});

test("points stay on their own image and are cleared on another", () => {
  const A = imagePrint(640, 480, picture(disc));
  const A2 = imagePrint(640, 480, picture((x, y) => disc(x, y).map((v) => v + 1)));
  const B = imagePrint(640, 480, picture(square));
  assert.deepEqual(pointsOnImage(A, A2, true, true), { clear: false, record: null }, "same image: keep, record unchanged");
  assert.deepEqual(pointsOnImage(A, A2, true, false), { clear: false, record: null }, "e.g. the executed copy after a run");
  assert.deepEqual(pointsOnImage(A, B, true, false), { clear: true, record: B }, "another image: clear, the points now follow B");
  assert.deepEqual(pointsOnImage(A, B, true, true), { clear: true, record: B }, "a saved workflow whose file was replaced");
  assert.deepEqual(pointsOnImage(A, B, false, false), { clear: false, record: null }, "no points: nothing to do");
});

test("without a record the points belong to the first image shown", () => {
  const B = imagePrint(64, 64, picture(square));
  for (const none of [null, undefined, { w: 1 }]) {
    assert.deepEqual(pointsOnImage(none, B, true, true), { clear: false, record: B }, "an example opening on its own image");
    assert.deepEqual(pointsOnImage(none, B, true, false), { clear: true, record: B }, "its image failed; the user picked another");
  }
  assert.deepEqual(pointsOnImage(null, B, false, true), { clear: false, record: null });
});

test("editing points records the image they are placed on", () => {
  const A = imagePrint(64, 64, picture(disc));
  const B = imagePrint(64, 64, picture(square));
  assert.equal(recordAfterEdit(null, B, true), B);
  assert.equal(recordAfterEdit(A, B, true), B, "after an undone clear the restored points follow B");
  assert.equal(recordAfterEdit(A, A, true), null, "already recorded");
  assert.equal(recordAfterEdit(A, B, false), null, "no points: the record waits for the first point");
  assert.equal(recordAfterEdit(A, null, true), null, "no image shown yet");
});
