// The lesson's convolution, interactive (served at /conv). The output map comes from the server
// (POST /api/convolve runs cnnkit.ops.conv2d); this page only draws it, and for a clicked output cell redoes
// the one window's sum in JS, so the reader sees the products and that they add up to the server's number.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN = new URLSearchParams(location.search).get("token");
const NUMBERS_UP_TO = 12;   // maps with at most this many rows and columns are drawn as numbers, larger as heatmaps
const DEBOUNCE_MS = 150;
const LESSON = {
  matrix: [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
  about: "the lessons' worked example: on the 5×5 image 1…25 its top-left output is −8 (it is −sobel_x)",
};

const S = {
  source: "example",       // "example" | "custom" | "sample:NAME"
  grid: lessonImage(),     // the editable input, as typed (strings)
  kernels: { lesson: LESSON },
  kernelName: "lesson",
  kernelText: LESSON.matrix.map((r) => r.map(String)),
  result: null,            // the server's last answer: {input, kernel, output, stride, padding}
  resultSource: "example", // the source it was computed from
  sel: [0, 0],             // the selected output cell
  seq: 0,                  // request counter: an answer to an older request is dropped
  inputKey: "", kernelKey: "", timer: 0, player: 0,
};

function lessonImage() {
  return Array.from({ length: 5 }, (_, r) => Array.from({ length: 5 }, (_, c) => String(r * 5 + c + 1)));
}

// ---- numbers ---------------------------------------------------------------------------------------------

function fmt(v) {
  if (Object.is(v, -0) || v === 0) return "0";
  let s;
  if (Number.isInteger(v)) s = String(v);
  else if (Math.abs(v) < 0.0005) s = v.toExponential(1);
  else s = String(parseFloat(v.toFixed(3)));
  return s.replace("-", "−");
}

// A weight as typed: a number, or a fraction such as 1/9 (so the blur kernels stay readable).
function parseNumber(text) {
  const t = String(text).trim().replace(/−/g, "-");
  const m = t.match(/^([-+]?[\d.]+(?:e[-+]?\d+)?)\s*\/\s*([-+]?[\d.]+(?:e[-+]?\d+)?)$/i);
  const v = m ? Number(m[1]) / Number(m[2]) : t === "" ? NaN : Number(t);
  return Number.isFinite(v) ? v : null;
}

function asFraction(v) {
  if (Number.isInteger(v)) return String(v);
  for (let d = 2; d <= 64; d++) {
    const n = Math.round(v * d);
    if (Math.abs(n - v * d) < 1e-9) return `${n}/${d}`;
  }
  return String(v);
}

function readInt(id, lo, hi, what) {
  const text = $(id).value.trim();
  const v = Number(text);
  if (text === "" || !Number.isInteger(v) || v < lo || v > hi) {
    $(id).classList.add("bad");
    throw new Error(`${what} must be a whole number from ${lo} to ${hi}, got “${text}”`);
  }
  $(id).classList.remove("bad");
  return v;
}

function readMatrix(rows, what, cells) {
  let first = null;
  const out = rows.map((row, r) => row.map((text, c) => {
    const v = parseNumber(text);
    const cell = cells && cells.querySelector(`[data-r="${r}"][data-c="${c}"]`);
    if (cell) cell.classList.toggle("bad", v === null);
    if (v === null && !first) first = `${what} row ${r + 1}, column ${c + 1}: “${text}” is not a number`;
    return v;
  }));
  if (first) throw new Error(first);
  return out;
}

// ---- talking to the server ---------------------------------------------------------------------------------

async function api(path, body) {
  const headers = {};
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method: body === undefined ? "GET" : "POST", headers,
                              body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Error(`cannot reach the server (${path}): ${e.message}`);
  }
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch (e) { /* not JSON: reported below */ }
  if (!res.ok) {
    if (data && data.message) throw new Error(`${data.type || "Error"} (${data.code || res.status}): ${data.message}`);
    throw new Error(`${path}: HTTP ${res.status} ${res.statusText}`);
  }
  if (data === null) throw new Error(`${path}: the answer is not JSON`);
  return data;
}

