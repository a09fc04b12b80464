// What the browser drivers share: a ComfyUI page in headless Chromium with the renderer chosen,
// queueing a run, and where a node is on the screen.
import { chromium } from "playwright-core";

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/**
 * Run body(page, result) on a fresh page of the ComfyUI at url, with the Nodes 2.0 (Vue) renderer
 * on or off, and print the result object as JSON (with console errors and any exception in it).
 */
export async function drive(url, vueNodes, body, viewport = { width: 1280, height: 900 }) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: FLAGS });
  const result = { console: [] };
  try {
    const page = await browser.newPage({ viewport });
    page.on("console", (m) => m.type() === "error" && result.console.push(`${m.text()} ${m.location()?.url ?? ""}`));
    page.on("pageerror", (e) => result.console.push(`pageerror: ${e.stack}`));
    // The renderer is a user setting; the server keeps it between pages, so every driver sets it.
    const set = await page.request.post(`${url}/api/settings/Comfy.VueNodes.Enabled`, { data: vueNodes });
    if (!set.ok()) throw new Error(`could not set Comfy.VueNodes.Enabled: HTTP ${set.status()}`);
    await page.goto(url);
    await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.DragPointPicker,
      null, { timeout: 120_000 });
    await page.waitForTimeout(1000);
    result.vueNodes = await page.evaluate(() => !!window.LiteGraph.vueNodesMode);
    if (result.vueNodes !== vueNodes) throw new Error(`asked for vueNodes=${vueNodes}, the page renders vueNodes=${result.vueNodes}`);
    await body(page, result);
  } catch (e) {
    result.error = String(e?.stack || e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result));
}

/** Queue the graph and wait for it to finish: {ok, error}. Extra waiting lets the last messages land. */
export function queueAndWait(page, timeoutMs = 180_000) {
  return page.evaluate(async (timeoutMs) => {
    const api = window.comfyAPI.api.api;
    const done = new Promise((resolve) => {
      api.addEventListener("execution_success", () => resolve({ ok: true }), { once: true });
      api.addEventListener("execution_error", ({ detail }) => resolve({ ok: false, error: detail?.exception_message }), { once: true });
    });
    await window.app.queuePrompt(0, 1);
    const r = await Promise.race([done, new Promise((res) => setTimeout(() => res({ ok: false, error: "timeout" }), timeoutMs))]);
    await new Promise((res) => setTimeout(res, 500));
    return r;
  }, timeoutMs);
}

/** Screen rectangle {x, y, width, height} of a node with its title: its element in the Vue renderer, else from the canvas. */
export function nodeClip(page, nodeId) {
  return page.evaluate((id) => {
    const { app, LiteGraph } = window;
    const el = document.querySelector(`[data-node-id="${id}"]`);
    if (el) {
      const r = el.getBoundingClientRect();
      return { x: r.left, y: r.top, width: r.width, height: r.height };
    }
    const n = app.graph.getNodeById(id);
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - title]);
    const r = app.canvas.canvas.getBoundingClientRect();
    return { x: r.left + x, y: r.top + y, width: n.size[0] * app.canvas.ds.scale, height: (n.size[1] + title) * app.canvas.ds.scale };
  }, nodeId);
}
