/**
 * Builds the page into dist/: app.ts and the modules it imports bundled by esbuild into app.js, style.css
 * minified, index.html copied, favicon.ico drawn; and meshgate.js, the browser bundle (src/client/bundle.ts:
 * verifiedFetch and the kernels, their .wasm inside), and sw.js, the service worker of verified streaming
 * (src/client/sw.ts). dist/ is committed, so serving needs no build tool; a
 * test rebuilds it and fails if the bytes differ.
 *
 *   deno task build:ui            rebuild when a source changed (dist/SOURCES holds their hash)
 *   deno task build:ui --force    rebuild anyway
 *   deno task build:ui --check    only compare; exit 1 when dist/ is stale
 */

const UI = new URL("./", import.meta.url);
const DIST = new URL("dist/", UI);
const SRC = new URL("../../src/", UI);
/** What meshgate.js is built from, under src/ (a test checks that the bundle reads nothing else there). */
export const BUNDLE_SOURCES = [
  "client/",
  "content/",
  "kernels/",
  "kernels/_wasm/",
  "mesh/delivery_format.ts",
  "pay/x402_format.ts",
  "units.ts",
  "errors.ts",
];
/** Kernels carried inside meshgate.js. */
const BUNDLED_KERNELS = ["blake3", "erasure", "erasure.relaxed", "xor", "receipts"];
/** esbuild's version is part of the stamp: another version may emit other bytes. */
export const ESBUILD_VERSION = "0.28.2";

/** Every file whose bytes shape dist/: the sources and this script. */
async function sources(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(UI)) {
    if (e.isFile && /\.(ts|html|css)$/.test(e.name)) names.push(e.name);
  }
  return names.sort();
}

/** The bundle's source files under src/, as URLs. */
export async function bundleSources(): Promise<URL[]> {
  const urls: URL[] = [];
  for (const entry of BUNDLE_SOURCES) {
    const url = new URL(entry, SRC);
    if (!entry.endsWith("/")) {
      urls.push(url);
      continue;
    }
    const names: string[] = [];
    for await (const e of Deno.readDir(url)) {
      if (e.isFile && /\.(ts|wasm)$/.test(e.name)) names.push(e.name);
    }
    urls.push(...names.sort().map((n) => new URL(n, url)));
  }
  return urls;
}

/** Hash of the sources' names and bytes, and the esbuild version; dist/SOURCES records it. */
export async function sourcesStamp(): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [enc.encode(`esbuild ${ESBUILD_VERSION}\n`)];
  for (const name of await sources()) {
    const bytes = await Deno.readFile(new URL(name, UI));
    parts.push(enc.encode(`${name} ${bytes.length}\n`), bytes);
  }
  for (const url of await bundleSources()) {
    const bytes = await Deno.readFile(url);
    parts.push(enc.encode(`${url.pathname.slice(SRC.pathname.length)} ${bytes.length}\n`), bytes);
  }
  const all = new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return `sha256 ${[...digest].map((b) => b.toString(16).padStart(2, "0")).join("")}\n`;
}

/** A 32x32 icon: an accent ring around a dot (a mesh node), as a 32-bit BMP inside an ICO. */
export function favicon(): Uint8Array {
  const n = 32;
  const pixels = new Uint8Array(n * n * 4); // BGRA, bottom row first
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const d = Math.hypot(x + 0.5 - n / 2, y + 0.5 - n / 2);
      const ring = d >= 10.5 && d <= 14.5;
      const dot = d <= 5;
      const i = ((n - 1 - y) * n + x) * 4;
      if (ring || dot) pixels.set([0xff, 0xb3, 0x4f, 0xff], i); // #4fb3ff
    }
  }
  const mask = new Uint8Array(n * 4); // AND mask: all zero, the alpha channel decides
  const bmp = 40 + pixels.length + mask.length;
  const out = new Uint8Array(6 + 16 + bmp);
  const v = new DataView(out.buffer);
  v.setUint16(2, 1, true); // type: icon
  v.setUint16(4, 1, true); // one image
  out[6] = n;
  out[7] = n;
  v.setUint16(10, 1, true); // planes
  v.setUint16(12, 32, true); // bits per pixel
  v.setUint32(14, bmp, true);
  v.setUint32(18, 22, true); // offset of the image
  v.setUint32(22, 40, true); // BITMAPINFOHEADER
  v.setInt32(26, n, true);
  v.setInt32(30, n * 2, true); // height counts the mask too
  v.setUint16(34, 1, true);
  v.setUint16(36, 32, true);
  v.setUint32(42, pixels.length + mask.length, true);
  out.set(pixels, 62);
  out.set(mask, 62 + pixels.length);
  return out;
}

/**
 * meshgate.js: src/client/bundle.ts with the kernels' bytes inside (kernels/_bytes.ts is swapped for a
 * module that imports each .wasm with esbuild's binary loader), minified ESM. Returns its bytes and the
 * files it was built from (esbuild's metafile).
 */
