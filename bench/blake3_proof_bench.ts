/**
 * BLAKE3 audit proofs (one 1 KiB block and its sibling CVs) for Meshgate's chunk sizes.
 *
 * Verify, in proofs per second: the kernel beside the plain-TS reference and beside re-hashing the whole
 * chunk with the kernel, which is what an audit that downloads the chunk costs the auditor. Build, in
 * MB/s of chunk: the kernel's proof (one hash that keeps the path's siblings) beside hashing the chunk
 * alone (the goal is at least 0.8x of it) and the reference's top-down tree walk. Block indexes rotate
 * over 64 challenges, so no one path is timed over and over.
 */
import { blake3, blake3BlockCount, blake3Proof, blake3VerifyProof } from "../src/kernels/blake3.ts";
import * as reference from "../src/kernels/reference/blake3.ts";

function randomInput(len: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(len);
  for (let i = 0; i < len; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

const CHALLENGES = 64;

for (const [label, len] of [["256 KiB", 256 << 10], ["1 MiB", 1 << 20]] as const) {
  const chunk = randomInput(len);
  const root = blake3(chunk);
  const blocks = blake3BlockCount(len);
  const indexes = Array.from({ length: CHALLENGES }, () => Math.floor(Math.random() * blocks));
  const answers = indexes.map((i) => ({ i, ...blake3Proof(chunk, i) }));
  let n = 0;
  const next = () => answers[n++ % CHALLENGES]!;
  const check = (ok: boolean) => {
    if (!ok) throw new Error("a good proof did not check");
  };

  const verify = `blake3 proof verify, ${label} chunk`;
  Deno.bench({
    name: "meshgate kernel",
    group: verify,
    baseline: true,
    fn() {
      const a = next();
      check(blake3VerifyProof(root, len, a.i, a.block, a.proof));
    },
  });
  Deno.bench({
    name: "plain-TS reference",
    group: verify,
    fn() {
      const a = next();
      check(reference.blake3VerifyProof(root, len, a.i, a.block, a.proof));
    },
  });
  Deno.bench({
    name: "re-hash the whole chunk (kernel)",
    group: verify,
    fn() {
      const got = blake3(chunk);
      check(got.every((b, k) => b === root[k]));
    },
  });

  const build = `blake3 proof build ${label}`;
  Deno.bench({
    name: "meshgate kernel",
    group: build,
    baseline: true,
    fn: () => void blake3Proof(chunk, indexes[n++ % CHALLENGES]!),
  });
  Deno.bench({ name: "hash only (kernel blake3)", group: build, fn: () => void blake3(chunk) });
  Deno.bench({
    name: "plain-TS reference tree walk",
    group: build,
    fn: () => void reference.blake3Proof(chunk, indexes[n++ % CHALLENGES]!),
  });
}

/**
 * Runs per second of each of `fns`, timed in alternating batches of ~1 ms (so that all see the same load), at
 * the 10th percentile of the batch times: on a shared machine that is the rate of a core left alone, where a
 * mean is mostly other processes' work.
 */
function rates(fns: (() => void)[], batches = 300): number[] {
  const sizes = fns.map((fn) => {
    for (let i = 0; i < 20; i++) fn(); // warm up
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) fn();
    return Math.max(1, Math.round(20 / (performance.now() - t0))); // calls in ~1 ms
  });
  const times = fns.map(() => [] as number[]);
  for (let b = 0; b < batches; b++) {
    fns.forEach((fn, f) => {
      const t0 = performance.now();
      for (let i = 0; i < sizes[f]!; i++) fn();
      times[f]!.push((performance.now() - t0) / sizes[f]!);
    });
  }
  return times.map((t) => 1000 / t.sort((x, y) => x - y)[Math.floor(t.length / 10)]!);
}

// `deno run -A bench/blake3_proof_bench.ts`: the same measures, timed by hand (10th percentile of ~1 ms
// batches, build and hash alternating), printed with the goals of
// issue 12 (verify >= 50,000 proofs/s; build >= 0.8x hashing the chunk); exits 1 when a goal is missed.
// (`deno bench` runs the Deno.bench cases above instead.)
if (import.meta.main) {
  const results: Record<string, unknown>[] = [];
  let missed = false;
  for (const [label, len] of [["256 KiB", 256 << 10], ["1 MiB", 1 << 20]] as const) {
    const chunk = randomInput(len);
    const root = blake3(chunk);
    const blocks = blake3BlockCount(len);
    const indexes = Array.from({ length: CHALLENGES }, () => Math.floor(Math.random() * blocks));
    const answers = indexes.map((i) => ({ i, ...blake3Proof(chunk, i) }));
    let n = 0;
    const next = () => answers[n++ % CHALLENGES]!;
    const [verifyKernel, verifyRef, rehash] = rates([
      () => {
        const a = next();
        if (!blake3VerifyProof(root, len, a.i, a.block, a.proof)) throw new Error("bad proof");
      },
      () => {
        const a = next();
        if (!reference.blake3VerifyProof(root, len, a.i, a.block, a.proof)) throw new Error("bad");
      },
      () => void blake3(chunk),
    ], 200);
    const [build, hash] = rates([
      () => void blake3Proof(chunk, indexes[n++ % CHALLENGES]!),
      () => void blake3(chunk),
    ]);
    const [walk] = rates([() => void reference.blake3Proof(chunk, indexes[n++ % CHALLENGES]!)], 5);
    const mbs = (perSecond: number) => Number((perSecond * len / 1e6).toFixed(0));
    const ratio = build / hash;
    const verifyOk = verifyKernel >= 50_000;
    const buildOk = ratio >= 0.8;
    missed ||= !verifyOk || !buildOk;
    results.push({
      chunk: label,
      verify_per_s: {
        kernel: Math.round(verifyKernel),
        plain_ts_reference: Math.round(verifyRef),
        rehash_whole_chunk: Math.round(rehash),
        goal: ">= 50000",
        met: verifyOk,
      },
      build_mb_s: {
        kernel_proof: mbs(build),
        hash_only: mbs(hash),
        plain_ts_tree_walk: mbs(walk),
        proof_vs_hash: Number(ratio.toFixed(2)),
        goal: ">= 0.8x",
        met: buildOk,
      },
    });
  }
  console.log(JSON.stringify({ blake3_proof: results }, null, 2));
  if (missed) {
    console.error("blake3 proof bench: a goal was missed (see met: false above)");
    Deno.exit(1);
  }
}
