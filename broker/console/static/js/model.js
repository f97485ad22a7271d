// A product's thing model (view, import a TSL file, edit) and the facts a firmware
// engineer needs to connect its devices: host, ports, topics, how to sign.
import { ApiError, data } from "./api.js";
import { clear, h } from "./dom.js";

function specs(dataType) {
  if (!dataType) return "";
  const s = dataType.specs || {};
  if (Array.isArray(s)) return s.map((m) => m.identifier).join(", ");
  return Object.entries(s).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

function table(caption, columns, rows) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, v))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "None"))));
}

function modelTables(tsl) {
  const params = (list) => (list || []).map((p) => `${p.identifier}: ${p.dataType ? p.dataType.type : ""}`).join(", ");
  return [
    table("Properties", ["Identifier", "Name", "Type", "Access", "Specs"],
      (tsl.properties || []).map((p) => [p.identifier, p.name || "", p.dataType ? p.dataType.type : "",
        p.accessMode || "r", specs(p.dataType)])),
    table("Events", ["Identifier", "Name", "Type", "Output data"],
      (tsl.events || []).map((e) => [e.identifier, e.name || "", e.type || "", params(e.outputData)])),
    table("Services", ["Identifier", "Name", "Input data", "Output data"],
      (tsl.services || []).map((s) => [s.identifier, s.name || "", params(s.inputData), params(s.outputData)])),
  ];
}

export async function thingModelSection(product) {
  const section = h("section", { class: "card", id: "thing-model", "aria-labelledby": "model-title" });
  let model = await data("thing-models", "get", undefined, { modelId: product.modelId });
  const frozen = product.developmentStatus === "released";
  const error = h("p", { class: "error", id: "error-model", role: "alert" });

  async function save(tsl) {
    error.textContent = "";
    try {
      model = await data("thing-models", "update", { modelId: model.modelId, name: model.name, desc: model.desc, tsl });
      show();
      return true;
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      error.textContent = failure.message;
      return false;
    }
  }

  function show() {
    const file = h("input", { id: "tsl-file", type: "file", accept: "application/json,.json", disabled: frozen, "aria-describedby": "error-model" });
    file.addEventListener("change", async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      let tsl;
      try {
        tsl = JSON.parse(await chosen.text());
      } catch (failure) {
        error.textContent = `${chosen.name} is not JSON: ${failure.message}`;
        return;
      }
      await save(tsl && tsl.tsl ? tsl.tsl : tsl); // a TSL, or a thing-model export holding one
    });
    const edit = h("button", { type: "button", id: "edit-model", disabled: frozen }, "Edit");
    edit.addEventListener("click", () => {
      const text = h("textarea", { id: "tsl-text", rows: 16, spellcheck: "false", "aria-describedby": "error-model" },
        JSON.stringify(model.tsl, null, 2));
      const form = h("form", {}, h("label", { for: "tsl-text" }, "The thing model (TSL JSON)"), text, error,
        h("div", { class: "actions" }, h("button", { type: "button", value: "cancel" }, "Cancel"),
          h("button", { type: "submit", class: "primary" }, "Save the thing model")));
      form.querySelector("[value=cancel]").addEventListener("click", show);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        let tsl;
        try {
          tsl = JSON.parse(text.value);
        } catch (failure) {
          error.textContent = `Not JSON: ${failure.message}`;
          return;
        }
        await save(tsl);
      });
      clear(section, h("h2", { id: "model-title" }, "Thing model"), form);
      text.focus();
    });
    clear(section,
      h("h2", { id: "model-title" }, "Thing model ", h("small", { class: "mono" }, model.modelId)),
      frozen ? h("p", { class: "hint" }, "The product is released: its thing model is frozen.") : null,
      h("div", { class: "toolbar" }, edit, h("label", { for: "tsl-file" }, "Import a TSL file"), file),
      error, modelTables(model.tsl));
  }
  show();
  return section;
}

export async function connectionSection(product) {
  const pk = product.productKey;
  let where = null;
  try {
    where = await data("connection", "get");
  } catch {
    where = null; // an API without the connection facts: the topics are still right
  }
  const host = (where && where.mqttHost) || location.hostname;
  const custom = product.dataFormat === "Custom";
  const topics = [
    ["Post measurepoints", `/sys/${pk}/{deviceKey}/thing/measurepoint/post`, "up"],
    ["Post events", `/sys/${pk}/{deviceKey}/thing/event/{eventId}/post`, "up"],
    ["Update attributes", `/sys/${pk}/{deviceKey}/thing/attribute/update`, "up"],
    ["Service calls", `/sys/${pk}/{deviceKey}/thing/service/{serviceId}`, "down (reply on …_reply)"],
    ["Set measurepoints", `/sys/${pk}/{deviceKey}/thing/service/measurepoint/set`, "down (reply on …_reply)"],
  ];
  if (custom) {
    topics.push(["Raw bytes up", `/sys/${pk}/{deviceKey}/thing/model/up_raw`, "up"]);
    topics.push(["Raw bytes down", `/sys/${pk}/{deviceKey}/thing/model/down_raw`, "down"]);
  }
  if (product.deviceType === "gateway") {
    topics.push(["Add sub-devices", `/sys/${pk}/{deviceKey}/thing/topo/add`, "up"]);
    topics.push(["Sub-device login", `/ext/session/${pk}/{deviceKey}/combine/login`, "up"]);
  }
  return h("section", { class: "card", id: "connection", "aria-labelledby": "connection-title" },
    h("h2", { id: "connection-title" }, "Topics and connection"),
    h("dl", { class: "facts" },
      h("dt", {}, "MQTT host"), h("dd", { class: "mono" }, host),
      h("dt", {}, "MQTT port"), h("dd", { class: "mono", id: "mqtt-port" }, where ? String(where.mqttPort) : "1883 (the default)"),
      h("dt", {}, "MQTT over TLS"), h("dd", { class: "mono" }, where ? (where.mqttsPort ? String(where.mqttsPort) : "off") : "8883 (the default)"),
      h("dt", {}, "Client id"), h("dd", { class: "mono" }, "{deviceKey}|securemode=2,signmethod=hmacsha256,timestamp={ms}|"),
      h("dt", {}, "Username"), h("dd", { class: "mono" }, `{deviceKey}&${pk}`),
      h("dt", {}, "Password"), h("dd", {},
        "SHA-256 (hex) of clientId{deviceKey}deviceKey{deviceKey}productKey", h("span", { class: "mono" }, pk),
        "timestamp{ms} followed by the DeviceSecret (a plain digest, not an HMAC). With dynamic activation, ",
        "securemode=3 and the ProductSecret.")),
    table("Topics (EnOS)", ["What", "Topic", "Direction"], topics.map(([w, t, d]) => [w, h("span", { class: "mono" }, t), d])));
}
