/// <reference lib="dom" />
/** The upload view: drop or pick files, watch progress, ask for the API token when the node wants one. */
import { $, authHeaders, durabilityHtml, esc, savedToken, saveToken, size } from "./lib.ts";

/** Uploads waiting for a token after a 401, retried when one is saved. */
const waiting: (() => void)[] = [];

function hint(): void {
  const k = Number($<HTMLInputElement>("k").value || 20);
  const m = Number($<HTMLInputElement>("m").value || 4);
  // The real overhead depends on the file (a short last stripe still gets m parity chunks) and the
  // real survival on placement: each upload answer reports both, so promise only the stripe's shape.
  $("overhead").textContent = k >= 1 && m >= 0 && k + m <= 256
    ? `each stripe: ${k} data + ${m} parity chunks, any ${k} rebuild it; ` +
      `at least ${Math.round((100 * m) / k)}% extra space (more for small files)`
    : "k + m must be at most 256";
}

function askForToken(refused: boolean): void {
  $<HTMLFormElement>("token").hidden = false;
  if (refused) {
    $("token-why").textContent = "The saved API token was refused: enter the current one";
  }
  $<HTMLInputElement>("token-input").focus();
}

function upload(file: File, onDone: () => void, row?: HTMLElement): void {
  if (!row) {
    row = document.createElement("div");
    row.className = "upload";
    row.innerHTML = `<div>${esc(file.name)} <span class="note">${
      size(file.size)
    }</span></div><div class="bar"><div></div></div>`;
    $("uploads").prepend(row);
  }
  row.className = "upload";
  const bar = row.querySelector<HTMLElement>(".bar div")!;
  const note = row.querySelector<HTMLElement>(".note")!;
  const q = new URLSearchParams({ name: file.name });
  const k = $<HTMLInputElement>("k").value, m = $<HTMLInputElement>("m").value;
  if (k) q.set("k", k);
  if (m) q.set("m", m);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/mesh?${q}`);
  xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
  const sentToken = savedToken();
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.style.width = `${(100 * e.loaded) / e.total}%`;
  };
  xhr.onload = () => {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: the status says enough
    }
    bar.style.width = "100%";
    if (xhr.status === 201) {
      row.classList.add("done");
      const cid = String(body.cid);
      note.innerHTML = `${size(Number(body.size))} — <a href="/mesh/${esc(cid)}" target="_blank">${
        esc(cid.slice(0, 20))
      }…</a> · ${durabilityHtml(body as never)}`;
      onDone();
    } else if (xhr.status === 401) {
      row.classList.add("failed");
      note.textContent = "waiting for the API token";
      if (sentToken) saveToken(null);
      waiting.push(() => upload(file, onDone, row));
      askForToken(Boolean(sentToken));
    } else {
      row.classList.add("failed");
      note.textContent = `failed: ${body.message ?? xhr.status}`;
    }
  };
  xhr.onerror = () => {
    row.classList.add("failed");
    note.textContent = "failed: the node did not answer";
  };
  xhr.send(file);
}

export function setupUpload(onDone: () => void): void {
  $("k").oninput = $("m").oninput = hint;
  hint();
  const drop = $("drop");
  const picker = $<HTMLInputElement>("file");
  const send = (files: FileList | null | undefined) => {
    for (const f of files ?? []) upload(f, onDone);
  };
  drop.onclick = () => picker.click();
  drop.onkeydown = (e) => {
    if (e.key === "Enter" || e.key === " ") picker.click();
  };
  picker.onchange = () => {
    send(picker.files);
    picker.value = "";
  };
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add("over");
  };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send(e.dataTransfer?.files);
  };
  $<HTMLFormElement>("token").onsubmit = (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("token-input");
    saveToken(input.value.trim());
    input.value = "";
    $<HTMLFormElement>("token").hidden = true;
    for (const retry of waiting.splice(0)) retry();
  };
}
