// ComfyUI glue for the Drag Point Picker node: a canvas widget to place handle/target pairs and
// paint the editable mask. Geometry and serialisation live in ./lib (plain, unit-tested modules).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  fitTransform, imageToView, viewToImage, viewToPixel, pixelToView, isInsideImage, hitTest,
  emptyState, addPoint, movePoint, removePair, clearPoints, UndoStack,
} from "./lib/geometry.js";
import { pairsToText, textToPairs } from "./lib/serialize.js";
import { SAMPLE, imagePrint, pointsOnImage, recordAfterEdit } from "./lib/image_identity.js";

const NODE_TYPE = "DragPointPicker";
const PREVIEW_EVENT = "comfyui_drag.preview";
const HANDLE_COLOR = "#ef4444";
const TARGET_COLOR = "#3b82f6";
const MASK_TINT = "rgba(34, 197, 94, 1)";
const POINT_RADIUS = 6;
const NOTICE_COLOR = "#fbbf24";
// node.properties key: the print (lib/image_identity.js) of the image the points were placed on.
const POINTS_IMAGE = "points_image";
// The Nodes 2.0 (Vue) renderer calls no node draw hooks, so the widget also looks for changes
// (the upstream Load Image's file, the points text) on a timer.
const POLL_MS = 200;
const live = new Set();

function viewUrl(params) {
  return api.apiURL(`/view?${new URLSearchParams(params)}&rand=${Math.random()}`);
}

// "sub/photo.png [input]" -> /view URL, the way Load Image names its files.
function annotatedToUrl(name) {
  let type = "input";
  const m = /^(.*) \[(input|output|temp)\]$/.exec(name);
  if (m) [, name, type] = m;
  const cut = name.lastIndexOf("/");
  return viewUrl({ filename: name.slice(cut + 1), type, subfolder: cut < 0 ? "" : name.slice(0, cut) });
}

function el(tag, props = {}, style = "") {
  const e = Object.assign(document.createElement(tag), props);
  if (style) e.style.cssText = style;
  return e;
}

