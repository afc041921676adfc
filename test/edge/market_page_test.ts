/**
 * The market view in headless Chromium, on two real `serve --market` processes over one anvil: the seller
 * adds a listing in its page; the buyer posts an intent in its page, watches the sealed quote arrive and
 * opened by its node, accepts and funds it; the seller's node confirms (its page shows the deal); the buyer
 * releases and rates. Both pages are checked at 1280 and 390 px (nothing of the view past the screen's
 * edge) and the view saved to test/out/market-*.png.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { type NodeProcess, spawnNode } from "../../src/cluster.ts";
import { startDevnet } from "../../src/pay/devnet.ts";
import { browserTest, launchChromium } from "../_browser.ts";

const PRICE = "3000000000000000"; // 0.003 ETH

Deno.test({
  ...browserTest,
  name: "market view: post an intent, open the sealed quote in place, accept, fund, release, rate",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-market-page-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const chain = ["--market", "--chain", devnet.config.rpc, "--chain-file", `${dir}/chain.json`];
    const nodes: NodeProcess[] = [];
    const browser = await launchChromium();
    try {
      const buyer = await spawnNode(["--data", `${dir}/buyer`, ...chain], { stderr: "null" });
      nodes.push(buyer);
      const seller = await spawnNode(
        ["--data", `${dir}/seller`, ...chain, "--bootstrap", buyer.multiaddrs[0]!],
        { stderr: "null" },
      );
      nodes.push(seller);
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const sell = await context.newPage();
      const buy = await context.newPage();
      await sell.goto(`${seller.url}/`);
      await buy.goto(`${buyer.url}/`);
      await sell.locator("#market").waitFor();

      // The seller lists, with the form's labels (what a screen reader names).
      await sell.getByRole("form", { name: "Add a listing" }).getByLabel("Topic").fill("bikes");
      const listForm = sell.getByRole("form", { name: "Add a listing" });
      await listForm.getByLabel("Item").fill("tune-up");
      await listForm.getByLabel("Stock").fill("2");
      await listForm.getByLabel("Unit price").fill(PRICE);
      await listForm.getByLabel("Terms").fill("done in the shop within a day");
      await listForm.getByRole("button", { name: "Add listing" }).click();
      await sell.locator("#mk-listings li", { hasText: "tune-up" }).waitFor();
      await new Promise((r) => setTimeout(r, 2000)); // the subscription reaches the buyer

      // The buyer posts, from the keyboard: Enter in the last field submits.
      const want = buy.getByRole("form", { name: "Post an intent" });
      await want.getByLabel("Topic").fill("bikes");
      await want.getByLabel("Item").fill("tune-up");
      await want.getByLabel("Highest price").fill("5000000000000000");
      await want.getByLabel("Open for (minutes)").press("Enter");
      const card = buy.locator(".mk-intent", { hasText: "tune-up" });
      await card.waitFor();
      const quote = card.locator("li.mk-quote");
      await quote.waitFor({ timeout: 30_000 });
      assert.match(await quote.innerText(), /^opened 0\.003 ETH/);
      assert.match(await quote.innerText(), /done in the shop within a day/);
      assert.match(
        await card.locator(".mk-sealed").innerText(),
        /^1 sealed quote arrived .*1 opened/,
      );
      // The seller's page: the intent it saw, the quote it sent.
      await sell.locator("#mk-seen li", { hasText: "tune-up" }).waitFor();
      await sell.locator("#mk-sent li", { hasText: "delivered, sealed" }).waitFor();
      await shots(buy, "market-buyer-quote");

      await quote.getByRole("button", { name: /Accept and fund/ }).click();
      const buyerDeal = buy.locator("li.mk-deal");
      await buyerDeal.waitFor({ timeout: 30_000 });
      // The seller's node confirms by itself; the buyer's page follows the chain.
      await buy.locator("li.mk-deal .mk-status", { hasText: "confirmed" }).waitFor({
        timeout: 30_000,
      });
      await sell.locator("li.mk-deal", { hasText: "seller" }).locator(".mk-status", {
        hasText: "confirmed",
      }).waitFor({ timeout: 30_000 });
      await buyerDeal.getByRole("button", { name: /Release/ }).click();
      await buy.locator("li.mk-deal .mk-status", { hasText: "released" }).waitFor({
        timeout: 30_000,
      });
      await buyerDeal.getByLabel("Rating").selectOption("0.75");
      await buyerDeal.getByRole("button", { name: /Rate/ }).click();
      await buyerDeal.getByText("rated 0.75").waitFor({ timeout: 30_000 });
      assert.match(await buy.locator("#mk-msg").innerText(), /Rating the deal: done/);
      await sell.locator("li.mk-deal .mk-status", { hasText: "released" }).waitFor({
        timeout: 30_000,
      });
      await shots(buy, "market-buyer");
      await shots(sell, "market-seller");

      // What the page showed is what the node holds.
      const deals = await (await fetch(`${buyer.url}/api/market/deals`)).json();
      assert.equal(deals.deals.length, 1);
      assert.equal(deals.deals[0].amount, PRICE);
      assert.equal(deals.deals[0].rated, 0.75);
      await context.close();
    } finally {
      await browser.close();
      for (const n of nodes) await n.stop();
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** Screenshots at 1280 and 390 px, each after checking the page does not scroll sideways. */
async function shots(page: Page, name: string): Promise<void> {
  await Deno.mkdir("test/out", { recursive: true });
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    await page.waitForTimeout(100);
    await page.locator("#market").screenshot({ path: `test/out/${name}-${width}.png` });
    // The view's own boxes (other views are other tests'): none reaches past the screen's edge, except
    // inside a table that scrolls within its panel.
    const past = await page.evaluate(`[...document.querySelectorAll("#market, #market *")]
      .filter((e) => !e.closest(".table-scroll") && e.getBoundingClientRect().right > ${width})
      .map((e) => e.tagName + "#" + e.id + "." + e.className).slice(0, 5).join(" ")`);
    assert.equal(past, "", `${name} at ${width} px: these reach past the edge`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}
