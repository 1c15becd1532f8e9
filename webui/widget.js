/*!
 * Lectern chat widget. Embed it in any page with one tag:
 *
 *   <script src="https://lectern.example.edu/widget.js" defer></script>
 *
 * Optional attributes on that tag:
 *   data-api="https://..."    API base URL (default: where widget.js was loaded from)
 *   data-title="Ask Fenmoor"  heading of the chat panel
 *   data-subtitle="..."       line under the heading
 *   data-welcome="..."        first message shown in an empty conversation
 *   data-suggestions="A|B|C"  example questions offered as buttons, separated by |
 *   data-accent="#1d4e89"     brand colour (any CSS colour; white text must read on it)
 *
 * No framework, no build step, no external requests other than the Lectern API.
 * Everything lives in a Shadow DOM, so the host page's CSS cannot reach it, and all
 * server data is inserted as text (never as HTML). The conversation (its turns and the
 * server's conversation_id) is kept in sessionStorage, for the tab's session; no cookie.
 */
(function () {
  "use strict";

  // Guard against the tag being included twice (CMS templates do that).
  if (window.__lecternWidget) return;
  window.__lecternWidget = true;

  // `document.currentScript` is set while a classic (also deferred) script runs; the
  // fallback covers loaders that inject the tag in odd ways.
  var script =
    document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-api]') ||
    document.querySelector('script[src*="widget.js"]');
  var attr = function (name, fallback) {
    var v = script && script.getAttribute("data-" + name);
    return v && v.trim() ? v.trim() : fallback;
  };

  // The API base: data-api, else the folder widget.js came from. That is the origin when
  // the app serves /widget.js, and still right when a proxy mounts Lectern under a path.
  var API_BASE = (function () {
    var base = attr("api", null);
    if (!base) base = script && script.src ? new URL("./", script.src).href : location.origin;
    return base.replace(/\/*$/, "/");
  })();

  var TITLE = attr("title", "Ask a question");
  var SUBTITLE = attr("subtitle", "Answers from official documents, with sources");
  var WELCOME = attr(
    "welcome",
    "Hello! Ask me a question. I answer from the official documents and link to every source I use."
  );
  var SUGGESTIONS = attr("suggestions", "")
    .split("|")
    .map(function (s) { return s.trim(); })
    .filter(Boolean)
    .slice(0, 4);
  var ACCENT = (function () {
    var c = attr("accent", "");
    return c && window.CSS && CSS.supports("color", c) ? c : "";
  })();

  /* ------------------------------------------------------------------ styles -- */

  var CSS_TEXT = [
    // The host element sits in the page's DOM, so page rules can still reach it;
    // everything visible is a fixed-position child inside the shadow root instead.
    ":host { all: initial; }",
    ".root { --accent: #1d4e89; --accent-ink: #ffffff; --ink: #1c2430; --muted: #5b6675;",
    "  --line: #dde3ea; --bg: #ffffff; --soft: #f3f5f8;",
    // Light tints of the brand colour (fallbacks for browsers without color-mix()).
    "  --tint: #e7eef8; --tint-line: #c5d3e6; }",
    "@supports (color: color-mix(in srgb, red 50%, white)) { .root {",
    "  --tint: color-mix(in srgb, var(--accent) 11%, white);",
    "  --tint-line: color-mix(in srgb, var(--accent) 30%, white); } }",
    ".root {",
    "  font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;",
    "  font-size: 15px; line-height: 1.45; color: var(--ink); }",
    "*, *::before, *::after { box-sizing: border-box; }",
    ".sr-only { position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px;",
    "  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
    "button, textarea { font: inherit; color: inherit; }",
    // Focus rings: the brand colour on white; white on the brand-coloured header; a
    // white-and-brand double ring on the launcher, which sits on any page background.
    ":focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }",
    ".head :focus-visible { outline-color: var(--accent-ink); outline-offset: -3px; }",
    ".launcher:focus-visible { outline: none;",
    "  box-shadow: 0 0 0 3px #ffffff, 0 0 0 6px var(--accent), 0 6px 20px rgba(16, 24, 40, .28); }",

    /* launcher */
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  width: 60px; height: 60px; border-radius: 50%; border: 0; padding: 0; cursor: pointer;",
    "  background: var(--accent); color: var(--accent-ink); display: grid; place-items: center;",
    "  box-shadow: 0 6px 20px rgba(16, 24, 40, .28); transition: transform .15s ease; }",
    ".launcher:hover { transform: scale(1.05); }",
    ".launcher svg { width: 28px; height: 28px; }",
    ".launcher .i-close { display: none; }",
    ".launcher[aria-expanded='true'] .i-chat { display: none; }",
    ".launcher[aria-expanded='true'] .i-close { display: block; }",

    /* panel */
    ".panel { position: fixed; right: 20px; bottom: 92px; z-index: 2147483000;",
    "  width: 390px; height: min(640px, calc(100vh - 116px)); max-height: calc(100dvh - 116px);",
    "  display: flex; flex-direction: column; overflow: hidden; background: var(--bg);",
    "  border: 1px solid var(--line); border-radius: 16px;",
    "  box-shadow: 0 18px 48px rgba(16, 24, 40, .22); animation: lw-in .16s ease-out; }",
    ".panel[hidden] { display: none; }",
    "@keyframes lw-in { from { opacity: 0; transform: translateY(8px); } }",

    ".head { display: flex; align-items: center; gap: 12px; padding: 14px 12px 14px 18px;",
    "  background: var(--accent); color: var(--accent-ink); }",
    ".head-text { flex: 1; min-width: 0; }",
    ".head h2 { margin: 0; font-size: 16.5px; font-weight: 650; line-height: 1.3; }",
    ".head p { margin: 2px 0 0; font-size: 12.5px; opacity: .88; }",
    ".icon-btn { flex: none; width: 40px; height: 40px; border-radius: 10px; border: 0; padding: 0;",
    "  background: transparent; color: inherit; cursor: pointer; display: grid; place-items: center; }",
    ".icon-btn:hover { background: rgba(255, 255, 255, .16); }",
    ".icon-btn svg { width: 22px; height: 22px; }",
    ".icon-btn:disabled { opacity: .5; cursor: not-allowed; background: transparent; }",

    /* conversation */
    ".log { flex: 1; overflow-y: auto; padding: 18px 16px 8px; background: var(--soft);",
    "  display: flex; flex-direction: column; gap: 14px; overscroll-behavior: contain; }",
    ".msg { display: flex; flex-direction: column; max-width: 100%; }",
    ".msg.user { align-items: flex-end; }",
    ".bubble { padding: 10px 14px; border-radius: 14px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; max-width: 88%; }",
    ".user .bubble { background: var(--accent); color: var(--accent-ink);",
    "  border-bottom-right-radius: 4px; }",
    ".bot .bubble { background: var(--bg); border: 1px solid var(--line);",
    "  border-bottom-left-radius: 4px; max-width: 94%; }",
    ".bot .bubble p { margin: 0; }",
    ".ref { display: inline-block; min-width: 1.5em; padding: 0 .3em; margin: 0 1px;",
    "  border-radius: 6px; background: var(--tint); color: var(--accent); font-size: 11.5px;",
    "  font-weight: 650; line-height: 1.6; text-align: center; text-decoration: none;",
    "  vertical-align: 2px; }",
    ".ref:hover { background: var(--accent); color: var(--accent-ink); }",
    ".label { display: flex; align-items: center; gap: 6px; margin: 0 0 4px; font-size: 13.5px;",
    "  font-weight: 650; }",
    ".label svg { width: 15px; height: 15px; flex: none; }",
    ".msg[data-abstained='true'] .bubble { background: #fff8e6; border-color: #f0d48a; }",
    ".msg[data-abstained='true'] .label { color: #7a5300; }",
    ".msg[data-state='error'] .bubble { background: #fdecec; border-color: #f2b8b5;",
    "  color: #7a1a14; }",
    ".msg[data-state='error'] .detail { margin-top: 4px; font-size: 12.5px; color: #8c3a33; }",
    ".meta { margin: 4px 4px 0; font-size: 11.5px; color: var(--muted); }",

    /* typing indicator, shown until the first token arrives */
    ".dots { display: inline-flex; gap: 4px; padding: 4px 0; }",
    ".dots span { width: 7px; height: 7px; border-radius: 50%; background: #9aa5b4;",
    "  animation: lw-blink 1.2s infinite ease-in-out; }",
    ".dots span:nth-child(2) { animation-delay: .2s; }",
    ".dots span:nth-child(3) { animation-delay: .4s; }",
    "@keyframes lw-blink { 0%, 80%, 100% { opacity: .3; } 40% { opacity: 1; } }",
    ".msg[data-state='streaming'] .answer::after { content: ''; display: inline-block;",
    "  width: 7px; height: 1em; margin-left: 2px; vertical-align: -2px; background: var(--accent);",
    "  animation: lw-blink 1s infinite; }",

    /* sources */
    ".sources { margin: 8px 0 0; width: 94%; }",
    ".sources h3 { margin: 0 0 6px 2px; font-size: 12px; font-weight: 650; color: var(--muted);",
    "  text-transform: uppercase; letter-spacing: .04em; }",
    ".sources ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 6px; }",
    ".src { background: var(--bg); border: 1px solid var(--line); border-radius: 10px; }",
    ".src a { display: flex; align-items: flex-start; gap: 10px; padding: 8px 10px 4px;",
    "  color: inherit; text-decoration: none; border-radius: 10px; }",
    ".src a:hover .src-title { text-decoration: underline; }",
    ".num { flex: none; min-width: 22px; height: 22px; border-radius: 6px; display: grid;",
    "  place-items: center; background: var(--accent); color: var(--accent-ink);",
    "  font-size: 12px; font-weight: 700; }",
    ".src-main { flex: 1; min-width: 0; display: flex; flex-direction: column; }",
    ".src-title { font-weight: 600; color: var(--accent); font-size: 14px; }",
    ".src-where { font-size: 12.5px; color: var(--muted); }",
    ".src a svg { flex: none; width: 14px; height: 14px; margin-top: 4px; color: var(--muted); }",
    ".src-snippet { margin: 0 10px 8px 42px; padding: 0; font-size: 12.5px; color: var(--muted);",
    "  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }",

    /* feedback on an answer: thumbs, then an optional comment */
    ".feedback { display: flex; align-items: center; flex-wrap: wrap; gap: 2px; margin: 4px 2px 0;",
    "  font-size: 12.5px; color: var(--muted); }",
    ".fb-ask { margin-right: 4px; }",
    ".fb-btn { width: 32px; height: 32px; border-radius: 8px; border: 1px solid transparent;",
    "  padding: 0; background: transparent; color: var(--muted); cursor: pointer; display: grid;",
    "  place-items: center; }",
    ".fb-btn:hover { background: var(--tint); color: var(--accent); }",
    ".fb-btn[aria-pressed='true'] { background: var(--tint); border-color: var(--tint-line);",
    "  color: var(--accent); }",
    ".fb-btn:disabled { cursor: progress; opacity: .6; }",
    ".fb-btn svg { width: 17px; height: 17px; }",
    ".fb-link { border: 0; background: none; padding: 4px 6px; color: var(--accent);",
    "  font-size: 12.5px; text-decoration: underline; cursor: pointer; }",
    ".fb-thanks { margin-left: 4px; color: #1e6b34; font-weight: 600; }",
    ".fb-form { width: 94%; margin: 6px 0 0; padding: 10px; display: flex; flex-direction: column;",
    "  gap: 6px; background: var(--bg); border: 1px solid var(--line); border-radius: 10px; }",
    ".fb-form label { font-size: 13px; font-weight: 600; }",
    ".fb-form textarea { min-height: 64px; max-height: 160px; resize: vertical; padding: 8px 10px;",
    "  border: 1px solid #c3ccd7; border-radius: 8px; background: var(--bg); font-size: 14px; }",
    ".fb-form textarea:focus { border-color: var(--accent); outline: 2px solid var(--accent);",
    "  outline-offset: 0; }",
    ".fb-row { display: flex; align-items: center; justify-content: space-between; gap: 8px; }",
    ".fb-count { font-size: 12px; color: var(--muted); }",
    ".fb-send { border: 0; border-radius: 8px; padding: 6px 14px; background: var(--accent);",
    "  color: var(--accent-ink); font-size: 13.5px; font-weight: 600; cursor: pointer; }",
    ".fb-send:disabled { background: #aab4c0; cursor: not-allowed; }",
    ".fb-error { width: 94%; margin: 6px 0 0; padding: 6px 10px; border-radius: 8px;",
    "  background: #fdecec; border: 1px solid #f2b8b5; color: #7a1a14; font-size: 12.5px; }",
    ".fb-error strong { display: block; }",

    /* suggestions */
    ".chips { display: flex; flex-direction: column; align-items: flex-start; gap: 6px; }",
    ".chip { border: 1px solid var(--tint-line); background: var(--bg); color: var(--accent);",
    "  border-radius: 999px; padding: 6px 12px; font-size: 13.5px; cursor: pointer; text-align: left; }",
    ".chip:hover { background: var(--tint); }",

    /* composer */
    ".composer { display: flex; align-items: flex-end; gap: 8px; padding: 10px 12px;",
    "  border-top: 1px solid var(--line); background: var(--bg); }",
    ".composer textarea { flex: 1; min-height: 44px; max-height: 132px; resize: none;",
    "  padding: 11px 12px; border: 1px solid #c3ccd7; border-radius: 12px; background: var(--bg);",
    "  line-height: 1.4; }",
    ".composer textarea:focus { border-color: var(--accent); outline: 2px solid var(--accent);",
    "  outline-offset: 0; }",
    ".send { flex: none; width: 44px; height: 44px; border-radius: 12px; border: 0; padding: 0;",
    "  background: var(--accent); color: var(--accent-ink); cursor: pointer; display: grid;",
    "  place-items: center; }",
    ".send svg { width: 20px; height: 20px; }",
    ".send:disabled { background: #aab4c0; cursor: not-allowed; }",
    ".foot { margin: 0; padding: 0 14px 10px; background: var(--bg); font-size: 11.5px;",
    "  color: var(--muted); text-align: center; }",

    /* phones: the panel takes the whole screen, and covers the launcher */
    "@media (max-width: 400px) {",
    "  .panel { inset: 0; width: 100%; height: 100%; max-height: none; border: 0; border-radius: 0; }",
    "  .launcher { right: 14px; bottom: 14px; }",
    "  .launcher[aria-expanded='true'] { display: none; }",
    "}",
    "@media (prefers-reduced-motion: reduce) {",
    "  .panel, .dots span, .msg[data-state='streaming'] .answer::after { animation: none; }",
    "  .launcher { transition: none; }",
    "}",
    "@media (forced-colors: active) {",
    "  .launcher, .send, .panel, .bubble, .src, .fb-send { border: 1px solid CanvasText; }",
    "  .fb-btn[aria-pressed='true'] { border-color: Highlight; }",
    "}",
  ].join("\n");

  /* ------------------------------------------------------------------- icons -- */

  var ICONS = {
    chat:
      '<path d="M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6c-.5.4-1.3.1-1.3-.6V16A2.5 2.5 0 0 1 4 13.5z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/><path d="M8 8.5h8M8 11.5h5" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>',
    close:
      '<path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>',
    send:
      '<path d="M4.5 12h13M12.5 6l6 6-6 6" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"/>',
    external:
      '<path d="M14 4h6v6M20 4l-9 9M18 14v4.5A1.5 1.5 0 0 1 16.5 20h-11A1.5 1.5 0 0 1 4 18.5v-11A1.5 1.5 0 0 1 5.5 6H10" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/>',
    info:
      '<circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2"/><path d="M12 11v5.5M12 7.6v.1" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/>',
    compose:
      '<path d="M12 4H6.5A2.5 2.5 0 0 0 4 6.5v11A2.5 2.5 0 0 0 6.5 20h11a2.5 2.5 0 0 0 2.5-2.5V12" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/><path d="M17.6 3.9a1.9 1.9 0 0 1 2.7 2.7L12 14.9l-3.6.9.9-3.6z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>',
    up:
      '<path d="M7.5 10.5v9H5a1.5 1.5 0 0 1-1.5-1.5v-6A1.5 1.5 0 0 1 5 10.5zM7.5 10.5 11 3.5c1.6 0 2.7 1.4 2.3 3l-.7 3h5.3a2 2 0 0 1 2 2.4l-1.3 6A2 2 0 0 1 16.6 19.5H7.5" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>',
    // The thumb up, mirrored top to bottom.
    down:
      '<g transform="matrix(1 0 0 -1 0 24)"><path d="M7.5 10.5v9H5a1.5 1.5 0 0 1-1.5-1.5v-6A1.5 1.5 0 0 1 5 10.5zM7.5 10.5 11 3.5c1.6 0 2.7 1.4 2.3 3l-.7 3h5.3a2 2 0 0 1 2 2.4l-1.3 6A2 2 0 0 1 16.6 19.5H7.5" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/></g>',
    warn:
      '<path d="M12 4 2.8 19.5h18.4z" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round"/><path d="M12 10v4.5M12 17.2v.1" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/>',
  };
  function icon(name, cls) {
    return (
      '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"' +
      (cls ? ' class="' + cls + '"' : "") + ">" + ICONS[name] + "</svg>"
    );
  }

  /* ----------------------------------------------------------------- helpers -- */

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  // Citation URLs are relative to the API base ("/api/v1/documents/<id>/file#page=2").
  // Joining by string keeps a path prefix in the base (https://x.edu/lectern/) that
  // `new URL("/api/...", base)` would drop. Only http(s) links are ever produced.
  function sourceUrl(url) {
    if (!url) return null;
    var full;
    try {
      if (/^[a-z][a-z0-9+.-]*:/i.test(url)) full = new URL(url);
      else if (url.charAt(0) === "/") full = new URL(API_BASE.replace(/\/$/, "") + url);
      else full = new URL(url, API_BASE);
    } catch (e) {
      return null;
    }
    return full.protocol === "http:" || full.protocol === "https:" ? full.href : null;
  }

  // Sections arrive as heading paths ("BSc Computer Science > Courses > CSC 340"); the
  // first heading usually repeats the document title, which is shown already.
  function sectionPath(section, title) {
    if (!section) return "";
    var parts = String(section).split(/\s+>\s+/);
    var t = String(title || "").toLowerCase();
    if (parts.length && t && t.indexOf(parts[0].toLowerCase()) === 0) parts.shift();
    return parts.join(" › ");
  }

  function sentenceCase(s) {
    s = String(s || "").trim();
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
  }

  // Reads a server-sent-event stream from a fetch() body (EventSource cannot POST).
  // Calls onEvent(name, data) for each complete event; data is parsed JSON.
  async function readEvents(body, onEvent) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buf = "";
    function flush(block) {
      var name = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        if (!line || line.charAt(0) === ":") return; // blank or comment (keep-alive)
        var i = line.indexOf(":");
        var field = i < 0 ? line : line.slice(0, i);
        var value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      });
      if (!data.length) return;
      var parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (e) {
        parsed = { text: data.join("\n") };
      }
      onEvent(name, parsed);
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      // Normalise CRLF/CR line ends, but leave a trailing "\r" until we know whether
      // the next chunk starts with "\n".
      buf = (buf + decoder.decode(chunk.value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
      var end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        flush(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
    buf += decoder.decode();
    if (buf.trim()) flush(buf.replace(/\r\n?/g, "\n"));
  }

  // Turns a JSON error response into {title, detail}; `what` was sent ("question").
  async function describeError(res, what) {
    var code = "";
    var message = "";
    try {
      var body = await res.json();
      if (body && body.error) {
        code = body.error.code || "";
        message = body.error.message || "";
      }
    } catch (e) {
      /* not JSON: keep the status line */
    }
    if (!message) message = "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
    if (res.status === 429 || code === "rate_limited") {
      // Retry-After is only readable cross-origin if the API exposes it (CORS).
      var wait = parseInt(res.headers.get("Retry-After") || "", 10);
      return {
        title: "Too many questions in a short time.",
        detail: wait > 0
          ? "Please wait " + wait + " second" + (wait === 1 ? "" : "s") + " and try again."
          : sentenceCase(message) + ".",
      };
    }
    if (res.status === 503) {
      return {
        title: "The assistant is starting up.",
        detail: "Please try again in a moment. (" + message + ")",
      };
    }
    if (res.status === 422) {
      return {
        title: "This " + (what || "question") + " could not be sent.",
        detail: sentenceCase(message) + ".",
      };
    }
    return { title: "Something went wrong.", detail: sentenceCase(message) + "." };
  }

  // POSTs JSON to the API; resolves to the Response, rejects only when unreachable.
  function post(path, body, accept) {
    return fetch(API_BASE + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: accept || "application/json" },
      body: JSON.stringify(body),
      credentials: "omit", // the public API needs no cookies; keeps CORS simple
    });
  }

  var STREAM = "text/event-stream";
  var UNREACHABLE = { title: "The assistant could not be reached.",
                      detail: "Check your connection and try again." };

  /* ------------------------------------------------------------ conversation -- */

  // The conversation lasts the page session: sessionStorage keeps it through a reload
  // and forgets it with the tab. The server keeps it too and names it with the
  // conversation_id of each answer; the turns are also kept here, to show them again
  // after a reload and to restart the conversation from them when the server has
  // forgotten the id (a restart or an expiry answers 404).
  var STORE_KEY = "lectern-widget:" + API_BASE;
  // The server's defaults (conversation.max_turns and max_turn_chars): history beyond
  // them is refused with 422, so the oldest turns and the end of long answers stay here.
  var HISTORY_TURNS = 8;
  var TURN_CHARS = 4000;
  var SHOWN_TURNS = 30; // turns shown again after a reload; sessionStorage is small

  function loadSession() {
    try {
      var saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
      if (saved && Array.isArray(saved.turns)) {
        // Written by this code, but perhaps by an older version of it: keep what reads.
        var turns = saved.turns.filter(function (t) {
          return t && typeof t.question === "string" && typeof t.answer === "string" &&
            Array.isArray(t.citations);
        });
        return { id: typeof saved.id === "string" ? saved.id : null, turns: turns };
      }
    } catch (e) {
      /* storage blocked (a sandboxed frame, private mode) or unreadable: start afresh */
    }
    return { id: null, turns: [] };
  }

  function saveSession(session) {
    try {
      sessionStorage.setItem(STORE_KEY, JSON.stringify({
        id: session.id, turns: session.turns.slice(-SHOWN_TURNS),
      }));
    } catch (e) {
      /* full or blocked: the conversation then lasts until the page reloads */
    }
  }

  // What a question brings of the conversation: the server's id, else the turns.
  function askBody(question, session) {
    var body = { question: question };
    if (session.id) {
      body.conversation_id = session.id;
    } else if (session.turns.length) {
      body.history = session.turns.slice(-HISTORY_TURNS).map(function (t) {
        var q = String(t.question);
        // JavaScript counts UTF-16 units, Python code points: this cut is never too long.
        var room = Math.max(0, TURN_CHARS - q.length);
        return { question: q, answer: String(t.answer || "").slice(0, room) };
      });
    }
    return body;
  }

  // A 404 naming the conversation (not, say, a proxy's 404 for the whole API).
  async function forgotten(res) {
    if (res.status !== 404) return false;
    try {
      var body = await res.clone().json();
      return !!(body && body.error && body.error.code === "conversation_not_found");
    } catch (e) {
      return false;
    }
  }

  /* ---------------------------------------------------------------- feedback -- */

  var COMMENT_CHARS = 1000; // the server's default feedback.max_comment_chars
  var RATINGS = [
    { rating: "up", icon: "up", label: "Helpful" },
    { rating: "down", icon: "down", label: "Not helpful" },
  ];
  var uid = 0;

  // Rejects with {title, detail}, as the widget shows API errors.
  async function sendFeedback(answerId, rating, comment) {
    var body = { answer_id: answerId, rating: rating };
    if (comment) body.comment = comment;
    var res;
    try {
      res = await post("api/v1/feedback", body);
    } catch (e) {
      throw UNREACHABLE;
    }
    if (!res.ok) throw await describeError(res, "feedback");
  }

  // Thumbs up and down under an answer, then an optional comment. A thumb is sent at
  // once (so a reader who writes nothing still counts); a comment is sent with it again,
  // which replaces the rating on the server. hooks: announce(text), save().
  function feedbackControls(turn, hooks) {
    var box = el("div", "fb");
    var row = el("div", "feedback");
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Rate this answer");
    row.appendChild(el("span", "fb-ask", "Was this helpful?"));
    var thumbs = RATINGS.map(function (r) {
      var b = el("button", "fb-btn");
      b.type = "button";
      b.setAttribute("data-rating", r.rating);
      b.setAttribute("aria-label", r.label);
      b.title = r.label;
      b.innerHTML = icon(r.icon);
      b.addEventListener("click", function () { rate(r.rating, b); });
      row.appendChild(b);
      return b;
    });
    var more = el("button", "fb-link", "Add a comment");
    more.type = "button";
    more.addEventListener("click", function () { openForm(); });
    row.appendChild(more);
    var thanks = el("span", "fb-thanks");
    row.appendChild(thanks);
    box.appendChild(row);
    var form = null;
    var error = null;

    function refresh() {
      thumbs.forEach(function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-rating") === turn.rating));
      });
      more.hidden = !turn.rating || !!turn.comment || !!form;
    }

    function showError(err) {
      clearError();
      error = el("div", "fb-error");
      error.setAttribute("role", "alert");
      error.appendChild(el("strong", null, err.title));
      error.appendChild(document.createTextNode(err.detail));
      box.appendChild(error);
    }
    function clearError() {
      if (error) error.remove();
      error = null;
    }

    function busy(on) {
      thumbs.forEach(function (b) { b.disabled = on; });
      if (form) {
        form.querySelector(".fb-send").disabled = on || !form.querySelector("textarea").value.trim();
      }
    }

    async function rate(rating, button) {
      if (rating === turn.rating) {
        if (!turn.comment) openForm();
        return;
      }
      clearError();
      busy(true);
      try {
        await sendFeedback(turn.answer_id, rating, turn.comment);
      } catch (err) {
        busy(false); // first: a disabled button cannot take the focus back
        showError(err);
        button.focus();
        return;
      }
      busy(false);
      turn.rating = rating;
      hooks.save();
      refresh();
      thanks.textContent = "Thanks for your feedback.";
      hooks.announce("Thanks for your feedback.");
      if (rating === "down" && !turn.comment) openForm();
    }

    function openForm() {
      if (form) {
        form.querySelector("textarea").focus();
        return;
      }
      var id = "lw-fb-" + ++uid;
      form = el("form", "fb-form");
      form.noValidate = true;
      var label = el("label", null, turn.rating === "down"
        ? "What was wrong or missing? (optional)" : "Your comment (optional)");
      label.htmlFor = id;
      var text = el("textarea");
      text.id = id;
      text.rows = 3;
      text.maxLength = COMMENT_CHARS;
      text.setAttribute("aria-describedby", id + "-count");
      var foot = el("div", "fb-row");
      var count = el("span", "fb-count");
      count.id = id + "-count";
      var send = el("button", "fb-send", "Send");
      send.type = "submit";
      foot.appendChild(count);
      foot.appendChild(send);
      [label, text, foot].forEach(function (n) { form.appendChild(n); });
      function update() {
        count.textContent = text.value.length + " / " + COMMENT_CHARS + " characters";
        send.disabled = !text.value.trim();
      }
      text.addEventListener("input", update);
      text.addEventListener("keydown", function (e) {
        // Esc leaves the comment (not the whole chat); Ctrl/Cmd+Enter sends it.
        if (e.key === "Escape") {
          e.preventDefault();
          e.stopPropagation();
          closeForm();
        } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          form.requestSubmit();
        }
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        comment(text.value.trim());
      });
      update();
      box.insertBefore(form, error);
      refresh();
      text.focus();
    }

    function closeForm() {
      if (form) form.remove();
      form = null;
      refresh();
      var pressed = thumbs.filter(function (b) {
        return b.getAttribute("aria-pressed") === "true";
      });
      (pressed[0] || thumbs[0]).focus();
    }

    async function comment(text) {
      if (!text || !turn.rating) return;
      clearError();
      busy(true);
      try {
        await sendFeedback(turn.answer_id, turn.rating, text);
      } catch (err) {
        busy(false);
        showError(err);
        if (form) form.querySelector("textarea").focus();
        return;
      }
      busy(false); // first: closeForm gives the focus back to a thumb
      turn.comment = text;
      hooks.save();
      thanks.textContent = "Thanks for your comment.";
      hooks.announce("Thanks for your comment.");
      closeForm();
    }

    refresh();
    return box;
  }

  /* -------------------------------------------------------------------- view -- */

  function build() {
    var host = el("div");
    host.id = "lectern-widget";
    // Page CSS could still hide or move the host element itself; the inline style
    // wins over non-!important rules, and its children are position: fixed anyway.
    host.setAttribute("style", "all: initial; position: static; display: block;");
    var shadow = host.attachShadow({ mode: "open" });

    shadow.innerHTML =
      "<style>" + CSS_TEXT + "</style>" +
      '<div class="root">' +
      '<button class="launcher" type="button" aria-expanded="false" aria-controls="lw-panel">' +
      icon("chat", "i-chat") + icon("close", "i-close") +
      "</button>" +
      '<section class="panel" id="lw-panel" role="dialog" aria-labelledby="lw-title"' +
      ' aria-describedby="lw-subtitle" hidden>' +
      '<header class="head"><div class="head-text"><h2 id="lw-title"></h2>' +
      '<p id="lw-subtitle"></p></div>' +
      '<button class="icon-btn new" type="button" aria-label="New conversation"' +
      ' title="New conversation">' + icon("compose") + "</button>" +
      '<button class="icon-btn close" type="button" aria-label="Close chat">' +
      icon("close") + "</button></header>" +
      // Focusable so keyboard users can scroll a long conversation.
      '<div class="log" role="region" aria-label="Conversation" tabindex="0"></div>' +
      // Token-by-token updates would make a screen reader stutter, so the log itself
      // is not live; this region announces each finished answer (or error) once.
      '<div class="sr-only live" aria-live="polite" aria-atomic="true"></div>' +
      '<form class="composer" novalidate>' +
      '<label class="sr-only" for="lw-input">Your question</label>' +
      '<textarea id="lw-input" rows="1" placeholder="Ask a question…" autocomplete="off"' +
      ' aria-describedby="lw-hint"></textarea>' +
      '<button class="send" type="submit" aria-label="Send question">' + icon("send") +
      "</button></form>" +
      '<p class="foot" id="lw-hint">Answers are generated by AI from official documents and ' +
      "may contain mistakes. Check the linked sources.</p>" +
      "</section></div>";

    var $ = function (sel) { return shadow.querySelector(sel); };
    var ui = {
      host: host,
      shadow: shadow,
      root: $(".root"),
      launcher: $(".launcher"),
      panel: $(".panel"),
      close: $(".close"),
      reset: $(".new"),
      log: $(".log"),
      live: $(".live"),
      form: $(".composer"),
      input: $("textarea"),
      send: $(".send"),
    };
    if (ACCENT) ui.root.style.setProperty("--accent", ACCENT);
    $("#lw-title").textContent = TITLE;
    $("#lw-subtitle").textContent = SUBTITLE;
    // A constant name; aria-expanded says whether the panel is open.
    ui.launcher.setAttribute("aria-label", "Chat: " + TITLE);
    return ui;
  }

  /* -------------------------------------------------------------- controller -- */

  function start() {
    var ui = build();
    var busy = false; // an answer is on its way: sending is disabled
    var chips = null;
    var session = loadSession();
    var hooks = { announce: announce, save: function () { saveSession(session); } };

    function isOpen() {
      return !ui.panel.hidden;
    }
    function open() {
      if (isOpen()) return;
      ui.panel.hidden = false;
      ui.launcher.setAttribute("aria-expanded", "true");
      ui.input.focus();
    }
    function close() {
      if (!isOpen()) return;
      ui.panel.hidden = true;
      ui.launcher.setAttribute("aria-expanded", "false");
      ui.launcher.focus();
    }

    ui.launcher.addEventListener("click", function () {
      if (isOpen()) close();
      else open();
    });
    ui.close.addEventListener("click", close);
    ui.reset.addEventListener("click", newConversation);
    ui.root.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && isOpen()) {
        e.preventDefault();
        close();
      }
    });

    // Enter sends, Shift+Enter makes a new line; never while an IME is composing.
    ui.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    ui.input.addEventListener("input", function () {
      autosize();
      updateSend();
    });
    ui.form.addEventListener("submit", function (e) {
      e.preventDefault();
      submit();
    });

    function autosize() {
      ui.input.style.height = "auto";
      ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 132) + "px";
    }
    function updateSend() {
      ui.send.disabled = busy || !ui.input.value.trim();
      // Not while an answer is on its way: it would land in the new conversation.
      ui.reset.disabled = busy;
    }

    // Keep the newest message in view, unless the reader scrolled up to read.
    function stickToBottom(force) {
      var log = ui.log;
      var near = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
      if (force || near) log.scrollTop = log.scrollHeight;
    }

    function announce(text) {
      ui.live.textContent = "";
      // A fresh text node in a cleared region is what screen readers reliably announce.
      setTimeout(function () { ui.live.textContent = text; }, 50);
    }

    function addUser(text) {
      var msg = el("div", "msg user");
      msg.appendChild(el("div", "bubble", text));
      ui.log.appendChild(msg);
      stickToBottom(true);
    }

    function addBot() {
      var msg = el("div", "msg bot");
      msg.setAttribute("data-state", "pending");
      var bubble = el("div", "bubble");
      var dots = el("span", "dots");
      dots.setAttribute("aria-hidden", "true");
      dots.innerHTML = "<span></span><span></span><span></span>";
      var answer = el("p", "answer");
      bubble.appendChild(dots);
      bubble.appendChild(answer);
      msg.appendChild(bubble);
      ui.log.appendChild(msg);
      stickToBottom(true);
      return { msg: msg, bubble: bubble, dots: dots, answer: answer };
    }

    function welcome() {
      var msg = el("div", "msg bot welcome");
      var bubble = el("div", "bubble");
      bubble.appendChild(el("p", null, WELCOME));
      msg.appendChild(bubble);
      ui.log.appendChild(msg);
      if (SUGGESTIONS.length) {
        chips = el("div", "chips");
        chips.setAttribute("role", "group");
        chips.setAttribute("aria-label", "Example questions");
        SUGGESTIONS.forEach(function (q) {
          var b = el("button", "chip", q);
          b.type = "button";
          b.addEventListener("click", function () {
            ui.input.value = q;
            submit();
          });
          chips.appendChild(b);
        });
        ui.log.appendChild(chips);
      }
    }

    // The final answer text, with its [n] markers turned into links to source n.
    function renderAnswer(target, text, citations) {
      var byNumber = {};
      citations.forEach(function (c) { byNumber[c.number] = c; });
      target.textContent = "";
      var re = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
      var last = 0;
      var m;
      while ((m = re.exec(text))) {
        var nums = m[1].split(/\s*,\s*/).map(Number);
        if (!nums.every(function (n) { return byNumber[n]; })) continue;
        target.appendChild(document.createTextNode(text.slice(last, m.index).replace(/\s+$/, "")));
        nums.forEach(function (n) {
          var c = byNumber[n];
          var href = sourceUrl(c.url);
          var ref = el(href ? "a" : "span", "ref", String(n));
          if (href) {
            ref.href = href;
            ref.target = "_blank";
            ref.rel = "noopener noreferrer";
          }
          ref.setAttribute("aria-label", "Source " + n + ": " + c.title);
          ref.title = c.title;
          target.appendChild(document.createTextNode(" "));
          target.appendChild(ref);
        });
        last = m.index + m[0].length;
      }
      target.appendChild(document.createTextNode(text.slice(last)));
    }

    function renderSources(msg, citations) {
      if (!citations.length) return;
      var box = el("div", "sources");
      var id = "lw-src-" + Math.random().toString(36).slice(2, 8);
      var h = el("h3", null, citations.length === 1 ? "Source" : "Sources");
      h.id = id;
      box.appendChild(h);
      var list = el("ol");
      list.setAttribute("aria-labelledby", id);
      citations.forEach(function (c) {
        var li = el("li", "src");
        li.setAttribute("data-document-id", c.document_id);
        var href = sourceUrl(c.url);
        var link = el(href ? "a" : "div");
        if (href) {
          link.href = href;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
        }
        if (c.snippet) link.title = c.snippet;
        var num = el("span", "num", String(c.number));
        num.setAttribute("aria-hidden", "true");
        link.appendChild(num);
        var main = el("span", "src-main");
        main.appendChild(el("span", "sr-only", "Source " + c.number + ": "));
        main.appendChild(el("span", "src-title", c.title || "Untitled document"));
        var where = [];
        var section = sectionPath(c.section, c.title);
        if (section) where.push(section);
        if (c.page) where.push("page " + c.page);
        if (where.length) main.appendChild(el("span", "src-where", where.join(" · ")));
        if (href) main.appendChild(el("span", "sr-only", " (opens in a new tab)"));
        link.appendChild(main);
        if (href) link.insertAdjacentHTML("beforeend", icon("external"));
        li.appendChild(link);
        if (c.snippet) li.appendChild(el("p", "src-snippet", c.snippet));
        list.appendChild(li);
      });
      box.appendChild(list);
      msg.appendChild(box);
    }

    // A finished answer: its text with linked markers, the abstention label, the
    // sources, and (when the server logged it) the thumbs to rate it.
    function showAnswer(view, turn) {
      view.dots.remove();
      view.msg.setAttribute("data-state", "done");
      renderAnswer(view.answer, turn.answer, turn.citations);
      if (turn.abstained) {
        view.msg.setAttribute("data-abstained", "true");
        var label = el("p", "label");
        label.innerHTML = icon("info");
        label.appendChild(document.createTextNode("Not found in the documents"));
        view.bubble.insertBefore(label, view.answer);
      }
      renderSources(view.msg, turn.citations);
      if (turn.answer_id) {
        view.msg.setAttribute("data-answer-id", turn.answer_id);
        view.msg.appendChild(feedbackControls(turn, hooks));
      }
    }

    // The turns of this page session, shown again after a reload.
    function showSaved() {
      session.turns.forEach(function (turn) {
        addUser(turn.question);
        showAnswer(addBot(), turn);
      });
      if (session.turns.length && chips) {
        chips.remove();
        chips = null;
      }
    }

    function newConversation() {
      if (busy) return;
      session = { id: null, turns: [] };
      saveSession(session);
      ui.log.textContent = "";
      chips = null;
      welcome();
      ui.input.focus();
      announce("New conversation started.");
    }

    function showError(view, err) {
      view.msg.setAttribute("data-state", "error");
      view.dots.remove();
      view.bubble.setAttribute("role", "alert");
      view.answer.textContent = "";
      var label = el("p", "label");
      label.innerHTML = icon("warn");
      label.appendChild(document.createTextNode(err.title));
      view.bubble.insertBefore(label, view.answer);
      // Keep any text that had already streamed in: it may still be useful.
      if (err.partial) view.answer.textContent = err.partial;
      view.bubble.appendChild(el("p", "detail", err.detail));
    }

    function submit() {
      var question = ui.input.value.trim();
      if (busy || !question) return;
      if (chips) {
        chips.remove();
        chips = null;
      }
      ui.input.value = "";
      autosize();
      addUser(question);
      ask(question);
    }

    // After a refused request, put the question back so the reader can edit or resend it.
    function restore(question) {
      if (ui.input.value) return;
      ui.input.value = question;
      autosize();
    }

    async function ask(question) {
      busy = true;
      updateSend();
      ui.log.setAttribute("aria-busy", "true");
      var view = addBot();
      var streamed = "";
      var text = null; // set by the final `citations` event
      var finished = false;
      announce("Searching the documents…");

      function onEvent(name, data) {
        if (name === "token") {
          if (!streamed) {
            view.dots.remove();
            view.msg.setAttribute("data-state", "streaming");
          }
          streamed += data.text || "";
          view.answer.textContent = streamed;
          stickToBottom(false);
        } else if (name === "citations") {
          text = data.answer != null ? data.answer : streamed;
          var turn = {
            question: question,
            answer: text,
            abstained: !!data.abstained,
            citations: Array.isArray(data.citations) ? data.citations : [],
            answer_id: data.answer_id || null,
            rating: null,
            comment: null,
          };
          session.turns.push(turn);
          // null when the server keeps no conversations: the next question sends the turns.
          session.id = data.conversation_id || null;
          saveSession(session);
          showAnswer(view, turn); // `done` only adds timings
          var n = turn.citations.length;
          announce(
            (turn.abstained ? "No answer found. " : "Answer: ") + text +
              (n ? " " + n + " linked source" + (n === 1 ? "." : "s.") : "")
          );
          stickToBottom(false);
        } else if (name === "done") {
          finished = true;
          var ms = data.timings && data.timings.total_ms;
          if (ms) {
            var meta = el("p", "meta", "Answered in " + (ms / 1000).toFixed(1) + " s");
            view.msg.insertBefore(meta, view.msg.querySelector(".fb"));
          }
        } else if (name === "error") {
          finished = true;
          var e = data.error || {};
          var err = { title: "The answer could not be completed.",
                      detail: sentenceCase(e.message || "Unknown error") + ".", partial: streamed };
          showError(view, err);
          announce(err.title + " " + err.detail);
        }
      }

      try {
        var res = await post("api/v1/ask/stream", askBody(question, session), STREAM);
        if (session.id && (await forgotten(res))) {
          // The server forgot the conversation: start it again from the turns kept here.
          session.id = null;
          saveSession(session);
          res = await post("api/v1/ask/stream", askBody(question, session), STREAM);
        }
        if (!res.ok) {
          var err = await describeError(res);
          showError(view, err);
          announce(err.title + " " + err.detail);
          restore(question);
        } else {
          await readEvents(res.body, onEvent);
          if (!finished && text === null) {
            var cut = { title: "The answer was interrupted.",
                        detail: "Please try asking again.", partial: streamed };
            showError(view, cut);
            announce(cut.title);
          }
        }
      } catch (e) {
        var net = { title: UNREACHABLE.title, detail: UNREACHABLE.detail, partial: streamed };
        showError(view, net);
        announce(net.title + " " + net.detail);
        restore(question);
      } finally {
        if (view.msg.getAttribute("data-state") !== "error") view.msg.setAttribute("data-state", "done");
        busy = false;
        ui.log.removeAttribute("aria-busy");
        updateSend();
        stickToBottom(false);
      }
    }

    welcome();
    showSaved();
    updateSend();
    document.body.appendChild(ui.host);
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
