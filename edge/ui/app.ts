/// <reference lib="dom" />
/**
 * The page for people at `/`. Each view has a module of its own (upload, files, health, operators, pay); esbuild
 * bundles them into dist/app.js (`deno task build:ui`), so serving needs no build tool.
 */
import { refreshFiles } from "./files.ts";
import { refreshHealth } from "./health.ts";
import { setupMarket } from "./market.ts";
import { refreshOperators, setupOperators } from "./operators.ts";
import { refreshPay } from "./pay.ts";
import { refreshStorage } from "./storage.ts";
import { setupUpload } from "./upload.ts";

setupUpload(() => {
  refreshFiles();
  refreshHealth();
});
refreshFiles();
refreshHealth();
refreshPay();
setupOperators();
refreshOperators();
refreshStorage();
setupMarket();
setInterval(() => {
  refreshHealth();
  refreshPay();
  refreshOperators();
  refreshStorage();
}, 5000);
