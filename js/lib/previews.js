// How the pack's nodes show the progress previews their runs send (comfy.utils.ProgressBar images:
// the edit as it goes, with its handles). No DOM, no ComfyUI.
//
// The frontends give a node's preview at least 220 px and grow the node for it, and the node stays
// grown after the run, over whatever lies below it in the workflow. The pack's nodes keep their
// size instead: the preview takes the room left below the widgets, and is not drawn where that
// room is too small to show anything. (Resizing the node makes the preview bigger.) A node the user
// adds gets that room from the start; a workflow's nodes have the size it gives them.

export const PACK_CATEGORY = "drag editing";
export const MIN_PREVIEW_HEIGHT = 32; // px; below this an image would be a sliver
export const PREVIEW_ROOM = 220; // px below the widgets of a new node: the frontends' own preview minimum
// The nodes whose runs send images with their progress (nodes/runtime.py Progress, given an "x0").
export const PREVIEWING_NODES = new Set(["DragLatentOptimizer", "DragReferenceSampler", "DragEdit"]);

/** A node definition (the server's object_info entry) of this pack. */
export function isPackNode(nodeDef) {
  const category = nodeDef?.category ?? "";
  return category === PACK_CATEGORY || category.startsWith(`${PACK_CATEGORY}/`);
}

/** Layout request of the preview: only the free space (the frontend's own asks for 220 px). */
export const previewLayoutSize = () => ({ minHeight: 0, minWidth: 1 });

export function showsPreview(height) {
  return Number.isFinite(height) && height >= MIN_PREVIEW_HEIGHT;
}

/** Size of a newly added node: its widgets' size, plus room for the preview if its runs send one. */
export function newNodeSize(type, [width, height]) {
  return PREVIEWING_NODES.has(type) ? [width, height + PREVIEW_ROOM] : [width, height];
}
