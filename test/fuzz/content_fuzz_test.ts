/** Property tests of the content decoders: CIDs from URLs and peers, manifests from disk and peers. */
import { base58btc } from "multiformats/bases/base58";
import { assert, fc, mutated, onlyThrows, RUNS } from "./_arb.ts";
import {
  CID,
  cidOf,
  DAG_JSON_CODE,
  InvalidCidError,
  parseCid,
  RAW_CODE,
} from "../../src/content/cid.ts";
import {
  decodeManifest,
  encodeManifest,
  InvalidManifestError,
  type Manifest,
} from "../../src/content/manifest.ts";

const sampleCid = cidOf(new Uint8Array([1, 2, 3]));

Deno.test("parseCid: any string parses to a served CID or throws InvalidCidError", () => {
  const cidish = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.string({ unit: "binary", maxLength: 80 }),
    // A valid CID with a character changed, dropped or appended: the likeliest near-misses.
    fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 1 }), fc.constantFrom(0, 1, 2)).map(
      ([at, ch, op]) => {
        const s = sampleCid.toString();
        const i = at % s.length;
        return op === 0 ? s.slice(0, i) + ch + s.slice(i + 1) : op === 1 ? s.slice(0, i) : s + ch;
      },
    ),
  );
  fc.assert(
    fc.property(cidish, (s) => {
      const cid = onlyThrows(() => parseCid(s), InvalidCidError);
      if (cid) {
        assert.equal(cid.version, 1);
        assert.ok(cid.code === RAW_CODE || cid.code === DAG_JSON_CODE);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("parseCid round-trips every raw and dag-json CID in every base", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 64 }),
      fc.constantFrom(RAW_CODE, DAG_JSON_CODE),
      (bytes, code) => {
        const cid = cidOf(bytes, code);
        assert.ok(parseCid(cid.toString()).equals(cid));
        assert.ok(parseCid(cid.toString(base58btc)).equals(cid));
      },
    ),
    { numRuns: 300 },
  );
});

const manifestArb: fc.Arbitrary<Manifest> = fc.record({
  name: fc.string({ maxLength: 40 }),
  type: fc.string({ maxLength: 40 }),
  chunkSize: fc.integer({ min: 1, max: 4096 }),
  k: fc.integer({ min: 1, max: 6 }),
  m: fc.integer({ min: 0, max: 3 }),
  chunks: fc.integer({ min: 0, max: 20 }),
  tail: fc.integer({ min: 0, max: 4095 }),
}).map(({ name, type, chunkSize, k, m, chunks, tail }) => {
  const size = chunks === 0 ? 0 : (chunks - 1) * chunkSize + (tail % chunkSize) + 1;
  const stripes: CID[][] = [];
  for (let c = 0, s = 0; c < chunks; c += k, s++) {
    const data = Math.min(k, chunks - c);
    stripes.push(Array.from({ length: data + m }, (_, i) => cidOf(new Uint8Array([s, i]))));
  }
  return { name, type, size, chunkSize, k, m, stripes };
});

Deno.test("decodeManifest(encodeManifest(m)) round-trips valid manifests", () => {
  fc.assert(
    fc.property(manifestArb, (m) => {
      const back = decodeManifest(encodeManifest(m));
      assert.equal(back.size, m.size);
      assert.deepEqual(back.stripes.map((s) => s.map(String)), m.stripes.map((s) => s.map(String)));
      assert.deepEqual([back.name, back.type, back.k, back.m], [m.name, m.type, m.k, m.m]);
    }),
    { numRuns: 300 },
  );
});

Deno.test("decodeManifest: any bytes decode to a valid manifest or throw InvalidManifestError", () => {
  const valid = fc.sample(manifestArb, { numRuns: 20, seed: 7 }).map(encodeManifest);
  fc.assert(
    fc.property(mutated(valid), (bytes) => {
      const m = onlyThrows(() => decodeManifest(bytes), InvalidManifestError);
      if (m) assert.ok(Number.isSafeInteger(m.size) && m.k >= 1);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("decodeManifest: JSON objects of any shape throw only InvalidManifestError", () => {
  const field = fc.oneof(fc.jsonValue(), fc.constant({ "/": sampleCid.toString() }));
  const object = fc.record({
    meshgate: fc.oneof(fc.constant(1), fc.jsonValue()),
    name: field,
    type: field,
    size: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER), field),
    chunkSize: fc.oneof(fc.integer({ min: -1, max: 1 << 24 }), field),
    k: fc.oneof(fc.integer({ min: -1, max: 300 }), field),
    m: fc.oneof(fc.integer({ min: -1, max: 300 }), field),
    stripes: fc.oneof(fc.array(fc.array(field, { maxLength: 4 }), { maxLength: 4 }), field),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(object, (o) => {
      const bytes = new TextEncoder().encode(JSON.stringify(o));
      onlyThrows(() => decodeManifest(bytes), InvalidManifestError);
    }),
    { numRuns: RUNS },
  );
});
