// Opens ComfyUI's template browser in headless Chromium, picks the pack's category and reads its cards.
// Usage: node templates_driver.mjs <server url> <pack folder name> <screenshot path> <title of a card to open>
// Prints one JSON object on stdout; tests/browser/test_templates_browser.py checks it.
import { chromium } from "playwright-core";

const [url, pack, screenshot, open] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: FLAGS });
const result = { thumbnails: {} };
try {
  // Tall enough that the dialog shows all of the pack's cards in the screenshot.
  const page = await browser.newPage({ viewport: { width: 1500, height: 1400 } });
  // Every thumbnail the frontend fetches for the pack, with its status and size.
  const prefix = `/api/workflow_templates/${pack}/`;
  page.on("response", (r) => {
    const path = decodeURIComponent(new URL(r.url()).pathname);
    if (r.request().method() !== "GET" || !path.startsWith(prefix) || !path.endsWith(".jpg")) return;
    result.thumbnails[path.slice(prefix.length)] = { status: r.status(), bytes: Number(r.headers()["content-length"]) };
  });
  await page.goto(url);
  await page.waitForFunction(() => window.app?.graph && window.app?.extensionManager?.command, null, { timeout: 120_000 });
  await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));

  // The pack's entry in the dialog's navigation: its folder name, under "Custom Nodes" (1.27) or
  // "Extensions" (1.58).
  const dialog = page.locator('[role="dialog"]').last();
  await dialog.getByText(pack, { exact: true }).first().click({ timeout: 60_000 });
  const cards = dialog.locator('[data-testid^="template-workflow-"]');
  await cards.first().waitFor({ timeout: 30_000 });

  // Thumbnails load lazily (and 1.27 drops them again out of view): read each card while in view.
  result.cards = [];
  const count = await cards.count();
  for (let i = 0; i < count; i++) {
    const card = cards.nth(i);
    await card.scrollIntoViewIfNeeded();
    result.cards.push(await card.evaluate(async (el) => {
      const loaded = () => el.querySelector("img")?.complete && el.querySelector("img").naturalWidth > 0;
      for (let t = 0; t < 200 && !loaded(); t++) await new Promise((r) => setTimeout(r, 100));
      const img = el.querySelector("img");
      const description = el.querySelector("p");
      return {
        name: el.dataset.testid.replace("template-workflow-", ""),
        title: el.querySelector("h3")?.textContent.trim() ?? null,
        description: description ? description.textContent.trim() : null,
        image: img ? { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, alt: img.alt } : null,
      };
    }));
  }
  await cards.first().scrollIntoViewIfNeeded();
  await page.waitForTimeout(300);
  await page.screenshot({ path: screenshot });

  // Opening a card loads its workflow (the name is also the URL of its JSON). A failure here is
  // reported with the card, so the checks of the cards above still run.
  try {
    await dialog.locator(`[data-testid="template-workflow-${open}"]`).click({ timeout: 10_000 });
    // (the default graph was there before: wait for a node only this workflow has)
    await page.waitForFunction(() => window.app.graph._nodes.some((n) => n.type === "DragIdentityLoRA"), null, { timeout: 30_000 });
    result.opened = await page.evaluate(() => ({
      nodes: window.app.graph._nodes.map((n) => n.type),
      workflow: window.app.extensionManager.workflow?.activeWorkflow?.filename ?? null,
    }));
  } catch (e) {
    result.opened = { error: String(e?.message ?? e) };
  }
} catch (e) {
  result.error = String(e?.stack ?? e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
