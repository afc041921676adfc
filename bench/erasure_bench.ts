/**
 * Reed–Solomon encode and reconstruct: the erasure kernel beside the `reed-solomon-erasure` crate built to
 * wasm (the oracle of the tests) and the plain-TS table-driven reference. Each group ends with the data
 * bytes per iteration (k x shard size), so the report's MB/s is data throughput; reconstruct loses 4 data
 * shards. Run: `deno bench -A bench/erasure_bench.ts`.
 */
import { ReedSolomonErasure } from "@digitaldefiance/reed-solomon-erasure.wasm";
import { rsEncode, rsReconstruct } from "../src/kernels/erasure.ts";
import * as reference from "../src/kernels/reference/erasure.ts";

// The package's own loaders take Deno for a browser and fetch a relative URL; its `./wasm` export
// resolves to the file in node_modules.
const oracle = ReedSolomonErasure.fromBytes(
  await Deno.readFile(
    new URL(import.meta.resolve("@digitaldefiance/reed-solomon-erasure.wasm/wasm")),
  ),
);

const KiB = 1024;
const MiB = 1024 * KiB;

function label(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

for (const [k, m, size] of [[10, 4, 64 * KiB], [10, 4, MiB], [40, 6, 64 * KiB]] as const) {
  const shards = Array.from(
    { length: k + m },
    (_, i) => i < k ? randomBytes(size) : new Uint8Array(size),
  );
  rsEncode(shards, k, m);
  const flat = new Uint8Array((k + m) * size);
  shards.forEach((s, i) => flat.set(s, i * size));
  const twin = shards.map((s) => s.slice());
  const lost = [0, 1, 2, 3];
  const present = shards.map((_, i) => !lost.includes(i));
  const withLoss = (): (Uint8Array | null)[] => shards.map((s, i) => present[i] ? s : null);
  // Run each contender once before timing: it checks that all three agree, and grows the oracle's memory
  // now. (Growing wasm memory detaches an ArrayBuffer, which trips a V8 protector and deoptimizes the
  // plain-JS loops; if that happened mid-run, "plain-js tables" would read several times slower.)
  const check = (label: string, ok: boolean) => {
    if (!ok) throw new Error(`${label} disagrees with meshgate on ${k}+${m}`);
  };
  reference.rsEncode(twin, k, m);
  check("plain-js encode", twin.every((s, i) => sameBytes(s, shards[i]!)));
  check("oracle encode", oracle.encode(flat, k, m) === ReedSolomonErasure.RESULT_OK);
  check(
    "oracle parity",
    shards.every((s, i) => sameBytes(flat.subarray(i * size, (i + 1) * size), s)),
  );
  check(
    "oracle reconstruct",
    oracle.reconstruct(flat, k, m, present) === ReedSolomonErasure.RESULT_OK,
  );
  const rebuilt = withLoss();
  reference.rsReconstruct(rebuilt, k, m);
  check("plain-js reconstruct", rebuilt.every((s, i) => sameBytes(s!, shards[i]!)));
  const shape = `${k}+${m} shards ${label(size)} · ${label(k * size)}`;

  const encode = `rs encode ${shape}`;
  Deno.bench({ name: "meshgate", group: encode, baseline: true, fn: () => rsEncode(shards, k, m) });
  Deno.bench({
    name: "@digitaldefiance/reed-solomon-erasure.wasm",
    group: encode,
    fn: () => {
      if (oracle.encode(flat, k, m) !== ReedSolomonErasure.RESULT_OK) {
        throw new Error("encode failed");
      }
    },
  });
  Deno.bench({ name: "plain-js tables", group: encode, fn: () => reference.rsEncode(twin, k, m) });

  const reconstruct = `rs reconstruct ${shape}`;
  Deno.bench({
    name: "meshgate",
    group: reconstruct,
    baseline: true,
    fn: () => rsReconstruct(withLoss(), k, m),
  });
  Deno.bench({
    name: "@digitaldefiance/reed-solomon-erasure.wasm",
    group: reconstruct,
    fn: () => {
      if (oracle.reconstruct(flat, k, m, present) !== ReedSolomonErasure.RESULT_OK) {
        throw new Error("reconstruct failed");
      }
    },
  });
  Deno.bench({
    name: "plain-js tables",
    group: reconstruct,
    fn: () => reference.rsReconstruct(withLoss(), k, m),
  });
}
