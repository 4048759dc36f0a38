// lrkit landscape page: a small port of lrkit.landscape's surfaces and of torch.optim's single-tensor
// update rules, so the browser redraws without a server. Schedule shapes are not ported: Python
// embeds each kind's values (peak 1), and the page multiplies them by the step-size slider, exactly
// as lrkit's Python reference (`lr * schedule`) does. Tests compare this with Python to 1e-6.
"use strict";

const DATA = JSON.parse(document.getElementById("lrkit-data").textContent);

// ---- surfaces: value and gradient, the formulas of lrkit/landscape/surfaces.py ----------------
const SURFACES = {
  quadratic(p) {
    const [l0, l1] = p.eigenvalues, c = Math.cos(p.angle), s = Math.sin(p.angle);
    const z = (x, y) => (p.angle ? [c * x + s * y, -s * x + c * y] : [x, y]);
    return {
      f(x, y) { const [a, b] = z(x, y); return 0.5 * (l0 * a * a + l1 * b * b); },
      g(x, y) {
        const [a, b] = z(x, y), ga = l0 * a, gb = l1 * b;
        return p.angle ? [c * ga - s * gb, s * ga + c * gb] : [ga, gb];
      },
    };
  },
  rosenbrock() {
    return {
      f: (x, y) => (1 - x) ** 2 + 100 * (y - x * x) ** 2,
      g: (x, y) => [-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)],
    };
  },
  beale() {
    const t = (x, y) => [1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y * y * y];
    return {
      f(x, y) { const [a, b, c] = t(x, y); return a * a + b * b + c * c; },
      g(x, y) {
        const [a, b, c] = t(x, y);
        return [2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y * y * y - 1), 2 * a * x + 4 * b * x * y + 6 * c * x * y * y];
      },
    };
  },
  himmelblau() {
    return {
      f: (x, y) => (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2,
      g(x, y) { const a = x * x + y - 11, b = x + y * y - 7; return [4 * x * a + 2 * b, 2 * a + 4 * y * b]; },
    };
  },
  saddle() {
    return { f: (x, y) => x * x - y * y, g: (x, y) => [2 * x, -2 * y] };
  },
  rastrigin(p) {
    const A = p.amplitude, w = 2 * Math.PI;
    return {
      f: (x, y) => 2 * A + (x * x - A * Math.cos(w * x)) + (y * y - A * Math.cos(w * y)),
      g: (x, y) => [2 * x + A * w * Math.sin(w * x), 2 * y + A * w * Math.sin(w * y)],
    };
  },
};

// ---- optimizers: torch.optim's single-tensor update rules ---------------------------------------
function lerp(a, b, w) { return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w); }  // torch's lerp

function makeOptimizer(name, m) {
  const st = { t: 0, buf: null, sq: [0, 0], avg: [0, 0] };  // one tensor of 2 coordinates, as in Python
  const o = DATA.optims[name];  // the label's lrkit.Optim (from Python): eps, beta2 (RMSprop's alpha), weight decay
  if (name === "sgd" || name === "momentum" || name === "nesterov") {
    return (x, g, lr) => {
      if (m !== 0) st.buf = st.buf === null ? g.slice() : st.buf.map((b, i) => b * m + g[i]);  // torch: the first buffer is g
      for (let i = 0; i < 2; i++) {
        const d = m === 0 ? g[i] : name === "nesterov" ? g[i] + m * st.buf[i] : st.buf[i];
        x[i] = x[i] - lr * d;
      }
    };
  }
  if (name === "adagrad") {
    return (x, g, lr) => {
      for (let i = 0; i < 2; i++) { st.sq[i] += g[i] * g[i]; x[i] = x[i] - lr * (g[i] / (Math.sqrt(st.sq[i]) + o.eps)); }
    };
  }
  if (name === "rmsprop") {
    return (x, g, lr) => {
      if (st.buf === null) st.buf = [0, 0];
      for (let i = 0; i < 2; i++) {
        st.sq[i] = st.sq[i] * o.beta2 + (1 - o.beta2) * g[i] * g[i];
        const step = g[i] / (Math.sqrt(st.sq[i]) + o.eps);
        if (m > 0) { st.buf[i] = st.buf[i] * m + step; x[i] = x[i] - lr * st.buf[i]; } else { x[i] = x[i] - lr * step; }
      }
    };
  }
  const b1 = m, b2 = o.beta2, wd = name === "adamw" ? o.weight_decay : 0;
  return (x, g, lr) => {
    st.t += 1;
    const bc1 = 1 - b1 ** st.t, bc2 = 1 - b2 ** st.t, stepSize = lr / bc1, bc2s = bc2 ** 0.5;
    for (let i = 0; i < 2; i++) {
      if (wd) x[i] = x[i] * (1 - lr * wd);
      st.avg[i] = lerp(st.avg[i], g[i], 1 - b1);
      st.sq[i] = st.sq[i] * b2 + (1 - b2) * g[i] * g[i];
      x[i] = x[i] - stepSize * (st.avg[i] / (Math.sqrt(st.sq[i]) / bc2s + o.eps));
    }
  };
}

