// plan-and-render web UI: one page over the JSON API of plan_and_render/app/web.py. No framework, no build,
// nothing fetched from the internet. The server owns every plan: the page draws what it is sent and sends
// back what the user did (a prompt, drawn boxes, an instruction, render settings).
"use strict";

const $ = (id) => document.getElementById(id);
const MIN_SIDE = 0.02; // the smallest box side the mouse can make (a fraction of the canvas)

// State, also reachable as window.planAndRender (the browser tests read the measurements here).
const app = {
  config: null,
  session: null, // the server's view of the open session (web.session_view)
  selected: null, // id of the selected box
  drag: null, // the mouse gesture in progress on the layout
  pendingBox: null, // a box drawn on empty space, waiting for its name
  job: null, // id of the render job this page waits for
  jobs: [], // ids of every render job this page asked for, oldest first
  renderAgain: false, // a change arrived while a render ran: render once more when it ends
  results: {}, // turn -> the render result shown for it (images with scores)
  metrics: {}, // readyMs: response start -> interactive; layoutMs: mouse-up -> plan view updated
};
window.planAndRender = app;

// ---------------------------------------------------------------------------------------------------------
// talking to the server
// ---------------------------------------------------------------------------------------------------------

async function call(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    throw new Error("the server cannot be reached (is plan-and-render ui still running?)");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { /* a body that is not JSON */ }
  if (!response.ok) {
    throw new Error(data && data.error ? data.error.message : `the server answered ${response.status}`);
  }
  return data;
}

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind;
  box.hidden = !text;
}

// Run an action; any failure becomes the one message line of the page.
async function attempt(action, button) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (e) {
    say(e.message);
  } finally {
    if (button) button.disabled = false;
  }
}

const sid = () => app.session && app.session.id;

// ---------------------------------------------------------------------------------------------------------
// showing a session
// ---------------------------------------------------------------------------------------------------------

function showSession(view) {
  app.session = view;
  const url = new URL(location.href);
  url.searchParams.set("session", view.id);
  history.replaceState(null, "", url);
  $("session-info").textContent = `${view.id} · turn ${view.turn} · planner ${view.planner} · seed ${view.seed}`;
  if (!$("prompt").value) $("prompt").value = view.prompt || "";
  ensureOption(view);
  drawLayout();
  drawTable();
  drawViolations();
  drawHistory();
  drawShownImages();
  $("undo-button").disabled = !view.can_undo;
  $("redo-button").disabled = !view.can_redo;
  $("render-button").disabled = !view.objects.length;
  const base = `/api/sessions/${view.id}`;
  $("download-plan").href = `${base}/plan.json`;
  $("download-run").href = `${base}/run.zip`;
  $("download-session").href = `${base}/session.json`;
  $("downloads").hidden = false;
}

function drawLayout() {
  const view = app.session, layout = $("layout");
  layout.style.aspectRatio = `${view.canvas.width} / ${view.canvas.height}`;
  const children = view.objects.map(boxElement);
  if (view.background) {
    const bg = document.createElement("div");
    bg.className = "background";
    bg.textContent = `background: ${view.background}`;
    children.unshift(bg);
  }
  layout.replaceChildren(...children);
}

function boxElement(o) {
  const el = document.createElement("div");
  el.className = "box" + (o.id === app.selected ? " selected" : "");
  el.dataset.id = o.id;
  el.style.borderColor = o.colour;
  el.style.background = o.colour + "2d"; // the preview's fill: its colour at alpha 45
  el.title = `${o.phrase} (${o.id})`;
  place(el, o.box);
  const label = document.createElement("span");
  label.className = "label";
  label.style.background = o.colour;
  label.textContent = o.id;
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.textContent = "×";
  del.setAttribute("aria-label", `remove ${o.id}`);
  del.addEventListener("click", (ev) => { ev.stopPropagation(); removeBox(o.id); });
  label.append(del);
  const handle = document.createElement("div");
  handle.className = "handle";
  handle.title = "drag to resize";
  el.append(label, handle);
  return el;
}

