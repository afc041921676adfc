/**
 * The page for people at `/`: drop files to upload them (with progress), see what this node keeps, play
 * or view it in place, copy links, and watch the node's health. Plain HTML, CSS and a little script over
 * the gateway's own JSON API: nothing to build.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Meshgate</title>
<style>
  :root { --bg:#0f1419; --panel:#182028; --line:#2a3540; --text:#e6edf3; --dim:#8b98a5; --accent:#4fb3ff; --ok:#3fb950; --bad:#f85149; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.5 system-ui, sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; align-items:center; gap:1rem; padding:1rem 1.5rem; border-bottom:1px solid var(--line); }
  header h1 { font-size:1.25rem; margin:0; }
  header .status { margin-left:auto; color:var(--dim); font-size:.9rem; }
  .dot { display:inline-block; width:.6rem; height:.6rem; border-radius:50%; background:var(--dim); margin-right:.4rem; }
  .dot.ok { background:var(--ok); } .dot.bad { background:var(--bad); }
  main { max-width:980px; margin:0 auto; padding:1.5rem; display:grid; gap:1.5rem; }
  section { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:1.25rem; }
  h2 { font-size:1rem; margin:0 0 .75rem; color:var(--dim); font-weight:600; text-transform:uppercase; letter-spacing:.05em; }
  #drop { border:2px dashed var(--line); border-radius:10px; padding:2rem; text-align:center; cursor:pointer; transition:.15s; }
  #drop.over { border-color:var(--accent); background:#1d2a36; }
  #drop strong { color:var(--accent); }
  .options { display:flex; gap:1rem; margin-top:.75rem; color:var(--dim); font-size:.9rem; align-items:center; flex-wrap:wrap; }
  .options input { width:4rem; background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:6px; padding:.2rem .4rem; }
  .upload { margin-top:.75rem; }
  .bar { height:6px; background:var(--bg); border-radius:3px; overflow:hidden; margin:.3rem 0; }
  .bar > div { height:100%; background:var(--accent); width:0; transition:width .1s; }
  .upload.done .bar > div { background:var(--ok); } .upload.failed .bar > div { background:var(--bad); }
  table { width:100%; border-collapse:collapse; }
  td, th { text-align:left; padding:.5rem .4rem; border-bottom:1px solid var(--line); vertical-align:middle; }
  th { color:var(--dim); font-weight:500; font-size:.85rem; }
  td.cid { font-family:ui-monospace, monospace; font-size:.8rem; color:var(--dim); max-width:16rem; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
  a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
  button { background:#243140; color:var(--text); border:1px solid var(--line); border-radius:6px; padding:.25rem .6rem; cursor:pointer; }
  button:hover { border-color:var(--accent); }
  #viewer:empty { display:none; }
  #viewer video, #viewer img, #viewer audio { max-width:100%; max-height:70vh; display:block; margin:0 auto; border-radius:6px; }
  #viewer .caption { color:var(--dim); margin-top:.5rem; font-size:.9rem; text-align:center; }
  .stats { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:1rem; }
  .stat b { display:block; font-size:1.4rem; } .stat span { color:var(--dim); font-size:.85rem; }
  .empty { color:var(--dim); text-align:center; padding:1rem; }
  .meter { height:8px; background:var(--bg); border-radius:4px; overflow:hidden; margin-top:.3rem; }
  .meter > div { height:100%; background:var(--accent); }
</style>
</head>
<body>
<header>
  <h1>Meshgate</h1>
  <span style="color:var(--dim)">keep, move and find data in a peer-to-peer mesh</span>
  <span class="status" id="health"><span class="dot"></span>checking…</span>
</header>
<main>
  <section>
    <h2>Upload</h2>
    <div id="drop" tabindex="0" role="button" aria-label="Choose files to upload">
      <strong>Drop files here</strong> or click to choose
      <input type="file" id="file" multiple hidden>
    </div>
    <div class="options">
      <label>data chunks per stripe (k) <input id="k" type="number" min="1" max="255" placeholder="20"></label>
      <label>parity chunks (m) <input id="m" type="number" min="0" max="255" placeholder="4"></label>
      <span id="overhead"></span>
    </div>
    <div id="uploads"></div>
  </section>
  <section id="viewer"></section>
  <section>
    <h2>Files on this node</h2>
    <table>
      <thead><tr><th>Name</th><th>Size</th><th>Type</th><th>Stripe k+m</th><th>CID</th><th></th></tr></thead>
      <tbody id="files"><tr><td colspan="6" class="empty">Loading…</td></tr></tbody>
    </table>
  </section>
  <section>
    <h2>Node</h2>
    <div class="stats" id="stats"></div>
  </section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
function size(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function overhead() {
  const k = Number($("k").value || 20), m = Number($("m").value || 4);
  $("overhead").textContent = k >= 1 && m >= 0 && k + m <= 256
    ? "space overhead " + Math.round(100 * m / k) + "%, survives any " + m + " lost chunk" + (m === 1 ? "" : "s") + " per stripe"
    : "k + m must be at most 256";
}
$("k").oninput = $("m").oninput = overhead; overhead();

function upload(file) {
  const row = document.createElement("div");
  row.className = "upload";
  row.innerHTML = "<div>" + esc(file.name) + " <span class=note>" + size(file.size) + "</span></div><div class=bar><div></div></div>";
  $("uploads").prepend(row);
  const q = new URLSearchParams({ name: file.name });
  if ($("k").value) q.set("k", $("k").value);
  if ($("m").value) q.set("m", $("m").value);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/mesh?" + q);
  xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) row.querySelector(".bar div").style.width = (100 * e.loaded / e.total) + "%"; };
  xhr.onload = () => {
    let body = {}; try { body = JSON.parse(xhr.responseText); } catch {}
    const note = row.querySelector(".note");
    row.querySelector(".bar div").style.width = "100%";
    if (xhr.status === 201) {
      row.classList.add("done");
      note.innerHTML = size(body.size) + ' — <a href="/mesh/' + body.cid + '" target="_blank">' + esc(body.cid.slice(0, 20)) + "…</a>";
      refresh();
      health();
    } else {
      row.classList.add("failed");
      note.textContent = "failed: " + (body.message || xhr.status);
    }
  };
  xhr.onerror = () => { row.classList.add("failed"); row.querySelector(".note").textContent = "failed: the node did not answer"; };
  xhr.send(file);
}
const drop = $("drop");
drop.onclick = () => $("file").click();
drop.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); };
$("file").onchange = () => { for (const f of $("file").files) upload(f); $("file").value = ""; };
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); for (const f of e.dataTransfer.files) upload(f); };

function view(f) {
  const url = "/mesh/" + f.cid;
  let media;
  if (f.type.startsWith("video/")) media = '<video controls autoplay src="' + url + '"></video>';
  else if (f.type.startsWith("audio/")) media = '<audio controls autoplay src="' + url + '"></audio>';
  else if (f.type.startsWith("image/")) media = '<img alt="" src="' + url + '">';
  else media = '<iframe src="' + url + '" style="width:100%;height:60vh;border:0;background:#fff;border-radius:6px"></iframe>';
  $("viewer").innerHTML = "<h2>" + esc(f.name || f.cid) + "</h2>" + media +
    '<div class="caption">' + size(f.size) + " · " + esc(f.type) + ' · <a href="' + url + '" download>download</a></div>';
  $("viewer").scrollIntoView({ behavior: "smooth" });
}
async function refresh() {
  try {
    const { files } = await (await fetch("/api/files")).json();
    const body = $("files");
    if (!files.length) { body.innerHTML = '<tr><td colspan="6" class="empty">Nothing yet: drop a file above.</td></tr>'; return; }
    body.innerHTML = "";
    for (const f of files) {
      const tr = document.createElement("tr");
      if (f.missing) {
        tr.innerHTML = '<td colspan="4" class="empty">manifest missing</td><td class="cid">' + esc(f.cid) + "</td><td></td>";
      } else {
        tr.innerHTML = '<td><a href="/mesh/' + f.cid + '" target="_blank">' + esc(f.name || "(unnamed)") + "</a></td><td>" + size(f.size) +
          "</td><td>" + esc(f.type) + "</td><td>" + f.k + "+" + f.m + '</td><td class="cid" title="' + esc(f.cid) + '">' + esc(f.cid) +
          '</td><td><button data-act="view">View</button> <button data-act="copy">Copy link</button></td>';
        tr.querySelector('[data-act="view"]').onclick = () => view(f);
        tr.querySelector('[data-act="copy"]').onclick = (e) => {
          navigator.clipboard?.writeText(location.origin + "/mesh/" + f.cid);
          e.target.textContent = "Copied";
          setTimeout(() => e.target.textContent = "Copy link", 1200);
        };
      }
      body.appendChild(tr);
    }
  } catch (e) {
    $("files").innerHTML = '<tr><td colspan="6" class="empty">Cannot list files: ' + esc(e.message) + "</td></tr>";
  }
}
async function health() {
  try {
    const res = await fetch("/readyz");
    const { store } = await res.json();
    $("health").innerHTML = '<span class="dot ' + (res.ok ? "ok" : "bad") + '"></span>' + (res.ok ? "ready" : "not ready");
    const used = store.bytes / store.maxBytes;
    $("stats").innerHTML =
      '<div class="stat"><b>' + store.chunks + "</b><span>chunks stored</span></div>" +
      '<div class="stat"><b>' + size(store.bytes) + "</b><span>of " + size(store.maxBytes) + ' used</span><div class="meter"><div style="width:' + Math.min(100, used * 100).toFixed(1) + '%"></div></div></div>' +
      '<div class="stat"><b>' + store.pins + "</b><span>files pinned</span></div>" +
      '<div class="stat"><b>' + store.corrupt + '</b><span>corrupt chunks caught</span></div>' +
      '<div class="stat"><b><a href="/metrics">/metrics</a></b><span>Prometheus</span></div>';
  } catch {
    $("health").innerHTML = '<span class="dot bad"></span>unreachable';
  }
}
refresh(); health(); setInterval(health, 5000);
</script>
</body>
</html>
`;
