/**
 * Stored XSS, in a real headless Chromium: an uploaded HTML file whose script tries to read the node's API
 * and to upload. On the path gateway its script never runs; on its own subdomain origin it runs, but can
 * neither read the node's API nor write to it.
 */
import assert from "node:assert/strict";
import { browserTest, launchChromium } from "../_browser.ts";
import { spawnNode } from "../../src/cluster.ts";

/** The attack: reports what it could do in the document title. */
const evil = (api: string) =>
  `<!doctype html><title>untouched</title><body>
<script>
(async () => {
  const seen = { ran: true };
  for (const [name, base] of [["own", ""], ["api", ${JSON.stringify(api)}]]) {
    try {
      const res = await fetch(base + "/api/files");
      seen[name + "Read"] = res.status + ":" + (await res.text()).slice(0, 40);
    } catch (e) {
      seen[name + "Read"] = "blocked";
    }
    try {
      // text/plain POST: a request browsers send cross-site without a preflight.
      const res = await fetch(base + "/mesh?name=pwned.txt", {
        method: "POST", body: "pwned", mode: "no-cors", headers: { "Content-Type": "text/plain" },
      });
      seen[name + "Upload"] = res.type + ":" + res.status;
    } catch (e) {
      seen[name + "Upload"] = "blocked";
    }
  }
  document.title = JSON.stringify(seen);
})();
</script></body>`;

Deno.test({
  name: "an uploaded page's script cannot read the node's API or upload, on either gateway",
  ...browserTest,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-xss-" });
    const server = await spawnNode(["--data", dir, "--no-mesh"]);
    const browser = await launchChromium();
    const pinned = async () =>
      (await (await fetch(`${server.url}/api/files`)).json()).files.length as number;
    try {
      const put = await fetch(`${server.url}/mesh?name=evil.html`, {
        method: "POST",
        body: evil(server.url),
        headers: { "Content-Type": "text/html" },
      });
      assert.equal(put.status, 201);
      const { cid } = await put.json();
      assert.equal(await pinned(), 1);

      const page = await browser.newPage();
      // Path gateway, on the node's own origin: sandboxed, so the script does not run at all.
      const res = await page.goto(`${server.url}/mesh/${cid}`);
      assert.equal(res?.headers()["content-security-policy"], "sandbox");
      await page.waitForTimeout(500);
      assert.equal(await page.title(), "untouched");
      assert.equal(await page.evaluate("window.origin"), "null");
      assert.equal(await pinned(), 1);
      // Even with script, an opaque origin's upload is refused (Origin: null).
      const forced = await page.evaluate(
        `fetch(${
          JSON.stringify(`${server.url}/mesh`)
        }, { method: "POST", body: "x", mode: "no-cors", headers: { "Content-Type": "text/plain" } })
        .then(() => "sent", () => "blocked")`,
      );
      assert.ok(forced === "sent" || forced === "blocked");
      assert.equal(await pinned(), 1);

      // Subdomain gateway: its own origin; the script runs, and gets nothing of the node.
      const port = new URL(server.url).port;
      const sub = await page.goto(`http://${cid}.mesh.localhost:${port}/`);
      assert.equal(sub?.status(), 200);
      await page.waitForFunction("document.title !== 'untouched'", undefined, { timeout: 10_000 });
      const seen = JSON.parse(await page.title());
      assert.equal(seen.ran, true);
      assert.match(seen.ownRead, /^404:/, "no API on a content origin");
      assert.match(seen.ownUpload, /^basic:404$/, "no uploads on a content origin");
      assert.equal(seen.apiRead, "blocked", "the node's API is another origin, without CORS");
      assert.equal(seen.apiUpload, "opaque:0", "the write is sent blind…");
      assert.equal(await pinned(), 1, "…and refused: Origin names another site");
      await Deno.mkdir("test/out", { recursive: true });
      await page.screenshot({ path: "test/out/xss-subdomain.png" });
    } finally {
      await browser.close();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