function place(el, box) {
  const [x0, y0, x1, y1] = box;
  el.style.left = `${x0 * 100}%`;
  el.style.top = `${y0 * 100}%`;
  el.style.width = `${(x1 - x0) * 100}%`;
  el.style.height = `${(y1 - y0) * 100}%`;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

function drawTable() {
  const { objects, canvas, relations, background, negative_prompt } = app.session;
  const rows = objects.map((o) => {
    const tr = document.createElement("tr");
    tr.dataset.id = o.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = o.colour;
    cell(tr, "").append(swatch);
    cell(tr, o.id);
    cell(tr, o.name);
    cell(tr, `${o.count} (${o.group})`);
    cell(tr, o.attributes.join(", "));
    cell(tr, o.box.map((v) => v.toFixed(2)).join(","));
    cell(tr, [o.region, o.depth].filter(Boolean).join(" "));
    return tr;
  });
  $("plan-table").tBodies[0].replaceChildren(...rows);
  const lines = [];
  lines.push(relations.length ? `relations: ${relations.join("; ")}` : "no relations");
  if (background) lines.push(`background: ${background}`);
  if (negative_prompt) lines.push(`negative prompt: ${negative_prompt}`);
  lines.push(`canvas ${canvas.width}×${canvas.height}`);
  if (!objects.length) lines.push("(no objects: draw a box or type 'add a ...')");
  $("relations").textContent = lines.join(" · ");
}

function drawViolations() {
  const { violations, warnings } = app.session;
  const box = $("violations");
  box.replaceChildren();
  const items = [...violations, ...warnings];
  if (!items.length) return;
  const title = document.createElement("strong");
  title.textContent = violations.length ? "The boxes break these relations:" : "Notes:";
  const list = document.createElement("ul");
  for (const text of items) {
    const li = document.createElement("li");
    li.textContent = text;
    list.append(li);
  }
  box.append(title, list);
}

function drawHistory() {
  const view = app.session;
  const items = view.history.map((t) => {
    const li = document.createElement("li");
    li.value = t.turn;
    if (t.turn === view.current) li.className = "current";
    const head = document.createElement("div");
    head.textContent = `${t.action}${t.instruction ? ": " + t.instruction : ""}`;
    li.append(head);
    const notes = t.question ? [`? ${t.question}`] : t.notes;
    if (notes.length) {
      const p = document.createElement("div");
      p.className = "notes";
      p.textContent = notes.join("; ");
      li.append(p);
    }
    for (const src of t.images) {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `image of turn ${t.turn}`;
      img.loading = "lazy";
      li.append(img);
    }
    return li;
  });
  $("history").replaceChildren(...items);
  $("history").scrollTop = $("history").scrollHeight;
}

// The images of the current plan: this page's render of that turn (with scores), else the stored ones.
// A plan nobody rendered yet keeps the previous images, dimmed.
function drawShownImages() {
  const shown = app.session.shown;
  const result = app.results[`${app.session.id}/${shown.turn}`];
  if (result) return showImages(result);
  if (!shown.images.length) {
    $("image").classList.toggle("stale", $("image").children.length > 0);
    return;
  }
  showImages({ images: shown.images.slice(-1), scores: {}, sheet: null, turn: shown.turn });
}

function showImages(result) {
  const scores = Object.entries(result.scores)
    .map(([id, v]) => `${id} ${v.toFixed(2)}`).join(" · ");
  const figures = result.images.map((src, k) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = src;
    img.alt = `rendered image ${k + 1} of turn ${result.turn}`;
    const cap = document.createElement("figcaption");
    if (scores) cap.append(`attention in box: ${scores} `);
    const link = document.createElement("a");
    link.href = src;
    link.download = `turn${result.turn}-${k + 1}.png`;
    link.textContent = "download";
    cap.append(link);
    fig.append(img, cap);
    return fig;
  });
  $("image").classList.remove("stale");
  $("image").replaceChildren(...figures);
  const sheet = $("sheet");
  sheet.replaceChildren();
  if (result.sheet) {
    const img = document.createElement("img");
    img.src = result.sheet;
    img.alt = "contact sheet of the images";
    sheet.append(img);
  }
}