export async function buildBundle(
  esbuild: typeof import("esbuild"),
  entry = "client/bundle.ts",
  format: "esm" | "iife" = "esm",
): Promise<{ js: Uint8Array; inputs: string[] }> {
  const wasmDir = new URL("kernels/_wasm/", SRC).pathname;
  const embedded: import("esbuild").Plugin = {
    name: "meshgate-kernels",
    setup(build) {
      build.onResolve({ filter: /\/_bytes\.ts$/ }, () => ({ path: "kernels", namespace: "wasm" }));
      build.onLoad({ filter: /.*/, namespace: "wasm" }, () => ({
        resolveDir: wasmDir,
        loader: "js",
        contents: [
          ...BUNDLED_KERNELS.map((k, i) => `import k${i} from "./${k}.wasm";`),
          `const all = {${
            BUNDLED_KERNELS.map((k, i) => `${JSON.stringify(k)}: k${i}`).join(", ")
          }};`,
          "export function kernelBytes(name) {",
          "  const b = all[name];",
          '  if (!b) throw new Error(`kernel "${name}" is not in meshgate.js`);',
          "  return b;",
          "}",
          "export async function kernelBytesAsync(name) { return kernelBytes(name); }",
        ].join("\n"),
      }));
    },
  };
  const out = await esbuild.build({
    entryPoints: [new URL(entry, SRC).pathname],
    bundle: true,
    write: false,
    format,
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    charset: "utf8",
    logLevel: "silent",
    metafile: true,
    loader: { ".wasm": "binary" },
    plugins: [embedded],
  });
  return { js: out.outputFiles[0]!.contents, inputs: Object.keys(out.metafile!.inputs).sort() };
}

/** The files of dist/, built in memory. */
export async function buildUi(): Promise<Map<string, Uint8Array>> {
  // Imported only here, so importing this module (or serving) never loads esbuild.
  const specifier = "esbuild";
  const esbuild: typeof import("esbuild") = await import(specifier);
  if (esbuild.version !== ESBUILD_VERSION) {
    throw new Error(`esbuild ${esbuild.version} loaded, ${ESBUILD_VERSION} expected`);
  }
  try {
    const js = await esbuild.build({
      entryPoints: [new URL("app.ts", UI).pathname],
      bundle: true,
      write: false,
      format: "esm",
      target: "es2022",
      minify: true,
      legalComments: "none",
      charset: "utf8",
      logLevel: "silent",
    });
    const css = await esbuild.transform(await Deno.readTextFile(new URL("style.css", UI)), {
      loader: "css",
      minify: true,
      charset: "utf8",
    });
    const bundle = await buildBundle(esbuild);
    // The service worker of verified streaming: verifiedFetch and its kernels again, in a classic script's
    // place (a worker registered without type "module" runs anywhere).
    const sw = await buildBundle(esbuild, "client/sw.ts", "iife");
    const enc = new TextEncoder();
    return new Map<string, Uint8Array>([
      ["index.html", await Deno.readFile(new URL("index.html", UI))],
      ["app.js", js.outputFiles[0]!.contents],
      ["meshgate.js", bundle.js],
      ["sw.js", sw.js],
      ["style.css", enc.encode(css.code)],
      ["favicon.ico", favicon()],
      ["SOURCES", enc.encode(await sourcesStamp())],
    ]);
  } finally {
    await esbuild.stop();
  }
}

/** Names of dist/ files that differ from a fresh build (or are missing). */
export async function staleFiles(built: Map<string, Uint8Array>): Promise<string[]> {
  const stale: string[] = [];
  for (const [name, bytes] of built) {
    const have = await Deno.readFile(new URL(name, DIST)).catch(() => undefined);
    if (!have || have.length !== bytes.length || have.some((b, i) => b !== bytes[i])) {
      stale.push(name);
    }
  }
  return stale;
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  const force = Deno.args.includes("--force");
  const stamp = await Deno.readTextFile(new URL("SOURCES", DIST)).catch(() => "");
  if (!check && !force && stamp === await sourcesStamp()) Deno.exit(0); // up to date
  const built = await buildUi();
  const stale = await staleFiles(built);
  if (check) {
    if (stale.length) {
      console.error(`edge/ui/dist is stale (${stale.join(", ")}): run deno task build:ui`);
      Deno.exit(1);
    }
  } else {
    await Deno.mkdir(DIST, { recursive: true });
    for (const name of stale) await Deno.writeFile(new URL(name, DIST), built.get(name)!);
    const size = (name: string) => built.get(name)!.length;
    console.error(
      `built edge/ui/dist: app.js ${size("app.js")} B, style.css ${
        size("style.css")
      } B, meshgate.js ${size("meshgate.js")} B, sw.js ${size("sw.js")} B`,
    );
  }
}
