/**
 * A peer that floods the chunk exchange with garbage frames does not grow the node's heap: the flood runs in
 * a child process (test/fuzz/_framing_flood.ts) started with --expose-gc, so heap sizes are measured after
 * real collections rather than whenever V8 felt like collecting.
 */
import assert from "node:assert/strict";

Deno.test("a flood of oversize and garbage frames leaves the heap flat", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./_framing_flood.ts", import.meta.url).pathname,
      "12",
      "32",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success, "the flood script failed");
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  const { heap, sent, reports } = JSON.parse(lines.at(-1)!) as {
    heap: number[];
    sent: number;
    reports: number;
  };
  assert.ok(sent > 40e6, `only ${sent} bytes of garbage were sent`);
  assert.ok(
    reports > 0,
    "the victim reported no misbehaviour: the garbage never reached the exchange",
  );
  // From the second round on (the first warms up libp2p and the JIT). Measured: ~1.5 MB over ~50 MB sent,
  // flattening out; keeping even a tenth of the garbage would add 5 MB.
  const growth = heap.at(-1)! - heap[1]!;
  assert.ok(
    growth < 4e6,
    `heap grew ${(growth / 1e6).toFixed(1)} MB over ${sent / 1e6} MB of garbage`,
  );
});
