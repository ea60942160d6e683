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

// Logging out also ends the identity provider's session where the provider offers that.
async function logout() { const r = await api("POST", "/auth/sso/logout"); location.href = r.next; }

async function preview() {
  const out = document.getElementById("preview");
  out.textContent = "solving…";
  try {
    const r = await api("POST", "/solve", {specification: document.getElementById("spec").value});
    out.textContent = Object.entries(r.packages).map(([p, pkgs]) =>
      p + ":\n" + pkgs.map(x => "  " + x.name + " " + x.version + " " + x.build).join("\n")).join("\n");
    document.getElementById("error").textContent = "";
  } catch (e) { out.textContent = ""; showError("error", e); }
}
async function submitSpec(namespace) {
  try {
    const b = await api("POST", "/environments",
      {namespace, specification: document.getElementById("spec").value});
    location.href = "/ui/builds/" + b.id;
  } catch (e) { showError("error", e); }
}
async function apiAction(method, path, body, then) {
  try { await api(method, path, body); location.href = then || location.href; }
  catch (e) { alert(e.message); }
}
async function followBuild(id) {
  let offset = 0;
  const log = document.getElementById("log");
  for (;;) {
    const part = await api("GET", "/builds/" + id + "/log?offset=" + offset);
    if (part.text) { log.textContent += part.text; log.scrollTop = log.scrollHeight; }
    offset = part.next_offset;
    const b = await api("GET", "/builds/" + id);
    const st = document.getElementById("status");
    st.textContent = b.status; st.className = "status " + b.status;
    document.getElementById("step").textContent = b.step;
    if (part.finished && b.status !== "QUEUED" && b.status !== "BUILDING") {
      showArtifacts(id, b.artifacts);
      return;
    }
    await new Promise(r => setTimeout(r, 700));
  }
}
function showArtifacts(id, artifacts) {
  const list = document.getElementById("artifacts");
  list.replaceChildren(...artifacts.map(a => {
    const li = document.createElement("li"), link = document.createElement("a");
    link.href = "/api/v1/builds/" + id + "/artifacts/" + a.kind;
    link.textContent = a.kind;
    li.append(link, " ", Object.assign(document.createElement("span"),
      {className: "muted", textContent: a.size + " bytes"}));
    return li;
  }));
}

const list = value => value ? value.split(",") : undefined;
const formActions = {
  "add-user": f => apiAction("POST", "/users",
    {name: f.name.value, password: f.password.value, admin: f.admin.checked}),
  "add-binding": f => apiAction("POST", "/role-bindings",
    {subject: f.subject.value, pattern: f.pattern.value, role: f.role.value}),
  "set-policy": f => apiAction("PUT", "/policies", {scope: f.scope.value,
    policy: {allowed_channels: list(f.channels.value), required_packages: list(f.required.value)}}),
};
const clickActions = {
  logout: () => logout(),
  preview: () => preview(),
  "submit-spec": () => submitSpec(document.getElementById("namespace").value),
  "submit-form": el => document.querySelector(el.dataset.form).submit(),
  api: el => {
    if (el.dataset.confirm && !confirm(el.dataset.confirm)) return;
    const body = el.dataset.body ? JSON.parse(el.dataset.body) : undefined;
    apiAction(el.dataset.method, el.dataset.path, body, el.dataset.then);
  },
};
document.addEventListener("submit", e => {
  const handler = formActions[e.target.dataset.action];
  if (handler) { e.preventDefault(); handler(e.target); }
});
document.addEventListener("click", e => {
  const el = e.target.closest("[data-action]");
  const handler = el && el.tagName !== "FORM" ? clickActions[el.dataset.action] : undefined;
  if (handler) { e.preventDefault(); handler(el); }
});
document.addEventListener("DOMContentLoaded", () => {
  const log = document.querySelector("[data-follow-build]");
  if (log) followBuild(log.dataset.followBuild);
});
