// getok-data report: a static page over data/*.js (written by `getok-data report`). No server,
// no network: every view is built here from window.GETOK_OVERVIEW / GETOK_TARGETS /
// GETOK_PREDICTIONS and, for one target, data/samples/<key>.js loaded on demand.
// The state of a view lives in the URL hash (#targets?q=dog&min=0.5&page=2), so a view can be
// bookmarked, and tests drive the page by its URL.
"use strict";
(function () {
  const REGION_COLOURS = { I: "#3cc83c", R: "#ffd700", H: "#ff7800", F: "#969696" };
  // offset tokens in vocabulary order (keypad order), as docs/FORMAT.md: (du, dv), dv = +1 is up
  const STEPS = [[-1, 1], [0, 1], [1, 1], [-1, 0], [0, 0], [1, 0], [-1, -1], [0, -1], [1, -1]];
  const PAGE = 100;
  const samples = {};
  const waiting = {};
  const problems = [];

  function problem(msg) {
    problems.push(msg);
    const ul = document.getElementById("errors");
    if (!ul) return;
    ul.hidden = false;
    const li = document.createElement("li");
    li.textContent = msg;
    ul.appendChild(li);
  }
  // script errors, and (capture phase) images or data files that failed to load
  window.addEventListener("error", (e) => {
    if (e.target && e.target !== window && (e.target.src || e.target.href)) {
      problem("failed to load " + (e.target.src || e.target.href));
    } else {
      problem("script error: " + e.message + " (" + (e.filename || "") + ":" + (e.lineno || "") + ")");
    }
  }, true);

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(d) : String(v));
  function parseHash() {
    const raw = decodeURIComponent(location.hash.slice(1) || "overview");
    const [path, query] = raw.split("?");
    const params = {};
    for (const part of (query || "").split("&")) {
      if (!part) continue;
      const i = part.indexOf("=");
      params[i < 0 ? part : part.slice(0, i)] = i < 0 ? "" : part.slice(i + 1);
    }
    return { path, params };
  }
  function go(path, params) {
    const q = Object.entries(params || {}).filter(([, v]) => v !== "" && v !== null && v !== undefined)
      .map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&");
    location.hash = path + (q ? "?" + q : "");
  }
  function table(headers, rows, attrs) {
    return el("table", attrs, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
  }
  function histogram(hist, label) {
    const w = 360, h = 120, n = hist.counts.length, max = Math.max(1, ...hist.counts);
    const s = svg("svg", { width: w, height: h + 20, class: "hist", role: "img", "aria-label": label });
    hist.counts.forEach((c, i) => {
      const bh = (c / max) * h;
      const rect = svg("rect", { x: (i * w) / n + 1, y: h - bh, width: w / n - 2, height: bh, fill: "#4a7fd4" });
      const title = svg("title", {});
      const lo = hist.lo + ((hist.hi - hist.lo) * i) / n, hi = hist.lo + ((hist.hi - hist.lo) * (i + 1)) / n;
      title.textContent = `${label} ${lo.toFixed(2)}–${hi.toFixed(2)}: ${c}`;
      rect.appendChild(title);
      s.appendChild(rect);
    });
    for (const [x, v] of [[0, hist.lo], [w - 30, hist.hi]]) {
      const t = svg("text", { x, y: h + 15, class: "axis" });
      t.textContent = String(+v.toFixed(2));
      s.appendChild(t);
    }
    return el("figure", {}, s, el("figcaption", {}, label));
  }

  // ---------------------------------------------------------------- overview
  function metricsTable(title, groups) {
    const names = Object.keys(groups || {}).sort();
    if (!names.length) return null;
    const keys = [...new Set(names.flatMap((g) => Object.keys(groups[g])))].sort();
    // one column per metrics group, one row per metric (a group shows only its own metrics)
    return el("section", { class: "metrics" }, el("h3", {}, title),
      table(["metric", ...names], keys.map((k) => [k, ...names.map((g) => (k in groups[g] ? fmt(groups[g][k], 4) : ""))]),
        { class: "metrics-table" }));
  }
  function overview() {
    const o = window.GETOK_OVERVIEW;
    const cards = [["images", o.images], ["targets", o.targets], ["mean token IoU", fmt(o.mean_token_iou)],
      ["low quality", `${o.low_quality} (${(100 * o.low_quality_share).toFixed(1)}%)`], ["quarantined", o.quarantined]];
    const parts = [
      el("section", { class: "cards" }, cards.map(([k, v]) => el("div", { class: "card" }, el("b", {}, String(v)), el("span", {}, k)))),
      el("section", {}, el("h2", {}, "Counts"),
        table(["source", "split", "images"], o.images_by.map((r) => [String(r.source), String(r.split), r.images]), { id: "counts-images" }),
        table(["by", "name", "targets / rows"], Object.entries(o.counts).flatMap(([by, c]) =>
          Object.entries(c).map(([name, n]) => [by === "task" ? "task (export rows)" : by, name, n])), { id: "counts-targets" })),
      el("section", { class: "hists" }, el("h2", {}, "Distributions"),
        histogram(o.token_iou_hist, "token IoU"), histogram(o.tokens_hist, "tokens per mask")),
      el("section", {}, el("h2", {}, `Quarantine (${o.quarantined})`),
        o.quarantine.length ? table(["reason", "count", "examples"], o.quarantine.map((q) => [q.reason, q.count,
          el("ul", {}, q.examples.map((e) => el("li", {}, `${e.source} ${e.split} image ${e.image_id}` +
            (e.ann_id !== null && e.ann_id !== undefined ? ` ann ${JSON.stringify(e.ann_id)}` : "") + `: ${e.reason}`)))]),
          { id: "quarantine" }) : el("p", {}, "Nothing was quarantined.")),
    ];
    if (o.score) {
      const s = o.score;
      parts.push(el("section", { id: "score" }, el("h2", {}, "Scores"),
        el("p", {}, `predictions ${s.pred}, decoder ${s.decoder}; conventions: ` +
          Object.entries(s.conventions).map(([k, v]) => `${k} = ${v}`).join(", ") +
          `; joined ${s.join.matched} of ${s.join.predictions} predictions (unknown ${s.join.unknown}, bad rows ${s.join.bad_rows})`),
        metricsTable("all", s.metrics.all),
        Object.entries(s.metrics.by_split || {}).map(([k, g]) => metricsTable("split " + k, g)),
        Object.entries(s.metrics.by_source || {}).map(([k, g]) => metricsTable("source " + k, g))));
    }
    parts.push(el("section", {}, el("h2", {}, "Config"), el("pre", { id: "config" }, JSON.stringify(o.config, null, 2))));
    return parts;
  }

  // ---------------------------------------------------------------- targets table
  function targetRows() {
    const T = window.GETOK_TARGETS;
    const col = Object.fromEntries(T.columns.map((c, i) => [c, i]));
    return { T, col };
  }
  function filtered(params) {
    const { T, col } = targetRows();
    const q = (params.q || "").toLowerCase();
    const min = params.min === undefined || params.min === "" ? -Infinity : +params.min;
    const max = params.max === undefined || params.max === "" ? Infinity : +params.max;
    let idx = T.rows.map((_, i) => i).filter((i) => {
      const r = T.rows[i];
      if (params.source && String(r[col.source]) !== params.source) return false;
      if (params.split && String(r[col.split]) !== params.split) return false;
      if (params.low === "1" && !r[col.low_quality]) return false;
      const iou = r[col.iou] === null ? NaN : r[col.iou];
      if (!(iou >= min && iou <= max) && (min !== -Infinity || max !== Infinity)) return false;
      if (q && ![r[col.key], r[col.target], r[col.category], r[col.sentence]].some((v) => String(v).toLowerCase().includes(q))) return false;
      return true;
    });
    const sort = params.sort in col ? params.sort : null;
    if (sort) {
      const dir = params.desc === "1" ? -1 : 1;
      idx.sort((a, b) => {
        const x = T.rows[a][col[sort]], y = T.rows[b][col[sort]];
        if (x === y) return a - b;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * dir;
      });
    }
    return idx;
  }
  function pager(route, params, total) {
    const size = params.size === "all" ? Math.max(total, 1) : +(params.size || PAGE);
    const pages = Math.max(1, Math.ceil(total / size));
    const page = Math.min(pages, Math.max(1, +(params.page || 1)));
    const nav = el("div", { class: "pager" },
      el("button", { id: "prev-page", disabled: page <= 1, onclick: () => go(route, { ...params, page: page - 1 }) }, "‹ prev"),
      el("span", { id: "page-info" }, ` page ${page} of ${pages} `),
      el("button", { id: "next-page", disabled: page >= pages, onclick: () => go(route, { ...params, page: page + 1 }) }, "next ›"));
    return { start: (page - 1) * size, end: page * size, nav };
  }
  function targets(params) {
    const { T, col } = targetRows();
    const idx = filtered(params);
    const values = (c) => [...new Set(T.rows.map((r) => String(r[col[c]])))].sort();
    const set = (k) => (e) => go("targets", { ...params, [k]: e.target.value, page: 1 });
    const controls = el("form", { class: "filters", id: "filters", onsubmit: (e) => e.preventDefault() },
      el("label", {}, "search ", el("input", { id: "q", type: "search", value: params.q || "", placeholder: "key, id, category, sentence", onchange: set("q") })),
      el("label", {}, "source ", el("select", { id: "source", onchange: set("source") }, el("option", { value: "" }, "all"),
        values("source").map((v) => el("option", { value: v, selected: v === params.source }, v)))),
      el("label", {}, "split ", el("select", { id: "split", onchange: set("split") }, el("option", { value: "" }, "all"),
        values("split").map((v) => el("option", { value: v, selected: v === params.split }, v)))),
      el("label", {}, "token IoU ≥ ", el("input", { id: "min", type: "number", step: "0.05", min: 0, max: 1, value: params.min || "", onchange: set("min") })),
      el("label", {}, "≤ ", el("input", { id: "max", type: "number", step: "0.05", min: 0, max: 1, value: params.max || "", onchange: set("max") })),
      el("label", {}, el("input", { id: "low", type: "checkbox", checked: params.low === "1", onchange: (e) => go("targets", { ...params, low: e.target.checked ? "1" : "", page: 1 }) }), " low quality only"));
    const { start, end, nav } = pager("targets", params, idx.length);
    const headers = ["", "key", "target", "source", "split", "category", "sentence", "tokens", "iou", "low_quality"]
      .concat(col.score !== undefined ? ["score", "failures"] : []);
    const sortable = (h) => h && h in col ? el("th", { class: "sortable", "data-col": h, onclick: () =>
      go("targets", { ...params, sort: h, desc: params.sort === h && params.desc !== "1" ? "1" : "" }) },
      h === "iou" ? "token IoU" : h, params.sort === h ? (params.desc === "1" ? " ▼" : " ▲") : "") : el("th", {}, h);
    const body = idx.slice(start, end).map((i) => {
      const r = T.rows[i];
      const cells = [el("img", { class: "thumb", loading: "lazy", src: `thumbs/${r[col.key]}.jpg`, alt: "" }),
        el("a", { href: `#target/${i}` }, r[col.key]), r[col.target], String(r[col.source]), String(r[col.split]),
        r[col.category], r[col.sentence], fmt(r[col.tokens], 0), fmt(r[col.iou]), r[col.low_quality] ? "yes" : ""];
      if (col.score !== undefined) cells.push(fmt(r[col.score]), String(r[col.failures]));
      return el("tr", { class: "target-row", "data-index": i, "data-key": r[col.key], "data-target": r[col.target] },
        cells.map((c, k) => el("td", { class: headers[k] || "thumbcell" }, c)));
    });
    return [controls, el("p", { id: "shown" }, `${idx.length} of ${T.rows.length} targets`), nav,
      el("table", { id: "targets-table" }, el("thead", {}, el("tr", {}, headers.map(sortable))), el("tbody", {}, body)), nav.cloneNode(true)];
  }

  // ---------------------------------------------------------------- one target
  function loadSample(key) {
    return new Promise((resolve, reject) => {
      if (samples[key]) return resolve(samples[key]);
      (waiting[key] = waiting[key] || []).push(resolve);
      if (waiting[key].length > 1) return;
      const s = document.createElement("script");
      s.src = `data/samples/${key}.js`;
      s.onerror = () => reject(new Error("cannot load data/samples/" + key + ".js"));
      document.body.appendChild(s);
    });
  }
  function sampleLoaded(key, data) {
    samples[key] = data;
    for (const cb of waiting[key] || []) cb(data);
    delete waiting[key];
  }
  function drawing(S, t, ti, predictions) {
    const W = S.width, H = S.height, n = S.grid.n, m = S.grid.m;
    const cell = Math.min(W, H) / n;
    const stage = el("div", { class: "stage", id: "stage", style: `aspect-ratio: ${W} / ${H}` },
      el("img", { src: S.image, alt: "image", "data-layer": "image" }),
      el("img", { class: "overlay", src: `masks/${S.key}/${ti}-gt.png`, alt: "GT mask", "data-layer": "gt" }),
      el("img", { class: "overlay", src: `masks/${S.key}/${ti}-union.png`, alt: "decoded union", "data-layer": "union" }));
    predictions.forEach((p, k) => p.mask && stage.appendChild(el("img", { class: "overlay", src: `masks/${S.key}/${p.mask}`, alt: "predicted mask", "data-layer": "pred" })));
    const vec = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "vectors" });
    const layer = (name) => { const g = svg("g", { "data-layer": name }); vec.appendChild(g); return g; };
    const anchor = (i, j) => [(i + 0.5) * W / n, (j + 0.5) * H / n];
    const regions = layer("regions");
    [...t.regions].forEach((r, k) => { const [x, y] = anchor(k % n, Math.floor(k / n));
      regions.appendChild(svg("circle", { cx: x, cy: y, r: cell / 7, fill: REGION_COLOURS[r] || "#000", class: "region-" + r })); });
    const arrows = layer("offsets");
    [...t.offsets].forEach((d, k) => {
      const [x, y] = anchor(k % n, Math.floor(k / n));
      if (d === "9") { arrows.appendChild(svg("path", { d: `M${x - cell / 6},${y - cell / 6}L${x + cell / 6},${y + cell / 6}M${x + cell / 6},${y - cell / 6}L${x - cell / 6},${y + cell / 6}`, class: "delete" })); return; }
      const [du, dv] = STEPS[+d];
      if (!du && !dv) return;
      arrows.appendChild(svg("line", { x1: x, y1: y, x2: x + du * W / m, y2: y - dv * H / m, class: "arrow", "marker-end": "url(#head)" }));
    });
    const defs = svg("defs", {});
    const marker = svg("marker", { id: "head", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 4, markerHeight: 4, orient: "auto" });
    marker.appendChild(svg("path", { d: "M0,0L10,5L0,10z", fill: "#fff" }));
    defs.appendChild(marker);
    vec.appendChild(defs);
    const anchors = layer("anchors");
    t.anchor_xy.forEach(([x, y], k) => {
      anchors.appendChild(svg("circle", { cx: x, cy: y, r: cell / 4, class: "anchor" }));
      const label = svg("text", { x, y: y + cell / 10, class: "order", "font-size": cell / 3 });
      label.textContent = String(k + 1);  // greedy selection order
      anchors.appendChild(label);
    });
    const answers = layer("answers");
    if (t.box) answers.appendChild(svg("rect", { x: t.box[0], y: t.box[1], width: t.box[2] - t.box[0], height: t.box[3] - t.box[1], class: "gt-box" }));
    if (t.point_xy) answers.appendChild(svg("circle", { cx: t.point_xy[0], cy: t.point_xy[1], r: cell / 3, class: "gt-point" }));
    const pred = layer("pred");
    for (const p of predictions) {
      for (const b of p.box ? [p.box] : p.boxes || []) if (b) pred.appendChild(svg("rect", { x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1], class: "pred-box" }));
      for (const q of p.point ? [p.point] : p.points || []) if (q) pred.appendChild(svg("circle", { cx: q[0], cy: q[1], r: cell / 3, class: "pred-point" }));
    }
    stage.appendChild(vec);
    const layers = [["gt", "GT mask"], ["union", "decoded union"], ["anchors", "anchors (greedy order)"], ["regions", "regions I/R/H/F"],
      ["offsets", "offset arrows"], ["answers", "box and point answers"]].concat(predictions.length ? [["pred", "prediction"]] : []);
    const toggles = el("fieldset", { class: "layers", id: "layers" }, el("legend", {}, "overlays"), layers.map(([name, label]) =>
      el("label", {}, el("input", { type: "checkbox", checked: !["regions", "offsets"].includes(name), "data-toggle": name,
        onchange: (e) => stage.querySelectorAll(`[data-layer="${name}"]`).forEach((x) => { x.style.display = e.target.checked ? "" : "none"; }) }), " " + label)));
    for (const name of ["regions", "offsets"]) stage.querySelectorAll(`[data-layer="${name}"]`).forEach((x) => { x.style.display = "none"; });
    return [toggles, stage];
  }
  async function target(i) {
    const { T, col } = targetRows();
    const row = T.rows[i];
    if (!row) return [el("p", {}, `no target #${i}`)];
    const [sampleIndex, ti] = row[col.index];
    let S;
    try { S = await loadSample(row[col.key]); } catch (e) { problem(e.message); return [el("p", {}, e.message)]; }
    const t = S.targets[ti];
    const predictions = t.predictions || [];
    const tokens = Object.entries(t.tokens).filter(([, v]) => v);
    return [
      el("p", { class: "crumbs" }, el("a", { href: "#targets" }, "‹ all targets"), " · ",
        i > 0 ? el("a", { href: `#target/${i - 1}`, id: "prev-target" }, "previous") : "", " · ",
        i + 1 < T.rows.length ? el("a", { href: `#target/${i + 1}`, id: "next-target" }, "next") : ""),
      el("h2", { id: "target-title" }, `${S.key} / ${t.target_id}`),
      el("p", {}, `source ${S.source}, split ${S.split}, ${S.width}×${S.height}, grid ${S.grid.n}×${S.grid.n}; ` +
        `token IoU ${fmt(t.token_iou)}, ${t.token_count} tokens` + (t.low_quality ? ", low quality" : "") + (t.no_target ? ", no target" : "")),
      el("ul", { class: "sentences" }, t.sentences.map((s) => el("li", {}, s))),
      el("div", { class: "view" }, el("div", {}, ...drawing(S, t, ti, predictions)),
        el("div", { class: "side" }, el("h3", {}, "Tokens"),
          table(["task", "answer"], tokens.map(([k, v]) => [k, el("code", {}, v)]), { id: "tokens" }),
          predictions.length ? el("h3", {}, "Predictions") : null,
          predictions.length ? table(["id", "answer", "score", "failure"], predictions.map((p) =>
            [p.id, el("code", {}, p.text || "(none)"), fmt(p.score), p.failure || "ok"]), { id: "target-predictions" }) : null,
          el("p", { class: "legend" }, "GT green · decoded union magenta · prediction blue · anchors numbered in greedy order · regions: ",
            Object.entries(REGION_COLOURS).map(([r, c]) => el("span", { style: `color:${c}` }, ` ● ${r}`))))),
    ];
  }

  // ---------------------------------------------------------------- predictions
  function predictions(params) {
    const P = window.GETOK_PREDICTIONS;
    const col = Object.fromEntries(P.columns.map((c, i) => [c, i]));
    const q = (params.q || "").toLowerCase();
    const idx = P.rows.map((_, i) => i).filter((i) => {
      const r = P.rows[i];
      if (params.failed === "1" && !r[col.failure]) return false;
      if (params.task && r[col.task] !== params.task) return false;
      return !q || r[col.id].toLowerCase().includes(q) || String(r[col.failure]).toLowerCase().includes(q);
    });
    const { start, end, nav } = pager("predictions", params, idx.length);
    const { T, col: tc } = targetRows();
    const where = new Map(T.rows.map((r, i) => [r[tc.key] + "\u0000" + r[tc.target], i]));
    const tasks = [...new Set(P.rows.map((r) => r[col.task]))].sort();
    return [
      el("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
        el("label", {}, "search ", el("input", { id: "pq", type: "search", value: params.q || "", onchange: (e) => go("predictions", { ...params, q: e.target.value, page: 1 }) })),
        el("label", {}, "task ", el("select", { id: "ptask", onchange: (e) => go("predictions", { ...params, task: e.target.value, page: 1 }) },
          el("option", { value: "" }, "all"), tasks.map((t) => el("option", { value: t, selected: t === params.task }, t)))),
        el("label", {}, el("input", { id: "failed", type: "checkbox", checked: params.failed === "1", onchange: (e) => go("predictions", { ...params, failed: e.target.checked ? "1" : "", page: 1 }) }), " failures only")),
      el("p", { id: "shown" }, `${idx.length} of ${P.rows.length} scored rows`), nav,
      el("table", { id: "predictions-table" }, el("thead", {}, el("tr", {}, ["id", "task", "stage", "score", "failure"].map((h) => el("th", {}, h)))),
        el("tbody", {}, idx.slice(start, end).map((i) => {
          const r = P.rows[i];
          const ti = where.get(r[col.key] + "\u0000" + r[col.target]);
          return el("tr", { class: "prediction-row", "data-id": r[col.id] },
            el("td", { class: "id" }, ti === undefined ? r[col.id] : el("a", { href: `#target/${ti}` }, r[col.id])),
            el("td", {}, r[col.task]), el("td", {}, r[col.stage]), el("td", { class: "score" }, fmt(r[col.score])),
            el("td", { class: "failure" }, r[col.failure] || "ok"));
        })))];
  }

  // ---------------------------------------------------------------- routing
  async function render() {
    const app = document.getElementById("app");
    const { path, params } = parseHash();
    let view = path;
    let parts;
    try {
      if (path.startsWith("target/")) { view = "target"; parts = await target(+path.slice(7)); }
      else if (path === "targets") parts = targets(params);
      else if (path === "predictions" && window.GETOK_PREDICTIONS) parts = predictions(params);
      else { view = "overview"; parts = overview(); }
    } catch (e) {
      problem("render error: " + e.message);
      parts = [el("p", {}, "This view failed: " + e.message)];
    }
    app.replaceChildren(...parts.flat().filter(Boolean));
    document.body.dataset.view = view;
    document.body.dataset.ready = "1";
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + view);
  }
  function start() {
    if (!window.GETOK_OVERVIEW || !window.GETOK_TARGETS) {
      problem("data/overview.js or data/targets.js did not load");
      return;
    }
    document.getElementById("build-name").textContent = window.GETOK_OVERVIEW.build;
    if (window.GETOK_PREDICTIONS) document.getElementById("nav-predictions").hidden = false;
    window.addEventListener("hashchange", render);
    render();
  }
  window.GETOK = { start, sampleLoaded, problems };
})();
