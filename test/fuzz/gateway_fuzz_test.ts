/**
 * No request escapes as a 500: random paths, query strings, Range and other headers, against a real node (its
 * store on disk, one file uploaded) through the gateway's Hono app.
 */
import { assert, fc } from "./_arb.ts";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway } from "../../edge/app.ts";
import { cidOf } from "../../src/content/cid.ts";
import { pattern } from "../_util.ts";

const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 1500);

Deno.test("gateway: no path, query, header or range answers 500", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-fuzz-gw-" });
  const node = await MeshgateNode.create({ dataDir: dir, cacheBytes: 0 });
  const errors: string[] = [];
  const statuses = new Map<number, number>();
  const realError = console.error;
  console.error = (...args: unknown[]) => void errors.push(args.map(String).join(" "));
  try {
    const { app } = createGateway(node, { maxUploadBytes: 1 << 16 });
    const up = await app.request("http://gw.test/mesh?name=f.bin&chunkSize=1024", {
      method: "POST",
      body: pattern(0, 5000),
    });
    assert.equal(up.status, 201, await up.clone().text());
    const { cid } = await up.json();
    const chunk = cidOf(pattern(0, 1024)).toString();

    const segment = fc.oneof(
      fc.constantFrom(
        cid,
        chunk,
        "bafkqaaa",
        "%",
        "%zz",
        "%C0%AF",
        "..",
        "%2e%2e",
        "",
        "a".repeat(300),
      ),
      fc.string({ maxLength: 30 }).map(encodeURIComponent),
      fc.string({ unit: "binary", maxLength: 20 }).map(encodeURIComponent),
    );
    const path = fc.tuple(
      fc.constantFrom(
        "/mesh/",
        "/ipfs/",
        "/api/files/",
        "/api/",
        "/",
        "/metrics/",
        "/livez/",
        "/mesh",
      ),
      fc.array(segment, { maxLength: 3 }),
    ).map(([p, rest]) => p + rest.join("/"));
    const query = fc.oneof(
      fc.constant(""),
      fc.dictionary(
        fc.constantFrom("format", "name", "k", "m", "chunkSize", "download", "filename", "x"),
        fc.oneof(
          fc.string({ maxLength: 12 }),
          fc.constantFrom("raw", "car", "-1", "1e9", "NaN", "0"),
        ),
        { maxKeys: 3 },
      ).map((q) => "?" + new URLSearchParams(q)),
    );
    const range = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.tuple(fc.nat({ max: 10000 }), fc.nat({ max: 10000 })).map(([a, b]) => `bytes=${a}-${b}`),
      fc.nat({ max: 10000 }).map((n) => `bytes=-${n}`),
      fc.constantFrom("bytes=0-", "bytes=99999999999999999999999-", "bytes=1-0", "bytes=0-1,2-3"),
    );
    const headerValue = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, ""));
    const request = fc.record({
      method: fc.constantFrom("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"),
      path,
      query,
      headers: fc.record({
        range,
        accept: fc.oneof(headerValue, fc.constantFrom("application/vnd.ipld.raw", "text/html")),
        "if-none-match": fc.oneof(headerValue, fc.constant(`"${cid}"`)),
        "content-type": headerValue,
        "content-length": fc.oneof(headerValue, fc.nat().map(String)),
      }, { requiredKeys: [] }),
      body: fc.option(fc.uint8Array({ maxLength: 200 })),
    });

    await fc.assert(
      fc.asyncProperty(request, async ({ method, path, query, headers, body }) => {
        const withBody = method === "POST" || method === "PUT";
        const h = new Headers();
        for (const [k, v] of Object.entries(headers)) {
          // Content-Length must match the body we send: the runtime enforces it, not the gateway.
          if (k !== "content-length") h.set(k, v as string);
        }
        const res = await app.request(`http://gw.test${path}${query}`, {
          method,
          headers: h,
          body: withBody ? body ?? undefined : undefined,
        });
        await res.arrayBuffer(); // a failure mid-body must surface here, not pass as a short 200
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.notEqual(res.status, 500, `${method} ${path}${query} ${JSON.stringify(headers)}`);
      }),
      {
        numRuns: RUNS,
        // Besides the random runs, one request of each kind the coverage check below needs, so that a
        // random draw that happens to miss one cannot fail the test (the 500 check stays random).
        examples: [
          [{ method: "GET", path: `/mesh/${cid}`, query: "", headers: {}, body: null }],
          [{
            method: "GET",
            path: `/mesh/${cid}`,
            query: "",
            headers: { range: "bytes=0-99" },
            body: null,
          }],
          [{ method: "GET", path: "/mesh/not-a-cid", query: "", headers: {}, body: null }],
          [{ method: "GET", path: "/nowhere", query: "", headers: {}, body: null }],
        ],
      },
    );
    assert.deepEqual(errors.filter((e) => e.includes('"unhandled"')), []);
    // The inputs reached content, ranges and errors alike, not just the 404 handler.
    for (const s of [200, 206, 400, 404]) assert.ok(statuses.has(s), `no ${s} in ${[...statuses]}`);
  } finally {
    console.error = realError;
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
