/**
 * meshgate.js, the browser bundle: within its size budget, built only from the sources its stamp covers,
 * served by the gateway to any origin, and complete on its own (the kernels run with no file to read).
 */
import assert from "node:assert/strict";
import { buildBundle, BUNDLE_SOURCES } from "../../edge/ui/build.ts";
import { createGateway } from "../../edge/app.ts";
import { MeshgateNode } from "../../src/node.ts";

/** The budget (README, "The browser bundle"): gzipped, with the kernels' wasm inside. */
const BUDGET_GZIP = 200 * 1024;
const BUNDLE = new URL("../../edge/ui/dist/meshgate.js", import.meta.url);

async function gzipSize(bytes: Uint8Array): Promise<number> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

Deno.test("meshgate.js is within its size budget (200 KiB gzipped, kernels included)", async () => {
  const bytes = await Deno.readFile(BUNDLE);
  const gz = await gzipSize(bytes);
  console.log(`meshgate.js: ${bytes.length} B, ${gz} B gzipped (budget ${BUDGET_GZIP} B)`);
  assert.ok(gz <= BUDGET_GZIP, `${gz} B gzipped, over the ${BUDGET_GZIP} B budget`);
});

Deno.test("meshgate.js reads nothing under src/ that its build stamp does not cover", async () => {
  const specifier = "esbuild";
  const esbuild: typeof import("esbuild") = await import(specifier);
  try {
    const { inputs } = await buildBundle(esbuild);
    const own = inputs.filter((p) => p.startsWith("src/"));
    assert.ok(own.includes("src/client/verified_fetch.ts"), own.join("\n"));
    assert.ok(own.includes("src/kernels/_wasm/blake3.wasm"), "the kernels are inside");
    const uncovered = own.filter((p) =>
      !BUNDLE_SOURCES.some((s) => s.endsWith("/") ? p.startsWith(`src/${s}`) : p === `src/${s}`)
    );
    assert.deepEqual(uncovered, []);
    assert.ok(!inputs.some((p) => /libp2p|hono|viem/.test(p)), "no node-side packages");
  } finally {
    await esbuild.stop();
  }
});

Deno.test("the bundle runs on its own: kernels from inside it, no file read", async () => {
  const script = `
    const m = await import(${JSON.stringify(BUNDLE.href)});
    const hello = new TextEncoder().encode("hello");
    const shards = [new Uint8Array([1, 2]), new Uint8Array([3, 4]), new Uint8Array(2)];
    m.rsEncode(shards, 2, 1);
    console.log(JSON.stringify({
      cid: m.cidOf(hello).toString(),
      parity: [...shards[2]],
      loaded: m.loadedKernels(),
      fetch: typeof m.verifiedFetch,
    }));
  `;
  // No permission at all: a kernel that tried to read its .wasm would fail.
  const file = new URL(`../out/bundle-${crypto.randomUUID()}.js`, import.meta.url);
  await Deno.mkdir(new URL(".", file), { recursive: true });
  await Deno.writeTextFile(file, script);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-config", "--no-prompt", file.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(file));
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const got = JSON.parse(new TextDecoder().decode(out.stdout));
  const { cidOf } = await import("../../src/content/cid.ts");
  const { rsEncode } = await import("../../src/kernels/erasure.ts");
  const shards = [new Uint8Array([1, 2]), new Uint8Array([3, 4]), new Uint8Array(2)];
  rsEncode(shards, 2, 1);
  assert.equal(got.cid, cidOf(new TextEncoder().encode("hello")).toString());
  assert.deepEqual(got.parity, [...shards[2]!]);
  assert.equal(got.fetch, "function");
  assert.ok(got.loaded.includes("blake3"));
});

Deno.test({
  name: "every gateway serves /meshgate.js as a module any origin may import",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-bundle-" });
    const node = await MeshgateNode.create({ dataDir: dir, parityWorkers: 0 });
    try {
      const res = await createGateway(node).app.request("http://127.0.0.1/meshgate.js");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), await Deno.readFile(BUNDLE));
    } finally {
      await node.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "every gateway serves /sw.js, the streaming service worker, as a classic script at its root",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-bundle-" });
    const node = await MeshgateNode.create({ dataDir: dir, parityWorkers: 0 });
    try {
      const res = await createGateway(node).app.request("http://127.0.0.1/sw.js");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
      const js = await res.text();
      assert.equal(js, await Deno.readTextFile(new URL("sw.js", BUNDLE)));
      // Registered without { type: "module" }: no import or export statement may be left in it.
      assert.doesNotMatch(js, /^\s*(import|export)\s/m);
      assert.ok(js.includes("\\/verified\\/"), "it answers /verified/<cid>");
    } finally {
      await node.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
