// The pack's nodes keep their size when a run sends them preview images (see lib/previews.js), in
// the classic canvas and in the Nodes 2.0 (Vue) renderer.
import { app } from "../../scripts/app.js";
import { isPackNode, newNodeSize, previewLayoutSize, showsPreview } from "./lib/previews.js";

// The classic canvas shows previews in a widget of this name (frontends 1.27 to 1.58 at least).
const CANVAS_PREVIEW = "$$canvas-image-preview";
// Nodes 2.0 draws each node as an element with data-node-id; the pack's get this attribute.
const MARK = "data-comfyui-drag";

const packTypes = new Set();

function keepInside(widget) {
  widget.computeLayoutSize = previewLayoutSize;
  const draw = widget.drawWidget;
  if (typeof draw !== "function") return;
  widget.drawWidget = function (...args) {
    // 1.27 sizes the image from the node's height, not the widget's: nothing to draw in no room.
    if (showsPreview(this.computedHeight)) return draw.apply(this, args);
  };
}

/**
 * Nodes 2.0 shows a live preview as an <img> (min-height 220 px) followed by a line with its size,
 * in the node's column of contents. The image gets only the room the node has and no gap of its
 * own; the size line goes (the preview's size is not the image's).
 */
function fitLivePreview(img) {
  const column = img.parentElement;
  if (!column || img.closest(".drag-picker")) return;
  img.style.minHeight = "0";
  img.style.marginTop = `${-(parseFloat(getComputedStyle(column).rowGap) || 0)}px`;
  const caption = img.nextElementSibling;
  if (caption?.tagName === "DIV" && !caption.children.length) caption.style.display = "none";
}

function onAdded(el) {
  if (!(el instanceof Element)) return;
  const graph = app.canvas?.graph ?? app.graph;
  const roots = el.matches("[data-node-id]") ? [el] : el.querySelectorAll("[data-node-id]");
  for (const root of roots) {
    const node = graph?.getNodeById?.(root.dataset.nodeId);
    if (node && packTypes.has(node.type)) root.setAttribute(MARK, "");
    else root.removeAttribute(MARK);
  }
  const imgs = el.tagName === "IMG" ? [el] : el.querySelectorAll("img");
  for (const img of imgs) if (img.closest(`[${MARK}]`)) fitLivePreview(img);
}

app.registerExtension({
  name: "comfyui_drag.NodePreviews",

  setup() {
    // Nodes 2.0 (re)creates node elements as the graph, the workflow tab or the renderer changes,
    // and adds the preview image when the first one arrives.
    new MutationObserver((records) => {
      for (const r of records) r.addedNodes.forEach(onAdded);
    }).observe(document.body, { childList: true, subtree: true });
    onAdded(document.body);
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isPackNode(nodeData)) return;
    packTypes.add(nodeData.name);
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      this.setSize(newNodeSize(nodeData.name, this.size)); // a loaded workflow then sets its own size
      return r;
    };
    const addCustomWidget = nodeType.prototype.addCustomWidget;
    nodeType.prototype.addCustomWidget = function (widget) {
      const w = addCustomWidget.call(this, widget);
      if (w?.name === CANVAS_PREVIEW) keepInside(w);
      return w;
    };
  },
});
