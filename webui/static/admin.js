/* Lectern admin page: sign in with the admin token, switch between the views (tabs),
 * upload, list and delete documents. The "Questions" view is questions.js, which uses
 * the helpers this file shares as window.LecternAdmin and hears of sign-outs and view
 * changes through the "lectern-admin:*" events on document.
 *
 * The token is kept in sessionStorage: it survives a reload but not closing the tab, and
 * it is never written into a URL or a cookie. All server data is inserted as text.
 */
(function () {
  "use strict";

  // Relative to this page, so it works when a proxy mounts Lectern under a path.
  var API = new URL("api/v1/", document.baseURI).href;
  var HEALTH = new URL("health", document.baseURI).href;
  var TOKEN_KEY = "lectern-admin-token";

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    signinView: $("signin-view"), signinForm: $("signin-form"), token: $("token"),
    toggleToken: $("toggle-token"), signinError: $("signin-error"), signinSubmit: $("signin-submit"),
    adminView: $("admin-view"), signOut: $("sign-out"), status: $("status"),
    uploadForm: $("upload-form"), drop: $("drop"), files: $("files"), chosen: $("chosen"),
    uploadBtn: $("upload-btn"), clearBtn: $("clear-btn"), progress: $("progress"),
    progressBar: $("progress-bar"), progressText: $("progress-text"), progressPct: $("progress-pct"),
    uploadError: $("upload-error"), results: $("results"), resultsBody: $("results-body"),
    docsBody: $("docs-body"), docsEmpty: $("docs-empty"), docCount: $("doc-count"),
    filter: $("filter"), refreshBtn: $("refresh-btn"),
    confirm: $("confirm"), confirmText: $("confirm-text"),
    health: $("health"), healthText: $("health-text"), tabs: $("tabs"),
  };
  var VIEWS = ["documents", "questions"];
  var TITLES = { documents: "Documents", questions: "Questions" };

  var documents = [];
  var justUploaded = new Set(); // ids to highlight after an upload
  var pendingFiles = []; // chosen by the input or dropped

  /* ---------------------------------------------------------------- helpers -- */

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text != null) n.textContent = text;
    return n;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function errorMessage(body, status) {
    var msg = body && body.error && body.error.message;
    if (!msg) return "Request failed (HTTP " + status + ").";
    msg = msg.charAt(0).toUpperCase() + msg.slice(1);
    return /[.!?]$/.test(msg) ? msg : msg + ".";
  }

  // fetch() with the admin token; resolves to the parsed JSON (options.response: to the
  // Response, for a file), rejects with an Error whose .status is the HTTP status (0 when
  // the server could not be reached).
  async function api(path, options) {
    options = options || {};
    var headers = Object.assign({ Authorization: "Bearer " + (options.token || token()) },
                                options.headers || {});
    var res;
    try {
      res = await fetch(API + path, { method: options.method || "GET", headers: headers,
                                      body: options.body, cache: "no-store" });
    } catch (e) {
      var net = new Error("Lectern could not be reached. Is the server running?");
      net.status = 0;
      throw net;
    }
    if (res.ok && options.response) return res;
    var body = null;
    try { body = await res.json(); } catch (e) { /* empty or not JSON */ }
    if (!res.ok) {
      var err = new Error(errorMessage(body, res.status));
      err.status = res.status;
      throw err;
    }
    return body;
  }

  function say(text) {
    // Re-setting identical text is not announced; clear first.
    els.status.textContent = "";
    window.setTimeout(function () { els.status.textContent = text; }, 30);
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  var dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  function formatDate(iso) {
    var d = new Date(iso);
    return isNaN(d) ? String(iso || "") : dateFormat.format(d);
  }

  // The last path segment of a source ("…/corpus/html/admissions.html" → "admissions.html").
  function baseName(source) {
    var parts = String(source || "").split(/[\\/]/);
    return parts[parts.length - 1] || source;
  }

  var TYPE_NAMES = {
    "application/pdf": "PDF", "text/html": "HTML", "text/markdown": "MD", "text/plain": "TXT",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "DOCX",
  };

  /* ------------------------------------------------------------- sign in/out -- */

  function showSignedIn(signedIn) {
    els.signinView.hidden = signedIn;
    els.adminView.hidden = !signedIn;
    els.signOut.hidden = !signedIn;
    if (signedIn) showView(viewFromHash(), false);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.dispatchEvent(new CustomEvent("lectern-admin:signed-out"));
    documents = [];
    els.docsBody.textContent = "";
    els.results.hidden = true;
    showSignedIn(false);
    els.signinError.textContent = message || "";
    els.token.value = "";
    els.token.focus();
  }

  els.signinForm.addEventListener("submit", async function (e) {
    e.preventDefault();
    var candidate = els.token.value.trim();
    if (!candidate) {
      els.signinError.textContent = "Enter the admin token.";
      els.token.focus();
      return;
    }
    els.signinSubmit.disabled = true;
    els.signinError.textContent = "";
    try {
      // Listing the documents is the cheapest call that checks the token.
      var body = await api("documents", { token: candidate });
      sessionStorage.setItem(TOKEN_KEY, candidate);
      els.token.value = "";
      showSignedIn(true);
      render(body.documents || []);
      $("main").focus({ preventScroll: true }); // screen readers start at the new content
      say("Signed in. " + (body.documents || []).length + " documents indexed.");
    } catch (err) {
      // A wrong token is a 401 whose JSON message says so; show exactly that.
      els.signinError.textContent = err.message;
      els.token.select();
    } finally {
      els.signinSubmit.disabled = false;
    }
  });

  els.toggleToken.addEventListener("click", function () {
    var show = els.token.type === "password";
    els.token.type = show ? "text" : "password";
    els.toggleToken.textContent = show ? "Hide" : "Show";
    els.toggleToken.setAttribute("aria-pressed", String(show));
  });

  els.signOut.addEventListener("click", function () { signOut("You are signed out."); });

  // Any 401 after signing in means the token changed on the server: sign in again.
  function handleError(err, where) {
    if (err.status === 401) {
      signOut(err.message + " Sign in again.");
      return;
    }
    where.textContent = err.message;
  }

  /* ------------------------------------------------------------------- views -- */

  function viewFromHash() {
    var name = location.hash.replace(/^#/, "");
    return VIEWS.indexOf(name) >= 0 ? name : VIEWS[0];
  }

  function tab(name) {
    return $("tab-" + name);
  }

  // The ARIA tabs pattern: one tab in the Tab order (the selected one), the arrow keys
  // move between them and select as they go.
  function showView(name, focus) {
    VIEWS.forEach(function (v) {
      var selected = v === name;
      tab(v).setAttribute("aria-selected", String(selected));
      tab(v).tabIndex = selected ? 0 : -1;
      $(v + "-view").hidden = !selected;
    });
    document.title = TITLES[name] + " · Lectern admin";
    // replaceState: switching views is not a page to go Back to, and no scroll jump.
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (focus) tab(name).focus();
    document.dispatchEvent(new CustomEvent("lectern-admin:view", { detail: name }));
  }

  els.tabs.addEventListener("click", function (e) {
    var button = e.target.closest("[role=tab]");
    if (button) showView(button.getAttribute("data-view"), true);
  });
  els.tabs.addEventListener("keydown", function (e) {
    var i = VIEWS.indexOf(viewFromHash());
    var next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: VIEWS.length - 1 }[e.key];
    if (next == null) return;
    e.preventDefault();
    showView(VIEWS[(next + VIEWS.length) % VIEWS.length], true);
  });

  /* --------------------------------------------------------------- documents -- */

  async function refresh(quiet) {
    els.refreshBtn.disabled = true;
    try {
      var body = await api("documents");
      render(body.documents || []);
      if (!quiet) say("Document list refreshed.");
    } catch (err) {
      handleError(err, els.uploadError);
    } finally {
      els.refreshBtn.disabled = false;
    }
  }

  function render(list) {
    documents = list.slice().sort(function (a, b) {
      // Newest uploads first, then alphabetical, so a fresh upload is easy to spot.
      var na = justUploaded.has(a.id) ? 0 : 1;
      var nb = justUploaded.has(b.id) ? 0 : 1;
      return na - nb || String(a.title).localeCompare(String(b.title));
    });
    var q = els.filter.value.trim().toLowerCase();
    var shown = documents.filter(function (d) {
      return !q || (d.title + " " + d.source).toLowerCase().indexOf(q) >= 0;
    });
    var chunks = documents.reduce(function (s, d) { return s + (d.chunk_count || 0); }, 0);
    els.docCount.textContent = "(" + documents.length + " documents, " + chunks + " chunks" +
      (shown.length !== documents.length ? "; " + shown.length + " shown" : "") + ")";
    els.docsEmpty.hidden = documents.length > 0;
    els.docsEmpty.textContent = documents.length ? "" : "No documents yet. Upload some above.";

    var frag = document.createDocumentFragment();
    shown.forEach(function (d) {
      var tr = el("tr");
      tr.setAttribute("data-document-id", d.id);
      if (justUploaded.has(d.id)) tr.className = "is-new";

      var title = el("td", "title-cell");
      title.setAttribute("data-label", "Title");
      title.appendChild(document.createTextNode(d.title || baseName(d.source)));
      var type = TYPE_NAMES[d.media_type];
      if (type) title.appendChild(el("span", "type", type));

      var source = el("td", "source-cell", baseName(d.source));
      source.setAttribute("data-label", "Source");
      source.title = d.source + " · " + formatBytes(d.size_bytes || 0);

      var chunkCell = el("td", "num chunks-cell", String(d.chunk_count));
      chunkCell.setAttribute("data-label", "Chunks");

      var date = el("td", "date-cell");
      date.setAttribute("data-label", "Ingested");
      var time = el("time", null, formatDate(d.ingested_at));
      time.dateTime = d.ingested_at;
      date.appendChild(time);

      var action = el("td", "action-cell");
      var del = el("button", "btn btn-small btn-danger-outline", "Delete");
      del.type = "button";
      // The visible label is just "Delete"; screen readers hear which document.
      del.setAttribute("aria-label", "Delete " + (d.title || baseName(d.source)));
      del.addEventListener("click", function () { confirmDelete(d, del); });
      action.appendChild(del);

      [title, source, chunkCell, date, action].forEach(function (td) { tr.appendChild(td); });
      frag.appendChild(tr);
    });
    els.docsBody.textContent = "";
    els.docsBody.appendChild(frag);
  }

  els.filter.addEventListener("input", function () { render(documents); });
  els.refreshBtn.addEventListener("click", function () { refresh(false); });

  // A native <dialog> opened with showModal() traps focus, closes on Esc and returns
  // focus to the opener (we also do it explicitly, for older browsers).
  function confirmDelete(doc, opener) {
    var name = doc.title || baseName(doc.source);
    els.confirmText.textContent = "“" + name + "” and its " + doc.chunk_count +
      " chunk" + (doc.chunk_count === 1 ? "" : "s") +
      " will be removed from the index; the assistant will no longer cite it. This cannot be undone.";
    els.confirm.returnValue = "";
    els.confirm.onclose = async function () {
      els.confirm.onclose = null;
      if (els.confirm.returnValue !== "delete") {
        opener.focus();
        return;
      }
      opener.disabled = true;
      opener.textContent = "Deleting…";
      try {
        await api("documents/" + encodeURIComponent(doc.id), { method: "DELETE" });
        justUploaded.delete(doc.id);
        await refresh(true);
        say("Deleted “" + name + "”.");
        els.filter.focus();
      } catch (err) {
        opener.disabled = false;
        opener.textContent = "Delete";
        handleError(err, els.uploadError);
        if (err.status === 404) refresh(true);
      }
    };
    els.confirm.showModal();
  }

  /* ----------------------------------------------------------------- upload -- */

  function setFiles(list) {
    pendingFiles = Array.prototype.slice.call(list || []);
    els.chosen.textContent = "";
    pendingFiles.forEach(function (f) {
      els.chosen.appendChild(el("li", null, f.name + " · " + formatBytes(f.size)));
    });
    els.uploadBtn.disabled = pendingFiles.length === 0;
    els.uploadBtn.textContent = pendingFiles.length > 1
      ? "Upload " + pendingFiles.length + " files" : "Upload";
    els.clearBtn.hidden = pendingFiles.length === 0;
    els.uploadError.textContent = "";
  }

  els.files.addEventListener("change", function () { setFiles(els.files.files); });
  els.clearBtn.addEventListener("click", function () {
    els.files.value = "";
    setFiles([]);
    els.files.focus();
  });

  // Drag and drop onto the drop zone, as an alternative to the file chooser.
  ["dragenter", "dragover"].forEach(function (type) {
    els.drop.addEventListener(type, function (e) {
      e.preventDefault();
      els.drop.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    els.drop.addEventListener(type, function () { els.drop.classList.remove("dragover"); });
  });
  els.drop.addEventListener("drop", function (e) {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) setFiles(e.dataTransfer.files);
  });

  function setProgress(text, pct) {
    els.progress.hidden = false;
    els.progressText.textContent = text;
    if (pct == null) {
      els.progressBar.removeAttribute("value"); // indeterminate while the server ingests
      els.progressPct.textContent = "";
    } else {
      els.progressBar.value = pct;
      els.progressPct.textContent = pct + "%";
    }
  }

  // XMLHttpRequest rather than fetch(): only XHR reports upload progress.
  function send(files) {
    return new Promise(function (resolve, reject) {
      var form = new FormData();
      files.forEach(function (f) { form.append("files", f, f.name); });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", API + "documents");
      xhr.setRequestHeader("Authorization", "Bearer " + token());
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) setProgress("Uploading…", Math.round((e.loaded / e.total) * 100));
      });
      // Bytes are sent; the server now parses, chunks, embeds and indexes the files.
      xhr.upload.addEventListener("load", function () {
        setProgress("Processing: extracting text and indexing…", null);
      });
      xhr.addEventListener("load", function () {
        var body = xhr.response;
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
        var err = new Error(errorMessage(body, xhr.status));
        err.status = xhr.status;
        reject(err);
      });
      xhr.addEventListener("error", function () {
        var err = new Error("The upload failed: Lectern could not be reached.");
        err.status = 0;
        reject(err);
      });
      xhr.send(form);
    });
  }

  els.uploadForm.addEventListener("submit", async function (e) {
    e.preventDefault();
    if (!pendingFiles.length) return;
    var files = pendingFiles;
    els.uploadBtn.disabled = true;
    els.clearBtn.hidden = true;
    els.files.disabled = true;
    els.uploadError.textContent = "";
    els.results.hidden = true;
    setProgress("Uploading…", 0);
    try {
      var body = await send(files);
      var results = (body && body.results) || [];
      showResults(results);
      results.forEach(function (r) {
        if (r.document_id && (r.status === "added" || r.status === "updated")) {
          justUploaded.add(r.document_id);
        }
      });
      var ok = results.filter(function (r) { return r.status !== "failed"; }).length;
      say("Upload finished: " + ok + " of " + results.length + " files processed.");
      els.files.value = "";
      setFiles([]);
      await refresh(true);
    } catch (err) {
      handleError(err, els.uploadError);
      els.uploadBtn.disabled = false;
      els.clearBtn.hidden = false;
    } finally {
      els.progress.hidden = true;
      els.files.disabled = false;
    }
  });

  var STATUS_TEXT = {
    added: "Added", updated: "Updated", unchanged: "Unchanged", duplicate: "Duplicate",
    failed: "Failed",
  };

  function showResults(results) {
    els.resultsBody.textContent = "";
    results.forEach(function (r) {
      var tr = el("tr");
      tr.setAttribute("data-status", r.status);
      var file = el("td", "title-cell", r.filename);
      file.setAttribute("data-label", "File");
      var st = el("td");
      st.setAttribute("data-label", "Result");
      st.appendChild(el("span", "badge badge-" + r.status, STATUS_TEXT[r.status] || r.status));
      var chunks = el("td", "num", String(r.chunks));
      chunks.setAttribute("data-label", "Chunks");
      var detail = el("td", "muted", r.detail || "—");
      detail.setAttribute("data-label", "Details");
      [file, st, chunks, detail].forEach(function (td) { tr.appendChild(td); });
      els.resultsBody.appendChild(tr);
    });
    els.results.hidden = results.length === 0;
  }

  /* ----------------------------------------------------------------- health -- */

  async function checkHealth() {
    var status = "down";
    var text = "Server unreachable";
    try {
      var res = await fetch(HEALTH, { cache: "no-store" });
      var body = await res.json();
      if (res.ok && body.status === "ready") {
        status = "ready";
        text = "Ready";
      } else {
        status = "starting";
        text = "Starting: models loading";
      }
    } catch (e) { /* keep "down" */ }
    els.health.setAttribute("data-status", status);
    els.healthText.textContent = text;
    // Poll faster while starting, slowly once ready.
    window.setTimeout(checkHealth, status === "ready" ? 60000 : 5000);
  }

  /* ------------------------------------------------------------------ start -- */

  // For questions.js, which is loaded after this file.
  window.LecternAdmin = {
    api: api, el: el, say: say, formatDate: formatDate, handleError: handleError,
    signedIn: function () { return !!token() && !els.adminView.hidden; },
    view: viewFromHash,
  };

  checkHealth();
  if (token()) {
    showSignedIn(true);
    api("documents")
      .then(function (body) { render(body.documents || []); })
      .catch(function (err) { handleError(err, els.uploadError); });
  } else {
    showSignedIn(false);
  }
})();
