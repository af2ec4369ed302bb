"use strict";
// Draws the report from the JSON above: one page of cards at a time, so a batch of thousands opens
// as fast as one of ten. Thumbnails are plain lazy images; the 3D viewer's script is loaded and a
// <model-viewer> made only when a person asks for one, and only a few stay alive at once.
(() => {
  const REPORT = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE_SIZE = 48;
  const LIVE_VIEWERS = 4;
  const fromDisk = location.protocol === "file:";
  const state = { filter: "all", query: "", page: 0 };
  const live = [];
  let viewerScript = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const seconds = (s) => (s === null || s === undefined ? "–" : s < 60 ? `${s.toFixed(1)} s`
    : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
  const size = (b) => (b === null || b === undefined ? "–"
    : b < 1048576 ? `${Math.ceil(b / 1024)} KB` : `${(b / 1048576).toFixed(1)} MB`);
  const count = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en"));
  const join = (list) => (list && list.length ? list.join(", ") : "–");

  function drawSummary() {
    const s = REPORT.summary;
    const resolutions = Object.entries(s.resolutions).map(([r, n]) => `${r} (${n})`).join(", ");
    const facts = [
      ["inputs", count(s.counts.inputs)], ["ok", count(s.counts.ok)], ["failed", count(s.counts.failed)],
      ["GPU time, total", seconds(s.gpu_seconds)], ["GPU time per image", seconds(s.per_image_seconds)],
      ["resolution", resolutions || "–"], ["server", join(s.servers)], ["GPU", s.device || "–"],
      ...Object.entries(s.versions).map(([name, versions]) => [name, join(versions)]),
    ];
    if (REPORT.thumbnails_note) facts.push(["thumbnails", REPORT.thumbnails_note]);
    document.getElementById("summary").replaceChildren(
      ...facts.map(([label, value]) => el("div", { "data-fact": label }, el("b", { text: label }), value)));
  }

  function selected() {
    const query = state.query.toLowerCase();
    return REPORT.entries.filter((e) => (state.filter === "all" || e.status === state.filter)
      && (!query || e.name.toLowerCase().includes(query)));
  }

  function loadViewerScript() {
    viewerScript = viewerScript || new Promise((resolve, reject) => {
      const script = el("script", { src: REPORT.viewer_script });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error(`cannot load ${REPORT.viewer_script}`)));
      document.head.append(script);
    });
    return viewerScript;
  }

  function closeViewer(card) {
    const index = live.indexOf(card);
    if (index >= 0) live.splice(index, 1);
    const viewer = card.querySelector("model-viewer");
    if (viewer?.src.startsWith("blob:")) URL.revokeObjectURL(viewer.src);
    viewer?.remove();
    card.querySelector(".stage .still").hidden = false;
    card.querySelector("button.view3d").textContent = "3D";
    card.dataset.viewer = "closed";
  }

  const hasWebGL = () => Boolean(document.createElement("canvas").getContext("webgl2")
    || document.createElement("canvas").getContext("webgl"));

  // From file:// the browser refuses the viewer's request for the GLB, but a file the person
  // picks is theirs to read: the page shows it from memory (a blob: URL), no server needed.
  function pickGLB(card, entry) {
    const input = el("input", { type: "file", accept: ".glb,model/gltf-binary", class: "pick" });
    input.addEventListener("change", () => {
      if (input.files.length) openViewer(card, { ...entry, glb: URL.createObjectURL(input.files[0]) }, true);
    });
    return el("div", { class: "still placeholder pick-glb" }, el("div", {},
      "A page opened from the disk may not load the GLB itself: choose ",
      el("code", { text: entry.glb }), " from the report's folder to turn it here ", input,
      el("br"), "or serve the report: ", el("code", { text: `trellis-box report ${REPORT.dir} --serve` })));
  }

  async function openViewer(card, entry, picked = false) {
    const stage = card.querySelector(".stage");
    const unavailable = !hasWebGL()
      ? "This browser has WebGL turned off or lacks it: the 3D view cannot draw here."
      : REPORT.viewer_missing;
    if (unavailable) {
      stage.querySelector(".still").replaceWith(el("div", { class: "still placeholder" }, unavailable));
      return;
    }
    if (fromDisk && !picked) {
      stage.querySelector(".still").replaceWith(pickGLB(card, entry));
      return;
    }
    while (live.length >= LIVE_VIEWERS) closeViewer(live[0]);
    live.push(card);
    card.dataset.viewer = "loading";
    card.querySelector("button.view3d").textContent = "2D";
    await loadViewerScript();
    if (card.dataset.viewer !== "loading") return;  // closed meanwhile
    const viewer = el("model-viewer", {
      src: entry.glb, alt: `3D model of ${entry.name}`, "camera-controls": true,
      "touch-action": "pan-y", "shadow-intensity": "1", "interaction-prompt": "none",
      "camera-orbit": "35deg 65deg auto",  // the thumbnail's three-quarter view
      poster: entry.thumbnail,
    });
    viewer.addEventListener("load", () => { card.dataset.viewer = "loaded"; });
    viewer.addEventListener("error", (event) => {
      card.dataset.viewer = "error";
      console.warn(`3D view of ${entry.name}:`, event.detail && event.detail.sourceError);
    });
    stage.querySelector(".still").hidden = true;
    stage.prepend(viewer);
  }

  function picture(src, caption, missing) {
    return el("figure", {},
      src ? el("img", { src, alt: `${caption}`, loading: "lazy", decoding: "async" })
        : el("div", { class: "placeholder", text: missing }),
      el("figcaption", { text: caption }));
  }

  function card(entry) {
    const node = el("article", { class: "card", "data-name": entry.name, "data-status": entry.status });
    const still = entry.thumbnail
      ? el("img", { class: "still thumbnail", src: entry.thumbnail, alt: `thumbnail of ${entry.name}`,
          loading: "lazy", decoding: "async" })
      : el("div", { class: "still placeholder",
          text: entry.error ? `failed: ${entry.error.message || entry.error.error}`
            : !entry.glb ? "no GLB in this folder"
            : `no thumbnail yet: pip install 'trellis-box[thumbnails]', then trellis-box report ${REPORT.dir}` });
    const actions = el("div", { class: "actions" });
    if (entry.glb) {
      actions.append(
        el("button", { type: "button", class: "view3d", title: "turn the model in 3D", text: "3D",
          onclick: () => (node.dataset.viewer === "loading" || node.dataset.viewer === "loaded"
            ? closeViewer(node) : openViewer(node, entry)) }),
        el("a", { href: entry.glb, download: true, text: "GLB" }));
    }
    const textures = entry.textures.length
      ? entry.textures.map(([w, h]) => `${w}×${h}`).join(", ") : "–";
    const facts = el("dl", { class: "facts" });
    const fact = (label, value) => facts.append(el("dt", { text: label }), el("dd", { text: value }));
    fact("resolution", entry.resolution || "–");
    if (entry.preset) fact("preset", entry.preset);
    fact("GPU time", seconds(entry.seconds));
    if (entry.status === "ok") {
      fact("GLB", size(entry.bytes));
      fact("faces", count(entry.faces));
      fact("vertices", count(entry.vertices));
      fact("textures", textures);
    }
    if (entry.input_path) fact("input", entry.input_path);
    const body = el("div", { class: "body" },
      el("div", { class: "title" }, el("h2", {}, el("a", { href: `#${encodeURIComponent(entry.name)}`,
        title: "link to this model", text: entry.name })),
        el("span", { class: "badge", text: entry.status })),
      facts);
    if (entry.error) {
      const e = entry.error;
      body.append(el("div", { class: "error", role: "alert" },
        el("div", { class: "message", text: e.message || e.error || "failed" }),
        e.detail ? el("div", { class: "detail", text: e.detail }) : null,
        e.fix ? el("div", { class: "fix", text: `fix: ${e.fix}` }) : null,
        e.note ? el("div", { class: "note-text", text: `note: ${e.note}` }) : null));
    }
    if (entry.nodes.length) {
      body.append(el("details", {}, el("summary", { text: "seconds per node" }),
        el("table", {}, ...entry.nodes.map(([name, s]) =>
          el("tr", {}, el("td", { text: name }), el("td", { text: s === null ? "–" : s.toFixed(2) }))))));
    }
    node.append(
      el("div", { class: "stage" }, still, actions),
      el("div", { class: "pictures" },
        picture(entry.input, "input", "input not available here"),
        picture(entry.cutout, "cutout", "no cutout")),
      body);
    return node;
  }

  function draw() {
    const entries = selected();
    const pages = Math.max(1, Math.ceil(entries.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    for (const open of [...live]) closeViewer(open);
    const shown = entries.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    document.getElementById("cards").replaceChildren(...(shown.length ? shown.map(card)
      : [el("p", { class: "empty", text: "nothing matches" })]));
    document.getElementById("page-label").textContent =
      `page ${state.page + 1} of ${pages} (${entries.length.toLocaleString("en")} inputs)`;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
  }

  document.querySelectorAll("[data-filter]").forEach((button) => button.addEventListener("click", () => {
    state.filter = button.dataset.filter;
    state.page = 0;
    document.querySelectorAll("[data-filter]").forEach((b) => b.setAttribute("aria-pressed", b === button));
    draw();
  }));
  document.getElementById("search").addEventListener("input", (event) => {
    state.query = event.target.value;
    state.page = 0;
    draw();
  });
  document.getElementById("prev").addEventListener("click", () => { state.page -= 1; draw(); scrollTo(0, 0); });
  document.getElementById("next").addEventListener("click", () => { state.page += 1; draw(); scrollTo(0, 0); });
  // report.html#NAME: that input's page, scrolled to, its 3D view open (a link to one model).
  function openFromHash() {
    const name = decodeURIComponent(location.hash.slice(1));
    const index = REPORT.entries.findIndex((e) => e.name === name);
    if (index < 0) return;
    Object.assign(state, { filter: "all", query: "", page: Math.floor(index / PAGE_SIZE) });
    draw();
    const node = document.querySelector(`article[data-name="${CSS.escape(name)}"]`);
    node.scrollIntoView();
    if (REPORT.entries[index].glb) openViewer(node, REPORT.entries[index]);
  }

  document.getElementById("file-note").hidden = !fromDisk;
  if (REPORT.note) Object.assign(document.getElementById("batch-note"), { textContent: REPORT.note, hidden: false });
  addEventListener("hashchange", openFromHash);
  drawSummary();
  draw();
  openFromHash();
})();
