import assert from "node:assert/strict";
import { ReputationBook } from "../../src/reputation/book.ts";

const BOOK = new URL("../../src/reputation/book.ts", import.meta.url).href;

Deno.test("scores and exclusions survive a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-rep-" });
  const lines: string[] = [];
  try {
    const a = new ReputationBook({ dataDir: dir, log: (l) => lines.push(l) });
    await a.start();
    for (let i = 0; i < 25; i++) a.delivered("good", 1 << 20, 10, 2);
    for (let i = 0; i < 3; i++) a.failed("flaky");
    assert.ok(a.excluded("liar", { kind: "bad_bytes", at: 1, evidence: { cid: "bafy" } }));
    assert.ok(!a.excluded("liar", { kind: "bad_bytes", at: 2, evidence: {} }), "once");
    await a.stop();
    assert.equal(lines.length, 1);
    assert.deepEqual(JSON.parse(lines[0]!).evidence, { cid: "bafy" });

    const b = new ReputationBook({ dataDir: dir });
    await b.start();
    assert.equal(b.score("good").state, "vetted");
    assert.equal(b.record("good")!.deliveries, 25);
    assert.equal(b.record("flaky")!.failures, 3);
    assert.equal(b.score("liar").state, "excluded");
    assert.deepEqual(b.counts(), { new: 1, vetted: 1, suspended: 0, excluded: 1 });
    await b.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a process killed mid-work keeps its exclusions and all but the last second of its observations", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-rep-kill-" });
  try {
    const script = `
      import { ReputationBook } from ${JSON.stringify(BOOK)};
      const book = new ReputationBook({ dataDir: ${
      JSON.stringify(dir)
    }, flushMs: 100, log: () => {} });
      await book.start();
      for (let i = 0; i < 30; i++) book.delivered("good", 1024, 1, 1);
      await new Promise((r) => setTimeout(r, 400)); // flushed by now
      book.excluded("liar", { kind: "bad_bytes", at: 1, evidence: {} });
      for (let i = 0; i < 5; i++) book.failed("late"); // not yet flushed when killed
      console.log("ready");
      setInterval(() => {}, 1000);
    `;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-lock", script],
      stdout: "piped",
      stderr: "inherit",
      env: { NO_COLOR: "1" },
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("ready")) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the child exited: ${seen}`);
      seen += value;
    }
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    const book = new ReputationBook({ dataDir: dir });
    await book.start();
    assert.equal(book.score("liar").state, "excluded", "the exclusion was on disk at once");
    assert.equal(book.record("good")?.deliveries, 30);
    await book.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the book is bounded: the least recently seen non-excluded peer goes first", async () => {
  let t = 0;
  const book = new ReputationBook({ maxPeers: 3, now: () => t++, log: () => {} });
  await book.start();
  book.excluded("liar", { kind: "bad_bytes", at: 0, evidence: {} });
  book.delivered("a", 1, 1);
  book.delivered("b", 1, 1);
  book.delivered("c", 1, 1);
  assert.equal(book.size, 3);
  assert.ok(book.isExcluded("liar"), "a proven liar is never forgotten");
  assert.equal(book.record("a"), undefined);
  await book.stop();
});