function showError(msg) {
  $("error").textContent = msg;
  $("error").title = msg;          // one line on the page; the whole of it on hover
  $("error").hidden = false;
  $("maps").classList.add("stale");
  document.body.dataset.state = "error";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("maps").classList.remove("stale");
}

function schedule() {
  stopPlay();
  clearTimeout(S.timer);
  S.timer = setTimeout(update, DEBOUNCE_MS);
}

// Read every control, check it here (a typo gets one line, not a request), then ask the server.
async function update() {
  const seq = ++S.seq;         // from here on, an answer to an earlier request is stale
  const source = S.source;
  let body;
  try {
    const stride = readInt("stride", 1, 4, "stride");
    const padding = readInt("padding", 0, 3, "padding");
    const kernel = readMatrix(S.kernelText, "kernel", $("kernel-grid"));
    body = { input: null, sample: null, size: 32, kernel, stride, padding };
    let h, w;
    if (S.source.startsWith("sample:")) {
      body.sample = S.source.slice(7);
      body.size = h = w = readInt("size", 16, 64, "size");
    } else {
      body.input = readMatrix(S.grid, "input", $("input-view"));
      h = body.input.length; w = body.input[0].length;
    }
    const kh = kernel.length, kw = kernel[0].length;
    if (h + 2 * padding < kh || w + 2 * padding < kw) {
      throw new Error(`the ${kh}×${kw} kernel does not fit in the padded ${h + 2 * padding}×${w + 2 * padding} ` +
                      "input: add padding or make the input larger");
    }
  } catch (e) {
    showError(e.message);
    return;
  }
  document.body.dataset.state = "loading";
  try {
    const r = await api("/api/convolve", body);
    if (seq !== S.seq) return;
    S.result = r;
    S.resultSource = source;
    clearError();
    render();
    document.body.dataset.state = "ready";
  } catch (e) {
    if (seq === S.seq) showError(e.message);
  }
}

// ---- drawing -----------------------------------------------------------------------------------------------

function padded(x, p) {
  const w = x[0].length + 2 * p;
  const zeros = () => new Array(w).fill(0);
  const rows = x.map((row) => [...new Array(p).fill(0), ...row, ...new Array(p).fill(0)]);
  return [...Array.from({ length: p }, zeros), ...rows, ...Array.from({ length: p }, zeros)];
}

function outShape() {
  const o = S.result.output;
  return [o.length, o.length ? o[0].length : 0];
}

function heat(v, maxAbs, alpha) {      // diverging: negative blue, positive red
  const t = maxAbs > 0 ? Math.max(-1, Math.min(1, v / maxAbs)) : 0;
  const a = alpha * Math.abs(t);
  return t < 0 ? `rgba(33, 102, 172, ${a})` : `rgba(178, 24, 43, ${a})`;
}

function render() {
  const r = S.result;
  const [ho, wo] = outShape();
  S.sel = [Math.min(S.sel[0], ho - 1), Math.min(S.sel[1], wo - 1)];
  renderInput();
  renderOutput();
  renderFormula();
  renderSelection();
  const h = r.input.length, w = r.input[0].length, p = r.padding;
  $("input-shape").textContent = p ? `${h} × ${w}, padded to ${h + 2 * p} × ${w + 2 * p}` : `${h} × ${w}`;
  $("output-shape").textContent = `${ho} × ${wo}`;
}

