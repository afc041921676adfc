/**
 * Every view of the web app with real data, in headless Chromium at 1280 px and at 390 px: a paid mesh of 3
 * `serve` processes on anvil, each uploading a file the other reads (so each has files, peers, traffic,
 * operators, earnings and spending). Each view must show its data, nothing may widen the page past the
 * screen, and inputs and buttons need names; one screenshot per view and width goes to test/out/views/
 * (not committed). Also: the open form shows a CID verified in the browser, Unpin drops a file, and an
 * HTML file opened through the service worker at /verified/<cid> runs no script (CSP sandbox).
 */
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { browserTest, launchChromium } from "../_browser.ts";
import { startCluster } from "../../src/cluster.ts";
import { startDevnet } from "../../src/pay/devnet.ts";

const OUT = "test/out/views";
const MiB = 1024 * 1024;

/** The views and the text each shows once its data is in. */
const VIEWS: [id: string, ready: RegExp][] = [
  ["upload", /Drop files here/],
  ["files-panel", /survives|holder/],
  ["peers", /connected peers[\s\S]*KiB|MiB/],
  ["traffic", /gateway out (?!0 B)\d/],
  ["operators", /vetted|new/],
  ["pay", /^(?![\s\S]*\n0 ETH\s+earned serving)[\s\S]*(?:ETH|wei)\s+earned serving[\s\S]*earning/],
  ["market", /Say what you want[\s\S]*Listings/],
  ["node", /files pinned/],
];

async function put(url: string, name: string, type: string, bytes: Uint8Array) {
  const res = await fetch(`${url}/mesh?name=${name}&k=4&m=2&chunkSize=262144`, {
    method: "POST",
    headers: { "Content-Type": type },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).cid as string;
}

const pattern = (n: number, seed: number) =>
  new Uint8Array(n).map((_, i) => (Math.imul(i ^ seed, 0x9e3779b1) >>> 24) & 255);

async function checkViews(page: Page, width: number, busy: () => Promise<void>) {
  for (const [id, ready] of VIEWS) {
    const view = page.locator(`#${id}`);
    // Throughput needs two samples; the Node view refreshes every 5 s: traffic keeps flowing meanwhile.
    const deadline = Date.now() + 30_000;
    // The chart is drawn once it has a few samples (one every 2 s), so its lines show.
    const drawn = () =>
      id !== "traffic" ||
      page.evaluate(
        `(document.querySelector("#traffic polyline")?.getAttribute("points") ?? "").split(" ").length >= 5`,
      ) as Promise<boolean>;
    while (!ready.test(await view.innerText().catch(() => "")) || !(await drawn())) {
      if (Date.now() > deadline) {
        assert.fail(`#${id} at ${width} px never showed ${ready}: ${await view.innerText()}`);
      }
      await busy();
      await page.waitForTimeout(250);
    }
    await view.scrollIntoViewIfNeeded();
    await view.screenshot({ path: `${OUT}/${id}-${width}.png` });
  }
  const wide = await page.evaluate("document.documentElement.scrollWidth") as number;
  assert.ok(wide <= width, `the page is ${wide} px wide on a ${width} px screen`);
  await page.screenshot({ path: `${OUT}/page-${width}.png`, fullPage: true });
}

Deno.test({
  ...browserTest,
  sanitizeOps: false,
  sanitizeResources: false,
  name: "each view renders with data at 1280 and 390 px on a paid 3-node mesh",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-views-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    let browser: Browser | undefined;
    try {
      await using cluster = await startCluster({
        nodes: 3,
        dir,
        paid: { chainFile: `${dir}/chain.json` },
        args: ["--market"],
        stderr: "null",
      });
      const [a, , c] = cluster.nodes.map((n) => n.url) as [string, string, string];
      const svg = new TextEncoder().encode(
        `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle cx="32" cy="32" r="30" fill="#4fb3ff"/></svg>`,
      );
      const logo = await put(a, "logo.svg", "image/svg+xml", svg);
      const big = await put(a, "dataset.bin", "application/octet-stream", pattern(16 * MiB, 1));
      const theirs = await put(
        c,
        "their-notes.bin",
        "application/octet-stream",
        pattern(12 * MiB, 2),
      );
      const read = async (url: string, cid: string) =>
        await (await fetch(`${url}/mesh/${cid}`)).arrayBuffer();
      // Each side reads what the other keeps: peers and operators appear, and vouchers (one per 4 MiB
      // from each holder) flow both ways.
      assert.equal((await read(c, big)).byteLength, 16 * MiB);
      assert.equal((await read(a, theirs)).byteLength, 12 * MiB);
      await Deno.mkdir(OUT, { recursive: true });
      browser = await launchChromium();
      for (const [width, height] of [[1280, 900], [390, 844]] as const) {
        const page = await browser.newPage({ viewport: { width, height } });
        const errors: string[] = [];
        page.on("pageerror", (e) => errors.push(String(e)));
        page.on("dialog", (d) => d.accept());
        await page.goto(`${a}/`);
        // Traffic both ways while the views fill: a pays for what it reads, and earns from c's reads (a
        // holds about a third of the file; one read of it from c may stay under the 4 MiB a voucher pays for).
        await checkViews(page, width, async () => {
          await read(a, big);
          await read(c, big);
        });

        // Every input and button has a name a screen reader can say.
        const unnamed = await page.evaluate(`[...document.querySelectorAll(
          "input:not([type=file]), button, [role=button]")].filter((el) =>
            !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim())
          ).map((el) => el.outerHTML.slice(0, 80))`);
        assert.deepEqual(unnamed, []);
        assert.deepEqual(errors, []);
        await page.close();
      }

      // The open form: a CID from another node's gateway, checked in the page.
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("dialog", (d) => d.accept());
      await page.goto(`${a}/`);
      await page.locator("#open-input").fill(`${c}/mesh/${logo}`);
      await page.getByRole("button", { name: "Open" }).click();
      await page.locator("#viewer img").waitFor();
      await page.waitForFunction('document.querySelector("#viewer img")?.naturalWidth === 64');
      assert.match(
        await page.locator("#viewer .caption").innerText(),
        /image\/svg\+xml · from http:\/\/127\.0\.0\.1:\d+ · every byte checked against its CID/,
      );
      await page.locator("#viewer").screenshot({ path: `${OUT}/open-1280.png` });
      await page.locator("#open-input").fill("not a cid");
      await page.getByRole("button", { name: "Open" }).click();
      await page.locator("#open-status", { hasText: "Cannot open it" }).waitFor();

      // Unpin: the row goes, and the node no longer lists the file.
      await page.getByRole("button", { name: "Unpin logo.svg" }).click();
      await page.locator("#files tr", { hasText: "logo.svg" }).waitFor({ state: "detached" });
      const { files } = await (await fetch(`${a}/api/files`)).json();
      assert.ok(!files.some((f: { cid: string }) => f.cid === logo));
      assert.deepEqual(errors, []);

      // A page from the mesh opened through the service worker runs no script on the node's origin.
      const html = await put(
        a,
        "page.html",
        "text/html",
        new TextEncoder().encode("<title>page</title><script>document.title = 'ran'</script>"),
      );
      await page.waitForFunction("navigator.serviceWorker.controller !== null");
      const opened = await page.goto(`${a}/verified/${html}`);
      assert.equal(opened?.fromServiceWorker(), true);
      assert.equal(opened?.headers()["content-security-policy"], "sandbox");
      assert.equal(await page.title(), "page");
    } finally {
      await browser?.close();
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
