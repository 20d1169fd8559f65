// OpenPEX portal: progressive help only. Every page works without this script; with it, times
// are shown in the visitor's time zone, holds count down, and instance statuses update live.
"use strict";

(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function offsetName(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes >= 0 ? "+" : "-";
    const abs = Math.abs(minutes);
    return "UTC" + sign + String(Math.floor(abs / 60)).padStart(2, "0") + ":" + String(abs % 60).padStart(2, "0");
  }

  const longFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    timeZoneName: "short",
  });
  const secondsFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  });
  const shortFormat = new Intl.DateTimeFormat(undefined, {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((element) => {
      const date = new Date(element.getAttribute("datetime"));
      if (!isNaN(date)) {
        // (seconds only where an instant has them: a counter may move a start by less than a minute)
        element.textContent = (date.getSeconds() ? secondsFormat : longFormat).format(date);
        element.title = date.toISOString().replace(".000Z", "Z");
      }
    });
  }

  // Lines of a history name instants as RFC 1123 (GMT) inside their words: shown in local time too.
  const RFC1123 = /[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT/g;

  function localWords(root) {
    root.querySelectorAll("[data-local-words]").forEach((element) => {
      element.textContent = element.textContent.replace(RFC1123, (found) => {
        const date = new Date(found);
        return isNaN(date) ? found : (date.getSeconds() ? secondsFormat : longFormat).format(date);
      });
    });
  }

  function localInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + "T" +
      pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  // A datetime-local field is typed in the visitor's zone; its hidden twin carries the instant in UTC.
  function timeFields(form) {
    form.querySelectorAll("input[data-utc]").forEach((input) => {
      const twin = form.querySelector('input[name="' + input.dataset.utc + '"]');
      if (!twin) return;
      // The page gives the instant in UTC; shown in the visitor's zone. The twin is sent only
      // when this script filled it, so without the script the typed time counts (as UTC).
      const given = new Date(input.dataset.instant || "");
      if (input.dataset.instant && !isNaN(given)) input.value = localInput(given);
      const sync = () => {
        const picked = new Date(input.value);  // (no zone given: read as local time)
        twin.value = input.value && !isNaN(picked) ? picked.toISOString() : "";
      };
      input.addEventListener("input", sync);
      input.addEventListener("change", sync);
      sync();
    });
  }

  function lengthChoice(form) {
    const radios = form.querySelectorAll('input[name="length"]');
    if (!radios.length) return;
    const show = () => {
      const chosen = form.querySelector('input[name="length"]:checked');
      form.querySelectorAll("[data-length]").forEach((block) => {
        block.hidden = !chosen || block.dataset.length !== chosen.value;
      });
    };
    radios.forEach((radio) => radio.addEventListener("change", show));
    show();
  }

  function guardForms() {
    document.querySelectorAll("form").forEach((form) => {
      timeFields(form);
      lengthChoice(form);
      form.addEventListener("submit", (event) => {
        const question = form.dataset.confirm;
        if (question && !window.confirm(question)) {
          event.preventDefault();
          return;
        }
        if (form.dataset.sending) {  // a second click: the first is on its way
          event.preventDefault();
          return;
        }
        if (form.method.toLowerCase() === "post") {
          form.dataset.sending = "1";
          form.setAttribute("aria-busy", "true");
          form.querySelectorAll("button[type=submit]").forEach((button) => { button.classList.add("busy"); });
        }
      });
    });
  }

  function countdowns() {
    document.querySelectorAll("[data-countdown]").forEach((element) => {
      const until = Date.now() + Number(element.dataset.countdown) * 1000;
      const section = element.closest("[data-hold]") || document;
      const tick = () => {
        const left = Math.max(0, Math.round((until - Date.now()) / 1000));
        element.textContent = Math.floor(left / 60) + " min " + String(left % 60).padStart(2, "0") + " s";
        if (left > 0) {
          window.setTimeout(tick, 1000 - (Date.now() % 1000));
          return;
        }
        element.closest(".hold").hidden = true;
        const note = section.querySelector(".lapsed-note");
        if (note) note.hidden = false;
        section.querySelectorAll(".needs-hold").forEach((control) => {
          control.setAttribute("aria-disabled", "true");
          if (control.tagName === "BUTTON") control.disabled = true;
          else control.removeAttribute("href");
        });
      };
      tick();
    });
  }

  const ACTIONS = {
    RUNNING: [["stop", "Stop"], ["reboot", "Reboot"], ["delete", "Delete"]],
    HALTED: [["start", "Start"], ["delete", "Delete"]],
    CRASHED: [["start", "Start"], ["delete", "Delete"]],
    PAUSED: [["start", "Start"], ["delete", "Delete"]],
    SUSPENDED: [["start", "Start"], ["delete", "Delete"]],
    PENDING: [["delete", "Delete"]],
    DELETED: [],
  };

  function actionForm(vm, operation, label, csrf) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/instances/" + vm + "/" + operation;
    form.className = "inline";
    for (const [name, value] of [["csrf", csrf], ["back", "/instances"]]) {
      const field = document.createElement("input");
      field.type = "hidden";
      field.name = name;
      field.value = value;
      form.appendChild(field);
    }
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = label;
    if (operation === "delete") {
      button.className = "danger";
      form.dataset.confirm = "Delete this VM? It is forced off and removed.";
    }
    form.appendChild(button);
    return form;
  }

  function statusBadge(status) {
    const badge = document.createElement("span");
    badge.className = "status s-" + status.toLowerCase();
    badge.textContent = status;
    return badge;
  }

  function cell(row, label, content) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function newRow(table, instance) {
    const row = document.createElement("tr");
    row.dataset.vm = instance.vmID;
    const code = document.createElement("code");
    code.textContent = instance.vmID;
    cell(row, "VM ID", code);
    const link = document.createElement("a");
    link.href = "/reservations/" + instance.reservationId;
    link.textContent = instance.name;
    cell(row, "Name", link);
    cell(row, "Status", "").dataset.field = "status";
    for (const [label, at] of [["Start time", instance.start], ["End time", instance.end]]) {
      const time = document.createElement("time");
      time.setAttribute("datetime", at);
      time.textContent = at;
      cell(row, label, time);
    }
    cell(row, "Cluster node", "").dataset.field = "node";
    cell(row, "IP address", "—");
    const actions = cell(row, "Actions", "");
    actions.dataset.field = "actions";
    actions.className = "actions";
    table.tBodies[0].appendChild(row);
    localTimes(row);
    return row;
  }

  function showInstance(table, instance, highlight) {
    let row = table.querySelector('tr[data-vm="' + instance.vmID + '"]');
    const full = table.dataset.csrf !== undefined;  // the instances page (the reservation's page has no actions)
    if (!row) {
      if (!full) return;
      row = newRow(table, instance);
    }
    const status = row.querySelector('[data-field="status"]');
    if (status) {
      status.replaceChildren(statusBadge(instance.status));
      if (instance.reason) {
        const reason = document.createElement("span");
        reason.className = "reason";
        reason.textContent = " " + instance.reason;
        status.appendChild(reason);
      }
    }
    const node = row.querySelector('[data-field="node"]');
    if (node) node.textContent = instance.node || "—";
    const actions = row.querySelector('[data-field="actions"]');
    if (actions && full) {
      actions.replaceChildren(...(ACTIONS[instance.status] || []).map(
        ([operation, label]) => actionForm(instance.vmID, operation, label, table.dataset.csrf)));
      guardForm(actions);
    }
    if (!highlight) return;
    row.classList.remove("updated");
    void row.offsetWidth;  // (restart the highlight)
    row.classList.add("updated");
  }

  function guardForm(root) {
    root.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  function liveInstances() {
    const table = document.querySelector("[data-live-instances]");
    const state = document.querySelector("[data-live-state]");
    if (!table && !state) return;
    if (!window.EventSource) return;
    const source = new EventSource("/instances/live");
    let first = true;  // (the stream's first event is the state the page already shows)
    source.addEventListener("open", () => {
      first = true;
      if (state) state.textContent = "Live: statuses change here as they happen.";
    });
    source.addEventListener("error", () => {
      if (state) state.textContent = "Live updates are interrupted; reconnecting…";
    });
    source.addEventListener("instances", (event) => {
      let rows;
      try {
        rows = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (!table) {  // an empty instances page: load it again, with the table the first one needs
        if (rows.some((instance) => instance.status !== "DELETED")) window.location.reload();
        return;
      }
      rows.forEach((instance) => showInstance(table, instance, !first));
      first = false;
    });
    window.addEventListener("pagehide", () => source.close());
  }

  function zones() {
    document.querySelectorAll("[data-tz]").forEach((element) => {
      element.textContent = zone + " (" + offsetName(new Date()) + ")";
    });
    document.querySelectorAll("svg text[data-iso]").forEach((element) => {
      const date = new Date(element.dataset.iso);
      if (!isNaN(date)) element.textContent = shortFormat.format(date);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    localWords(document);
    zones();
    guardForms();
    countdowns();
    liveInstances();
  });
})();
