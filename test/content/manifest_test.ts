import assert from "node:assert/strict";
import * as dagJson from "@ipld/dag-json";
import { cidOf, DAG_JSON_CODE } from "../../src/content/cid.ts";
import {
  chunkCount,
  decodeManifest,
  encodeManifest,
  InvalidManifestError,
  type Manifest,
  sealManifest,
  stripeDataCount,
} from "../../src/content/manifest.ts";

const cids = Array.from({ length: 9 }, (_, i) => cidOf(new Uint8Array([i])));
const manifest: Manifest = {
  name: "clip.mp4",
  type: "video/mp4",
  size: 10 * 100 - 50, // 10 chunks of 100, the last one 50
  chunkSize: 100,
  k: 4,
  m: 1,
  // stripes of 4, 4, 2 data chunks plus 1 parity each
  stripes: [cids.slice(0, 5), cids.slice(0, 5), cids.slice(0, 3)],
};

Deno.test("manifest stripe arithmetic: chunk counts per stripe", () => {
  assert.equal(chunkCount(manifest), 10);
  assert.deepEqual([0, 1, 2].map((i) => stripeDataCount(manifest, i)), [4, 4, 2]);
});

Deno.test("encodeManifest() is canonical dag-json and decodeManifest() round-trips it", () => {
  const bytes = encodeManifest(manifest);
  const text = new TextDecoder().decode(bytes);
  assert.match(text, /^\{"chunkSize":100,"k":4,"m":1,"meshgate":1,"name":"clip.mp4"/);
  assert.deepEqual(decodeManifest(bytes), manifest);
  const sealed = sealManifest(manifest);
  assert.equal(sealed.cid.code, DAG_JSON_CODE);
  assert.ok(sealed.cid.equals(sealManifest({ ...manifest }).cid));
});

Deno.test("decodeManifest() refuses every malformed manifest with a clear error", () => {
  const good = dagJson.decode(encodeManifest(manifest)) as Record<string, unknown>;
  const cases: [string, unknown][] = [
    ["not dag-json", null],
    [
      'missing "meshgate"',
      Object.fromEntries(Object.entries(good).filter(([k]) => k !== "meshgate")),
    ],
    ['bad "size"', { ...good, size: -1 }],
    ['bad "chunkSize"', { ...good, chunkSize: 2 * 1024 * 1024 }],
    ['"k" and "m"', { ...good, k: 0 }],
    ['"k" and "m"', { ...good, k: 200, m: 100 }],
    ["expected 3 stripes", { ...good, stripes: (good.stripes as unknown[]).slice(1) }],
    ["stripe 2 must list 3 CIDs", {
      ...good,
      stripes: [cids.slice(0, 5), cids.slice(0, 5), cids.slice(0, 4)],
    }],
    ["non-CID|other than", { ...good, stripes: [cids.slice(0, 5), cids.slice(0, 5), [1, 2, 3]] }],
    ["other than a raw", {
      ...good,
      stripes: [cids.slice(0, 5), cids.slice(0, 5), [
        ...cids.slice(0, 2),
        cidOf(new Uint8Array(), DAG_JSON_CODE),
      ]],
    }],
    ['"name" and "type"', { ...good, name: 5 }],
  ];
  for (const [reason, value] of cases) {
    const bytes = value === null ? new TextEncoder().encode("{not json") : dagJson.encode(value);
    assert.throws(() => decodeManifest(bytes), (e: unknown) => {
      assert.ok(e instanceof InvalidManifestError, `${reason}: ${e}`);
      assert.match(e.message, new RegExp(reason));
      return true;
    });
  }
});
