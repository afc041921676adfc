/// <reference lib="dom" />
/** The files view: what this node keeps, with each file's real durability, to view or link. */
import { $, api, durabilityHtml, esc, type FileEntry, size } from "./lib.ts";

function view(f: FileEntry): void {
  const url = `/mesh/${f.cid}`;
  let media: string;
  if (f.type.startsWith("video/")) media = `<video controls autoplay src="${url}"></video>`;
  else if (f.type.startsWith("audio/")) media = `<audio controls autoplay src="${url}"></audio>`;
  else if (f.type.startsWith("image/")) media = `<img alt="" src="${url}">`;
  else media = `<iframe src="${url}"></iframe>`;
  $("viewer").innerHTML = `<h2>${esc(f.name || f.cid)}</h2>${media}<div class="caption">${
    size(f.size)
  } · ${esc(f.type)} · <a href="${url}" download>download</a></div>`;
  $("viewer").scrollIntoView({ behavior: "smooth" });
}

export async function refreshFiles(): Promise<void> {
  const body = $("files");
  try {
    const { files } = (await (await api("/api/files")).json()) as { files: FileEntry[] };
    if (!files.length) {
      body.innerHTML =
        '<tr><td colspan="6" class="empty">Nothing yet: drop a file above.</td></tr>';
      return;
    }
    body.innerHTML = "";
    for (const f of files) {
      const tr = document.createElement("tr");
      if (f.missing) {
        tr.innerHTML = `<td colspan="4" class="empty">manifest missing</td><td class="cid">${
          esc(f.cid)
        }</td><td></td>`;
      } else {
        tr.innerHTML =
          `<td class="name"><a href="/mesh/${esc(f.cid)}" target="_blank">${
            esc(f.name || "(unnamed)")
          }</a></td><td class="size">${size(f.size)}</td><td class="type">${esc(f.type)}</td>` +
          `<td>${durabilityHtml(f)}</td><td class="cid" title="${esc(f.cid)}">${esc(f.cid)}</td>` +
          '<td class="actions"><button data-act="view">View</button> ' +
          '<button data-act="copy">Copy link</button></td>';
        tr.querySelector<HTMLElement>('[data-act="view"]')!.onclick = () => view(f);
        const copy = tr.querySelector<HTMLElement>('[data-act="copy"]')!;
        copy.onclick = () => {
          navigator.clipboard?.writeText(`${location.origin}/mesh/${f.cid}`);
          copy.textContent = "Copied";
          setTimeout(() => copy.textContent = "Copy link", 1200);
        };
      }
      body.appendChild(tr);
    }
  } catch (e) {
    body.innerHTML = `<tr><td colspan="6" class="empty">Cannot list files: ${
      esc((e as Error).message)
    }</td></tr>`;
  }
}