/** The print of a loaded image: its pixels as decoded (no colour management, as the server's PIL reads them). */
async function printOf(img) {
  const c = el("canvas", { width: SAMPLE, height: SAMPLE });
  const ctx = c.getContext("2d", { willReadFrequently: true });
  try {
    const bmp = await createImageBitmap(img, { colorSpaceConversion: "none", premultiplyAlpha: "none",
      resizeWidth: SAMPLE, resizeHeight: SAMPLE, resizeQuality: "medium" });
    ctx.drawImage(bmp, 0, 0, SAMPLE, SAMPLE);
    bmp.close();
  } catch {
    ctx.drawImage(img, 0, 0, SAMPLE, SAMPLE);
  }
  return imagePrint(img.naturalWidth, img.naturalHeight, ctx.getImageData(0, 0, SAMPLE, SAMPLE).data);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

class PickerWidget {
  constructor(node) {
    this.node = node;
    this.state = emptyState();
    this.undo = new UndoStack(50);
    this.mode = "points";
    this.brush = 16; // radius in view pixels, so the brush looks the same for any image size
    this.image = null;
    this.imageUrl = null;
    this.imagesTried = 0; // images the widget was asked to show since its node was created or loaded
    this.shown = null; // {url, print} of the image shown, once identified
    this.notice = ""; // what the widget did on its own (cleared stale points), until the next action
    this.mask = null; // canvas at image size: white with alpha = editable
    this.maskText = "";
    this.pointsText = null;
    this.drag = null;
    this.hover = null;
    this.errors = { points: "", image: "", mask: "" };
    this.buildDom();
  }

  get pointsWidget() {
    return this.node.widgets?.find((w) => w.name === "points");
  }
  get maskWidget() {
    return this.node.widgets?.find((w) => w.name === "mask");
  }
  get record() {
    return this.node.properties?.[POINTS_IMAGE] ?? null;
  }
  set record(print) {
    this.node.properties ??= {};
    this.node.properties[POINTS_IMAGE] = print;
  }
  get hasPoints() {
    return this.state.pairs.length > 0 || !!this.state.pending;
  }

  /** Points placed or edited on the image shown belong to it. */
  followShownImage() {
    const r = recordAfterEdit(this.record, this.shown?.print, this.hasPoints);
    if (r) this.record = r;
  }

  buildDom() {
    this.root = el("div", { className: "drag-picker" },
      "display:flex;flex-direction:column;gap:4px;width:100%;height:100%;box-sizing:border-box;font:12px sans-serif;color:#ddd");
    const bar = el("div", {}, "display:flex;flex-wrap:wrap;gap:4px;align-items:center");
    const button = (label, title, onClick) => {
      const b = el("button", { textContent: label, title }, "padding:2px 6px;cursor:pointer;font:inherit");
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        onClick();
      });
      bar.append(b);
      return b;
    };
    this.modeButtons = {
      points: button("Points", "Click: handle, then target. Drag a point to move it; right-click removes its pair.", () => this.setMode("points")),
      paint: button("Paint", "Paint the region allowed to change", () => this.setMode("paint")),
      erase: button("Erase", "Erase painted mask", () => this.setMode("erase")),
    };
    this.brushInput = el("input", { type: "range", min: 2, max: 80, value: this.brush, title: "Brush size" }, "width:70px");
    this.brushInput.addEventListener("input", () => {
      this.brush = Number(this.brushInput.value);
      this.render();
    });
    bar.append(this.brushInput);
    button("Undo", "Undo the last action", () => this.doUndo());
    button("Clear points", "Remove all pairs", () => this.act(() => (this.state = clearPoints())));
    button("Clear mask", "Make the whole image editable again", () => this.act(() => this.setMask(""), true));
    this.canvas = el("canvas", {}, "flex:1 1 auto;min-height:0;width:100%;background:#111;border-radius:4px;touch-action:none");
    this.status = el("div", {}, "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;min-height:15px");
    this.root.append(bar, this.canvas, this.status);

    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.onDown(e));
    c.addEventListener("pointermove", (e) => this.onMove(e));
    c.addEventListener("pointerup", () => this.onUp());
    c.addEventListener("pointercancel", () => this.onUp());
    // Zooming the graph must keep working with the pointer over the picture.
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      app.canvas?.processMouseWheel?.(e);
    });
    c.addEventListener("pointerleave", () => {
      this.hover = null;
      this.render();
    });
    c.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    this.resizeObserver = new ResizeObserver(() => this.render());
    this.resizeObserver.observe(c);
    this.setMode("points");
  }

  setMode(mode) {
    this.mode = mode;
    for (const [m, b] of Object.entries(this.modeButtons)) {
      b.setAttribute("aria-pressed", String(m === mode));
      b.style.outline = m === mode ? "2px solid #facc15" : "";
    }
    this.canvas.style.cursor = mode === "points" ? "crosshair" : "none";
    this.render();
  }

  // ---- widgets <-> state

  /** Pick up values set from outside (loading a workflow, typing in the points box). */
  sync() {
    const text = this.pointsWidget?.value ?? "";
    if (text !== this.pointsText) {
      this.pointsText = text;
      this.notice = "";
      try {
        this.state = { pairs: textToPairs(text), pending: this.state.pending };
        this.errors.points = "";
        this.followShownImage();
      } catch (e) {
        this.errors.points = `points: ${e.message}`;
      }
      this.render();
    }
    const mask = this.maskWidget?.value ?? "";
    if (mask !== this.maskText) this.setMask(mask);
  }

  writePoints() {
    const text = pairsToText(this.state.pairs);
    this.pointsText = text;
    this.errors.points = "";
    const w = this.pointsWidget;
    if (w && w.value !== text) w.value = text;
  }

  writeMask() {
    this.maskText = this.exportMask();
    const w = this.maskWidget;
    if (w) w.value = this.maskText;
  }

  snapshot() {
    return { state: this.state, mask: this.maskText };
  }

  /** Run an edit as one undoable action. */
  act(fn, touchesMask = false) {
    this.undo.push(this.snapshot());
    this.notice = "";
    fn();
    this.writePoints();
    this.followShownImage();
    if (touchesMask) this.writeMask();
    this.changed();
  }

  doUndo() {
    const s = this.undo.pop();
    if (!s) return;
    this.notice = "";
    this.state = s.state;
    this.writePoints();
    this.followShownImage();
    if (s.mask !== this.maskText) {
      this.setMask(s.mask);
      if (this.maskWidget) this.maskWidget.value = s.mask;
    }
    this.changed();
  }

  changed() {
    this.render();
    this.node.setDirtyCanvas?.(true, true);
  }

  // ---- image and mask

  setImage(url) {
    if (!url || url === this.imageUrl) return;
    this.imageUrl = url;
    const first = this.imagesTried++ === 0;
    const img = new Image();
    img.onload = () => {
      if (this.imageUrl !== url) return;
      this.image = img;
      this.errors.image = "";
      this.fitMaskToImage();
      this.render();
      this.checkPointsBelong(img, url, first);
    };
    img.onerror = () => {
      if (this.imageUrl === url) this.errors.image = `could not load the image ${url}`;
      this.render();
    };
    img.src = url;
  }

  /** Points placed on another image than the one now shown are cleared (undoably), before any run. */
  async checkPointsBelong(img, url, first) {
    const print = await printOf(img);
    if (this.imageUrl !== url) return;
    this.shown = { url, print };
    const { clear, record } = pointsOnImage(this.record, print, this.hasPoints, first);
    if (clear) {
      const { pairs, pending } = this.state;
      const what = [pairs.length && plural(pairs.length, "pair"), pending && "a handle"].filter(Boolean).join(" and ");
      this.act(() => (this.state = clearPoints()));
      const them = pairs.length + !!pending === 1 ? "it" : "them";
      this.notice = `Image changed: cleared ${what} placed on the previous image (Undo restores ${them})`;
    }
    if (record) this.record = record;
    this.render();
  }

  poll() {
    this.checkUpstream();
    this.sync();
  }

  checkUpstream() {
    const idx = this.node.inputs?.findIndex((i) => i.name === "image") ?? -1;
    if (idx < 0 || this.node.inputs[idx].link == null) return;
    let src = this.node.getInputNode(idx);
    for (let hops = 0; src?.type === "Reroute" && hops < 16; hops++) src = src.getInputNode(0);
    const name = src?.widgets?.find((w) => w.name === "image")?.value;
    if (typeof name !== "string" || !name) return;
    if (name !== this.upstreamName) {
      this.upstreamName = name;
      this.setImage(annotatedToUrl(name));
    }
  }

  /** Load mask text (PNG data URL, white = editable, "" = nothing painted) into the mask canvas. */
  setMask(text) {
    this.maskText = text || "";
    const token = (this.maskToken = {});
    this.errors.mask = "";
    if (!this.maskText) {
      this.mask = null;
      this.render();
      return;
    }
    const img = new Image();
    img.onload = () => {
      if (this.maskToken !== token) return;
      const c = el("canvas", { width: img.naturalWidth, height: img.naturalHeight });
      const ctx = c.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height);
      for (let i = 0; i < d.data.length; i += 4) {
        const lum = 0.299 * d.data[i] + 0.587 * d.data[i + 1] + 0.114 * d.data[i + 2];
        d.data[i + 3] = Math.round((lum * d.data[i + 3]) / 255);
        d.data[i] = d.data[i + 1] = d.data[i + 2] = 255;
      }
      ctx.putImageData(d, 0, 0);
      this.mask = c;
      this.fitMaskToImage();
      this.render();
    };
    img.onerror = () => {
      if (this.maskToken === token) this.errors.mask = "mask: not a readable image";
      this.render();
    };
    img.src = this.maskText;
  }

  // A mask painted on an image of another size is stretched onto the new one rather than dropped.
  fitMaskToImage() {
    const img = this.image;
    if (!img || !this.mask) return;
    if (this.mask.width === img.naturalWidth && this.mask.height === img.naturalHeight) return;
    const c = el("canvas", { width: img.naturalWidth, height: img.naturalHeight });
    c.getContext("2d").drawImage(this.mask, 0, 0, c.width, c.height);
    this.mask = c;
    this.writeMask();
  }

  ensureMask() {
    if (!this.mask && this.image) this.mask = el("canvas", { width: this.image.naturalWidth, height: this.image.naturalHeight });
    return this.mask;
  }

  exportMask() {
    const m = this.mask;
    if (!m) return "";
    const alpha = m.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, m.width, m.height).data;
    let painted = false;
    for (let i = 3; i < alpha.length; i += 4) if (alpha[i]) { painted = true; break; }
    if (!painted) return "";
    const out = el("canvas", { width: m.width, height: m.height });
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(m, 0, 0);
    return out.toDataURL("image/png");
  }

  paintTo(imgPt) {
    const ctx = this.ensureMask()?.getContext("2d");
    if (!ctx) return;
    const from = this.drag.last ?? imgPt;
    ctx.save();
    ctx.globalCompositeOperation = this.mode === "erase" ? "destination-out" : "source-over";
    ctx.strokeStyle = "#fff";
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = (2 * this.brush) / this.transform.scale;
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(imgPt[0] + 1e-3, imgPt[1]); // a zero-length line draws nothing; a click must leave a dot
    ctx.stroke();
    ctx.restore();
    this.drag.last = imgPt;
  }

  // ---- pointer

  viewPos(e) {
    const r = this.canvas.getBoundingClientRect();
    // The widget is CSS-scaled with the graph zoom; client pixels -> canvas CSS pixels.
    return [((e.clientX - r.left) * this.canvas.clientWidth) / r.width, ((e.clientY - r.top) * this.canvas.clientHeight) / r.height];
  }

  onDown(e) {
    const t = this.transform;
    if (e.button !== 0 || !t) return;
    e.preventDefault();
    e.stopPropagation();
    const v = this.viewPos(e);
    if (this.mode === "points") {
      const hit = hitTest(this.state, t, v);
      if (hit) this.drag = { ref: hit, before: this.snapshot(), moved: false };
      else if (isInsideImage(t, viewToImage(t, v))) this.act(() => (this.state = addPoint(this.state, viewToPixel(t, v))));
    } else {
      this.undo.push(this.snapshot());
      this.drag = { paint: true };
      this.paintTo(viewToImage(t, v));
      this.render();
    }
    if (this.drag) this.canvas.setPointerCapture(e.pointerId);
  }

  onMove(e) {
    const t = this.transform;
    if (!t) return;
    const v = this.viewPos(e);
    this.hover = v;
    const d = this.drag;
    if (d?.paint) this.paintTo(viewToImage(t, v));
    else if (d) {
      const p = viewToPixel(t, v);
      if (!d.moved) {
        this.undo.push(d.before);
        d.moved = true;
      }
      this.state = movePoint(this.state, d.ref, p);
    }
    this.render();
  }

  onUp() {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    if (d.paint) this.writeMask();
    else if (d.moved) {
      this.writePoints();
      this.followShownImage();
    }
    this.changed();
  }

  onContextMenu(e) {
    e.preventDefault();
    e.stopPropagation();
    const t = this.transform;
    const hit = t && this.mode === "points" && hitTest(this.state, t, this.viewPos(e));
    if (hit) this.act(() => (this.state = removePair(this.state, hit)));
  }

  // ---- drawing

  render() {
    const c = this.canvas;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const img = this.image;
    const t = (this.transform = img ? fitTransform(img.naturalWidth, img.naturalHeight, w, h) : null);
    if (!t) {
      ctx.fillStyle = "#888";
      ctx.textAlign = "center";
      ctx.fillText("Connect a Load Image (or run the graph) to show the image", w / 2, h / 2);
      this.updateStatus();
      return;
    }
    const [x0, y0] = imageToView(t, [0, 0]);
    const dw = t.imgW * t.scale;
    const dh = t.imgH * t.scale;
    ctx.drawImage(img, x0, y0, dw, dh);
    if (this.mask) this.drawMask(ctx, x0, y0, dw, dh);
    this.state.pairs.forEach((p, i) => this.drawPair(ctx, t, p, i + 1));
    if (this.state.pending) this.drawPoint(ctx, pixelToView(t, this.state.pending), HANDLE_COLOR, this.state.pairs.length + 1, true);
    if (this.mode !== "points" && this.hover) {
      ctx.beginPath();
      ctx.arc(this.hover[0], this.hover[1], this.brush, 0, 2 * Math.PI);
      ctx.strokeStyle = this.mode === "erase" ? "#fca5a5" : "#bbf7d0";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    this.updateStatus();
  }

  drawMask(ctx, x, y, w, h) {
    const tint = (this.tint ??= el("canvas"));
    tint.width = ctx.canvas.width;
    tint.height = ctx.canvas.height;
    const tctx = tint.getContext("2d");
    tctx.setTransform(ctx.getTransform());
    tctx.drawImage(this.mask, x, y, w, h);
    tctx.globalCompositeOperation = "source-in";
    tctx.fillStyle = MASK_TINT;
    tctx.fillRect(x, y, w, h);
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 0.4;
    ctx.drawImage(tint, 0, 0);
    ctx.restore();
  }

  drawPair(ctx, t, { handle, target }, n) {
    const a = pixelToView(t, handle);
    const b = pixelToView(t, target);
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    if (len > 2 * POINT_RADIUS) {
      const ux = (b[0] - a[0]) / len;
      const uy = (b[1] - a[1]) / len;
      const tip = [b[0] - ux * POINT_RADIUS, b[1] - uy * POINT_RADIUS];
      const head = Math.min(10, len / 3);
      ctx.beginPath();
      ctx.moveTo(a[0] + ux * POINT_RADIUS, a[1] + uy * POINT_RADIUS);
      ctx.lineTo(...tip);
      ctx.moveTo(tip[0] - ux * head - uy * head * 0.5, tip[1] - uy * head + ux * head * 0.5);
      ctx.lineTo(...tip);
      ctx.lineTo(tip[0] - ux * head + uy * head * 0.5, tip[1] - uy * head - ux * head * 0.5);
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 4;
      ctx.stroke();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    this.drawPoint(ctx, a, HANDLE_COLOR, n);
    this.drawPoint(ctx, b, TARGET_COLOR, null);
  }

  drawPoint(ctx, [x, y], color, label, pending = false) {
    ctx.beginPath();
    ctx.arc(x, y, POINT_RADIUS, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#fff";
    ctx.setLineDash(pending ? [3, 3] : []);
    ctx.stroke();
    ctx.setLineDash([]);
    if (label != null) {
      ctx.font = "bold 12px sans-serif";
      ctx.textAlign = "left";
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#000";
      ctx.strokeText(String(label), x + POINT_RADIUS + 2, y - POINT_RADIUS);
      ctx.fillStyle = "#fff";
      ctx.fillText(String(label), x + POINT_RADIUS + 2, y - POINT_RADIUS);
    }
  }

  updateStatus() {
    const img = this.image;
    const n = this.state.pairs.length;
    const next = this.state.pending ? `click the target of pair ${n + 1}` : `click a handle for pair ${n + 1}`;
    const what = { points: next, paint: "painting the editable region", erase: "erasing the mask" }[this.mode];
    const parts = [img ? `${img.naturalWidth}×${img.naturalHeight}` : "no image", plural(n, "pair"),
      this.maskText ? "mask painted" : "no mask (all editable)", what];
    const error = Object.values(this.errors).find(Boolean);
    this.status.textContent = error || [this.notice, ...parts].filter(Boolean).join(" · ");
    this.status.style.color = error ? "#f87171" : this.notice ? NOTICE_COLOR : "";
    this.status.title = this.status.textContent; // the line is cut with an ellipsis when the node is narrow
  }

  dispose() {
    this.resizeObserver.disconnect();
    live.delete(this);
  }
}

app.registerExtension({
  name: "comfyui_drag.DragPointPicker",

  setup() {
    setInterval(() => live.forEach((p) => p.poll()), POLL_MS);
    api.addEventListener(PREVIEW_EVENT, ({ detail }) => {
      const id = String(detail?.node ?? "").split(":").pop();
      const image = detail?.images?.[0];
      for (const p of live) if (image && String(p.node.id) === id) p.setImage(viewUrl(image));
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    // The widget shows the executed image itself; the stock preview would only duplicate it below.
    nodeType.prototype.onDrawBackground = function () {};

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      // Nodes 2.0 would show the executed image again below the widget, growing the node.
      this.hideOutputImages = true;
      const picker = (this.dragPicker = new PickerWidget(this));
      live.add(picker);
      const widget = this.addDOMWidget("drag_picker", "drag_picker", picker.root, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => 300,
      });
      widget.serialize = false;
      const mask = picker.maskWidget;
      if (mask) {
        mask.hidden = true;
        mask.computeSize = () => [0, -4]; // hidden widgets still get a row in the layout otherwise
      }
      const points = picker.pointsWidget;
      if (points) {
        points.computeLayoutSize = () => ({ minHeight: 56, maxHeight: 110, minWidth: 0 });
        points.inputEl?.addEventListener("input", () => picker.sync());
      }
      this.setSize([Math.max(this.size[0], 460), Math.max(this.size[1], 560)]);
      picker.sync();
      return r;
    };

    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      this.dragPicker?.sync();
      return r;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      const r = onDrawForeground?.apply(this, arguments);
      this.dragPicker?.poll(); // at once in the classic canvas; the timer covers the Vue renderer
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const r = onExecuted?.apply(this, arguments);
      const image = output?.images?.[0];
      if (image) this.dragPicker?.setImage(viewUrl(image));
      return r;
    };

    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.dragPicker?.dispose();
      return onRemoved?.apply(this, arguments);
    };
  },
});
