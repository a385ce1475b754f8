// Opens a `berth audit report --html` page in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core: no browser download) and
// prints, as one JSON object, what a reader of the page would see. The
// report suite (tests/suites/report.rs) runs it and judges the answers;
// run by hand, it refreshes the screenshot in docs/:
//
//   node tests/browser/report.mjs .ci/browser/node_modules/playwright-core \
//     report.html pulsar docs/audit-report.png
//
// Arguments: playwright-core's directory, the page, a namespace to filter
// the table by, and where to save a screenshot of the whole page.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [playwrightDir, page_, namespace, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node report.mjs PLAYWRIGHT_CORE_DIR REPORT.html NAMESPACE SCREENSHOT.png");
  process.exit(2);
}
const { chromium } = createRequire(import.meta.url)(resolve(playwrightDir));
const url = pathToFileURL(resolve(page_)).href;

const profile = mkdtempSync(join(tmpdir(), "berth-report-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1440, height: 900 },
  deviceScaleFactor: 1,
});
const out = { requests: [], consoleErrors: [], pageErrors: [] };
try {
  // Every request the page makes, the page itself included; anything but
  // the page's own file is also stopped.
  context.on("request", (request) => out.requests.push(request.url()));
  await context.route((u) => u.href !== url, (route) => route.abort());
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (message) => { if (message.type() === "error") out.consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => out.pageErrors.push(String(error)));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.querySelectorAll("#records tbody tr").length > 0, null, { timeout: 10_000 });

  // Each chart: its series as Chart.js holds them, whether its canvas has
  // pixels drawn (not all transparent), and, per series, the pixels of the
  // series' own colour: axes and a legend paint a canvas too, bars only
  // paint those.
  out.charts = await page.evaluate(() => {
    const charts = {};
    const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    for (const canvas of document.querySelectorAll("canvas")) {
      const chart = Chart.getChart(canvas);
      const { width, height } = canvas;
      const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
      let painted = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
      const colourPixels = (hex) => {
        const [r, g, b] = rgb(hex);
        let n = 0;
        for (let i = 0; i < pixels.length; i += 4) {
          if (pixels[i] === r && pixels[i + 1] === g && pixels[i + 2] === b && pixels[i + 3] === 255) n++;
        }
        return n;
      };
      charts[canvas.id] = {
        width, height, painted,
        visible: canvas.offsetParent !== null,
        seriesPixels: chart ? chart.data.datasets.map((d) => colourPixels(d.backgroundColor)) : null,
        series: chart ? chart.data.datasets.map((d) => d.label) : null,
        labels: chart ? chart.data.labels : null,
        totals: chart ? chart.data.datasets.map((d) => d.data.reduce((a, b) => a + b, 0)) : null,
      };
    }
    return charts;
  });

  out.range = await page.textContent("#range");
  out.sources = await page.textContent("#sources-summary");
  out.files = await page.$$eval("#files tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));

  // Every row of the table, across its pages.
  async function allRows() {
    while (!(await page.isDisabled("#prev"))) await page.click("#prev");
    const rows = [];
    for (;;) {
      rows.push(...(await page.$$eval("#records tbody tr", (trs) => trs.map((tr) => ({
        namespace: tr.querySelector(".ns").textContent,
        name: tr.querySelector(".name").textContent,
        policy: tr.querySelector(".policy").textContent,
      })))));
      if (await page.isDisabled("#next")) return rows;
      await page.click("#next");
    }
  }
  out.pager = await page.textContent("#page");
  out.rowsBefore = await allRows();
  await page.selectOption("#f-namespace", namespace);
  out.pagerFiltered = await page.textContent("#page");
  out.rowsFiltered = await allRows();

  // Open the first record of that namespace.
  while (!(await page.isDisabled("#prev"))) await page.click("#prev");
  await page.click("#records tbody tr >> nth=0");
  await page.waitForSelector("dialog#record[open]");
  out.opened = {
    title: await page.textContent("#record-title"),
    fields: await page.$$eval("#record-fields dt", (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent]))),
    reason: await page.textContent("#record-reason"),
    object: await page.textContent("#record-object"),
  };
  await page.click("#record-close");

  // The search box narrows too.
  await page.selectOption("#f-namespace", "");
  await page.fill("#f-search", out.opened.fields.Name || "");
  out.pagerSearched = await page.textContent("#page");
  await page.fill("#f-search", "");
  await page.$eval("#f-search", (input) => input.blur());

  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
