/// The dashboard's stylesheet and script, compiled in: a `sluice` binary
/// serves its dashboard with nothing beside it on disk, and there is no
/// build step (no JavaScript packages; plain CSS and a few lines of script).
enum Assets {
    /// Every page reads without the script; it adds live updates, confirmation
    /// dialogs and relative times.
    static let script = #"""
    "use strict";
    (function () {
      // Forms that change something ask first; the server asks again (a page
      // of its own) when the script is off.
      document.addEventListener("submit", function (event) {
        var form = event.target;
        var question = form.getAttribute("data-confirm");
        if (!question) return;
        if (!window.confirm(question)) { event.preventDefault(); return; }
        var confirmed = form.querySelector("input[name=confirmed]");
        if (confirmed) confirmed.value = "1";
      });

      // A node of the run graph (or any link to a step) opens that step's details.
      document.addEventListener("click", function (event) {
        var link = event.target.closest ? event.target.closest("a[href^='#step-']") : null;
        if (!link) return;
        var details = document.getElementById(link.getAttribute("href").slice(1));
        if (details) details.open = true;
      });

      // Live regions: the page is fetched again and its <main> swapped in,
      // keeping open <details> open, while nobody is typing in a form.
      var main = document.querySelector("main[data-live]");
      if (!main) return;
      var seconds = Number(main.getAttribute("data-live")) || 5;
      var busy = false;
      var timer = null;
      function typing() {
        var a = document.activeElement;
        return a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
      }
      function refresh() {
        if (busy || document.hidden || typing()) return;
        busy = true;
        fetch(window.location.href, { headers: { "X-Sluice-Live": "1" }, credentials: "same-origin" })
          .then(function (r) {
            // Signed out meanwhile (the session ended): to the sign-in page.
            if (r.redirected && r.url.indexOf("/ui/login") >= 0) { window.location.href = r.url; return null; }
            return r.ok ? r.text() : null;
          })
          .then(function (text) {
            if (text === null) return;
            var next = new DOMParser().parseFromString(text, "text/html").querySelector("main");
            if (!next) return;
            // A run that ended stops updating.
            if (!next.hasAttribute("data-live") && timer !== null) { window.clearInterval(timer); timer = null; }
            var open = [];
            main.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
            main.innerHTML = next.innerHTML;
            open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
            var stamp = document.getElementById("live-stamp");
            if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
          })
          .catch(function () {})
          .then(function () { busy = false; });
      }
      timer = window.setInterval(refresh, seconds * 1000);
    })();
    """#

    static let stylesheet = #"""
    :root {
      --fg: #1d2330; --muted: #5d6677; --line: #d9dee7; --bg: #f6f7fa; --card: #fff; --accent: #2357c6;
      --ok: #1f8a4c; --bad: #c8342b; --run: #2357c6; --wait: #8a93a3; --warn: #b7791f; --skip: #a0a7b4;
    }
    * { box-sizing: border-box; }
    body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
    a { color: var(--accent); text-decoration: none; }
    a:hover { text-decoration: underline; }
    header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 18px; padding: 10px 18px; background: #182033; color: #fff; }
    header.top a { color: #dfe6f5; }
    header.top a.brand { font-weight: 700; color: #fff; font-size: 16px; }
    header.top nav { display: flex; flex-wrap: wrap; gap: 4px 14px; flex: 1; }
    header.top nav a.current { color: #fff; border-bottom: 2px solid #7ea2ff; }
    header.top form { margin: 0; }
    header.top button { background: transparent; color: #dfe6f5; border: 1px solid #4a5570; }
    main { padding: 16px 18px 40px; max-width: 1280px; margin: 0 auto; }
    h1 .mono { font-size: 17px; }
    h1 { font-size: 20px; margin: 4px 0 12px; display: flex; flex-wrap: wrap; align-items: center; gap: 8px; }
    h2 { font-size: 16px; margin: 22px 0 8px; }
    .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 0 0 14px; overflow-x: auto; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
    th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
    td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
    code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
    pre { background: #f1f3f7; border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow: auto; max-height: 360px; white-space: pre-wrap; word-break: break-word; }
    .muted { color: var(--muted); }
    .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; background: var(--wait); white-space: nowrap; }
    .s-completed, .s-succeeded, .s-compensated { background: var(--ok); }
    .s-failed, .s-compensation_failed, .s-dead { background: var(--bad); }
    .s-running, .s-ready { background: var(--run); }
    .s-paused, .s-compensating, .s-pending { background: var(--warn); }
    .s-cancelled, .s-skipped { background: var(--skip); }
    .counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 0 0 12px; }
    .counts a { display: inline-flex; gap: 6px; align-items: center; padding: 4px 10px; border: 1px solid var(--line); border-radius: 14px; background: var(--card); color: var(--fg); }
    .counts a.current { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent) inset; }
    form.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; }
    form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
    input, select, textarea, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--fg); }
    textarea { width: 100%; min-height: 70px; }
    button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
    button.secondary { background: #fff; color: var(--fg); border-color: var(--line); }
    button.danger { background: var(--bad); border-color: var(--bad); }
    form.inline { display: inline; margin: 0; }
    .actions { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 0 0 12px; }
    .notice { padding: 8px 12px; border-radius: 6px; margin: 0 0 12px; background: #e8f3ec; border: 1px solid #b9dcc6; }
    .notice.error { background: #fbeaea; border-color: #efc0bd; }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; margin: 0; }
    dl.facts dt { color: var(--muted); }
    dl.facts dd { margin: 0; word-break: break-word; }
    details { border-bottom: 1px solid var(--line); padding: 6px 0; }
    details > summary { cursor: pointer; display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
    details > div { padding: 8px 0 4px 18px; }
    .pager { display: flex; gap: 12px; margin-top: 10px; }
    .graph { overflow-x: auto; }
    svg.run-graph { max-width: none; height: auto; }
    svg.run-graph .node rect:not([class]) { fill: #fff; stroke: #8a93a3; stroke-width: 1.5; }
    svg.run-graph .state-succeeded rect:not([class]), svg.run-graph .state-compensated rect:not([class]) { fill: #e3f4ea; stroke: var(--ok); }
    svg.run-graph .state-failed rect:not([class]) { fill: #fbe7e6; stroke: var(--bad); }
    svg.run-graph .state-running rect:not([class]), svg.run-graph .state-ready rect:not([class]) { fill: #e6edfb; stroke: var(--run); }
    svg.run-graph .state-compensating rect:not([class]) { fill: #fbf1e1; stroke: var(--warn); }
    svg.run-graph .state-skipped rect:not([class]) { fill: #f1f2f5; stroke: var(--skip); stroke-dasharray: 4 3; }
    svg.run-graph .state-waiting rect:not([class]) { fill: #fff; stroke: #b5bcc8; }
    svg.run-graph text { font: 13px system-ui, sans-serif; fill: var(--fg); }
    svg.run-graph text.detail { font-size: 11px; fill: var(--muted); }
    svg.run-graph path.edge { fill: none; stroke: #9aa3b2; stroke-width: 1.5; }
    svg.run-graph rect.bar { fill: #e6e9ef; }
    svg.run-graph .bar-succeeded { fill: var(--ok); }
    svg.run-graph .bar-failed { fill: var(--bad); }
    svg.run-graph .bar-running { fill: var(--run); }
    svg.bar { vertical-align: middle; }
    svg.bar .b-track { fill: #e6e9ef; } svg.bar .b-succeeded { fill: var(--ok); } svg.bar .b-failed { fill: var(--bad); } svg.bar .b-running { fill: var(--run); }
    label.grow { flex: 1; min-width: 220px; }
    .spark { vertical-align: middle; }
    .spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; }
    .login { max-width: 380px; margin: 60px auto; }
    .login input { width: 100%; margin: 6px 0 12px; }
    @media (max-width: 700px) {
      main { padding: 10px; }
      th.wide, td.wide { display: none; }
      dl.facts { grid-template-columns: 1fr; }
      dl.facts dt { margin-top: 6px; }
    }
    """#
}