function ensureOption(view) {
  const select = $("sessions");
  if (![...select.options].some((o) => o.value === view.id)) {
    select.add(new Option(sessionLabel({ id: view.id, prompt: view.prompt, turns: view.history.length }), view.id), 1);
  }
  select.value = view.id;
}

const sessionLabel = (r) => `${r.id} · ${(r.prompt || "(empty scene)").slice(0, 40)} · ${r.turns} turns`;

async function loadSessions() {
  const records = await call("GET", "/api/sessions");
  const select = $("sessions");
  select.replaceChildren(new Option("(new session)", ""), ...records.map((r) => new Option(sessionLabel(r), r.id)));
  if (sid()) select.value = sid();
}

async function openSession(id) {
  app.results = {};
  $("prompt").value = "";
  $("image").replaceChildren();
  $("sheet").replaceChildren();
  showSession(await call("GET", `/api/sessions/${encodeURIComponent(id)}`));
}

// ---------------------------------------------------------------------------------------------------------
// planning, uploading, editing
// ---------------------------------------------------------------------------------------------------------

const numberOrNull = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));

async function planPrompt() {
  say("");
  const view = await call("POST", "/api/sessions", {
    prompt: $("prompt").value, seed: numberOrNull("plan-seed") ?? 0,
    width: numberOrNull("width"), height: numberOrNull("height"),
  });
  app.results = {};
  $("image").replaceChildren();
  $("sheet").replaceChildren();
  showSession(view);
  loadSessions().catch(() => {});
}

async function uploadPlan(file) {
  say("");
  const text = await file.text();
  const view = await call("POST", "/api/sessions", { plan: text });
  app.results = {};
  $("prompt").value = view.prompt || "";
  showSession(view);
  say(`opened ${file.name} as session ${view.id}`, "info");
  loadSessions().catch(() => {});
}

// What the server said about an edit: an error or a question is the message line; notes are informative.
function report(result) {
  if (result.error) say(result.error);
  else if (result.question) say(result.question, "info");
  else say(result.notes.filter((n) => !n.startsWith("relation ")).join("; "), "info");
}

async function applyEdit(url, body) {
  const data = await call("POST", url, body);
  showSession(data.session);
  report(data.result);
  if (data.result.ok && $("auto-render").checked && !app.session.shown.images.length && app.session.objects.length) {
    requestRender();
  }
  return data;
}

async function chat(text) {
  if (!sid()) throw new Error("plan a prompt (or open a session) first");
  const data = await applyEdit(`/api/sessions/${sid()}/edit`, { instruction: text });
  if (!data.result.error) $("chat-input").value = "";
}

async function sendLayout(change, mouseUp) {
  const data = await call("POST", `/api/sessions/${sid()}/layout`, change);
  showSession(data.session);
  if (mouseUp !== undefined) app.metrics.layoutMs = performance.now() - mouseUp;
  report(data.result);
  if (data.result.ok && $("auto-render").checked && app.session.objects.length) requestRender();
}

function removeBox(id) {
  if (app.selected === id) app.selected = null;
  attempt(() => sendLayout({ remove: [id] }));
}

// ---------------------------------------------------------------------------------------------------------
// the layout canvas: move, resize, draw, delete with the mouse
// ---------------------------------------------------------------------------------------------------------

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round4 = (v) => Math.round(v * 10000) / 10000;

function pointer(ev, rect) {
  return [clamp((ev.clientX - rect.left) / rect.width, 0, 1), clamp((ev.clientY - rect.top) / rect.height, 0, 1)];
}

function gestureBox(drag, [px, py]) {
  const [sx, sy] = drag.start;
  const [x0, y0, x1, y1] = drag.box;
  if (drag.mode === "move") {
    const dx = clamp(px - sx, -x0, 1 - x1), dy = clamp(py - sy, -y0, 1 - y1);
    return [x0 + dx, y0 + dy, x1 + dx, y1 + dy].map(round4);
  }
  if (drag.mode === "resize") {
    return [x0, y0, clamp(x1 + px - sx, x0 + MIN_SIDE, 1), clamp(y1 + py - sy, y0 + MIN_SIDE, 1)].map(round4);
  }
  return [Math.min(sx, px), Math.min(sy, py), Math.max(sx, px), Math.max(sy, py)].map(round4); // draw
}

