// Device details: connection events and messages live (uplinks with their reply code,
// refusals with their reason, commands sent down), the latest values with a small chart
// per measurepoint, service calls and property sets from the thing model's own forms,
// followed to their end, and a gateway's topology (or a sub-device's gateway). Everything
// changes with the live stream, refusals too (its `refused` kind): nothing is polled.
import { ApiError, call, data } from "./api.js";
import { clear, h, nameOf, svg, time } from "./dom.js";
import * as live from "./live.js";
import { stateBadge } from "./devices.js";
import { gatewayFact, topologySection } from "./topology.js";

const KEEP = 200; // log rows shown
const POINTS = 60; // values per chart
const FINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "expired"]);

function chart(values) {
  const width = 160;
  const height = 40;
  const numbers = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", "aria-hidden": "true" });
  if (numbers.length < 2) return box;
  const low = Math.min(...numbers);
  const high = Math.max(...numbers);
  const span = high - low || 1;
  const points = numbers.map((v, i) =>
    `${((i / (numbers.length - 1)) * (width - 4) + 2).toFixed(1)},${(height - 2 - ((v - low) / span) * (height - 4)).toFixed(1)}`);
  box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#1d4f91", "stroke-width": 2 }));
  return box;
}

function input(param, prefix) {
  const type = param.dataType ? param.dataType.type : "text";
  const id = `${prefix}-${param.identifier}`;
  let control;
  if (type === "bool") {
    control = h("select", { id }, h("option", { value: "0" }, "0 (false)"), h("option", { value: "1" }, "1 (true)"));
  } else if (type === "enum") {
    control = h("select", { id }, Object.entries(param.dataType.specs || {}).map(([v, n]) => h("option", { value: v }, `${v} (${n})`)));
  } else if (["int", "float", "double", "date"].includes(type)) {
    const s = param.dataType.specs || {};
    control = h("input", { id, type: "number", step: type === "int" || type === "date" ? (s.step || 1) : "any", min: s.min, max: s.max });
  } else {
    control = h("textarea", { id, rows: 1, placeholder: type === "text" ? "" : "JSON" });
  }
  control.dataset.type = type;
  control.dataset.identifier = param.identifier;
  return h("div", { class: "field" }, h("label", { for: id }, `${param.name || param.identifier} (${type})`), control);
}

function valueOf(control) {
  const type = control.dataset.type;
  if (type === "bool" || type === "enum" || type === "int" || type === "date") return Number(control.value);
  if (type === "float" || type === "double") return Number(control.value);
  if (type === "text") return control.value;
  return JSON.parse(control.value || "null");
}

