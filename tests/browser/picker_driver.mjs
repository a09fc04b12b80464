// Drives the Drag Point Picker widget in headless Chromium against a running ComfyUI.
// Usage: node picker_driver.mjs <server url> <input image name> <out dir>
// Prints one JSON object of observations on stdout; tests/browser/test_point_picker_browser.py checks them.
import { chromium } from "playwright-core";
import path from "node:path";

const [url, imageName, outDir] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: FLAGS });
const result = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => m.type() === "error" && result.console.push(`${m.text()} ${m.location()?.url ?? ""}`));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.stack}`));
  await page.goto(url);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.DragPointPicker,
    null, { timeout: 120_000 });
  await page.waitForTimeout(1000);

  // Build Load Image -> Drag Point Picker -> MASK preview, at zoom 1 so the node sits at a known place.
  await page.evaluate((imageName) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [0, 0];
    const add = (type, pos) => {
      const n = LiteGraph.createNode(type);
      n.pos = pos;
      app.graph.add(n);
      return n;
    };
    const load = add("LoadImage", [20, 60]);
    load.widgets.find((w) => w.name === "image").value = imageName;
    const picker = add("DragPointPicker", [380, 60]);
    picker.setSize([520, 640]);
    const toImage = add("MaskToImage", [960, 60]);
    const preview = add("PreviewImage", [960, 200]);
    load.connect(0, picker, 0);
    picker.connect(1, toImage, 0);
    toImage.connect(0, preview, 0);
    window.__picker = picker;
    app.graph.setDirtyCanvas(true, true);
  }, imageName);

  // The image must appear without running the queue.
  await page.waitForFunction(() => window.__picker.dragPicker.image?.naturalWidth > 0 && window.__picker.dragPicker.transform,
    null, { timeout: 30_000 });
  result.shownBeforeRun = await page.evaluate(() => {
    const p = window.__picker.dragPicker;
    return { w: p.image.naturalWidth, h: p.image.naturalHeight, src: p.image.src };
  });

  // Running with no points fails with a located error, yet the widget gets the image (for
  // upstream nodes other than Load Image, this is how the user first sees what to click on).
  result.failedRun = await page.evaluate(async () => {
    const api = window.comfyAPI.api.api;
    const p = window.__picker.dragPicker;
    const done = new Promise((resolve) => {
      api.addEventListener("execution_success", () => resolve({ ok: true }), { once: true });
      api.addEventListener("execution_error", ({ detail }) => resolve({ ok: false, error: detail?.exception_message }), { once: true });
    });
    p.imageUrl = null;
    await window.app.queuePrompt(0, 1);
    const r = await Promise.race([done, new Promise((res) => setTimeout(() => res({ ok: false, error: "timeout" }), 120000))]);
    await new Promise((res) => setTimeout(res, 500));
    return { ...r, imageUrl: p.imageUrl };
  });
  await page.keyboard.press("Escape"); // closes the error dialog, which would cover the canvas
  await page.waitForFunction(() => !document.querySelector(".p-dialog-mask"), null, { timeout: 10_000 });

  // Client coordinates of an image pixel's centre, through the widget's own letterbox transform.
  const at = (px) => page.evaluate(([x, y]) => {
    const p = window.__picker.dragPicker;
    p.render();
    const t = p.transform;
    const r = p.canvas.getBoundingClientRect();
    const k = r.width / p.canvas.clientWidth;
    return [r.left + (t.ox + (x + 0.5) * t.scale) * k, r.top + (t.oy + (y + 0.5) * t.scale) * k];
  }, px);
  const click = async (px, button = "left") => {
    const [x, y] = await at(px);
    await page.mouse.click(x, y, { button });
    await page.waitForTimeout(50);
  };
  const points = () => page.evaluate(() => JSON.parse(window.__picker.widgets.find((w) => w.name === "points").value));
  const button = (label) => page.evaluate((label) => {
    [...window.__picker.dragPicker.root.querySelectorAll("button")].find((b) => b.textContent === label).click();
  }, label);

  result.transform = await page.evaluate(() => ({ ...window.__picker.dragPicker.transform }));
  await click([20, 30]);
  result.pendingAfterOneClick = await page.evaluate(() => window.__picker.dragPicker.state.pending);
  await click([100, 80]);
  await click([250, 150]);
  await click([300, 20]);
  result.afterClicks = await points();

  // Drag the first target to a new place.
  const [fx, fy] = await at([100, 80]);
  const [tx, ty] = await at([120, 90]);
  await page.mouse.move(fx, fy);
  await page.mouse.down();
  await page.mouse.move((fx + tx) / 2, (fy + ty) / 2, { steps: 3 });
  await page.mouse.move(tx, ty, { steps: 3 });
  await page.mouse.up();
  result.afterDrag = await points();

  // A third pair, removed by right-click on its target, then brought back by undo.
  await click([5, 170]);
  await click([40, 160]);
  result.threePairs = (await points()).length;
  await click([40, 160], "right");
  result.afterRemove = await points();
  await button("Undo");
  result.afterUndo = await points();
  await click([40, 160], "right");

  // Editing the text updates the canvas state.
  result.textEdit = await page.evaluate(() => {
    const w = window.__picker.widgets.find((w) => w.name === "points");
    const old = w.value;
    w.inputEl.value = "[[1, 2], [3, 4]]";
    w.inputEl.dispatchEvent(new Event("input"));
    const pairs = window.__picker.dragPicker.state.pairs;
    w.inputEl.value = "[[1, 2], [3";
    w.inputEl.dispatchEvent(new Event("input"));
    const badStatus = window.__picker.dragPicker.status.textContent;
    const keptPairs = window.__picker.dragPicker.state.pairs.length;
    w.inputEl.value = old;
    w.inputEl.dispatchEvent(new Event("input"));
    return { pairs, badStatus, keptPairs, restored: window.__picker.dragPicker.state.pairs.length };
  });

  // The widget follows the graph zoom (it is CSS-scaled): clicks still land on the right pixels.
  const zoom = (scale) => page.evaluate(async (scale) => {
    window.app.canvas.ds.scale = scale;
    window.app.graph.setDirtyCanvas(true, true);
    await new Promise((r) => setTimeout(r, 300));
  }, scale);
  await zoom(0.7);
  await click([60, 100]);
  await click([160, 40]);
  result.zoomed = (await points()).slice(2);
  await button("Undo");
  await button("Undo");
  result.afterZoomUndo = (await points()).length;
  await zoom(1);

  // Paint a stroke across the image's lower-left area, then erase part of it.
  await button("Paint");
  await page.evaluate(() => {
    const p = window.__picker.dragPicker;
    p.brush = 10;
  });
  const a = await at([30, 120]);
  const b = await at([130, 120]);
  await page.mouse.move(...a);
  await page.mouse.down();
  await page.mouse.move(...b, { steps: 10 });
  await page.mouse.up();
  await button("Erase");
  const e = await at([80, 120]);
  await page.mouse.click(...e);
  await page.waitForTimeout(100);
  await button("Points");
  result.mask = await page.evaluate(async () => {
    const text = window.__picker.widgets.find((w) => w.name === "mask").value;
    if (!text) return { text };
    const img = new Image();
    img.src = text;
    await img.decode();
    const c = Object.assign(document.createElement("canvas"), { width: img.naturalWidth, height: img.naturalHeight });
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const v = (x, y) => ctx.getImageData(x, y, 1, 1).data[0];
    return { text, w: img.naturalWidth, h: img.naturalHeight,
      painted: v(40, 120), erased: v(80, 120), far: v(300, 20), scale: window.__picker.dragPicker.transform.scale };
  });
  await page.waitForTimeout(200);
  await page.screenshot({ path: path.join(outDir, "point_picker.png") });
  const box = await page.evaluate(() => {
    const { app } = window;
    const n = window.__picker;
    const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
    const r = app.canvas.canvas.getBoundingClientRect();
    return { x: r.left + x, y: r.top + y, width: n.size[0] * app.canvas.ds.scale, height: (n.size[1] + 30) * app.canvas.ds.scale };
  });
  await page.screenshot({ path: path.join(outDir, "point_picker_node.png"), clip: box });

  // The mouse wheel over the picture zooms the graph, as it does elsewhere on the canvas.
  const scaleBefore = await page.evaluate(() => window.app.canvas.ds.scale);
  await page.mouse.move(...(await at([160, 90])));
  await page.mouse.wheel(0, -300);
  await page.waitForTimeout(300);
  result.wheelZoom = [scaleBefore, await page.evaluate(() => window.app.canvas.ds.scale)];
  await zoom(1);

  // Run the graph: the server's parser must accept what the widget wrote, and the widget shows the executed image.
  result.run = await page.evaluate(async () => {
    const { app } = window;
    const api = window.comfyAPI.api.api;
    const done = new Promise((resolve) => {
      api.addEventListener("execution_success", () => resolve({ ok: true }), { once: true });
      api.addEventListener("execution_error", ({ detail }) => resolve({ ok: false, error: detail?.exception_message }), { once: true });
    });
    await app.queuePrompt(0, 1);
    const r = await Promise.race([done, new Promise((res) => setTimeout(() => res({ ok: false, error: "timeout" }), 120000))]);
    await new Promise((res) => setTimeout(res, 500));
    return { ...r, imageUrl: window.__picker.dragPicker.imageUrl };
  });

  // Save, clear and reload the workflow: points and mask come back, on the widget's canvas too.
  result.reload = await page.evaluate(async () => {
    const { app } = window;
    const before = window.__picker.widgets.map((w) => [w.name, w.value]).filter(([n]) => n !== "drag_picker");
    const workflow = JSON.parse(JSON.stringify(app.graph.serialize()));
    app.graph.clear();
    await app.loadGraphData(workflow);
    const node = app.graph.nodes.find((n) => n.type === "DragPointPicker");
    window.__picker = node;
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && !(node.dragPicker.image?.naturalWidth && node.dragPicker.mask)) {
      app.graph.setDirtyCanvas(true, true);
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = node.widgets.map((w) => [w.name, w.value]).filter(([n]) => n !== "drag_picker");
    return { before, after, pairs: node.dragPicker.state.pairs, maskSize: node.dragPicker.mask && [node.dragPicker.mask.width, node.dragPicker.mask.height],
      imageShown: node.dragPicker.image?.naturalWidth > 0 };
  });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(outDir, "point_picker_reloaded.png") });
} catch (e) {
  result.error = String(e?.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
