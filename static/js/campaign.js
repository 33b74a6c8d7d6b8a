// The campaign review screen: keyboard shortcuts, the content warning, drafts (server + localStorage), time spent,
// and a submit that is retried on network errors with the same idempotency key. The page works without it.
(function () {
  "use strict";

  var form, criteria, current = 0, lastTurn = null;
  var DRAFT_DELAY_MS = 700;
  var RETRIES = [500, 1000, 2000, 4000];
  var timer = { spentMs: 0, since: null };

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  // --- Time spent: counted only while the page is visible. -------------------------------------------------------
  function timerStart() { if (timer.since === null && document.visibilityState !== "hidden") timer.since = Date.now(); }
  function timerStop() { if (timer.since !== null) { timer.spentMs += Date.now() - timer.since; timer.since = null; } }
  function spentMs() { return timer.spentMs + (timer.since === null ? 0 : Date.now() - timer.since); }

  // --- Drafts --------------------------------------------------------------------------------------------------
  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  }

  function collect() {
    var scores = {};
    criteria.forEach(function (fs) {
      var checked = $("input[type=radio]:checked", fs);
      if (checked) scores[fs.dataset.criterion] = checked.value;
    });
    var decision = $("input[name=decision]:checked", form);
    return {
      scores: scores,
      decision: decision ? decision.value : "",
      comment: form.elements.comment.value,
      risk_flags: $all("input[name=risk_flags]:checked", form).map(function (b) { return b.value; }),
      idempotency_key: form.elements.idempotency_key.value,
      time_spent_ms: spentMs(),
      saved_at: Date.now()
    };
  }

  function restore(data) {
    Object.keys(data.scores || {}).forEach(function (key) {
      var radio = $("fieldset.criterion[data-criterion='" + key + "'] input[value='" + data.scores[key] + "']", form);
      if (radio) radio.checked = true;
    });
    if (data.decision) {
      var decision = $("input[name=decision][value='" + data.decision + "']", form);
      if (decision && !decision.disabled) decision.checked = true;
    }
    if (typeof data.comment === "string" && !form.elements.comment.value) form.elements.comment.value = data.comment;
    (data.risk_flags || []).forEach(function (flag) {
      var box = $("input[name=risk_flags][value='" + flag + "']", form);
      if (box) box.checked = true;
    });
    if (data.idempotency_key && !form.elements.idempotency_key.value) form.elements.idempotency_key.value = data.idempotency_key;
    if (data.time_spent_ms) timer.spentMs = Number(data.time_spent_ms) || 0;
    else if (data.time_spent_s) timer.spentMs = (Number(data.time_spent_s) || 0) * 1000;
  }

  function localDraft() {
    try { return JSON.parse(window.localStorage.getItem(form.dataset.draftKey) || "null"); } catch (e) { return null; }
  }

  var draftTimer = null, draftInFlight = Promise.resolve(), submitting = false;
  function setDraftStatus(text) { var out = $("#draft-status"); if (out) out.textContent = text; }

  function saveDraft() {
    var data = collect();
    try { window.localStorage.setItem(form.dataset.draftKey, JSON.stringify(data)); } catch (e) { /* full or off */ }
    window.clearTimeout(draftTimer);
    if (submitting) return;  // the submit deletes the server's draft: a late save must not bring it back
    draftTimer = window.setTimeout(function () { postDraft(data); }, DRAFT_DELAY_MS);
  }

  // The server keeps what the form holds; the key and the timestamps stay in this browser's copy.
  var SERVER_FIELDS = ["scores", "decision", "comment", "risk_flags", "time_spent_s"];

  function postDraft(data) {
    var body = {};
    data.time_spent_s = Math.round((data.time_spent_ms || 0) / 1000);
    SERVER_FIELDS.forEach(function (key) { body[key] = data[key]; });
    setDraftStatus("Saving draft…");
    draftInFlight = fetch(form.dataset.draftUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
      body: JSON.stringify(body)
    }).then(function (response) {
      setDraftStatus(response.ok ? "Draft saved" : "Draft kept in this browser only");
    }).catch(function () { setDraftStatus("Offline: draft kept in this browser"); });
    return draftInFlight;
  }

  // --- Rated count and criterion focus ---------------------------------------------------------------------------
  function updateRated() {
    var out = $("#rated-count");
    if (!out) return;
    out.textContent = $all("fieldset.criterion input:checked", form).length + " of " + criteria.length + " criteria rated";
  }

  // quiet: focus without scrolling (the page opens at the top of the dialogue, not at the rubric).
  function focusCriterion(index, quiet) {
    if (!criteria.length) return;
    current = Math.max(0, Math.min(criteria.length - 1, index));
    criteria.forEach(function (fs, i) { fs.classList.toggle("is-current", i === current); });
    criteria[current].focus({ preventScroll: !!quiet });
    if (!quiet) criteria[current].scrollIntoView({ block: "nearest" });
  }

  // j / k: the next or previous turn, focused (so that e edits it) and scrolled into its pane.
  function moveTurn(step) {
    var turns = $all(".turn");
    if (!turns.length || $("#item-content").hidden) return;
    var at = turns.indexOf(lastTurn);
    var next = turns[Math.max(0, Math.min(turns.length - 1, at < 0 ? 0 : at + step))];
    turns.forEach(function (t) { t.classList.toggle("is-current", t === next); });
    next.focus({ preventScroll: true });
    next.scrollIntoView({ block: "nearest" });
    lastTurn = next;
  }

  // --- Submit, retried with the same idempotency key -------------------------------------------------------------
  function showErrors(errors) {
    var box = $("#submit-errors");
    box.hidden = false;
    box.textContent = "";
    var head = document.createElement("p");
    head.innerHTML = "<strong>The review was not saved.</strong>";
    box.appendChild(head);
    Object.keys(errors).forEach(function (field) {
      errors[field].forEach(function (message) {
        var p = document.createElement("p");
        p.textContent = (field === "__all__" ? "" : field.replace(/^score_/, "").replace(/_/g, " ") + ": ") + message;
        box.appendChild(p);
      });
    });
    box.scrollIntoView({ block: "center" });
  }

  // Taking the next item changes the queue, so it is a POST (with the CSRF token), never a GET: the browser follows
  // the answer to the item claimed, or to the page that says the queue is empty.
  function claimNext(url) {
    var claim = document.createElement("form");
    claim.method = "post";
    claim.action = url;
    claim.hidden = true;
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = form.elements.csrfmiddlewaretoken.value;
    claim.appendChild(token);
    document.body.appendChild(claim);
    claim.submit();
  }

  function submit() {
    if (submitting) return;
    submitting = true;
    var button = $("#submit-review");
    button.disabled = true;
    form.elements.time_spent_s.value = String(Math.round(spentMs() / 1000));
    var body = new FormData(form);
    var attempt = 0;

    function send() {
      setDraftStatus(attempt ? "Retrying (" + attempt + ")…" : "Submitting…");
      return fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" }
      }).then(function (response) {
        if (response.status >= 502 && response.status <= 504) throw new Error("gateway " + response.status);
        return response.json().then(function (json) { return { status: response.status, json: json }; });
      }).then(function (result) {
        if (result.status === 200) {
          // Saved (a retry of a submit that was saved already is answered the same: the key names it).
          try { window.localStorage.removeItem(form.dataset.draftKey); } catch (e) { /* ignore */ }
          window.clearTimeout(draftTimer);
          setDraftStatus("Review saved");
          claimNext(result.json.next);
          return;
        }
        submitting = false;
        button.disabled = false;
        setDraftStatus("");
        showErrors(result.json.errors || { __all__: ["HTTP " + result.status] });
      }, function () {
        if (attempt < RETRIES.length) {
          window.setTimeout(send, RETRIES[attempt]);
          attempt += 1;
          return;
        }
        submitting = false;
        button.disabled = false;
        setDraftStatus("");
        showErrors({ __all__: ["The server could not be reached. Your review is kept in this browser: submit again."] });
      });
    }
    // A draft save still on its way would land after the submit and bring the deleted draft back: wait for it.
    window.clearTimeout(draftTimer);
    draftInFlight.then(send, send);
  }

  // --- Keyboard --------------------------------------------------------------------------------------------------
  // The two overlays (the shortcuts, the item panel) each return the focus where it was when they close.
  var returnFocus = null;
  function toggleOverlay(id, closeId, show) {
    var box = $(id);
    var open = show === undefined ? box.hidden : show;
    if (open === !box.hidden) return;
    if (open) {
      returnFocus = document.activeElement;
      box.hidden = false;
      $(closeId).focus();
    } else {
      box.hidden = true;
      if (returnFocus && returnFocus.focus) returnFocus.focus({ preventScroll: true });
    }
  }
  function toggleHelp(show) { toggleOverlay("#shortcut-help", "#close-help", show); }
  function togglePanel(show) { toggleOverlay("#item-panel", "#close-item-panel", show); }

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select" || target.isContentEditable) return true;
    return tag === "input" && !/^(radio|checkbox|button|submit)$/.test(target.type);
  }

  function chooseDecision(value) {
    var radio = $("input[name=decision][value='" + value + "']", form);
    if (!radio) return;
    if (radio.disabled) {
      var reason = $("#approve-blocked");
      if (reason) { reason.classList.add("flash"); window.setTimeout(function () { reason.classList.remove("flash"); }, 800); }
      return;
    }
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function editTurn() {
    var turn = document.activeElement && document.activeElement.closest && document.activeElement.closest(".turn");
    turn = turn || lastTurn || $(".turn");
    if (!turn || $("#item-content").hidden) return;
    var button = $("button.edit-turn", turn);
    if (button) button.click();
  }

  function onKey(event) {
    var help = $("#shortcut-help"), panel = $("#item-panel");
    if (event.key === "Escape" && !help.hidden) { toggleHelp(false); return; }
    if (event.key === "Escape" && !panel.hidden) { togglePanel(false); return; }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (event.target.closest && event.target.closest(".turn-form")) return;  // saves the turn, not the review
      event.preventDefault();
      submit();
      return;
    }
    if (typing(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
    var key = event.key;
    if (key === "?") { event.preventDefault(); togglePanel(false); toggleHelp(); return; }
    if (key === "i" && help.hidden) { event.preventDefault(); togglePanel(); return; }
    if (!help.hidden || !panel.hidden) return;
    if (/^[1-5]$/.test(key)) {
      var radio = criteria[current] && $("input[value='" + key + "']", criteria[current]);
      if (!radio) return;
      event.preventDefault();
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
      focusCriterion(current + 1);
      return;
    }
    var inCriterion = event.target.closest && event.target.closest("fieldset.criterion");
    if ((key === "ArrowDown" || key === "ArrowUp") && (inCriterion || event.target === document.body)) {
      event.preventDefault();
      focusCriterion(current + (key === "ArrowDown" ? 1 : -1));
      return;
    }
    var actions = {
      a: function () { chooseDecision("approve"); },
      r: function () { chooseDecision("reject"); },
      n: function () { chooseDecision("needs_revision"); },
      e: editTurn,
      j: function () { moveTurn(1); },
      k: function () { moveTurn(-1); },
      s: function () { $("#release-form").requestSubmit(); }
    };
    if (actions[key]) { event.preventDefault(); actions[key](); }
  }

  function init() {
    form = $("#review-form");
    if (!form || !form.dataset.draftKey) return;
    // Every item opens at the top of its dialogue, a reload too (the browser would restore the old position).
    if ("scrollRestoration" in window.history) window.history.scrollRestoration = "manual";
    criteria = $all("fieldset.criterion", form);
    // Tab moves from criterion to criterion (the fieldsets are the stops); the numbers pick the score.
    $all("fieldset.criterion input[type=radio]", form).forEach(function (r) { r.tabIndex = -1; });
    $all(".turn").forEach(function (t) { t.tabIndex = 0; });

    var stored = JSON.parse($("#server-draft").textContent || "{}") || {};
    var server = stored.data || {};
    var local = localDraft();
    // The newer copy wins: this browser's (a reload) or the server's (a closed tab, another device).
    var draft = local && (!stored.saved_at || Number(local.saved_at) > Number(stored.saved_at)) ? local : server;
    if (draft && Object.keys(draft).length) {
      restore(draft);
      setDraftStatus("Draft restored");
    }
    if (!form.elements.idempotency_key.value) form.elements.idempotency_key.value = newKey();
    updateRated();

    form.addEventListener("change", function () { updateRated(); saveDraft(); });
    form.addEventListener("input", saveDraft);
    form.addEventListener("submit", function (event) { event.preventDefault(); submit(); });
    form.addEventListener("focusin", function (event) {
      var fs = event.target.closest("fieldset.criterion");
      if (fs) { current = criteria.indexOf(fs); criteria.forEach(function (f, i) { f.classList.toggle("is-current", i === current); }); }
    });
    document.addEventListener("focusin", function (event) {
      var turn = event.target.closest && event.target.closest(".turn");
      if (turn) lastTurn = turn;
    });
    // A swapped-in turn (after an edit) is a keyboard stop like the others.
    document.addEventListener("htmx:afterSwap", function () { $all(".turn").forEach(function (t) { t.tabIndex = 0; }); });

    var show = $("#show-content");
    if (show) {
      show.addEventListener("click", function () {
        $("#item-content").hidden = false;
        $("#content-warning").hidden = true;
        focusCriterion(0, true);
      });
    }
    $("#show-help").addEventListener("click", function () { toggleHelp(true); });
    $("#close-help").addEventListener("click", function () { toggleHelp(false); });
    $("#show-item-panel").addEventListener("click", function () { togglePanel(true); });
    $("#close-item-panel").addEventListener("click", function () { togglePanel(false); });
    // A click on the dimmed backdrop closes an overlay too.
    ["#shortcut-help", "#item-panel"].forEach(function (id) {
      $(id).addEventListener("click", function (event) { if (event.target === event.currentTarget) toggleOverlay(id, "", false); });
    });
    document.addEventListener("keydown", onKey);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") { timerStop(); saveDraft(); } else { timerStart(); }
    });
    timerStart();
    // The keys work from the start (the first criterion has the focus), but the page stays at the top of the item.
    if (!show) focusCriterion(0, true);
    window.scrollTo(0, 0);
    $all(".desk-pane").forEach(function (pane) { pane.scrollTop = 0; });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
