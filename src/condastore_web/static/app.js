// A little JavaScript where it earns its place: API calls with the CSRF header, live logs.
// Pages hold no inline script (the Content-Security-Policy forbids it): elements name what
// they do in data-action attributes, and the handlers at the end of this file act on them.
function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) return meta.content;
  const m = document.cookie.match(/(?:^|; )condastore_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}
async function api(method, path, body) {
  const r = await fetch("/api/v1" + path, {
    method, credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new Error(data && data.error ? data.error.message : r.statusText);
  return data;
}
function showError(id, err) {
  document.getElementById(id).textContent = err.message;
  const line = /line (\d+)/.exec(err.message), spec = document.getElementById("spec");
  if (line && spec) {  // put the cursor on the line the error names
    const lines = spec.value.split("\n"), n = Math.min(+line[1], lines.length) - 1;
    const start = lines.slice(0, n).reduce((a, l) => a + l.length + 1, 0);
    spec.focus(); spec.setSelectionRange(start, start + lines[n].length);
  }
}

async function preview() {
  const out = document.getElementById("preview"), diff = document.getElementById("preview-diff");
  out.textContent = "solving…"; diff.replaceChildren();
  try {
    const r = await api("POST", "/solve", {specification: document.getElementById("spec").value,
      namespace: document.getElementById("namespace").value});
    out.textContent = Object.entries(r.packages).map(([p, pkgs]) =>
      p + ":\n" + pkgs.map(x => "  " + x.name + " " + x.version + " " + x.build).join("\n")).join("\n");
    document.getElementById("error").textContent = "";
    const current = out.dataset.currentBuild;
    if (current) showPreviewDiff(diff, await api("GET", "/builds/" + current + "/packages"), r.packages);
  } catch (e) { out.textContent = ""; showError("error", e); }
}
// What the solve would change against the environment's current build.
function showPreviewDiff(target, currentPackages, solved) {
  const before = new Map(), after = new Map();
  for (const p of currentPackages.items || currentPackages) before.set(p.platform + " " + p.name, p.version);
  for (const [platform, pkgs] of Object.entries(solved))
    for (const p of pkgs) after.set(platform + " " + p.name, p.version);
  const rows = [];
  for (const [key, version] of after) {
    if (!before.has(key)) rows.push(["+", key, "", version]);
    else if (before.get(key) !== version) rows.push(["~", key, before.get(key), version]);
  }
  for (const [key, version] of before) if (!after.has(key)) rows.push(["−", key, version, ""]);
  const h = document.createElement("h2");
  h.textContent = rows.length ? "Changes against the current build" : "No change against the current build";
  target.replaceChildren(h);
  if (!rows.length) return;
  const table = document.createElement("table"), head = table.insertRow();
  for (const t of ["Change", "Package", "Now", "After"])
    head.appendChild(Object.assign(document.createElement("th"), {textContent: t}));
  for (const row of rows) {
    const tr = table.insertRow();
    for (const cell of row) tr.insertCell().textContent = cell;
  }
  const wrap = Object.assign(document.createElement("div"), {className: "scroll"});
  wrap.appendChild(table); target.appendChild(wrap);
}
// Package names from /api/v1/packages as the user types, and the versions of the one chosen.
let lookupTimer, lookupResults = new Map();
function lookupPackages(input) {
  clearTimeout(lookupTimer);
  const q = input.value.trim();
  const known = lookupResults.get(q);
  document.getElementById("package-versions").textContent =
    known ? q + ": " + known.versions.slice(0, 12).join(", ") : "";
  if (q.length < 2 || known) return;
  lookupTimer = setTimeout(async () => {
    try {
      const ns = document.getElementById("namespace").value;
      const r = await api("GET", "/packages?q=" + encodeURIComponent(q) + "&limit=20&namespace=" + encodeURIComponent(ns));
      const list = document.getElementById("package-names");
      list.replaceChildren(...r.items.map(p => {
        lookupResults.set(p.name, p);
        return Object.assign(document.createElement("option"), {value: p.name, label: p.name + " " + p.latest});
      }));
    } catch (e) { document.getElementById("package-versions").textContent = e.message; }
  }, 250);
}
function addPackage() {
  const name = document.getElementById("package-lookup").value.trim(), spec = document.getElementById("spec");
  if (!name) return;
  const lines = spec.value.replace(/\s+$/, "").split("\n");
  const at = lines.findIndex(l => /^dependencies:/.test(l));
  if (at < 0) lines.push("dependencies:", "  - " + name);
  else {
    const flow = /^dependencies:\s*\[(.*)\]\s*$/.exec(lines[at]);  // [a, b] -> a block list
    if (flow) lines.splice(at, 1, "dependencies:",
      ...flow[1].split(",").map(x => x.trim()).filter(Boolean).map(x => "  - " + x));
    let end = at + 1, indent = "  ";
    while (end < lines.length && /^\s*(-|#)/.test(lines[end])) {
      const item = /^(\s*)- /.exec(lines[end]);
      if (item) indent = item[1];
      end++;
    }
    lines.splice(end, 0, indent + "- " + name);
  }
  spec.value = lines.join("\n") + "\n";
}
async function copyText(id, button) {
  const text = document.getElementById(id).textContent;
  try { await navigator.clipboard.writeText(text); }
  catch (e) {  // no clipboard permission: select the text so the keyboard can copy it
    const range = document.createRange(); range.selectNodeContents(document.getElementById(id));
    getSelection().removeAllRanges(); getSelection().addRange(range);
  }
  button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

// The same sizes the pages render on the server (decimal units).
function filesize(value) {
  if (value === null || value === undefined) return "";
  let size = value;
  for (const unit of ["B", "kB", "MB", "GB"]) {
    if (size < 1000 || unit === "GB") return unit === "B" ? size.toFixed(0) + " B" : size.toFixed(1) + " " + unit;
    size /= 1000;
  }
}
const FINISHED = ["COMPLETED", "FAILED", "CANCELED"];
// Follows a build until its final state: the log (which goes on while the tarball is
// packed), the status and step, then the downloads; the Cancel button goes once it is over.
async function followBuild(id) {
  let offset = 0;
  const log = document.getElementById("log");
  for (;;) {
    let part, b;
    try {
      part = await api("GET", "/builds/" + id + "/log?offset=" + offset);
      b = await api("GET", "/builds/" + id);
    } catch (e) {  // a restarting server: try again a little later
      await new Promise(r => setTimeout(r, 3000));
      continue;
    }
    if (part.text) { log.textContent += part.text; log.scrollTop = log.scrollHeight; }
    offset = part.next_offset;
    const st = document.getElementById("status");
    if (st.textContent !== b.status) { st.textContent = b.status; st.className = "status " + b.status; }
    document.getElementById("step").textContent = b.step;
    if (FINISHED.includes(b.status)) {
      const cancel = document.getElementById("cancel");
      if (cancel) cancel.remove();
      // Failures the server rendered (with their Try again button) are not repeated.
      const errors = document.getElementById("artifact-errors") ? {} : b.artifact_errors || {};
      showArtifacts(id, b.artifacts, errors);
      if (part.finished) return;
    }
    await new Promise(r => setTimeout(r, 700));
  }
}
function showArtifacts(id, artifacts, errors) {
  const list = document.getElementById("artifacts");
  list.replaceChildren(...artifacts.map(a => {
    const li = document.createElement("li"), link = document.createElement("a");
    link.href = "/api/v1/builds/" + id + "/artifacts/" + a.kind;
    link.textContent = a.kind;
    li.append(link, " ", Object.assign(document.createElement("span"),
      {className: "muted", textContent: filesize(a.size)}));
    return li;
  }), ...Object.entries(errors).map(([kind, message]) =>
    Object.assign(document.createElement("li"),
      {className: "error", textContent: kind + " failed: " + message})));
}

const clickActions = {
  preview: () => preview(),
  "add-package": () => addPackage(),
  copy: el => copyText(el.dataset.copy, el),
};
document.addEventListener("submit", e => {
  const confirmText = e.target.dataset.confirm;
  if (confirmText && !confirm(confirmText)) e.preventDefault();
});
document.addEventListener("click", e => {
  const copy = e.target.closest("[data-copy]");
  if (copy) { e.preventDefault(); copyText(copy.dataset.copy, copy); return; }
  const el = e.target.closest("[data-action]");
  const handler = el && el.tagName !== "FORM" ? clickActions[el.dataset.action] : undefined;
  if (handler) { e.preventDefault(); handler(el); }
});
document.addEventListener("input", e => { if (e.target.id === "package-lookup") lookupPackages(e.target); });
document.addEventListener("DOMContentLoaded", () => {
  const log = document.querySelector("[data-follow-build]");
  if (log) followBuild(log.dataset.followBuild);
});
