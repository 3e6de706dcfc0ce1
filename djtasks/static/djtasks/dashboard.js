/* djtasks dashboard: re-renders its sections from the server every few seconds,
   without reloading the page. No dependencies. */
(function () {
  "use strict";

  const root = document.getElementById("djtasks-dashboard");
  if (!root) return;
  const url = root.dataset.url;
  const select = document.getElementById("djtasks-interval");
  const updated = document.getElementById("djtasks-updated");
  const errorNote = document.getElementById("djtasks-refresh-error");
  const storageKey = "djtasks.dashboard.interval";
  let timer = null;
  let inFlight = null;
  let failures = 0;

  function seconds() {
    return Number(select.value);
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const s = seconds();
    if (s > 0 && !document.hidden) {
      // Back off while the server keeps failing, up to a minute.
      const delay = Math.min(60, s * Math.pow(2, failures)) * 1000;
      timer = setTimeout(refresh, delay);
    }
  }

  async function refresh() {
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    try {
      const reply = await fetch(url, {
        headers: {Accept: "application/json"},
        credentials: "same-origin",
        signal: inFlight.signal,
      });
      if (reply.status === 403 || reply.redirected) {
        // Logged out in another tab: stop instead of hammering the login page.
        errorNote.textContent = "not allowed any more; reload the page";
        errorNote.hidden = false;
        return;
      }
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      const data = await reply.json();
      for (const [name, html] of Object.entries(data.sections)) {
        const box = root.querySelector('[data-section="' + name + '"]');
        if (box) box.innerHTML = html;
      }
      updated.textContent = data.updated;
      root.dispatchEvent(new CustomEvent("djtasks:refresh", {detail: data.stats}));
      failures = 0;
      errorNote.hidden = true;
    } catch (err) {
      if (err.name === "AbortError") return;
      failures += 1;
      errorNote.textContent = "refresh failed (" + err.message + "); retrying";
      errorNote.hidden = false;
    } finally {
      inFlight = null;
    }
    schedule();
  }

  const saved = window.localStorage && localStorage.getItem(storageKey);
  if (saved !== null && select.querySelector('option[value="' + saved + '"]')) {
    select.value = saved;
  } else if (root.dataset.interval) {
    select.value = root.dataset.interval;
  }
  select.addEventListener("change", function () {
    if (window.localStorage) localStorage.setItem(storageKey, select.value);
    failures = 0;
    if (seconds() > 0) refresh(); else schedule();
  });
  document.addEventListener("visibilitychange", function () {
    // Nothing to watch in a hidden tab; catch up at once when it shows again.
    if (document.hidden) { clearTimeout(timer); timer = null; }
    else if (seconds() > 0) refresh();
  });
  schedule();
})();
