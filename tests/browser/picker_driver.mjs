// Drives the Drag Point Picker widget in headless Chromium against a running ComfyUI.
// Usage: node picker_driver.mjs <server url> <vue: 0|1> <out dir> <image> <other image, same size> <image of another size>
//        <the image as a JPEG>
// Prints one JSON object of observations on stdout; tests/browser/test_point_picker_browser.py checks them.
import path from "node:path";
import { drive, nodeClip, queueAndWait } from "./driver_lib.mjs";

const [url, vue, outDir, imageName, sameSizeImage, otherSizeImage, jpegImage] = process.argv.slice(2);

await drive(url, vue === "1", async (page, result) => {
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
  await page.evaluate(() => (window.__picker.dragPicker.imageUrl = null));
  result.failedRun = { ...(await queueAndWait(page)), imageUrl: await page.evaluate(() => window.__picker.dragPicker.imageUrl) };
  await page.keyboard.press("Escape"); // closes the error dialog, which would cover the canvas
  await page.waitForFunction(() => !document.querySelector(".p-dialog-mask"), null, { timeout: 10_000 });
  const errorBox = page.locator('[data-testid="error-overlay-dismiss"]'); // the newer frontends' error box
  if (await errorBox.count()) await errorBox.first().click();

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

  // Typing in the points box the user sees (the canvas widget's textarea, or the Vue renderer's own) updates the canvas state.
  const pointsBox = async () => {
    const id = await page.evaluate(() => window.__picker.id);
    const vueBox = page.locator(`[data-node-id="${id}"] [data-widget-name="points"] textarea`);
    return (await vueBox.count()) ? vueBox : page.evaluateHandle(() => window.__picker.widgets.find((w) => w.name === "points").inputEl);
  };
  const typePoints = async (text, expectPairs) => {
    await (await pointsBox()).fill(text);
    await page.waitForFunction((n) => window.__picker.dragPicker.state.pairs.length === n, expectPairs, { timeout: 5_000 });
    await page.waitForTimeout(300); // the points text is polled; let a bad text's status land
  };
  const oldText = await page.evaluate(() => window.__picker.widgets.find((w) => w.name === "points").value);
  await typePoints("[[1, 2], [3, 4]]", 1);
  result.textEdit = { pairs: await page.evaluate(() => window.__picker.dragPicker.state.pairs) };
  await typePoints("[[1, 2], [3", 1);
  result.textEdit.badStatus = await page.evaluate(() => window.__picker.dragPicker.status.textContent);
  result.textEdit.keptPairs = await page.evaluate(() => window.__picker.dragPicker.state.pairs.length);
  await typePoints(oldText, 2);
  result.textEdit.restored = await page.evaluate(() => window.__picker.dragPicker.state.pairs.length);

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
  await page.screenshot({ path: path.join(outDir, "point_picker_node.png"), clip: await nodeClip(page, await page.evaluate(() => window.__picker.id)) });

  // The mouse wheel over the picture zooms the graph, as it does elsewhere on the canvas.
  const scaleBefore = await page.evaluate(() => window.app.canvas.ds.scale);
  await page.mouse.move(...(await at([160, 90])));
  await page.mouse.wheel(0, -300);
  await page.waitForTimeout(300);
  result.wheelZoom = [scaleBefore, await page.evaluate(() => window.app.canvas.ds.scale)];
  await zoom(1);

  // Run the graph: the server's parser must accept what the widget wrote, and the widget shows the executed image.
  result.run = { ...(await queueAndWait(page)), imageUrl: await page.evaluate(() => window.__picker.dragPicker.imageUrl) };

  // Waits until the widget has identified the image it shows (and so decided about its points). A
  // widget that never does (one without this check) gets a few seconds, and the checks below tell.
  const identified = () => page.waitForFunction(() => {
    const p = window.__picker.dragPicker;
    return p.imageUrl && p.image?.complete && p.shown?.url === p.imageUrl;
  }, null, { timeout: 5_000 }).catch(() => (result.unidentified = (result.unidentified ?? 0) + 1));
  const load = async (workflow) => {
    await page.evaluate(async (workflow) => {
      const { app } = window;
      app.graph.clear();
      await app.loadGraphData(workflow);
      window.__picker = app.graph.nodes.find((n) => n.type === "DragPointPicker");
    }, workflow);
  };

  // Save, clear and reload the workflow: points and mask come back, on the widget's canvas too.
  const saved = await page.evaluate(() => JSON.parse(JSON.stringify(window.app.graph.serialize())));
  const widgetValues = () => page.evaluate(() => window.__picker.widgets.map((w) => [w.name, w.value]).filter(([n]) => n !== "drag_picker"));
  const before = await widgetValues();
  await load(saved);
  await identified();
  await page.waitForFunction(() => window.__picker.dragPicker.mask, null, { timeout: 20_000 });
  result.reload = await page.evaluate(() => {
    const node = window.__picker;
    return { pairs: node.dragPicker.state.pairs, maskSize: [node.dragPicker.mask.width, node.dragPicker.mask.height],
      imageShown: node.dragPicker.image?.naturalWidth > 0 };
  });
  result.reload.before = before;
  result.reload.after = await widgetValues();
  result.reload.record = saved.nodes.find((n) => n.type === "DragPointPicker").properties?.points_image ?? null;
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(outDir, "point_picker_reloaded.png") });

  // Points belong to the image they were placed on: another image in Load Image clears them, before any run.
  const setLoadImage = (name) => page.evaluate((name) => {
    const w = window.app.graph.nodes.find((n) => n.type === "LoadImage").widgets.find((w) => w.name === "image");
    w.value = name;
    w.callback?.(name);
  }, name);
  const showImage = async (name) => {
    await setLoadImage(name);
    await page.waitForFunction((name) => window.__picker.dragPicker.imageUrl?.includes(`filename=${name}`), name, { timeout: 10_000 });
    await identified();
    await page.waitForTimeout(100);
  };
  const picker = () => page.evaluate(() => {
    const p = window.__picker.dragPicker;
    return { pairs: p.state.pairs, points: JSON.parse(p.pointsWidget.value), status: p.status.textContent,
      image: [p.image?.naturalWidth, p.image?.naturalHeight], record: window.__picker.properties?.points_image ?? null };
  });
  result.stale = {};
  await showImage(sameSizeImage);
  result.stale.sameSize = await picker();
  await page.screenshot({ path: path.join(outDir, "stale_points_cleared.png"), clip: await nodeClip(page, await page.evaluate(() => window.__picker.id)) });
  await button("Undo");
  result.stale.undone = await picker();
  await showImage(otherSizeImage);
  result.stale.otherSize = await picker();

  // A workflow saved without the record (older saves, the shipped examples) keeps its points on its own image...
  const withoutRecord = (imageValue) => {
    const wf = JSON.parse(JSON.stringify(saved));
    delete wf.nodes.find((n) => n.type === "DragPointPicker").properties.points_image;
    wf.nodes.find((n) => n.type === "LoadImage").widgets_values[0] = imageValue;
    return wf;
  };
  await load(withoutRecord(imageName));
  await identified();
  result.stale.noRecord = await picker();
  // ...but when its image is missing and the user picks another, the points do not carry over.
  await load(withoutRecord("drag_picker_missing.png"));
  await page.waitForFunction(() => window.__picker.dragPicker.errors.image, null, { timeout: 10_000 });
  result.stale.missingImage = await picker();
  await showImage(imageName);
  result.stale.missingThenPicked = await picker();

  // A JPEG in Load Image, decoded by the browser, and the node's executed copy (decoded by PIL,
  // sent as PNG) are the same image: a run keeps the points.
  await showImage(jpegImage);
  await page.evaluate((text) => (window.__picker.widgets.find((w) => w.name === "points").value = text),
    JSON.stringify(result.afterDrag));
  await page.waitForFunction(() => window.__picker.dragPicker.state.pairs.length === 2, null, { timeout: 5_000 });
  result.stale.jpegRun = await queueAndWait(page);
  await page.waitForFunction(() => window.__picker.dragPicker.imageUrl?.includes("type=temp"), null, { timeout: 10_000 });
  await identified();
  result.stale.jpegAfterRun = await picker();
});