// ---- the trajectory: the loop of lrkit.landscape.trajectory._run -----------------------------
function descend(s) {
  const surf = DATA.surfaces[s.surface], fn = SURFACES[surf.name](surf.params);
  const shape = DATA.schedules[s.schedule], step = makeOptimizer(s.optimizer, effectiveMomentum(s));
  const x = s.start.slice(), points = [], losses = [], lrs = [];
  let diverged = false;
  for (let t = 0; t <= DATA.steps; t++) {
    const loss = fn.f(x[0], x[1]);
    if (!Number.isFinite(loss) || !Number.isFinite(x[0]) || !Number.isFinite(x[1])) { diverged = true; break; }
    points.push(x.slice()); losses.push(loss);
    if (Math.hypot(x[0], x[1]) > DATA.limit) { diverged = true; break; }
    if (t === DATA.steps) break;
    const lr = s.lr * shape[t];
    lrs.push(lr);
    step(x, fn.g(x[0], x[1]), lr);
  }
  return { points, losses, lrs: lrs.slice(0, losses.length - 1), diverged };
}

function effectiveMomentum(s) {
  if (s.optimizer === "sgd" || s.optimizer === "adagrad") return 0;
  return s.momentum;
}

// ---- drawing -------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const plane = $("plane"), curve = $("curve");
const backgrounds = {};

function viridis(t) {  // a 5-stop approximation of matplotlib's viridis
  const c = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const u = Math.min(Math.max(t, 0), 1) * 4, i = Math.min(Math.floor(u), 3), w = u - i;
  return c[i].map((v, k) => Math.round(v + w * (c[i + 1][k] - v)));
}

function toCanvas(surf, x, y) {
  const [[x0, x1], [y0, y1]] = surf.domain;
  return [((x - x0) / (x1 - x0)) * plane.width, (1 - (y - y0) / (y1 - y0)) * plane.height];
}

