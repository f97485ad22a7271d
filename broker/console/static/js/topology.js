// A gateway's topology on its device page (its sub-devices with their state, live; add
// and remove one with device-topos), and a sub-device's gateway on its own page.
import { ApiError, call, data } from "./api.js";
import { clear, h, nameOf } from "./dom.js";
import { stateBadge } from "./devices.js";

const link = (d) => h("a", {
  href: `#/products/${encodeURIComponent(d.productKey)}/devices/${encodeURIComponent(d.deviceKey)}`,
}, nameOf(d.deviceName) || d.deviceKey);

// The section and onMessage(message) for the page's live stream listener.
export async function topologySection(gateway) {
  const where = { productKey: gateway.productKey, deviceKey: gateway.deviceKey };
  const body = h("tbody");
  const rows = new Map(); // "pk/dk" -> state cell
  const error = h("p", { class: "error", id: "error-topo", role: "alert" });
  const empty = h("p", { class: "muted" }, "No sub-devices.");

  function row(sub) {
    const state = h("td", { class: "sub-state" }, stateBadge(sub.state));
    rows.set(`${sub.productKey}/${sub.deviceKey}`, state);
    const remove = h("button", { type: "button", class: "small danger" }, "Remove");
    remove.addEventListener("click", () => change("deleteSubDevice", sub.productKey, sub.deviceKey));
    return h("tr", { dataset: { subProduct: sub.productKey, subDevice: sub.deviceKey } },
      h("td", {}, link(sub)), h("td", { class: "mono" }, sub.productKey), h("td", { class: "mono" }, sub.deviceKey),
      state, h("td", { class: "row-actions" }, remove));
  }
  async function load() {
    const subs = await data("device-topos", "list", undefined, where);
    rows.clear();
    clear(body, subs.map(row));
    empty.hidden = subs.length > 0;
  }
  async function change(action, productKey, deviceKey) {
    error.textContent = "";
    try {
      await call("device-topos", action, { subDevices: [{ productKey, deviceKey }] }, where);
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      error.textContent = `${failure.message} (code ${failure.code})`;
      return false;
    }
    await load();
    return true;
  }

  const productKey = h("input", { id: "sub-product", required: true, autocomplete: "off", class: "mono" });
  const deviceKey = h("input", { id: "sub-device", required: true, autocomplete: "off", class: "mono" });
  const form = h("form", { class: "inline", "aria-label": "Add a sub-device" },
    h("label", { for: "sub-product" }, "Sub-device ProductKey"), productKey,
    h("label", { for: "sub-device" }, "Sub-device DeviceKey"), deviceKey,
    h("button", { type: "submit" }, "Add sub-device"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await change("addSubDevice", productKey.value.trim(), deviceKey.value.trim())) form.reset();
  });

  await load();
  const section = h("section", { class: "card", id: "sub-devices", "aria-labelledby": "subs-title" },
    h("h2", { id: "subs-title" }, "Sub-devices (topology)"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Device", "ProductKey", "DeviceKey", "State", ""].map((c) => h("th", { scope: "col" }, c)))), body),
    empty, form);
  let pending = 0;
  const reload = () => { clearTimeout(pending); pending = setTimeout(() => load().catch(() => {}), 150); };
  const through = `through gateway ${gateway.productKey}/${gateway.deviceKey}`;
  function onMessage(message) {
    if (message.kind === "open") { reload(); return; }
    const cell = rows.get(`${message.productKey}/${message.deviceKey}`);
    // One it did not list, logged in through this gateway: added over MQTT meanwhile.
    if (!cell && message.kind === "online" && String(message.reason).startsWith(through)) reload();
    if (!cell) return;
    if (message.kind === "online") clear(cell, stateBadge("online"));
    if (message.kind === "offline") {
      if (message.reason === "deleted") load().catch(() => {});
      else clear(cell, stateBadge(message.reason === "disabled" ? "disabled" : "offline"));
    }
  }
  return { section, onMessage };
}

// "Gateway: ..." for a device in a gateway's topology; null for one in none.
export async function gatewayFact(device) {
  const gateway = await data("device-topos", "getGateway", undefined,
    { productKey: device.productKey, deviceKey: device.deviceKey });
  if (!gateway) return null;
  return h("p", { id: "gateway-of" }, "Sub-device of the gateway ", link(gateway), " ",
    h("span", { class: "mono" }, `${gateway.productKey}/${gateway.deviceKey}`));
}
