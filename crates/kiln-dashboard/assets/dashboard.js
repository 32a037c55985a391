// Kiln's dashboard: the live parts. Every page works without this script; it only keeps
// parts of a page current (dynos, builds, charts), streams a log tail and a build's output,
// reveals config vars in place, and filters the apps list as one types. Nothing here is
// inserted as HTML except fragments the server rendered for this page (same origin, same
// session); log lines and build output are inserted as text.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // A stream of text (a build's output) appended as it arrives: <pre data-stream="/url">.
  async function stream(pre) {
    pre.dataset.bound = "true";
    try {
      const r = await fetch(pre.dataset.stream, { credentials: "same-origin" });
      if (!r.ok || !r.body) return;
      pre.textContent = "";
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
        pre.append(dec.decode(value, { stream: true }));
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.finished = "true";
    } catch (e) { /* the page still shows what was there */ }
  }
  function wire(root) {
    root.querySelectorAll("pre[data-stream]:not([data-bound])").forEach(stream);
  }

  // Fragments refreshed in place: <div data-refresh="/url" data-every="5000">. A stream
  // already running inside keeps its node, so a refresh does not restart it.
  function swap(el, html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    t.content.querySelectorAll("pre[data-stream]").forEach((fresh) => {
      const live = el.querySelector('pre[data-stream="' + CSS.escape(fresh.dataset.stream) + '"]');
      if (live) fresh.replaceWith(live);
    });
    el.replaceChildren(t.content);
    wire(el);
  }
  // Refreshes stop while the tab is hidden or nobody has touched the page for five minutes:
  // they count against the user's hourly request budget, like any API call.
  let active = Date.now();
  for (const ev of ["pointermove", "keydown", "scroll", "focus"]) {
    window.addEventListener(ev, () => { active = Date.now(); }, { passive: true });
  }
  function refresher(el) {
    const every = Math.max(1000, parseInt(el.dataset.every || "5000", 10));
    let last = null;
    async function tick() {
      if (document.hidden || Date.now() - active > 5 * 60 * 1000) return;
      try {
        const r = await fetch(el.dataset.refresh, { credentials: "same-origin" });
        if (!r.ok || r.redirected) return;
        const html = await r.text();
        if (html !== last) { last = html; swap(el, html); }
      } catch (e) { /* the next tick tries again */ }
    }
    setInterval(tick, every);
  }
  wire(document);
  document.querySelectorAll("[data-refresh]").forEach(refresher);

  // The live log tail: ask the dashboard for a log session (with the page's filters), then
  // read its event stream like the CLI does.
  const log = document.getElementById("log");
  if (log) {
    const form = document.getElementById("log-filter");
    const status = document.getElementById("log-status");
    let source = null;
    const MAX = 3000;
    function add(text) {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
      log.append(text + "\n");
      while (log.childNodes.length > MAX) log.removeChild(log.firstChild);
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    async function start() {
      if (source) source.close();
      const body = new URLSearchParams(new FormData(form));
      try {
        const r = await fetch(log.dataset.session, {
          method: "POST", credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
          body,
        });
        if (!r.ok) { status.textContent = "Could not start the tail (" + r.status + ")."; return; }
        const { url } = await r.json();
        log.textContent = "";
        source = new EventSource(url);
        source.onmessage = (ev) => add(ev.data);
        source.onopen = () => { status.textContent = "Live"; log.dataset.live = "true"; };
        source.onerror = () => { status.textContent = "Reconnecting…"; };
      } catch (e) { status.textContent = "Could not start the tail."; }
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
    form.querySelectorAll("select, input").forEach((i) => i.addEventListener("change", start));
    start();
  }

  // Config vars revealed in place.
  document.querySelectorAll("a[data-reveal]").forEach((a) => {
    a.addEventListener("click", async (ev) => {
      ev.preventDefault();
      const target = document.getElementById(a.dataset.reveal);
      const r = await fetch(a.href.replace("/settings?reveal=1", "/config-vars"), { credentials: "same-origin" });
      if (r.ok && !r.redirected && target) { target.innerHTML = await r.text(); a.hidden = true; }
    });
  });

  // The apps list filtered as one types (the form still searches on the server).
  const search = document.getElementById("app-search");
  if (search) {
    search.addEventListener("input", () => {
      const q = search.value.trim().toLowerCase();
      document.querySelectorAll("tr[data-app]").forEach((tr) => {
        tr.hidden = q !== "" && !tr.dataset.app.includes(q);
      });
    });
  }
})();
