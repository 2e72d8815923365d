// cnnkit serve's page: pick a model and an image, see what the model says and what its layers see.
// Plain ES2020, no build step, nothing fetched from anywhere but this server (it must work offline).
// The HTTP contract it speaks is the server's: GET /models, GET /api/models/{m}/network,
// POST /api/models/{m}/inspect, GET /api/samples[/{name}]. Errors arrive as {code, type, message}.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const INPUT_PX = 192; // the input image's longest side on screen, in CSS pixels
const MAP_PX = 72; // a feature map's longest side on screen

const $ = (id) => document.getElementById(id);
const state = { model: "", network: null, info: null, image: null, label: "", seq: 0, netSeq: 0 };

// --- talking to the server --------------------------------------------------------------------------------
class ServerError extends Error {}

/** fetch with the token (if any); JSON or a Blob back; a non-2xx answer becomes one readable ServerError. */
async function api(path, { method = "GET", body = null, type = null, as = "json" } = {}) {
  const headers = new Headers();
  if (TOKEN) headers.set("Authorization", `Bearer ${TOKEN}`);
  if (type) headers.set("Content-Type", type);
  let res;
  try {
    res = await fetch(path, { method, body, headers });
  } catch (e) {
    throw new ServerError(`Could not reach the server (${e.message}). Is \`cnnkit serve\` still running?`);
  }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText || "error"} from ${path}`;
    try {
      const e = await res.json();
      if (e && e.message) msg = `${e.type || "Error"} (${e.code || res.status}): ${e.message}`;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ServerError(msg);
  }
  return as === "blob" ? res.blob() : res.json();
}

/** A same-origin link that keeps ?token= (the static pages need no token, the pages they call do). */
function withToken(href) {
  if (!TOKEN) return href;
  const u = new URL(href, location.href);
  u.searchParams.set("token", TOKEN);
  return u.pathname + u.search;
}

const enc = encodeURIComponent;

function showError(e) {
  const el = $("error");
  el.textContent = e instanceof ServerError ? e.message : `Something went wrong on this page: ${e.message || e}`;
  el.hidden = false;
  setStatus("");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text) { $("status").textContent = text; }

/** Runs an async handler; whatever it throws ends up on the page, never in the console. */
function guarded(fn) {
  return (...args) => Promise.resolve().then(() => fn(...args)).catch(showError);
}

// --- small drawing helpers --------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const fmt = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(3))) : String(v));
const fmt2 = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(2))) : String(v));
/** A probability as a percentage; never "0.0%" or "100.0%" for what is neither. */
const pct = (p) => (p > 0 && p < 0.0005 ? "<0.1%" : p < 1 && p >= 0.9995 ? ">99.9%" : `${(100 * p).toFixed(1)}%`);
const dims = (c, h, w) => `${c}×${h}×${w}`;

/** Diverging colour (blue < 0 < red, white at 0) for t in [-1, 1]: ColorBrewer's RdBu ends. */
function diverging(t) {
  const neg = [33, 102, 172], mid = [247, 247, 247], pos = [178, 24, 43];
  const a = Math.max(-1, Math.min(1, t || 0));
  const end = a < 0 ? neg : pos, f = Math.abs(a);
  return mid.map((m, i) => Math.round(m + (end[i] - m) * f));
}

const maxAbs = (m) => m.flat().reduce((s, v) => Math.max(s, Math.abs(v)), 0) || 1;

/** A kh×kw matrix as a grid of coloured cells, with its numbers when it is small enough to read. */
function kernelGrid(weights, { label, cell = 34, numbers = true } = {}) {
  const h = weights.length, w = weights[0].length, s = maxAbs(weights);
  const showNumbers = numbers && cell >= 30;
  const grid = el("div", {
    class: "kgrid", role: "img",
    "aria-label": `${label || "kernel"}: ${h}×${w} weights, ${weights.map((r) => r.map(fmt).join(" ")).join("; ")}`,
    style: { gridTemplateColumns: `repeat(${w}, ${cell}px)`, gridAutoRows: `${cell}px` },
  });
  for (const row of weights) {
    for (const v of row) {
      const [r, g, b] = diverging(v / s);
      const dark = Math.abs(v / s) > 0.6;
      grid.append(el("span", {
        class: dark ? "dark" : "", title: fmt(v),
        style: { background: `rgb(${r},${g},${b})` },
      }, showNumbers ? fmt2(v) : ""));
    }
  }
  return grid;
}

/** A small matrix drawn on a canvas (one canvas pixel per weight), scaled up with crisp pixels by CSS. */
function matrixCanvas(m, { px = 48, label = "" } = {}) {
  const h = m.length, w = m[0].length, s = maxAbs(m);
  const c = el("canvas", { width: w, height: h, class: "pixelated", role: "img", "aria-label": label });
  c.style.width = `${Math.round((px * w) / Math.max(h, w))}px`;
  c.style.height = `${Math.round((px * h) / Math.max(h, w))}px`;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  m.flat().forEach((v, k) => {
    const [r, g, b] = diverging(v / s);
    img.data.set([r, g, b, 255], 4 * k);
  });
  ctx.putImageData(img, 0, 0);
  return c;
}

// --- models -----------------------------------------------------------------------------------------------
async function loadModels() {
  const { models } = await api("/models");
  const select = $("model");
  select.replaceChildren(...models.map((m) => el("option", { value: m.modelName }, m.modelName)));
  if (!models.length) {
    select.append(el("option", { value: "" }, "no models"));
    throw new ServerError("The server serves no model.");
  }
  const wanted = new URLSearchParams(location.search).get("model");
  select.value = models.some((m) => m.modelName === wanted) ? wanted : models[0].modelName;
  select.disabled = false;
  await selectModel(select.value);
}

async function selectModel(name) {
  const seq = ++state.netSeq;
  state.model = name;
  state.network = null; // until it arrives, an image waits for it (inspect says so)
  const u = new URL(location.href);
  u.searchParams.set("model", name);
  history.replaceState(null, "", u.pathname + u.search);
  setStatus(`loading ${name}…`);
  const [network, info] = await Promise.all([
    api(`/api/models/${enc(name)}/network`),
    api(`/models/${enc(name)}`),
  ]);
  if (seq !== state.netSeq) return; // another model was picked meanwhile
  state.network = network;
  state.info = Array.isArray(info) ? info[0] : info;
  const inp = network.input;
  const bits = [network.architecture, dims(inp.channels, inp.height, inp.width), `${network.classes.length} classes`];
  if (state.info && state.info.decision) bits.push(`decision: ${state.info.decision}`);
  $("model-info").textContent = bits.join(" · ");
  clearError();
  renderFilters(network);
  setStatus(state.image ? "" : "Now pick an image.");
  if (state.image) await inspect(state.image, state.label);
}

// --- images -----------------------------------------------------------------------------------------------
async function loadSamples() {
  const { samples } = await api("/api/samples");
  const list = $("samples");
  list.replaceChildren();
  for (const name of samples) {
    const img = el("img", { alt: `sample photo “${name}”`, width: 72, height: 72 });
    const button = el("button", { type: "button", "data-sample": name, disabled: true },
      img, el("span", { title: name }, name));
    list.append(el("li", {}, button));
    // the thumbnail is fetched with the token (an <img src> could not send the header), then reused for POST
    api(`/api/samples/${enc(name)}`, { as: "blob" }).then((blob) => {
      img.src = URL.createObjectURL(blob);
      button.disabled = false;
      button.addEventListener("click", guarded(() => inspect(blob, `sample “${name}”`)));
    }).catch(showError);
  }
}

function setupDrop() {
  const drop = $("drop"), file = $("file");
  file.addEventListener("change", guarded(async () => {
    const f = file.files[0];
    file.value = ""; // picking the same file again still answers
    if (f) await inspect(f, `“${f.name}”`);
  }));
  for (const t of ["dragenter", "dragover"]) {
    drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guarded(async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (!f) throw new ServerError("That was not a file: drop an image file (PNG, JPEG, …).");
    await inspect(f, `“${f.name}”`);
  }));
  // a file dropped beside the zone would make the browser open it and leave the page
  for (const t of ["dragover", "drop"]) window.addEventListener(t, (e) => e.preventDefault());
}

// --- one image through the model ---------------------------------------------------------------------------
async function inspect(blob, label) {
  if (!state.model || !state.network) {
    state.image = blob; // inspected as soon as the model has loaded (selectModel does it)
    state.label = label;
    setStatus(`${label} will be shown once the model has loaded…`);
    return;
  }
  const seq = ++state.seq;
  state.image = blob;
  state.label = label;
  setStatus(`${state.model} is looking at ${label}…`);
  document.body.classList.add("busy");
  try {
    const r = await api(`/api/models/${enc(state.model)}/inspect`,
      { method: "POST", body: blob, type: blob.type || "application/octet-stream" });
    if (seq !== state.seq) return; // a newer image was picked meanwhile
    clearError();
    for (const id of ["result", "network-section"]) $(id).classList.remove("stale");
    renderResult(r);
    renderNetwork(r);
    $("result").dataset.image = label; // which image the results are for
    setStatus(`${state.model} on ${label}.`);
  } catch (e) {
    if (seq === state.seq) for (const id of ["result", "network-section"]) $(id).classList.add("stale");
    throw e;
  } finally {
    if (seq === state.seq) document.body.classList.remove("busy");
  }
}

function barList(top, listEl) {
  listEl.replaceChildren(...top.map((t) => el("li", {},
    el("span", { class: "cls" }, t.class),
    el("span", { class: "bar", "aria-hidden": "true" },
      el("span", { style: { width: `${Math.max(0.5, 100 * t.probability)}%` } })),
    el("span", { class: "p" }, pct(t.probability)))));
}

function renderResult(r) {
  $("result").hidden = false;
  const inp = state.network.input;
  const seen = $("seen");
  seen.src = r.input;
  sizeImage(seen, inp.height, inp.width, INPUT_PX);
  $("seen-size").textContent = `(${dims(inp.channels, inp.height, inp.width)})`;
  const best = r.top[0];
  $("predicted").textContent = best.class;
  $("predicted-p").textContent = `p = ${pct(best.probability)}`;
  const decision = $("decision");
  decision.hidden = r.decision == null;
  decision.replaceChildren();
  if (r.decision != null) {
    decision.append("Decision at the run's operating point: ", el("strong", { id: "decision-class" }, r.decision));
    if (state.info && state.info.decision) decision.append(el("span", { class: "muted" }, ` (${state.info.decision})`));
  }
  barList(r.top, $("top"));

  const g = r.gradcam, cam = $("cam"), blank = $("cam-blank");
  const method = g.label || "Grad-CAM";
  const caption = $("cam-caption");
  caption.textContent = g.declined ? `${method}: declined for this model`
    : `${method} for “${g.class}” at layer ${g.layer}`;
  // why this layer (measured on validation images for a flatten head), or why the method is declined
  if (g.layer_reason && !g.declined) caption.append(el("br"), el("span", { class: "muted" }, g.layer_reason));
  if (g.declined) {
    // no map at all: the measured reason says why none would be faithful
    blank.hidden = false;
    blank.textContent = g.reason;
    cam.hidden = true;
    cam.removeAttribute("src");
  } else if (g.blank) {
    // a blank map is the absence of evidence, not an explanation: said in words, and what there is instead
    // (the signed map: red raises the class's score, blue lowers it) drawn as that, never as a heat map
    blank.hidden = false;
    blank.textContent = `No positive evidence for this class: ${method} for “${g.class}” is blank at layer ` +
      `${g.layer} (no region raises its score). ` +
      (g.signed_overlay ? "Shown instead: the signed map, red where a region raises the score, blue where it " +
        "lowers it." : "There is nothing to show.");
    if (g.signed_overlay) {
      cam.hidden = false;
      cam.src = g.signed_overlay;
      cam.alt = `signed map for “${g.class}” (no positive evidence): red raises its score, blue lowers it`;
      sizeImage(cam, inp.height, inp.width, INPUT_PX);
    } else {
      cam.hidden = true;
      cam.removeAttribute("src");
    }
  } else {
    blank.hidden = true;
    cam.hidden = false;
    cam.src = g.overlay;
    cam.alt = `${method} for “${g.class}”: the regions of the input that raise its score, drawn over it`;
    sizeImage(cam, inp.height, inp.width, INPUT_PX);
  }
}

function sizeImage(img, h, w, px) {
  const s = px / Math.max(h, w);
  img.style.width = `${Math.round(w * s)}px`;
  img.style.height = `${Math.round(h * s)}px`;
}

// --- the network, CNN Explainer's way: input | one column per stage | output ------------------------------
function renderNetwork(r) {
  $("network-section").hidden = false;
  const net = state.network, inp = net.input;
  const cols = [];

  const inputImg = el("img", { class: "pixelated", src: r.input, alt: "The input, as the model sees it" });
  sizeImage(inputImg, inp.height, inp.width, INPUT_PX);
  const rfBox = el("div", { id: "rf-box", class: "rf-box", hidden: true, "aria-hidden": "true" });
  cols.push(el("div", { class: "col col-input" },
    el("h3", {}, "input"), el("p", { class: "dims" }, dims(inp.channels, inp.height, inp.width)),
    el("div", { class: "stack", id: "input-stack" }, inputImg, rfBox)));

  for (const stage of r.stages) {
    const meta = net.stages.find((s) => s.name === stage.name) || {};
    const maps = stage.maps.map((m, k) => mapView(stage, meta, m, k, inputImg, rfBox));
    cols.push(el("div", { class: "col", "data-stage": stage.name },
      el("h3", {}, stage.name), el("p", { class: "dims" }, dims(stage.channels, stage.height, stage.width)),
      el("p", { class: "muted small" }, `${stage.maps.length} of ${stage.channels} maps`),
      ...maps));
  }

  const out = el("ol", { class: "bars compact", "aria-label": "Output: most probable classes" });
  barList(r.top, out);
  cols.push(el("div", { class: "col col-output" },
    el("h3", {}, "output"), el("p", { class: "dims" }, `${net.classes.length} classes`), out));

  $("network").replaceChildren(...cols);
  $("unit-text").textContent = "Hover a feature map (or focus it and use the arrow keys).";
  $("unit-kernel").replaceChildren();
}

function mapView(stage, meta, m, k, inputImg, rfBox) {
  const h = stage.height, w = stage.width;
  const img = el("img", {
    class: "pixelated map", src: m.png, tabIndex: 0, "data-channel": m.channel,
    alt: `${stage.name}, channel ${m.channel}: values from ${fmt(m.min)} to ${fmt(m.max)}`,
  });
  sizeImage(img, h, w, MAP_PX);
  const hi = el("div", { class: "unit-box", hidden: true, "aria-hidden": "true" });
  const wrap = el("div", { class: "stack" }, img, hi);
  let cur = [0, 0];

  const show = (i, j) => {
    cur = [i, j];
    document.querySelectorAll(".unit-box").forEach((b) => { if (b !== hi) b.hidden = true; });
    const cw = img.clientWidth / w, ch = img.clientHeight / h;
    Object.assign(hi.style, { left: `${j * cw}px`, top: `${i * ch}px`, width: `${cw}px`, height: `${ch}px` });
    hi.hidden = false;
    const v = m.values[i][j];
    let where = "";
    if (meta.rf) {
      const b = rfRect(meta.rf, i, j, state.network.input);
      const sy = inputImg.clientHeight / state.network.input.height, sx = inputImg.clientWidth / state.network.input.width;
      Object.assign(rfBox.style, {
        top: `${b.y0 * sy}px`, left: `${b.x0 * sx}px`, height: `${(b.y1 - b.y0) * sy}px`, width: `${(b.x1 - b.x0) * sx}px`,
      });
      rfBox.dataset.box = [b.y0, b.x0, b.y1 - b.y0, b.x1 - b.x0].join(",");
      rfBox.hidden = false;
      where = ` It sees input rows ${span(b.y0, b.y1)} and columns ${span(b.x0, b.x1)} ` +
        `(a ${meta.rf.size[0]}×${meta.rf.size[1]} receptive field${b.clipped ? ", clipped to the image" : ""}).`;
    }
    $("unit-text").replaceChildren(
      el("strong", {}, `${stage.name}, channel ${m.channel}, unit (${i}, ${j})`),
      ` = ${fmt(v)}`, el("span", { class: "muted" }, ` (this map: ${fmt(m.min)} … ${fmt(m.max)}).`), where);
    const kv = $("unit-kernel");
    kv.replaceChildren();
    if (m.kernel && m.kernel.weights) {
      const layer = m.kernel.layer || meta.kernel_layer || "?";
      kv.append(el("p", { class: "small" }, `The kernel that made it: ${layer}, output channel ${m.channel}` +
        ` (${m.kernel.weights.length}×${m.kernel.weights[0].length}, averaged over its input channels)`),
      kernelGrid(m.kernel.weights, { label: `kernel of ${layer} channel ${m.channel}`,
        cell: Math.min(38, Math.floor(200 / Math.max(m.kernel.weights.length, m.kernel.weights[0].length))) }));
    }
  };

  img.addEventListener("mousemove", (e) => {
    const r = img.getBoundingClientRect();
    const j = Math.min(w - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * w)));
    const i = Math.min(h - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * h)));
    if (i !== cur[0] || j !== cur[1] || hi.hidden) show(i, j);
  });
  img.addEventListener("focus", () => show(...cur));
  img.addEventListener("keydown", (e) => {
    const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
    if (!step) return;
    e.preventDefault();
    show(Math.min(h - 1, Math.max(0, cur[0] + step[0])), Math.min(w - 1, Math.max(0, cur[1] + step[1])));
  });
  return el("figure", { class: "map-fig" }, wrap,
    el("figcaption", { class: "small muted" }, `ch ${m.channel}${k === 0 ? " (most active)" : ""}`));
}

/** [a, b) as the rows or columns it covers: "3–6" (inclusive) for whole pixels. */
const span = (a, b) => (Number.isInteger(a) && Number.isInteger(b) ? `${a}–${b - 1}` : `${fmt(a)} to ${fmt(b)}`);

/** Unit (i, j)'s receptive field in input pixels [y0, y1) × [x0, x1), clipped to the image (the contract's rule). */
function rfRect(rf, i, j, input) {
  const y0 = rf.start[0] + i * rf.stride[0], x0 = rf.start[1] + j * rf.stride[1];
  const y1 = y0 + rf.size[0], x1 = x0 + rf.size[1];
  const c = {
    y0: Math.max(0, y0), x0: Math.max(0, x0), y1: Math.min(input.height, y1), x1: Math.min(input.width, x1),
  };
  c.clipped = c.y0 !== y0 || c.x0 !== x0 || c.y1 !== y1 || c.x1 !== x1;
  return c;
}

// --- first-layer filters beside the lesson's kernels ------------------------------------------------------
function renderFilters(net) {
  const fc = net.first_conv;
  if (!fc) { $("filters-section").hidden = true; return; }
  $("filters-section").hidden = false;
  const [kh, kw] = fc.size;
  $("filters-heading").textContent = `Learned filters of ${fc.layer} (${fc.filters.length}, ${kh}×${kw})`;
  const about = [`Each filter averaged over its ${fc.in_channels} input channel${fc.in_channels === 1 ? "" : "s"};` +
    " blue negative, red positive, white zero, each filter on its own scale."];
  if (fc.random) about.unshift("Random weights: this model's first layer was never trained, so any likeness below is chance.");
  $("filters-about").textContent = about.join(" ");
  $("filters-about").classList.toggle("notice", !!fc.random);

  $("filters").replaceChildren(...fc.filters.map((f, k) => el("figure", { class: "filter", "data-filter": k },
    matrixCanvas(f, { px: 44, label: `filter ${k} of ${fc.layer}` }), el("figcaption", { class: "small muted" }, `#${k}`))));

  const matches = new Map((net.matches || []).map((m) => [m.kernel, m]));
  const cards = Object.entries(net.kernels || {}).map(([name, k]) => {
    const m = matches.get(name);
    const card = el("div", { class: "kcard", "data-kernel": name },
      el("h4", {}, name), kernelGrid(k, { label: `hand-made kernel ${name}` }));
    if (m) {
      const chance = m.chance95 ?? (Array.isArray(m.chance) ? m.chance[1] : null);
      const beats = m.beats_chance ?? (chance != null ? m.cosine > chance : null);
      const filt = fc.filters[m.filter];
      const verdict = fc.random ? "random weights: chance by construction"
        : beats ? "beats chance" : "no better than chance";
      card.append(el("div", { class: "match" },
        filt ? matrixCanvas(filt, { px: 44, label: `learned filter ${m.filter}, the closest to ${name}` }) : null,
        el("p", { class: "small" }, `closest: filter #${m.filter}, cosine ${m.cosine.toFixed(2)}`,
          el("br"), chance != null ? `random filters reach ${chance.toFixed(2)} (95th pct.)` : "",
          el("br"), el("strong", { class: beats && !fc.random ? "good" : "meh" }, verdict))));
      card.addEventListener("mouseenter", () => markFilter(m.filter, true));
      card.addEventListener("mouseleave", () => markFilter(m.filter, false));
    }
    return card;
  });
  $("kernels").replaceChildren(...cards);
}

function markFilter(k, on) {
  const f = document.querySelector(`.filter[data-filter="${k}"]`);
  if (f) f.classList.toggle("marked", on);
}

// --- start --------------------------------------------------------------------------------------------------
function start() {
  $("link-conv").href = withToken("/conv");
  $("link-docs").href = withToken("/docs");
  $("model").addEventListener("change", guarded((e) => selectModel(e.target.value)));
  setupDrop();
  window.addEventListener("unhandledrejection", (e) => { e.preventDefault(); showError(e.reason || "unknown error"); });
  guarded(() => loadModels().catch((e) => {
    $("model").replaceChildren(el("option", { value: "" }, "unavailable"));
    throw e;
  }))();
  guarded(loadSamples)();
}

start();
