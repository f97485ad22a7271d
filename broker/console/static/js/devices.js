// A product's devices: their state changing live (the stream's online and offline),
// create one or a batch, credentials as CSV, enable or disable, delete.
import { all, ApiError, data } from "./api.js";
import { clear, csv, download, h, nameOf, time, toast } from "./dom.js";
import * as live from "./live.js";

const STATES = { inactive: "Inactive", online: "Online", offline: "Offline", disabled: "Disabled" };

function zone() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

export function stateBadge(state) {
  return h("span", { class: `state ${state}`, dataset: { state } }, STATES[state] || state);
}

function credentialsCsv(rows) {
  return csv([["productKey", "deviceKey", "deviceSecret", "assetId"],
    ...rows.map((r) => [r.productKey, r.deviceKey, r.deviceSecret, r.assetId])]);
}

export async function devicesSection(product) {
  const productKey = product.productKey;
  const section = h("section", { class: "card", id: "devices", "aria-labelledby": "devices-title" });
  const body = h("tbody");
  const rows = new Map(); // deviceKey -> row
  const count = h("span", { class: "muted", role: "status" });
  const error = h("p", { class: "error", id: "error-devices", role: "alert" });

  function row(device) {
    const state = h("td", { class: "state-cell" }, stateBadge(device.state));
    const toggle = h("button", { type: "button", class: "small" }, device.state === "disabled" ? "Enable" : "Disable");
    const remove = h("button", { type: "button", class: "small danger" }, "Delete");
    const tr = h("tr", { dataset: { deviceKey: device.deviceKey } },
      h("td", {}, h("a", { href: `#/products/${encodeURIComponent(productKey)}/devices/${encodeURIComponent(device.deviceKey)}` },
        nameOf(device.deviceName) || device.deviceKey)),
      h("td", { class: "mono" }, device.deviceKey),
      state,
      h("td", {}, time(device.createdAt)),
      h("td", { class: "row-actions" }, toggle, remove));
    tr.device = device;
    toggle.addEventListener("click", async () => {
      const action = tr.device.state === "disabled" ? "enable" : "disable";
      try {
        setDevice(await data("devices", action, undefined, { productKey, deviceKey: device.deviceKey }));
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete device ${device.deviceKey}? Its credentials stop working at once.`)) return;
      try {
        await data("devices", "delete", undefined, { productKey, deviceKey: device.deviceKey });
        tr.remove();
        rows.delete(device.deviceKey);
        showCount();
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
    return tr;
  }

  function setDevice(device) {
    const tr = rows.get(device.deviceKey);
    if (!tr) return;
    const fresh = row(device);
    tr.replaceWith(fresh);
    rows.set(device.deviceKey, fresh);
  }

  function setState(deviceKey, state) {
    const tr = rows.get(deviceKey);
    if (!tr) return;
    setDevice({ ...tr.device, state });
  }

  function showCount() {
    count.textContent = `${rows.size} devices`;
  }

  async function load() {
    const devices = await all("devices", "list", { productKey });
    rows.clear();
    for (const device of devices) rows.set(device.deviceKey, row(device));
    clear(body, [...rows.values()]);
    showCount();
  }

  const unsubscribe = live.subscribe((message) => {
    if (message.kind === "open") {
      load().catch(() => {});
      return;
    }
    if (message.productKey !== productKey) return;
    if (message.kind === "online") setState(message.deviceKey, "online");
    else if (message.kind === "offline") {
      if (message.reason === "deleted") {
        const tr = rows.get(message.deviceKey);
        if (tr) tr.remove();
        rows.delete(message.deviceKey);
        showCount();
      } else setState(message.deviceKey, message.reason === "disabled" ? "disabled" : "offline");
    }
  });

  function showCredentials(created, title) {
    const dialog = h("dialog", { id: "credentials-dialog", "aria-labelledby": "credentials-title" });
    const save = h("button", { type: "button", class: "primary" }, "Download credentials (CSV)");
    const close = h("button", { type: "button" }, "Close");
    save.addEventListener("click", () => download(`${productKey}-new-devices.csv`, credentialsCsv(created)));
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => dialog.remove());
    dialog.append(h("h2", { id: "credentials-title" }, title),
      h("p", {}, "Keep the secrets: each DeviceSecret is the device's to sign with."),
      h("table", {}, h("thead", {}, h("tr", {}, ["DeviceKey", "DeviceSecret"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, created.slice(0, 20).map((d) => h("tr", {}, h("td", { class: "mono" }, d.deviceKey), h("td", { class: "mono" }, d.deviceSecret))))),
      created.length > 20 ? h("p", { class: "muted" }, `and ${created.length - 20} more in the CSV`) : null,
      h("div", { class: "actions" }, close, save));
    document.body.append(dialog);
    dialog.showModal();
    save.focus();
  }

  // One device
  const name = h("input", { id: "device-name", required: true, maxlength: 100, autocomplete: "off" });
  const key = h("input", { id: "device-key", maxlength: 32, autocomplete: "off", placeholder: "generated", "aria-describedby": "error-device-key" });
  const keyError = h("p", { class: "error", id: "error-device-key", role: "alert" });
  const one = h("form", { class: "inline", "aria-label": "Add a device" },
    h("label", { for: "device-name" }, "Device name"), name,
    h("label", { for: "device-key" }, "DeviceKey"), key,
    h("button", { type: "submit", class: "primary", id: "add-device" }, "Add device"), keyError);
  one.addEventListener("submit", async (event) => {
    event.preventDefault();
    keyError.textContent = "";
    const device = { productKey, deviceName: { defaultValue: name.value.trim(), i18nValue: {} }, timezone: zone() };
    if (key.value.trim()) device.deviceKey = key.value.trim();
    try {
      const created = await data("devices", "create", device);
      one.reset();
      await load();
      showCredentials([created], "Device created");
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      keyError.textContent = failure.message;
    }
  });

  // A batch
  const many = h("input", { id: "batch-count", type: "number", min: 1, max: 50000, value: 10 });
  const prefix = h("input", { id: "batch-prefix", value: "device", maxlength: 80 });
  const batchError = h("p", { class: "error", id: "error-batch", role: "alert" });
  const batch = h("form", { class: "inline", "aria-label": "Add a batch of devices" },
    h("label", { for: "batch-count" }, "How many"), many,
    h("label", { for: "batch-prefix" }, "Name prefix"), prefix,
    h("button", { type: "submit", id: "add-batch" }, "Add a batch"), batchError);
  batch.addEventListener("submit", async (event) => {
    event.preventDefault();
    batchError.textContent = "";
    const n = Number(many.value);
    const tz = zone();
    const deviceList = Array.from({ length: n }, (_, i) => ({
      productKey, deviceName: { defaultValue: `${prefix.value.trim() || "device"}-${i + 1}`, i18nValue: {} }, timezone: tz,
    }));
    try {
      const created = await data("devices", "batchCreate", { deviceList });
      await load();
      showCredentials(created, `${created.length} devices created`);
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      batchError.textContent = failure.message;
    }
  });

  const exportAll = h("button", { type: "button", id: "export-credentials" }, "Download credentials (CSV)");
  exportAll.addEventListener("click", async () => {
    try {
      const rows = await all("devices", "exportCredentials", { productKey });
      download(`${productKey}-credentials.csv`, credentialsCsv(rows));
    } catch (failure) {
      toast(failure.message);
    }
  });

  clear(section,
    h("div", { class: "section-head" }, h("h2", { id: "devices-title" }, "Devices"), count, exportAll),
    one, batch, error,
    h("table", { class: "devices" },
      h("thead", {}, h("tr", {}, ["Name", "DeviceKey", "State", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      body));
  await load();
  return { element: section, leave: unsubscribe };
}