function renderInput() {
  const r = S.result, p = r.padding, x = r.input;
  const h = x.length, w = x[0].length;
  const source = S.resultSource, editable = !source.startsWith("sample:");
  const numbers = Math.max(h, w) <= NUMBERS_UP_TO;
  const key = `${editable}|${h}x${w}|${p}|${numbers}`;
  const view = $("input-view");
  $("input-hint").textContent = (p ? `the orange border is the zero padding (p = ${p}). ` : "") +
    (editable ? "Type in the cells to change the image." : `the ${source.slice(7)} photo in grey, ${h}×${w}.`);
  if (!numbers) {
    drawHeatmap(view, padded(x, p), { pad: p, gray: true });
    S.inputKey = key;
    return;
  }
  if (key !== S.inputKey) {          // rebuilt only when its shape changes, so typing keeps the focus
    S.inputKey = key;
    view.replaceChildren();
    const g = document.createElement("div");
    g.className = "grid input";
    g.style.gridTemplateColumns = `repeat(${w + 2 * p}, auto)`;
    for (let i = 0; i < h + 2 * p; i++) {
      for (let j = 0; j < w + 2 * p; j++) {
        const inside = i >= p && i < h + p && j >= p && j < w + p;
        let cell;
        if (inside && editable) {
          cell = document.createElement("input");
          cell.value = S.grid[i - p][j - p];
          cell.dataset.r = i - p; cell.dataset.c = j - p;
          cell.setAttribute("aria-label", `input row ${i - p + 1}, column ${j - p + 1}`);
          cell.addEventListener("input", onGridInput);
        } else {
          cell = document.createElement("div");
          cell.textContent = inside ? fmt(x[i - p][j - p]) : "0";
        }
        cell.classList.add("cell");
        if (!inside) cell.classList.add("pad");
        cell.dataset.pr = i; cell.dataset.pc = j;
        g.appendChild(cell);
      }
    }
    view.appendChild(g);
  } else if (!editable) {
    view.querySelectorAll(".cell:not(.pad)").forEach((c) => {
      c.textContent = fmt(x[c.dataset.pr - p][c.dataset.pc - p]);
    });
  }
}

function renderOutput() {
  const o = S.result.output;
  const [ho, wo] = outShape();
  const maxAbs = Math.max(0, ...o.flat().map(Math.abs));
  const view = $("output-view");
  $("output-hint").textContent = `red positive, blue negative, white 0 (the strongest: ${fmt(maxAbs)}); ` +
    (Math.max(ho, wo) > NUMBERS_UP_TO ? "hover for a value, click for its window" : "click a cell for its window");
  if (Math.max(ho, wo) > NUMBERS_UP_TO) {
    drawHeatmap(view, o, { maxAbs });
    return;
  }
  view.replaceChildren();
  const g = document.createElement("div");
  g.className = "grid output";
  g.setAttribute("role", "grid");
  g.style.gridTemplateColumns = `repeat(${wo}, auto)`;
  o.forEach((row, i) => row.forEach((v, j) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "cell out";
    b.dataset.i = i; b.dataset.j = j; b.dataset.value = v;
    b.textContent = fmt(v);
    b.style.background = heat(v, maxAbs, 0.45);
    b.setAttribute("aria-label", `output row ${i + 1}, column ${j + 1}: ${fmt(v)}`);
    b.addEventListener("click", () => select(i, j));
    g.appendChild(b);
  }));
  view.appendChild(g);
}

// A map too large for numbers: one coloured square per value; hover reads a value, a click selects (output).
function drawHeatmap(view, m, opt) {
  const h = m.length, w = m[0].length;
  const px = Math.max(3, Math.min(24, Math.floor(384 / Math.max(h, w))));
  let canvas = view.querySelector("canvas");
  if (!canvas) {
    view.replaceChildren();
    canvas = document.createElement("canvas");
    canvas.className = "heatmap";
    view.appendChild(canvas);
    canvas.addEventListener("mousemove", (e) => hover(canvas, e));
    canvas.addEventListener("click", (e) => {
      const at = canvasCell(canvas, e);
      if (at && canvas.dataset.kind === "output") select(at[0], at[1]);
    });
  }
  canvas.width = w * px; canvas.height = h * px;
  canvas.dataset.px = px;
  canvas.dataset.kind = opt.gray ? "input" : "output";
  canvas._m = m; canvas._pad = opt.pad || 0;
  const ctx = canvas.getContext("2d");
  const flat = m.flat();
  const lo = Math.min(...flat), hi = Math.max(...flat);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const p = opt.pad || 0;
      const isPad = opt.gray && (i < p || j < p || i >= h - p || j >= w - p);
      if (isPad) ctx.fillStyle = "#f3c98b";     // the zero border, in its own colour
      else if (opt.gray) {
        const g = hi > lo ? Math.round(255 * (m[i][j] - lo) / (hi - lo)) : 128;
        ctx.fillStyle = `rgb(${g},${g},${g})`;
      } else ctx.fillStyle = heat(m[i][j], opt.maxAbs, 1);
      ctx.fillRect(j * px, i * px, px, px);
    }
  }
  canvas.setAttribute("aria-label", `${opt.gray ? "padded input" : "output"} heatmap, ${h}×${w}`);
  canvas._draw = () => drawHeatmap(view, m, opt);
}

