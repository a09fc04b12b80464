import { test } from "node:test";
import assert from "node:assert/strict";
import { isPackNode, newNodeSize, previewLayoutSize, showsPreview, MIN_PREVIEW_HEIGHT, PACK_CATEGORY, PREVIEW_ROOM } from "../../js/lib/previews.js";

test("the pack's nodes are those in its category (or below it)", () => {
  assert.ok(isPackNode({ name: "DragLatentOptimizer", category: PACK_CATEGORY }));
  assert.ok(isPackNode({ category: `${PACK_CATEGORY}/advanced` }));
  for (const other of [{ category: "sampling" }, { category: "drag editing extra" }, {}, null, undefined])
    assert.ok(!isPackNode(other), JSON.stringify(other));
});

test("a preview asks for no room of its own, so the node never grows for it", () => {
  assert.deepEqual(previewLayoutSize(), { minHeight: 0, minWidth: 1 });
});

test("a preview is drawn only where it has room to show something", () => {
  assert.ok(showsPreview(MIN_PREVIEW_HEIGHT) && showsPreview(300));
  for (const h of [MIN_PREVIEW_HEIGHT - 1, 0, -40, undefined, NaN]) assert.ok(!showsPreview(h), String(h));
});

test("a new node whose runs send previews gets room for them; the others keep their size", () => {
  assert.deepEqual(newNodeSize("DragLatentOptimizer", [360, 276]), [360, 276 + PREVIEW_ROOM]);
  assert.deepEqual(newNodeSize("DragEdit", [380, 344]), [380, 344 + PREVIEW_ROOM]);
  assert.deepEqual(newNodeSize("DragIdentityLoRA", [340, 250]), [340, 250], "its progress has no image");
  assert.deepEqual(newNodeSize("DragPointPicker", [460, 560]), [460, 560]);
});
