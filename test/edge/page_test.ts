/** The web page in a real headless Chromium: upload through the file picker, see the file listed, view it. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { chromium } from "playwright-core";
import { spawnNode } from "../../src/cluster.ts";

const CHROMIUM = Deno.env.get("MESH_CHROMIUM") ?? "/usr/bin/chromium";
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">
<rect width="120" height="80" fill="#4fb3ff"/><text x="10" y="48" font-size="20">mesh</text></svg>`;

Deno.test({
  name: "the page uploads a file with progress, lists it and shows it",
  ignore: !haveChromium && !Deno.env.get("CI"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-page-" });
    const server = await spawnNode(["--data", dir]);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${server.url}/`);
      await page.getByText("Nothing yet").waitFor();
      assert.match(await page.locator("#health").innerText(), /ready/);

      await page.locator("#k").fill("4");
      await page.locator("#m").fill("2");
      assert.match(
        await page.locator("#overhead").innerText(),
        /overhead 50%, survives any 2 lost chunks/,
      );
      await page.locator("#file").setInputFiles([
        { name: "logo.svg", mimeType: "image/svg+xml", buffer: Buffer.from(SVG) },
        { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello from the page\n") },
      ]);
      await page.locator(".upload.done").nth(1).waitFor();
      await page.locator("#files tr", { hasText: "logo.svg" }).waitFor();
      const rows = await page.locator("#files tr").allInnerTexts();
      assert.equal(rows.length, 2);
      assert.ok(
        rows.some((r) => /logo\.svg\s+\d+ B\s+image\/svg\+xml\s+4\+2/.test(r)),
        rows.join("\n"),
      );

      await page.locator("#files tr", { hasText: "logo.svg" }).getByText("View").click();
      const img = page.locator("#viewer img");
      await img.waitFor();
      await page.waitForFunction('document.querySelector("#viewer img")?.naturalWidth > 0');
      const width = await img.evaluate((i) =>
        (i as unknown as { naturalWidth: number }).naturalWidth
      );
      assert.equal(width, 120);
      await page.locator("#stats").getByText("files pinned").waitFor();
      await Deno.mkdir("test/out", { recursive: true });
      await page.screenshot({ path: "test/out/page.png", fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
