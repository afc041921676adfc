/**
 * The web page in a real headless Chromium against a real `serve`: upload through the file picker, see the
 * file listed with its durability, view it; the API token asked on 401; the earnings panel; a phone screen.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Browser, Page } from "playwright-core";
import { browserTest, launchChromium } from "../_browser.ts";
import { type NodeProcess, spawnNode } from "../../src/cluster.ts";

const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">
<rect width="120" height="80" fill="#4fb3ff"/><text x="10" y="48" font-size="20">mesh</text></svg>`;

const options = {
  ...browserTest,
  sanitizeResources: false,
  sanitizeOps: false,
};

/** One node and one browser for the whole file; each test opens its own page. */
async function withPage(
  viewport: { width: number; height: number },
  fn: (page: Page, server: NodeProcess, errors: string[]) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-page-" });
  const server = await spawnNode(["--data", dir]);
  let browser: Browser | undefined;
  try {
    browser = await launchChromium();
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await fn(page, server, errors);
    // The page keeps polling: a route handler still fetching when the browser closes must not throw.
    await page.unrouteAll({ behavior: "ignoreErrors" });
    assert.deepEqual(errors, []);
  } finally {
    await browser?.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  ...options,
  name: "the page uploads a file with progress, lists it with its durability and shows it",
  fn: () =>
    withPage({ width: 1100, height: 900 }, async (page, server) => {
      await page.goto(`${server.url}/`);
      await page.getByText("Nothing yet").waitFor();
      assert.match(await page.locator("#health").innerText(), /ready/);

      await page.locator("#k").fill("4");
      await page.locator("#m").fill("2");
      // The hint promises only the stripe's shape: real overhead and survival come per file.
      const hint = await page.locator("#overhead").innerText();
      assert.match(hint, /4 data \+ 2 parity chunks, any 4 rebuild it; at least 50% extra space/);
      assert.doesNotMatch(hint, /survives/);
      await page.locator("#file").setInputFiles([
        { name: "logo.svg", mimeType: "image/svg+xml", buffer: Buffer.from(SVG) },
        { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello from the page\n") },
      ]);
      await page.locator(".upload.done").nth(1).waitFor();
      await page.locator("#files tr", { hasText: "logo.svg" }).waitFor();
      const rows = await page.locator("#files tr").allInnerTexts();
      assert.equal(rows.length, 2);
      assert.ok(rows.some((r) => /logo\.svg\s+\d+ B\s+image\/svg\+xml/.test(r)), rows.join("\n"));

      // Durability as the node reports it; a node that does not report it gets no made-up figure.
      const { files } = await (await fetch(`${server.url}/api/files`)).json();
      const logo = files.find((f: { name: string }) => f.name === "logo.svg");
      const row = rows.find((r) => r.includes("logo.svg"))!;
      if (logo.durability) {
        const survives = logo.durability.survives;
        assert.match(
          row,
          survives
            ? new RegExp(`survives the loss of any ${survives} holder`)
            : /lost if any holder is lost/,
        );
        assert.match(
          row,
          new RegExp(`${Math.round(logo.durability.overhead * 100)}% space overhead`),
        );
      } else assert.match(row, /4\+2 stripes · placement not reported by this node/);
      assert.doesNotMatch(row, /overhead 50%|space overhead 20%/);

      await page.locator("#files tr", { hasText: "logo.svg" }).getByText("View").click();
      const img = page.locator("#viewer img");
      await img.waitFor();
      await page.waitForFunction('document.querySelector("#viewer img")?.naturalWidth > 0');
      const width = await img.evaluate((i) =>
        (i as unknown as { naturalWidth: number }).naturalWidth
      );
      assert.equal(width, 120);
      await page.locator("#stats").getByText("files pinned").waitFor();
      // A node without a chain says it serves for free.
      await page.locator("#pay").getByText("volunteer").waitFor();
      assert.match(await page.locator("#pay").innerText(), /serves and fetches for free/);
      await Deno.mkdir("test/out", { recursive: true });
      await page.screenshot({ path: "test/out/page.png", fullPage: true });
    }),
});

Deno.test({
  ...options,
  name: "the page renders reported durability, earnings, and asks for the API token on 401",
  fn: () =>
    withPage({ width: 1100, height: 900 }, async (page, server) => {
      // The node's answers pass through, with a placement a lone node cannot have (survives 1, a warning).
      await page.route("**/api/files", async (route) => {
        const res = await route.fetch();
        const body = await res.json();
        for (const f of body.files) {
          f.durability = {
            survives: 1,
            holders: 3,
            overhead: 1,
            warning: "fewer holders than the stripe needs",
          };
        }
        await route.fulfill({ response: res, json: body });
      });
      await page.route("**/api/pay", (route) =>
        route.fulfill({
          json: {
            mode: "paid",
            account: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            earnedWei: "1500000000000000000",
            spentWei: "42000000000000",
          },
        }));
      // A node that wants a token: without the right one, uploads get 401.
      const seen: (string | undefined)[] = [];
      await page.route(/\/mesh\?/, async (route) => {
        const auth = route.request().headers()["authorization"];
        seen.push(auth);
        if (auth === "Bearer s3cret") {
          const res = await route.fetch();
          const body = await res.json();
          body.durability = { survives: 1, holders: 3, overhead: 1 };
          return route.fulfill({ response: res, json: body });
        }
        await route.fulfill({
          status: 401,
          json: { error: "unauthorized", message: "This gateway needs its API token" },
        });
      });

      await page.goto(`${server.url}/`);
      await page.getByText("Nothing yet").waitFor();
      await page.locator("#pay").getByText("earned serving").waitFor();
      const pay = await page.locator("#pay").innerText();
      assert.match(pay, /1\.5 ETH\s+earned serving/);
      assert.match(pay, /0\.000042 ETH\s+spent fetching/);
      assert.match(pay, /0x7099…79C8/);

      await page.locator("#file").setInputFiles([
        { name: "a.txt", mimeType: "text/plain", buffer: Buffer.from("needs a token\n") },
      ]);
      await page.locator("#token").waitFor({ state: "visible" });
      assert.match(await page.locator(".upload .note").innerText(), /waiting for the API token/);
      await page.locator("#token-input").fill("s3cret");
      await page.getByText("Save and retry").click();
      await page.locator(".upload.done").waitFor();
      assert.equal(await page.locator("#token").isHidden(), true);
      assert.deepEqual(seen, [undefined, "Bearer s3cret"]);
      assert.equal(
        await page.evaluate(() => localStorage.getItem("meshgate.apiToken")),
        "s3cret",
      );
      const note = await page.locator(".upload.done .note").innerText();
      assert.match(note, /survives the loss of any 1 holder/);
      await page.locator("#files tr", { hasText: "a.txt" }).waitFor();
      const row = await page.locator("#files tr", { hasText: "a.txt" }).innerText();
      assert.match(row, /survives the loss of any 1 holder · 3 holders · 100% space overhead/);
      assert.match(row, /fewer holders than the stripe needs/);

      // The token is kept: after a reload, the first upload carries it.
      await page.reload();
      await page.locator("#file").setInputFiles([
        { name: "b.txt", mimeType: "text/plain", buffer: Buffer.from("token kept\n") },
      ]);
      await page.locator(".upload.done").waitFor();
      assert.deepEqual(seen.slice(2), ["Bearer s3cret"]);
    }),
});

Deno.test({
  ...options,
  name: "the page fits a 390 px phone screen without sideways scrolling",
  fn: () =>
    withPage({ width: 390, height: 844 }, async (page, server) => {
      const long = "a-rather-long-file-name-that-would-push-the-table-wide.txt";
      const res = await fetch(`${server.url}/mesh?name=${long}`, {
        method: "POST",
        body: new TextEncoder().encode("phone\n"),
      });
      assert.equal(res.status, 201, await res.text());
      await page.goto(`${server.url}/`);
      await page.locator("#files tr", { hasText: long }).waitFor();
      await page.locator("#stats").getByText("files pinned").waitFor();
      const width = await page.evaluate("document.documentElement.scrollWidth") as number;
      assert.ok(width <= 390, `the page is ${width} px wide`);
      // An empty table's message is on screen whole, not scrolled sideways with the column headers.
      await page.locator("#operators").getByText("No operators yet").waitFor();
      for (const empty of await page.locator("td.empty").all()) {
        const box = await empty.boundingBox();
        if (!box) continue; // a hidden view
        assert.ok(
          box.x >= 0 && box.x + box.width <= 390,
          `"${await empty.innerText()}" at ${box.x}+${box.width}`,
        );
      }
      await page.locator("#files tr", { hasText: long }).getByText("View").click();
      await page.locator("#viewer iframe").waitFor();
      // A type the browser would only download gets a word and the link, not a blank frame.
      const bin = await fetch(`${server.url}/mesh?name=blob.bin`, {
        method: "POST",
        body: new Uint8Array(300).fill(7),
        headers: { "Content-Type": "application/octet-stream" },
      });
      assert.equal(bin.status, 201, await bin.text());
      await page.reload();
      await page.locator("#files tr", { hasText: "blob.bin" }).getByText("View").click();
      await page.locator("#viewer").getByText("No preview for application/octet-stream").waitFor();
      assert.equal(await page.locator("#viewer iframe").count(), 0);
      assert.equal(await page.locator("#viewer a[download]").count(), 1);
      await page.locator("#files tr", { hasText: long }).getByText("View").click();
      await page.locator("#viewer iframe").waitFor();
      assert.ok((await page.evaluate("document.documentElement.scrollWidth") as number) <= 390);
      await Deno.mkdir("test/out", { recursive: true });
      await page.screenshot({ path: "test/out/page-390.png", fullPage: true });
    }),
});

Deno.test({
  ...options,
  name:
    "the storage view shows what this node keeps for whom and what others keep for it, with audits",
  fn: () =>
    withPage({ width: 1100, height: 900 }, async (page, server) => {
      const lease = (over: Record<string, unknown>) => ({
        id: "ab".repeat(16),
        holder: "12D3KooWHolderHolderHolderHolderHolderHolder",
        client: "12D3KooWClientClientClientClientClientClient",
        chunks: 12,
        bytes: 3 * 1024 * 1024,
        end: "2027-01-01T00:00:00.000Z",
        live: true,
        passed: 40,
        failed: 0,
        lastPassed: true,
        owedWei: "1500000000000000000",
        ...over,
      });
      await page.route("**/api/leases", (route) =>
        route.fulfill({
          json: {
            asClient: [
              lease({}),
              lease({ holder: "12D3KooWCheaterCheater", failed: 8, lastPassed: false }),
            ],
            asHolder: [lease({ live: false, collected: "2026-12-01T00:00:00.000Z" })],
          },
        }));
      await page.goto(`${server.url}/`);
      await page.locator("#storage").getByText("What others keep for me").waitFor();
      const mine = await page.locator("#storage-mine").innerText();
      assert.match(
        mine,
        /12D3KooW…lder\s+12 · 3 MiB\s+2027-01-01 00:00\s+healthy · 40 passed, 0 failed · owed 1\.5 ETH/,
      );
      assert.match(mine, /failing · 40 passed, 8 failed/);
      assert.match(
        await page.locator("#storage-kept").innerText(),
        /12D3KooW…ient\s+12 · 3 MiB\s+.*ended/,
      );
    }),
});

Deno.test({
  ...options,
  name: "the storage view stays hidden on a node with no leases",
  fn: () =>
    withPage({ width: 1100, height: 900 }, async (page, server) => {
      await page.goto(`${server.url}/`);
      await page.getByText("Nothing yet").waitFor();
      const answer = await (await fetch(`${server.url}/api/leases`)).json();
      assert.deepEqual(answer, { asClient: [], asHolder: [] });
      assert.equal(await page.locator("#storage").isHidden(), true);
    }),
});
