// Opens workflows in ComfyUI, runs each (the server's previews reach the nodes as in a user's run)
// and reports where every node is before and after the run.
// Usage: node previews_driver.mjs <server url> <vue: 0|1> <out dir> <workflow.json>...
// Prints one JSON object on stdout; tests/browser/test_node_previews_browser.py checks it.
import fs from "node:fs";
import path from "node:path";
import { drive, queueAndWait } from "./driver_lib.mjs";

const [url, vue, outDir, ...workflows] = process.argv.slice(2);

// Every node's box in graph units, title included: what the canvas draws, or in the Vue renderer
// the node's element (which can be taller than the size litegraph keeps).
const boxes = (page) => page.evaluate(() => {
  const { app } = window;
  const canvas = app.canvas.canvas.getBoundingClientRect();
  const { scale, offset } = app.canvas.ds;
  return app.graph.nodes.map((n) => {
    let [x, y, w, h] = n.boundingRect;
    const el = document.querySelector(`[data-node-id="${n.id}"]`);
    if (el) {
      const r = el.getBoundingClientRect();
      const ex = (r.left - canvas.left) / scale - offset[0];
      const ey = (r.top - canvas.top) / scale - offset[1];
      [x, y, w, h] = [Math.min(x, ex), Math.min(y, ey), Math.max(x + w, ex + r.width / scale) - x, Math.max(y + h, ey + r.height / scale) - y];
    }
    // The height the node's progress preview got: the canvas's preview widget, or the Vue renderer's image.
    const img = el?.querySelector("img");
    const preview = img ? img.getBoundingClientRect().height / scale : n.widgets?.find((w) => w.name === "$$canvas-image-preview")?.computedHeight;
    return { id: n.id, type: n.type, title: n.title, box: [x, y, w, h].map((v) => Math.round(v * 10) / 10),
      preview: preview == null ? null : Math.round(preview) };
  });
});

// The whole graph in view, so that every node is drawn (the Vue renderer leaves out nodes off screen).
const fitView = (page) => page.evaluate(async () => {
  const { app } = window;
  const rects = app.graph.nodes.map((n) => n.boundingRect);
  const x0 = Math.min(...rects.map((r) => r[0])) - 20;
  const y0 = Math.min(...rects.map((r) => r[1])) - 20;
  const x1 = Math.max(...rects.map((r) => r[0] + r[2])) + 20;
  const y1 = Math.max(...rects.map((r) => r[1] + r[3])) + 20;
  const { width, height } = app.canvas.canvas.getBoundingClientRect();
  const scale = Math.min(width / (x1 - x0), height / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [-x0 + (width / scale - (x1 - x0)) / 2, -y0];
  app.graph.setDirtyCanvas(true, true);
  await new Promise((r) => setTimeout(r, 600));
});

await drive(url, vue === "1", async (page, result) => {
  await page.evaluate(() => {
    const api = window.comfyAPI.api.api;
    window.__previews = {};
    api.addEventListener("b_preview_with_metadata", ({ detail }) => {
      const id = String(detail.displayNodeId);
      window.__previews[id] = (window.__previews[id] ?? 0) + 1;
    });
    api.addEventListener("b_preview", () => (window.__previews.any = (window.__previews.any ?? 0) + 1));
  });
  result.workflows = {};
  result.seconds = {};
  const t0 = Date.now();
  const lap = (what) => (result.seconds[what] = (Date.now() - t0) / 1000);
  for (const file of workflows) {
    const name = path.basename(file, ".json");
    await page.evaluate(async (wf) => {
      window.__previews = {};
      await window.app.loadGraphData(wf);
    }, JSON.parse(fs.readFileSync(file, "utf8")));
    await fitView(page);
    lap(`${name} loaded`);
    const before = await boxes(page);
    const run = await queueAndWait(page);
    lap(`${name} ran`);
    await fitView(page); // and let the renderer lay out what the run brought
    const after = await boxes(page);
    const previews = await page.evaluate(() => ({ ...window.__previews }));
    await page.screenshot({ path: path.join(outDir, `${name}_after_run.png`) });
    result.workflows[name] = { run, before, after, previews };
  }
  // A node the user adds gets room for its previews.
  result.newNode = await page.evaluate(() => {
    const n = window.LiteGraph.createNode("DragLatentOptimizer");
    return { size: [...n.size], widgets: [...n.computeSize()] };
  });
}, { width: 1920, height: 1280 }); // big enough that the fitted graph is drawn above the canvas's low-quality zoom