function select(id) {
  app.selected = id;
  for (const el of $("layout").querySelectorAll(".box")) el.classList.toggle("selected", el.dataset.id === id);
}

function onPointerDown(ev) {
  if (!app.session || ev.button !== 0 || ev.target.closest(".delete")) return;
  const layout = $("layout");
  const rect = layout.getBoundingClientRect();
  const boxEl = ev.target.closest(".box");
  layout.focus({ preventScroll: true });
  if (boxEl) {
    const obj = app.session.objects.find((o) => o.id === boxEl.dataset.id);
    select(obj.id);
    app.drag = { mode: ev.target.classList.contains("handle") ? "resize" : "move", id: obj.id, el: boxEl,
                 rect, start: pointer(ev, rect), box: obj.box.slice(), now: obj.box.slice() };
  } else {
    select(null);
    const ghost = document.createElement("div");
    ghost.className = "ghost";
    layout.append(ghost);
    const start = pointer(ev, rect);
    app.drag = { mode: "draw", el: ghost, rect, start, box: [...start, ...start], now: [...start, ...start] };
  }
  layout.setPointerCapture(ev.pointerId);
  ev.preventDefault();
}

function onPointerMove(ev) {
  const drag = app.drag;
  if (!drag) return;
  drag.now = gestureBox(drag, pointer(ev, drag.rect));
  place(drag.el, drag.now);
}

function onPointerUp(ev) {
  const drag = app.drag;
  if (!drag) return;
  const mouseUp = performance.now();
  app.drag = null;
  drag.now = gestureBox(drag, pointer(ev, drag.rect));
  if (drag.mode === "draw") {
    const [x0, y0, x1, y1] = drag.now;
    if (x1 - x0 < MIN_SIDE || y1 - y0 < MIN_SIDE) return drag.el.remove();
    app.pendingBox = { box: drag.now, el: drag.el };
    $("add-form").hidden = false;
    $("new-object").focus();
    return;
  }
  if (drag.now.every((v, k) => Math.abs(v - drag.box[k]) < 1e-4)) return; // a click: selection only
  attempt(() => sendLayout({ boxes: { [drag.id]: drag.now } }, mouseUp).catch((e) => {
    place(drag.el, drag.box); // the server refused: the box goes back
    throw e;
  }));
}

function cancelAdd() {
  if (app.pendingBox) app.pendingBox.el.remove();
  app.pendingBox = null;
  $("add-form").hidden = true;
  $("new-object").value = "";
}

async function addDrawnBox() {
  const pending = app.pendingBox;
  const text = $("new-object").value.trim();
  if (!pending) return;
  if (!text) throw new Error("say what the new box holds, e.g. 'a green triangle'");
  await sendLayout({ add: [{ text, box: pending.box }] });
  cancelAdd();
}

// ---------------------------------------------------------------------------------------------------------
// rendering: queue a job, poll its progress, show the images
// ---------------------------------------------------------------------------------------------------------

function renderSettings() {
  const settings = {
    method: $("method").value.trim() || null, scheduler: $("scheduler").value || null,
    seed: numberOrNull("seed"), steps: numberOrNull("steps"), width: numberOrNull("width"),
    height: numberOrNull("height"), num_images: numberOrNull("num-images"),
  };
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== null));
}

function requestRender() {
  if (app.job) {
    app.renderAgain = true;
    return;
  }
  attempt(startRender);
}

async function startRender() {
  if (!sid()) throw new Error("plan a prompt (or open a session) first");
  say("");
  const job = await call("POST", `/api/sessions/${sid()}/render`, renderSettings());
  app.job = job.id;
  app.jobs.push(job.id);
  showProgress(job);
  poll(job.id);
}

function showProgress(job) {
  const bar = $("progress"), text = $("progress-text");
  if (job.state === "queued") {
    bar.removeAttribute("value");
    text.textContent = job.position ? `queued: ${job.position} render(s) ahead` : "starting...";
  } else if (job.state === "running") {
    bar.max = Math.max(1, job.steps);
    bar.value = job.step;
    text.textContent = job.steps ? `step ${job.step} of ${job.steps}` : "loading the model...";
  } else {
    bar.max = 1;
    bar.value = job.state === "done" ? 1 : 0;
    text.textContent = job.state === "done" ? `done in ${(job.finished - job.started).toFixed(1)} s` : "failed";
  }
}

