/* djtasks/status.js: follow tasks through their signed status URLs.
 *
 * No dependencies. Elements rendered by {% task_progress %} (anything with a
 * data-djtasks-status attribute) are bound when the page loads. From script:
 *
 *   djtasks.watch(statusUrl, {onUpdate(status) {}, onFinish(status) {}, interval: 1000})
 *   djtasks.progressBar(container, statusUrl, {onFinish(status, element) {}})
 *   djtasks.scan(rootElement)        // bind bars added to the page later
 *
 * A status is the JSON of the status view: {id, state, ready, progress, result?}.
 * Watchers that share a bulk URL are polled together, one request per tick.
 */
(function () {
  "use strict";

  const groups = new Map(); // bulk URL -> {watchers: Set, timer}

  function tokenOf(statusUrl) {
    const parts = new URL(statusUrl, window.location.href).pathname.split("/").filter(Boolean);
    return decodeURIComponent(parts[parts.length - 1]);
  }

  function percentOf(status) {
    if (status.progress && typeof status.progress.percent === "number") return status.progress.percent;
    if (status.state === "SUCCESS") return 100;
    return null;
  }

  class Watcher {
    constructor(statusUrl, options) {
      this.url = statusUrl;
      this.token = tokenOf(statusUrl);
      this.options = options || {};
      this.interval = Math.max(200, Number(this.options.interval) || 1000);
      this.bulkUrl = this.options.bulkUrl || null;
      this.stopped = false;
      this.failures = 0;
      this.timer = null;
      if (this.bulkUrl) join(this); else this.poll();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.bulkUrl) leave(this);
    }

    deliver(status) {
      if (this.stopped) return;
      this.failures = 0;
      if (this.options.onUpdate) this.options.onUpdate(status);
      if (status.ready) {
        this.stop();
        if (this.options.onFinish) this.options.onFinish(status);
      }
    }

    fail(error) {
      this.failures += 1;
      if (this.options.onError) this.options.onError(error);
    }

    async poll() {
      if (this.stopped) return;
      try {
        const reply = await fetch(this.url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
        if (reply.status === 404) {
          this.stop();
          this.fail(new Error("no such task (or a status URL that is not valid)"));
          return;
        }
        if (!reply.ok) throw new Error("HTTP " + reply.status);
        this.deliver(await reply.json());
      } catch (error) {
        this.fail(error);
      }
      if (!this.stopped) {
        const delay = Math.min(30000, this.interval * Math.pow(2, this.failures));
        this.timer = setTimeout(() => this.poll(), delay);
      }
    }
  }

  // -- several tasks, one request ------------------------------------------------

  function join(watcher) {
    let group = groups.get(watcher.bulkUrl);
    if (!group) {
      group = {watchers: new Set(), timer: null, failures: 0};
      groups.set(watcher.bulkUrl, group);
    }
    group.watchers.add(watcher);
    if (!group.timer) group.timer = setTimeout(() => pollGroup(watcher.bulkUrl), 0);
  }

  function leave(watcher) {
    const group = groups.get(watcher.bulkUrl);
    if (group) group.watchers.delete(watcher);
  }

  async function pollGroup(bulkUrl) {
    const group = groups.get(bulkUrl);
    group.timer = null;
    const watchers = Array.from(group.watchers).slice(0, 100);
    if (!watchers.length) return;
    const query = watchers.map((w) => "id=" + encodeURIComponent(w.token)).join("&");
    try {
      const reply = await fetch(bulkUrl + (bulkUrl.includes("?") ? "&" : "?") + query,
        {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (reply.status === 404) {
        // One of them is not valid: let each find out on its own.
        for (const w of watchers) { leave(w); w.bulkUrl = null; w.poll(); }
      } else if (!reply.ok) {
        throw new Error("HTTP " + reply.status);
      } else {
        const data = await reply.json();
        group.failures = 0;
        data.tasks.forEach((status, i) => watchers[i].deliver(status));
      }
    } catch (error) {
      group.failures += 1;
      watchers.forEach((w) => w.fail(error));
    }
    if (group.watchers.size && !group.timer) {
      const interval = Math.min(...Array.from(group.watchers).map((w) => w.interval));
      const delay = Math.min(30000, interval * Math.pow(2, group.failures));
      group.timer = setTimeout(() => pollGroup(bulkUrl), delay);
    }
  }

  // -- progress bars -----------------------------------------------------------------

  function render(element, status) {
    const bar = element.querySelector("progress");
    const state = element.querySelector(".djtasks-progress-state");
    const percentText = element.querySelector(".djtasks-progress-percent");
    const percent = percentOf(status);
    if (bar) {
      if (percent === null && status.state !== "PENDING" && !status.ready) {
        bar.removeAttribute("value"); // running, no figures: indeterminate
      } else {
        bar.value = percent === null ? 0 : percent;
      }
    }
    if (state) state.textContent = status.state;
    if (percentText) percentText.textContent = percent === null ? "" : Math.round(percent) + "%";
    element.dataset.djtasksState = status.state;
    element.classList.toggle("djtasks-progress-done", status.state === "SUCCESS");
    element.classList.toggle("djtasks-progress-failed", status.ready && status.state !== "SUCCESS");
  }

  function bind(element, options) {
    if (element.djtasksWatcher) return element.djtasksWatcher;
    options = options || {};
    const data = element.dataset;
    element.djtasksWatcher = new Watcher(data.djtasksStatus, {
      interval: options.interval || data.djtasksInterval,
      bulkUrl: options.bulkUrl || data.djtasksBulk || null,
      onUpdate(status) {
        render(element, status);
        if (options.onUpdate) options.onUpdate(status, element);
      },
      onFinish(status) {
        const named = data.djtasksOnFinish && window[data.djtasksOnFinish];
        if (typeof named === "function") named(status, element);
        if (options.onFinish) options.onFinish(status, element);
        element.dispatchEvent(new CustomEvent("djtasks:finish", {detail: status, bubbles: true}));
      },
      onError(error) {
        element.classList.add("djtasks-progress-error");
        if (options.onError) options.onError(error, element);
      },
    });
    return element.djtasksWatcher;
  }

  function progressBar(container, statusUrl, options) {
    const element = document.createElement("div");
    element.className = "djtasks-progress";
    element.dataset.djtasksStatus = statusUrl;
    element.innerHTML = '<progress max="100" value="0" aria-label="Task progress"></progress> ' +
      '<span class="djtasks-progress-state">PENDING</span> <span class="djtasks-progress-percent">0%</span>';
    container.appendChild(element);
    bind(element, options);
    return element;
  }

  function scan(root) {
    (root || document).querySelectorAll("[data-djtasks-status]").forEach((el) => bind(el));
  }

  window.djtasks = {
    watch: (statusUrl, options) => new Watcher(statusUrl, options),
    bind,
    progressBar,
    scan,
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => scan());
  } else {
    scan();
  }
})();
