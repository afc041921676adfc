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
