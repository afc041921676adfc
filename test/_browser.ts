/**
 * Headless Chromium for the page tests: Debian's chromium (CI installs it), driven by playwright-core.
 * Without it, browser tests are skipped outside CI and fail in CI.
 */
import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = Deno.env.get("MESH_CHROMIUM") ?? "/usr/bin/chromium";
export const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
/** Spread into a Deno.test definition of a browser test. */
export const browserTest = { ignore: !haveChromium && !Deno.env.get("CI") };

/** A fresh headless browser; the flags keep it off this machine's closed network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
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
}