function background(key) {
  if (backgrounds[key]) return backgrounds[key];
  const surf = DATA.surfaces[key], fn = SURFACES[surf.name](surf.params), W = plane.width >> 1, H = plane.height >> 1;
  const [[x0, x1], [y0, y1]] = surf.domain, vals = new Float64Array(W * H);
  let lo = Infinity, hi = -Infinity;
  for (let j = 0; j < H; j++) for (let i = 0; i < W; i++) {
    const v = fn.f(x0 + ((i + 0.5) / W) * (x1 - x0), y1 - ((j + 0.5) / H) * (y1 - y0));
    vals[j * W + i] = v; lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  const norm = (v) => (surf.log_levels ? Math.log1p(v - lo) / Math.log1p(hi - lo) : (v - lo) / (hi - lo));
  const off = document.createElement("canvas"); off.width = W; off.height = H;
  const ctx = off.getContext("2d"), img = ctx.createImageData(W, H), bands = 16;
  for (let k = 0; k < W * H; k++) {
    const t = norm(vals[k]), band = Math.floor(t * bands), right = k % W < W - 1 ? Math.floor(norm(vals[k + 1]) * bands) : band;
    const below = k + W < W * H ? Math.floor(norm(vals[k + W]) * bands) : band;
    const rgb = band !== right || band !== below ? [255, 255, 255] : viridis(t);  // white iso-lines between bands
    img.data.set([...rgb, 255], 4 * k);
  }
  ctx.putImageData(img, 0, 0);
  return (backgrounds[key] = off);
}

function drawPlane(surf, traj) {
  const ctx = plane.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(background(settings().surface), 0, 0, plane.width, plane.height);
  ctx.fillStyle = "#fff";
  for (const m of surf.minima) { const [u, v] = toCanvas(surf, m[0], m[1]); ctx.fillRect(u - 4, v - 4, 8, 8); }
  ctx.strokeStyle = traj.diverged ? "#ff3b30" : "#ff9500"; ctx.lineWidth = 2; ctx.beginPath();
  traj.points.forEach((p, k) => { const [u, v] = toCanvas(surf, p[0], p[1]); if (k) ctx.lineTo(u, v); else ctx.moveTo(u, v); });
  ctx.stroke();
  const [u0, v0] = toCanvas(surf, traj.points[0][0], traj.points[0][1]);
  ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(u0, v0, 5, 0, 2 * Math.PI); ctx.fill();
}

function drawCurve(traj) {
  const ctx = curve.getContext("2d"), W = curve.width, H = curve.height, pad = 40;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const logy = traj.losses.every((v) => v > 0), ys = traj.losses.map((v) => (logy ? Math.log10(v) : v));
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
  const X = (t) => pad + (t / DATA.steps) * (W - pad - 10), Y = (v) => 10 + (1 - (v - lo) / (hi - lo)) * (H - pad - 10);
  ctx.strokeStyle = "#888"; ctx.strokeRect(pad, 10, W - pad - 10, H - pad - 10);
  ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
  ctx.fillText((logy ? "1e" : "") + hi.toFixed(logy ? 1 : 2), 2, 16); ctx.fillText((logy ? "1e" : "") + lo.toFixed(logy ? 1 : 2), 2, H - pad);
  ctx.fillText("step", W / 2, H - 8); ctx.fillText(String(DATA.steps), W - 30, H - pad + 14);
  ctx.strokeStyle = "#0a84ff"; ctx.lineWidth = 1.5; ctx.beginPath();
  ys.forEach((v, t) => (t ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
  ctx.stroke();
}

// ---- controls ------------------------------------------------------------------------------------
function settings() {
  return {
    surface: $("surface").value, optimizer: $("optimizer").value, lr: 10 ** Number($("lr").value),
    momentum: Number($("momentum").value), schedule: $("schedule").value,
    start: [Number($("x0").value), Number($("y0").value)], steps: DATA.steps,
  };
}

function redraw() {
  const t0 = performance.now(), s = settings(), surf = DATA.surfaces[s.surface];
  const traj = descend(s);
  drawPlane(surf, traj);
  drawCurve(traj);
  const ms = performance.now() - t0, last = traj.losses[traj.losses.length - 1];
  $("lr-out").textContent = s.lr.toPrecision(3);
  $("momentum-out").textContent = s.momentum.toFixed(2);
  $("momentum").disabled = s.optimizer === "sgd" || s.optimizer === "adagrad";
  $("readout").textContent = `${traj.lrs.length} steps, final loss ${last.toPrecision(4)}${traj.diverged ? ", DIVERGED" : ""} — redrawn in ${ms.toFixed(1)} ms`;
  window.lrkit.settings = s; window.lrkit.trajectory = traj; window.lrkit.redrawMs = ms; window.lrkit.redraws += 1;
}

function resetStart() {
  const surf = DATA.surfaces[$("surface").value];
  $("x0").value = surf.start[0]; $("y0").value = surf.start[1];
  $("lr").value = Math.log10(surf.lr).toFixed(2);
}

function setup() {
  for (const [id, names] of [["surface", Object.keys(DATA.surfaces)], ["optimizer", DATA.optimizers], ["schedule", Object.keys(DATA.schedules)]]) {
    for (const n of names) $(id).add(new Option(n, n));
  }
  $("surface").addEventListener("change", () => { resetStart(); redraw(); });
  for (const id of ["optimizer", "lr", "momentum", "schedule", "x0", "y0"]) $(id).addEventListener("input", redraw);
  plane.addEventListener("click", (e) => {
    const surf = DATA.surfaces[$("surface").value], r = plane.getBoundingClientRect(), [[x0, x1], [y0, y1]] = surf.domain;
    $("x0").value = (x0 + ((e.clientX - r.left) / r.width) * (x1 - x0)).toFixed(3);
    $("y0").value = (y1 - ((e.clientY - r.top) / r.height) * (y1 - y0)).toFixed(3);
    redraw();
  });
  window.lrkit = { data: DATA, descend, redraw, settings, trajectory: null, redrawMs: null, redraws: 0 };
  $("surface").value = DATA.default_surface; $("optimizer").value = DATA.default_optimizer;
  resetStart();
  redraw();
}

setup();