async function poll(jobId) {
  let job;
  try {
    job = await call("GET", `/api/jobs/${jobId}`);
  } catch (e) {
    app.job = null;
    return say(e.message);
  }
  showProgress(job);
  if (job.state === "queued" || job.state === "running") return setTimeout(() => poll(jobId), 100);
  app.job = null;
  if (job.state === "done") {
    const result = job.result;
    app.results[`${result.session}/${result.turn}`] = result;
    if (result.session === sid()) {
      await attempt(async () => showSession(await call("GET", `/api/sessions/${sid()}`)));
      showImages(result);
    }
    if (result.warnings.length) say(result.warnings.join("; "), "info");
  } else {
    say(`render failed: ${job.error.message}`);
  }
  if (app.renderAgain) {
    app.renderAgain = false;
    attempt(startRender);
  }
}

// ---------------------------------------------------------------------------------------------------------
// start
// ---------------------------------------------------------------------------------------------------------

function fillForm(config) {
  $("method-list").replaceChildren(...config.methods.map((m) => new Option(m, m)));
  $("method").value = config.defaults.method;
  for (const name of config.schedulers) $("scheduler").add(new Option(name, name));
  if (config.defaults.steps) $("steps").value = config.defaults.steps;
  $("steps").placeholder = "model's";
  $("width").placeholder = $("height").placeholder = String(config.defaults.size);
  $("num-images").max = config.max_images;
  $("server-info").textContent = `model ${config.model} · planner ${config.planner}`;
}

function bind() {
  $("plan-form").addEventListener("submit", (ev) => { ev.preventDefault(); attempt(planPrompt, $("plan-button")); });
  $("prompt").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); attempt(planPrompt, $("plan-button")); }
  });
  $("upload").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) attempt(() => uploadPlan(file)).finally(() => { ev.target.value = ""; });
  });
  $("render-form").addEventListener("submit", (ev) => { ev.preventDefault(); requestRender(); });
  $("chat-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && ev.target.value.trim()) { ev.preventDefault(); attempt(() => chat(ev.target.value.trim())); }
  });
  $("undo-button").addEventListener("click", () => attempt(() => applyEdit(`/api/sessions/${sid()}/undo`)));
  $("redo-button").addEventListener("click", () => attempt(() => applyEdit(`/api/sessions/${sid()}/redo`)));
  $("sessions").addEventListener("change", (ev) => {
    if (ev.target.value) attempt(() => openSession(ev.target.value));
  });
  const layout = $("layout");
  layout.addEventListener("pointerdown", onPointerDown);
  layout.addEventListener("pointermove", onPointerMove);
  layout.addEventListener("pointerup", onPointerUp);
  layout.addEventListener("pointercancel", () => { if (app.drag && app.drag.mode === "draw") app.drag.el.remove(); app.drag = null; });
  layout.addEventListener("keydown", (ev) => {
    if ((ev.key === "Delete" || ev.key === "Backspace") && app.selected) { ev.preventDefault(); removeBox(app.selected); }
  });
  $("add-form").addEventListener("submit", (ev) => { ev.preventDefault(); attempt(addDrawnBox); });
  $("add-cancel").addEventListener("click", cancelAdd);
  $("new-object").addEventListener("keydown", (ev) => { if (ev.key === "Escape") cancelAdd(); });
}

async function start() {
  bind();
  $("undo-button").disabled = $("redo-button").disabled = $("render-button").disabled = true;
  await attempt(async () => {
    app.config = await call("GET", "/api/config");
    fillForm(app.config);
    const wanted = new URLSearchParams(location.search).get("session");
    await Promise.all([loadSessions(), wanted ? openSession(wanted) : null]);
  });
  const nav = performance.getEntriesByType("navigation")[0];
  app.metrics.readyMs = performance.now() - (nav ? nav.responseStart : 0);
  document.body.dataset.ready = "1";
}

start();
