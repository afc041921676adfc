/// <reference lib="dom" />
/**
 * The page for people and operators at `/`. Each view has a module of its own (upload, files, peers,
 * traffic, operators, storage, pay, health); esbuild bundles them into dist/app.js (`deno task build:ui`), so
 * serving needs no build tool. The views share one page, with a nav of links to each.
 */
import { refreshFiles, registerVerifiedStreaming, setupFiles } from "./files.ts";
import { refreshHealth } from "./health.ts";
import { setupMarket } from "./market.ts";
import { refreshOperators, setupOperators } from "./operators.ts";
import { refreshPay } from "./pay.ts";
import { refreshPeers } from "./peers.ts";
import { refreshStorage } from "./storage.ts";
import { refreshTraffic, TRAFFIC_INTERVAL_MS } from "./traffic.ts";
import { setupUpload } from "./upload.ts";

const filesChanged = () => {
  refreshFiles();
  refreshHealth();
};
registerVerifiedStreaming();
setupUpload(filesChanged);
setupFiles(filesChanged);
refreshFiles();
refreshHealth();
refreshPeers();
refreshPay();
setupOperators();
refreshOperators();
refreshStorage();
setupMarket();
refreshTraffic();
setInterval(refreshTraffic, TRAFFIC_INTERVAL_MS);
setInterval(() => {
  refreshHealth();
  refreshPeers();
  refreshPay();
  refreshOperators();
  refreshStorage();
}, 5000);

// The nav marks the view in sight (aria-current) as the page scrolls.
const links = [...document.querySelectorAll<HTMLAnchorElement>("nav a[href^='#']")];
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    for (const a of links) {
      if (a.hash === `#${e.target.id}`) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    }
  }
}, { rootMargin: "-40% 0px -55% 0px" });
for (const a of links) {
  const target = document.getElementById(a.hash.slice(1));
  if (target) observer.observe(target);
}