export async function deviceDetails(main, productKey, deviceKey) {
  const query = { productKey, deviceKey };
  let device = await data("devices", "get", undefined, query);
  const product = await data("products", "get", undefined, { productKey });
  const model = await data("thing-models", "get", undefined, { modelId: product.modelId });
  document.title = `${nameOf(device.deviceName) || deviceKey} · Gatehouse console`;

  const state = h("span", { id: "device-state" }, stateBadge(device.state));
  const setState = (s) => { device = { ...device, state: s }; clear(state, stateBadge(s)); };

  // ------------------------------------------------------------ log (events, messages)
  const logBody = h("tbody");
  let cursor = null;
  function logRow(entry) {
    const payload = entry.payload !== undefined ? entry.payload : entry.payloadBase64 ? `(bytes) ${entry.payloadBase64}` : "";
    const hasCode = entry.code !== undefined && entry.code !== null;
    // A refused CONNECT, or an uplink answered with an error: its code and reason stand out.
    const refused = entry.kind === "refused" || (entry.kind === "up" && hasCode && ![0, 200].includes(entry.code));
    return h("tr", { dataset: { kind: entry.kind }, class: refused ? "refused" : undefined },
      h("td", {}, time(entry.time)), h("td", {}, entry.kind), h("td", { class: "mono" }, entry.topic || ""),
      h("td", { class: "code" }, hasCode ? String(entry.code) : ""),
      h("td", { class: "payload" }, entry.detail ? h(refused ? "strong" : "span", { class: "reason" }, entry.detail) : "",
        entry.detail && payload ? " " : "", h("span", { class: "mono" }, payload)));
  }
  async function loadLog() {
    if (cursor === null) {
      const answer = await call("devices", "listMessages", undefined, { ...query, limit: 50 });
      cursor = answer.nextCursor ?? null;
      clear(logBody, answer.data.map(logRow));
      return;
    }
    const answer = await call("devices", "listMessages", undefined, { ...query, since: cursor, limit: 100 });
    cursor = answer.nextCursor ?? cursor;
    for (const entry of answer.data) logBody.prepend(logRow(entry)); // oldest first: newest ends on top
    while (logBody.children.length > KEEP) logBody.lastChild.remove();
  }

  // ------------------------------------------------------------ latest values, charts
  const series = new Map(); // pointId -> values
  const latestBody = h("tbody");
  const latest = new Map();
  function showLatest() {
    clear(latestBody, [...latest.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([point, v]) =>
      h("tr", { dataset: { point } }, h("th", { scope: "row" }, point),
        h("td", { class: "value" }, JSON.stringify(v.value)), h("td", {}, time(v.time)),
        h("td", {}, chart(series.get(point) || [])))));
  }
  async function loadLatest() {
    const values = await data("devices", "getLatest", undefined, query);
    for (const [point, v] of Object.entries(values)) {
      latest.set(point, v);
      if (!series.has(point)) series.set(point, [v.value]);
    }
    showLatest();
  }

  // ------------------------------------------------------------ commands
  const commandBody = h("tbody");
  const commandRows = new Map();
  function commandRow(c) {
    const result = c.outputData !== undefined ? JSON.stringify(c.outputData) : c.error || c.mismatch || "";
    const tr = h("tr", { dataset: { commandId: c.commandId, state: c.state } },
      h("td", {}, time(c.createdAt)), h("td", {}, c.kind === "service" ? `service ${c.serviceId}` : c.kind),
      h("td", { class: "mono" }, JSON.stringify(c.inputData ?? c.payloadBase64 ?? "")),
      h("td", { class: "command-state" }, c.state), h("td", {}, c.replyCode ?? ""), h("td", { class: "mono" }, result));
    const old = commandRows.get(c.commandId);
    if (old) old.replaceWith(tr);
    else commandBody.prepend(tr);
    commandRows.set(c.commandId, tr);
  }
  async function loadCommands() {
    const commands = await data("commands", "list", undefined, query);
    clear(commandBody);
    commandRows.clear();
    for (const c of [...commands].reverse()) commandRow(c);
  }
  async function follow(commandId) {
    for (let i = 0; i < 600; i += 1) { // up to ten minutes: a sleeping device's timeout
      const c = await data("commands", "get", undefined, { commandId });
      commandRow(c);
      if (FINAL.has(c.state)) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  const sendError = h("p", { class: "error", id: "error-send", role: "alert" });
  async function send(action, body, extra = {}) {
    sendError.textContent = "";
    try {
      const c = await data("commands", action, body, { ...query, pendingTtl: 60, ...extra });
      commandRow(c);
      follow(c.commandId).catch(() => {});
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      sendError.textContent = failure.message;
    }
  }
  const forms = [];
  for (const service of model.tsl.services || []) {
    const params = (service.inputData || []).map((p) => input(p, `svc-${service.identifier}`));
    const form = h("form", { class: "command", dataset: { service: service.identifier }, "aria-label": `Call ${service.identifier}` },
      h("h3", {}, `Service ${service.name || service.identifier}`), params,
      h("button", { type: "submit" }, `Call ${service.identifier}`));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      let inputData;
      try {
        inputData = Object.fromEntries([...form.querySelectorAll("[data-identifier]")].map((c) => [c.dataset.identifier, valueOf(c)]));
      } catch (failure) {
        sendError.textContent = failure.message;
        return;
      }
      send("invokeService", { inputData }, { serviceId: service.identifier });
    });
    forms.push(form);
  }
  const writable = (model.tsl.properties || []).filter((p) => (p.accessMode || "r").includes("w"));
  if (writable.length) {
    const form = h("form", { class: "command", id: "set-properties", "aria-label": "Set properties" },
      h("h3", {}, "Set properties"), writable.map((p) => input(p, "set")),
      h("button", { type: "submit" }, "Set"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const measurepoints = {};
      for (const c of form.querySelectorAll("[data-identifier]")) if (c.value !== "") measurepoints[c.dataset.identifier] = valueOf(c);
      send("setMeasurepoint", { measurepoints });
    });
    forms.push(form);
  }

  // ------------------------------------------------------------ topology
  const topology = product.deviceType === "gateway" ? await topologySection(device) : null;
  const gateway = product.deviceType === "gateway" ? null : await gatewayFact(device);

  // ------------------------------------------------------------ live
  let pending = 0;
  const refreshLog = () => { clearTimeout(pending); pending = setTimeout(() => loadLog().catch(() => {}), 150); };
  const unsubscribe = live.subscribe((message) => {
    if (topology) topology.onMessage(message);
    if (message.kind === "open") {
      refreshLog();
      loadLatest().catch(() => {});
      data("devices", "get", undefined, query).then((d) => setState(d.state)).catch(() => {});
      return;
    }
    if (message.productKey !== productKey || message.deviceKey !== deviceKey) return;
    if (message.kind === "online") setState("online");
    if (message.kind === "offline") setState(message.reason === "disabled" ? "disabled" : "offline");
    if (message.kind === "measurepoints") {
      const values = series.get(message.pointId) || [];
      values.push(message.value);
      if (values.length > POINTS) values.shift();
      series.set(message.pointId, values);
      latest.set(message.pointId, { value: message.value, time: message.time });
      showLatest();
    }
    if (message.kind === "commands" && message.commandId) {
      data("commands", "get", undefined, { commandId: message.commandId }).then(commandRow).catch(() => {});
    }
    refreshLog();
  });

  clear(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/products" }, "Product Management"), " / ",
      h("a", { href: `#/products/${encodeURIComponent(productKey)}` }, nameOf(product.productName)), " / ", deviceKey),
    h("div", { class: "page-head" }, h("h1", {}, nameOf(device.deviceName) || deviceKey), state),
    gateway,
    h("div", { class: "details" },
      h("div", { class: "column" },
        h("section", { class: "card", id: "latest", "aria-labelledby": "latest-title" },
          h("h2", { id: "latest-title" }, "Latest values"),
          h("table", {}, h("thead", {}, h("tr", {}, ["Measurepoint", "Value", "Time", "Recent"].map((c) => h("th", { scope: "col" }, c)))), latestBody)),
        h("section", { class: "card", id: "log", "aria-labelledby": "log-title" },
          h("h2", { id: "log-title" }, "Connection events and messages"),
          h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Kind", "Topic", "Code", "Payload or reason"].map((c) => h("th", { scope: "col" }, c)))), logBody))),
      h("div", { class: "side" },
        h("section", { class: "card", id: "send", "aria-labelledby": "send-title" },
          h("h2", { id: "send-title" }, "Send to the device"), forms.length ? forms : h("p", { class: "muted" }, "The thing model has no services or writable properties."), sendError),
        h("section", { class: "card", id: "commands", "aria-labelledby": "commands-title" },
          h("h2", { id: "commands-title" }, "Commands"),
          h("table", {}, h("thead", {}, h("tr", {}, ["Created", "What", "Input", "State", "Code", "Result"].map((c) => h("th", { scope: "col" }, c)))), commandBody)),
        topology && topology.section)));
  await Promise.all([loadLog(), loadLatest(), loadCommands()]);
  return () => {
    unsubscribe();
    clearTimeout(pending);
  };
}