function canvasCell(canvas, e) {
  const rect = canvas.getBoundingClientRect();
  const px = Number(canvas.dataset.px) * rect.width / canvas.width;
  const i = Math.floor((e.clientY - rect.top) / px), j = Math.floor((e.clientX - rect.left) / px);
  return i >= 0 && j >= 0 && i < canvas._m.length && j < canvas._m[0].length ? [i, j] : null;
}

function hover(canvas, e) {
  const at = canvasCell(canvas, e);
  if (!at) return;
  const [i, j] = at, v = canvas._m[i][j];
  if (canvas.dataset.kind === "output") $("output-readout").textContent = `output[${i}][${j}] = ${fmt(v)}`;
  else {
    const p = canvas._pad, inside = i >= p && j >= p && i < canvas._m.length - p && j < canvas._m[0].length - p;
    $("input-readout").textContent = inside ? `input[${i - p}][${j - p}] = ${fmt(v)}` : "padding: 0";
  }
}

function renderFormula() {
  const r = S.result, p = r.padding, s = r.stride;
  const h = r.input.length, w = r.input[0].length, kh = r.kernel.length, kw = r.kernel[0].length;
  const line = (name, n, k) => {
    const num = n + 2 * p - k, out = Math.floor(num / s) + 1;
    const exact = num % s === 0;
    const filled = `(${n} + 2·${p} − ${k}) / ${s} + 1`;
    return `${name}: (H + 2p − k) / s + 1 = ${filled} = ` +
      (exact ? `${out}` : `⌊${fmt(num / s)}⌋ + 1 = ${out} (rounded down: the last window must fit)`);
  };
  const lines = h === w && kh === kw ? [line("height = width", h, kh)] : [line("height", h, kh), line("width", w, kw)];
  $("formula").replaceChildren(...lines.map((t) => Object.assign(document.createElement("span"), { textContent: t })));
}

// ---- the selected window -----------------------------------------------------------------------------------

function select(i, j) {
  S.sel = [i, j];
  renderSelection();
}

