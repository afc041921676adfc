/** The anchor of the gateway benchmark: plain `Deno.serve` returning one file's bytes, read per request. */
const [path, port = "0"] = Deno.args;
Deno.serve({
  port: Number(port),
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`gateway: http://127.0.0.1:${port}/`),
}, async () => {
  const file = await Deno.open(path!);
  const { size } = await file.stat();
  return new Response(file.readable, {
    headers: { "Content-Type": "application/octet-stream", "Content-Length": String(size) },
  });
});
