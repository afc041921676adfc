/**
 * BLAKE3-256 of one input: the kernel beside hash-wasm (BLAKE3 in C compiled to wasm, scalar),
 * @noble/hashes (plain JS) and, as a yardstick, the runtime's native SHA-256.
 *
 * hash-wasm is timed through one synchronous hasher from `createBLAKE3()` (init, update,
 * digest("binary")), so its numbers are hashing plus its copy into wasm memory, like ours, and not
 * the promise that its one-shot `blake3()` wraps around the same work.
 */
import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import { createBLAKE3 } from "hash-wasm";
import { blake3 } from "../src/kernels/blake3.ts";

const hashWasm = await createBLAKE3();

function randomInput(len: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(len);
  // getRandomValues fills at most 64 KiB per call.
  for (let i = 0; i < len; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

for (
  const [label, len] of [["16 KiB", 16 << 10], ["256 KiB", 256 << 10], ["1 MiB", 1 << 20]] as const
) {
  const data = randomInput(len);
  const group = `blake3 ${label}`;
  Deno.bench({ name: "meshgate", group, baseline: true, fn: () => void blake3(data) });
  Deno.bench({
    name: "hash-wasm",
    group,
    fn() {
      hashWasm.init();
      hashWasm.update(data);
      hashWasm.digest("binary");
    },
  });
  Deno.bench({ name: "@noble/hashes", group, fn: () => void nobleBlake3(data) });
  Deno.bench({
    name: "webcrypto sha-256",
    group,
    async fn() {
      await crypto.subtle.digest("SHA-256", data);
    },
  });
}