function renderSelection() {
  const r = S.result;
  if (!r) return;
  const [i, j] = S.sel, s = r.stride, p = r.padding, k = r.kernel;
  const kh = k.length, kw = k[0].length, r0 = i * s, c0 = j * s;
  // highlight: the output cell and its window on the padded input
  document.querySelectorAll(".cell.out.sel").forEach((c) => { c.classList.remove("sel"); c.removeAttribute("aria-current"); });
  const cell = document.querySelector(`.cell.out[data-i="${i}"][data-j="${j}"]`);
  if (cell) { cell.classList.add("sel"); cell.setAttribute("aria-current", "true"); }
  document.querySelectorAll("#input-view .cell.win").forEach((c) => c.classList.remove("win"));
  document.querySelectorAll("#input-view .cell").forEach((c) => {
    const pr = Number(c.dataset.pr), pc = Number(c.dataset.pc);
    if (pr >= r0 && pr < r0 + kh && pc >= c0 && pc < c0 + kw) c.classList.add("win");
  });
  for (const [id, box] of [["input-view", [r0, c0, kh, kw]], ["output-view", [i, j, 1, 1]]]) {
    const canvas = $(id).querySelector("canvas");
    if (canvas) { canvas._draw(); outline(canvas, ...box); }
  }
  // the products, redone here, and the check against the server's number
  const xp = padded(r.input, p);
  const out = r.output[i][j];
  const grid = $("prod-grid");
  grid.style.gridTemplateColumns = `repeat(${kw}, auto)`;
  grid.replaceChildren();
  let sum = 0, scale = 1;
  const terms = [];
  for (let u = 0; u < kh; u++) {
    for (let v = 0; v < kw; v++) {
      const x = xp[r0 + u][c0 + v], w = k[u][v], prod = x * w;
      sum += prod; scale += Math.abs(prod);
      terms.push(prod < 0 ? `(${fmt(prod)})` : fmt(prod));
      const isPad = r0 + u < p || c0 + v < p || r0 + u >= p + r.input.length || c0 + v >= p + r.input[0].length;
      const d = document.createElement("div");
      d.className = "prod" + (isPad ? " pad" : "");
      d.dataset.x = x; d.dataset.w = w; d.dataset.p = prod;
      d.innerHTML = "<span class='x'></span> × <span class='w'></span> <b>= <span class='p'></span></b>";
      d.querySelector(".x").textContent = fmt(x);
      d.querySelector(".w").textContent = fmt(w);
      d.querySelector(".p").textContent = fmt(prod);
      grid.appendChild(d);
    }
  }
  const ok = Math.abs(sum - out) <= 1e-6 + 1e-9 * scale;   // the server rounds to 6 decimals
  $("prod-at").textContent = `[${i}][${j}]`;
  $("prod-sum").dataset.sum = sum;
  $("prod-sum").textContent = `sum = ${terms.join(" + ")} = ${fmt(sum)}`;
  const check = $("prod-check");
  check.className = ok ? "ok" : "mismatch";
  check.textContent = ok ? `✓ the server's output[${i}][${j}] is ${fmt(out)}: the same`
                         : `✗ the server's output[${i}][${j}] is ${fmt(out)}, not ${fmt(sum)}`;
  $("products").hidden = false;
  const [nh, nw] = outShape();
  $("output-readout").textContent = `window ${i * nw + j + 1} of ${nh * nw}: rows ${r0}…${r0 + kh - 1}, ` +
    `columns ${c0}…${c0 + kw - 1} of the padded input`;
}

function outline(canvas, i, j, h, w) {
  const px = Number(canvas.dataset.px), ctx = canvas.getContext("2d");
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#111";
  ctx.strokeRect(j * px + 1, i * px + 1, w * px - 2, h * px - 2);
  ctx.strokeStyle = "#ffd400";
  ctx.strokeRect(j * px - 1, i * px - 1, w * px + 2, h * px + 2);
}

function step(delta) {
  if (!S.result) return;
  const [ho, w] = outShape(), n = ho * w;
  const k = ((S.sel[0] * w + S.sel[1] + delta) % n + n) % n;
  select(Math.floor(k / w), k % w);
}

function move(di, dj) {
  if (!S.result) return;
  const [ho, w] = outShape();
  select(Math.max(0, Math.min(ho - 1, S.sel[0] + di)), Math.max(0, Math.min(w - 1, S.sel[1] + dj)));
  const cell = document.querySelector(".cell.out.sel");
  if (cell && document.activeElement && document.activeElement.classList.contains("out")) cell.focus();
}

function stopPlay() {
  clearInterval(S.player);
  S.player = 0;
  $("play").textContent = "▶ play";
}

function togglePlay() {
  if (S.player) return stopPlay();
  $("play").textContent = "■ stop";
  S.player = setInterval(() => {
    const [ho, w] = S.result ? outShape() : [0, 0];
    if (!S.result || (S.sel[0] === ho - 1 && S.sel[1] === w - 1)) return stopPlay();
    step(1);
  }, 600);
  if (S.result) select(0, 0);
}

// ---- controls ----------------------------------------------------------------------------------------------

function onGridInput(e) {
  S.grid[e.target.dataset.r][e.target.dataset.c] = e.target.value;
  if (S.source === "example") { S.source = "custom"; $("source").value = "custom"; showSourceControls(); }
  schedule();
}

function showSourceControls() {
  $("custom-size").hidden = S.source !== "custom";
  $("sample-size").hidden = !S.source.startsWith("sample:");
  if (S.source === "custom") { $("rows").value = S.grid.length; $("cols").value = S.grid[0].length; }
}

