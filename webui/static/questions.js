/* Lectern admin page, "Questions" view: what was asked, what the documents missed
 * (abstained on or rated down, grouped by meaning on the server), the recent questions
 * with their ratings and comments, and CSV/JSONL exports.
 *
 * Loaded after admin.js, whose helpers it uses (window.LecternAdmin). It loads when the
 * view is shown, and again when the period changes or Refresh is pressed.
 */
(function () {
  "use strict";

  var A = window.LecternAdmin;
  var el = A.el;
  var RECENT = 50; // recent questions listed
  var PHRASINGS = 4; // other phrasings shown under a group's example

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    view: $("questions-view"), days: $("q-days"), refresh: $("q-refresh"), error: $("q-error"),
    stats: $("q-stats"), answers: $("q-answers"), abstained: $("q-abstained"), up: $("q-up"),
    down: $("q-down"), missedBody: $("missed-body"), missedCount: $("missed-count"),
    missedEmpty: $("missed-empty"), recentBody: $("recent-body"), recentCount: $("recent-count"),
    recentEmpty: $("recent-empty"), missedOnly: $("q-missed-only"), exportError: $("export-error"),
  };
  var requested = 0; // the newest load; an older one that answers late is dropped

  function days() {
    return els.days.value;
  }

  function time(iso) {
    var t = el("time", null, A.formatDate(iso));
    t.dateTime = iso;
    return t;
  }

  function cell(label, cls, content) {
    var td = el("td", cls);
    td.setAttribute("data-label", label);
    if (content instanceof Node) td.appendChild(content);
    else if (content != null) td.textContent = content;
    return td;
  }

  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  /* ------------------------------------------------------------------ load -- */

  function busy(on) {
    [els.stats, els.missedBody, els.recentBody].forEach(function (n) {
      if (on) n.setAttribute("aria-busy", "true");
      else n.removeAttribute("aria-busy");
    });
  }

  async function load() {
    var mine = ++requested;
    els.refresh.disabled = true;
    els.error.textContent = "";
    busy(true);
    try {
      var body = await A.api(
        "admin/questions?days=" + encodeURIComponent(days()) + "&recent=" + RECENT
      );
      if (mine !== requested) return;
      render(body);
    } catch (err) {
      if (mine === requested) A.handleError(err, els.error);
    } finally {
      if (mine === requested) {
        els.refresh.disabled = false;
        busy(false);
      }
    }
  }

  function render(body) {
    els.answers.textContent = String(body.answers);
    els.abstained.textContent = String(body.abstained);
    els.up.textContent = String(body.rated_up);
    els.down.textContent = String(body.rated_down);
    var period = "in the last " + body.days + " days";
    renderMissed(body.missed || [], period);
    renderRecent(body.recent || [], body.answers, period);
  }

  function clear() {
    requested++;
    [els.answers, els.abstained, els.up, els.down].forEach(function (n) { n.textContent = "–"; });
    [els.missedBody, els.recentBody, els.missedCount, els.recentCount].forEach(function (n) {
      n.textContent = "";
    });
    els.error.textContent = "";
    els.exportError.textContent = "";
  }

  /* ---------------------------------------------------------------- tables -- */

  function renderMissed(groups, period) {
    var frag = document.createDocumentFragment();
    groups.forEach(function (g) {
      // The wordings are as asked; a follow-up also shows what it was searched as (the
      // earlier turns beside it), cut (CSS) to a few lines, whole in the tooltip.
      var question = el("div");
      var example = el("span", "question", g.example);
      example.title = g.example;
      question.appendChild(example);
      if (g.example_searched) {
        var searched = el("span", "standalone", "Searched for: " + g.example_searched);
        searched.title = g.example_searched;
        question.appendChild(searched);
      }
      var others = (g.questions || []).filter(function (q) { return q !== g.example; });
      if (others.length) {
        var also = el("div", "phrasings");
        also.appendChild(el("span", "phrasings-label", "Also asked as:"));
        var list = el("ul");
        others.slice(0, PHRASINGS).forEach(function (q) {
          var li = el("li", null, q);
          li.title = q;
          list.appendChild(li);
        });
        if (others.length > PHRASINGS) {
          list.appendChild(el("li", "muted", "and " + (others.length - PHRASINGS) + " more"));
        }
        also.appendChild(list);
        question.appendChild(also);
      }
      var tr = row([
        cell("Asked", "num", String(g.count)),
        cell("Question", "title-cell", question),
        cell("Not found", "num", String(g.abstained)),
        cell("Rated down", "num", String(g.rated_down)),
        cell("Last asked", "date-cell", time(g.last_asked)),
      ]);
      frag.appendChild(tr);
    });
    els.missedBody.textContent = "";
    els.missedBody.appendChild(frag);
    els.missedCount.textContent =
      "(" + groups.length + (groups.length === 1 ? " group)" : " groups)");
    els.missedEmpty.hidden = groups.length > 0;
    els.missedEmpty.textContent =
      "Nothing missed " + period + ": every question was answered and none was rated down.";
  }

  // The question as asked; what was searched for only when it differs (a follow-up made
  // to stand alone: with the default rewrite, the question plus the earlier turns, long).
  function questionCell(entry) {
    var box = el("div");
    box.appendChild(el("span", "question", entry.question));
    var searched = (entry.standalone_question || "").trim();
    if (searched && searched !== entry.question.trim()) {
      var s = el("span", "standalone", "Searched for: " + searched);
      s.title = searched;
      box.appendChild(s);
    }
    return box;
  }

  var RATING = { up: ["Helpful", "badge-added"], down: ["Not helpful", "badge-failed"] };

  function renderRecent(list, total, period) {
    var frag = document.createDocumentFragment();
    list.forEach(function (e) {
      var answer = el("div");
      if (e.abstained) answer.appendChild(el("span", "badge badge-unchanged", "Not found"));
      var text = el("span", "clamp", e.answer);
      text.title = e.answer;
      answer.appendChild(text);
      var rating = RATING[e.rating];
      var tr = row([
        cell("Asked", "date-cell", time(e.created)),
        cell("Question", "title-cell", questionCell(e)),
        cell("Answer", "answer-cell", answer),
        cell("Rating", "rating-cell", rating ? el("span", "badge " + rating[1], rating[0]) : "—"),
        cell("Comment", "comment-cell", e.comment || "—"),
      ]);
      tr.setAttribute("data-answer-id", e.id);
      if (e.rating) tr.setAttribute("data-rating", e.rating);
      frag.appendChild(tr);
    });
    els.recentBody.textContent = "";
    els.recentBody.appendChild(frag);
    els.recentCount.textContent = list.length < total
      ? "(the newest " + list.length + " of " + total + ")" : "(" + list.length + ")";
    els.recentEmpty.hidden = list.length > 0;
    els.recentEmpty.textContent = "No questions " + period + ".";
  }

  /* ---------------------------------------------------------------- export -- */

  function fileName(disposition, fallback) {
    var m = /filename="?([^";]+)"?/i.exec(disposition || "");
    return m ? m[1] : fallback;
  }

  // The export needs the bearer token, which a plain link cannot send: fetch the file,
  // then hand it to the browser as a download from a blob URL.
  async function download(format, button) {
    button.disabled = true;
    els.exportError.textContent = "";
    var path = "admin/questions/export?format=" + format + "&days=" + encodeURIComponent(days()) +
      "&missed_only=" + els.missedOnly.checked;
    try {
      var res = await A.api(path, { response: true });
      var blob = await res.blob();
      var name = fileName(res.headers.get("Content-Disposition"), "lectern-questions." + format);
      var url = URL.createObjectURL(blob);
      var link = el("a");
      link.href = url;
      link.download = name;
      document.body.appendChild(link);
      link.click();
      link.remove();
      // Revoked later: the download may not have read the blob yet.
      window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      A.say("Downloaded " + name + ".");
    } catch (err) {
      A.handleError(err, els.exportError);
    } finally {
      button.disabled = false;
    }
  }

  /* ----------------------------------------------------------------- start -- */

  els.days.addEventListener("change", load);
  els.refresh.addEventListener("click", load);
  Array.prototype.forEach.call(els.view.querySelectorAll("[data-format]"), function (b) {
    b.addEventListener("click", function () { download(b.getAttribute("data-format"), b); });
  });
  document.addEventListener("lectern-admin:view", function (e) {
    if (e.detail === "questions") load();
  });
  document.addEventListener("lectern-admin:signed-out", clear);
  // admin.js may have shown this view before this file ran (a reload on #questions).
  if (A.signedIn() && A.view() === "questions") load();
})();