function resizeGrid() {
  let h, w;
  try {
    h = readInt("rows", 1, NUMBERS_UP_TO, "rows");
    w = readInt("cols", 1, NUMBERS_UP_TO, "columns");
  } catch (e) { return showError(e.message); }
  S.grid = Array.from({ length: h }, (_, r) => Array.from({ length: w }, (_, c) =>
    (S.grid[r] && S.grid[r][c] !== undefined ? S.grid[r][c] : "0")));
  S.inputKey = "";
  schedule();
}

function buildKernelGrid() {
  const g = $("kernel-grid"), rows = S.kernelText, kh = rows.length, kw = rows[0].length;
  const key = `${kh}x${kw}`;
  if (key !== S.kernelKey) {
    S.kernelKey = key;
    g.replaceChildren();
    g.style.gridTemplateColumns = `repeat(${kw}, auto)`;
    rows.forEach((row, r) => row.forEach((_, c) => {
      const cell = document.createElement("input");
      cell.className = "cell";
      cell.dataset.r = r; cell.dataset.c = c;
      cell.setAttribute("aria-label", `kernel row ${r + 1}, column ${c + 1}`);
      cell.addEventListener("input", (e) => {
        S.kernelText[r][c] = e.target.value;
        if (S.kernelName !== "custom") { S.kernelName = "custom"; $("kernel-name").value = "custom"; }
        $("kernel-about").textContent = "your own kernel: any numbers, or fractions such as 1/9";
        schedule();
      });
      g.appendChild(cell);
    }));
  }
  g.querySelectorAll("input").forEach((c) => { c.value = rows[c.dataset.r][c.dataset.c]; c.classList.remove("bad"); });
}

function chooseKernel(name) {
  S.kernelName = name;
  const k = S.kernels[name];
  if (k) {
    S.kernelText = k.matrix.map((row) => row.map(asFraction));
    $("kernel-about").textContent = k.about || "";
  } else {
    $("kernel-about").textContent = "your own kernel: any numbers, or fractions such as 1/9";
  }
  buildKernelGrid();
  schedule();
}

async function loadLists() {
  try {
    const { kernels } = await api("/api/kernels");
    const sel = $("kernel-name"), custom = sel.querySelector("option[value=custom]");
    for (const [name, k] of Object.entries(kernels)) {
      S.kernels[name] = k;
      sel.insertBefore(new Option(`${name}`, name), custom);
    }
  } catch (e) { showError(`the named kernels could not be loaded: ${e.message}`); }
  try {
    const { samples } = await api("/api/samples");
    for (const name of samples) $("source").appendChild(new Option(`photo: ${name} (scikit-image)`, `sample:${name}`));
  } catch (e) { showError(`the sample photos could not be listed: ${e.message}`); }
}

function init() {
  if (TOKEN) $("home").href = `/?token=${encodeURIComponent(TOKEN)}`;
  document.body.dataset.state = "loading";
  $("kernel-about").textContent = LESSON.about;
  buildKernelGrid();
  $("source").addEventListener("change", (e) => {
    S.source = e.target.value;
    if (S.source === "example") S.grid = lessonImage();
    S.inputKey = "";
    S.sel = [0, 0];
    showSourceControls();
    schedule();
  });
  $("kernel-name").addEventListener("change", (e) => chooseKernel(e.target.value));
  for (const id of ["stride", "padding", "size"]) $(id).addEventListener("input", schedule);
  for (const id of ["rows", "cols"]) $(id).addEventListener("input", resizeGrid);
  $("randomize").addEventListener("click", () => {
    S.grid = S.grid.map((row) => row.map(() => String(Math.floor(Math.random() * 10))));
    S.inputKey = "";
    schedule();
  });
  $("next").addEventListener("click", () => { stopPlay(); step(1); });
  $("prev").addEventListener("click", () => { stopPlay(); step(-1); });
  $("play").addEventListener("click", togglePlay);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.altKey || e.ctrlKey || e.metaKey) return;
    const d = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }[e.key];
    if (!d) return;
    e.preventDefault();
    stopPlay();
    move(...d);
  });
  update();        // the worked example at once; the named kernels and photos arrive alongside
  loadLists();
}

init();
