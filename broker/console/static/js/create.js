// The Create a Product dialog: the fields of Quectel's "Manage Product", each shown
// only where the choices so far bring it (rules.js), and each API refusal shown at the
// field it is about.
import { all, ApiError, data } from "./api.js";
import { h } from "./dom.js";
import {
  DEVICE_TYPES, EDRX_MAX, EDRX_MIN, ENCRYPTIONS, NETWORKS, PLATFORMS, POWER_SAVING,
  productBody, refusedField, shown,
} from "./rules.js";

const EMPTY_TSL = { properties: [], events: [], services: [] };
const NEW_MODEL = "";

function errorLine(name) {
  return h("p", { class: "error", id: `error-${name}` });
}

function field(name, label, control, hint = "") {
  control.id = control.id || `field-${name}`;
  control.setAttribute("aria-describedby", `error-${name}${hint ? ` hint-${name}` : ""}`);
  return h("div", { class: "field", dataset: { field: name } },
    h("label", { for: control.id }, label), control,
    hint ? h("p", { class: "hint", id: `hint-${name}` }, hint) : null,
    errorLine(name));
}

function radios(name, legend, options, value) {
  return h("fieldset", { class: "field", dataset: { field: name }, "aria-describedby": `error-${name}` },
    h("legend", {}, legend),
    options.map((o) => {
      const help = o.help ? `help-${name}-${o.value}` : undefined;
      return h("div", { class: "choice" },
        h("label", {}, h("input", { type: "radio", name, value: o.value, checked: o.value === value, "aria-describedby": help }),
          " ", o.label),
        help ? h("small", { id: help }, o.help) : null);
    }),
    errorLine(name));
}

export async function openCreateDialog({ categories, projects, project, created }) {
  const [models, products] = await Promise.all([all("thing-models", "list"), all("products", "list")]);
  const gateways = products.filter((p) => p.deviceType === "gateway");

  const kinds = [...new Set(categories.map((c) => c.kind))];
  const category = h("select", { name: "category" },
    kinds.map((kind) => h("optgroup", { label: kind },
      categories.filter((c) => c.kind === kind).map((c) => h("option", { value: c.categoryId }, c.name)))));
  const model = h("select", { name: "modelId" },
    h("option", { value: NEW_MODEL }, "A new, empty thing model"),
    models.map((m) => h("option", { value: m.modelId }, m.name ? `${m.name} (${m.modelId})` : m.modelId)));
  const standard = h("p", { class: "hint", id: "standard-model", hidden: true });
  const network = h("select", { name: "networkMethod" });
  const cycle = h("input", { name: "edrxCycle", type: "number", step: "any", min: EDRX_MIN, max: EDRX_MAX });
  const qmode = h("input", { name: "qmode", type: "checkbox" });
  const gatewayKeys = h("select", { name: "gatewayProductKeys", multiple: true, size: Math.min(4, gateways.length || 1) },
    gateways.map((g) => h("option", { value: g.productKey }, `${g.productName.defaultValue} (${g.productKey})`)));
  const name = h("input", { name: "productName", required: true, maxlength: 100, autocomplete: "off" });
  const projectSelect = h("select", { name: "projectId" },
    projects.map((p) => h("option", { value: p.projectId, selected: p.projectId === (project || "default") }, p.name)));
  const formError = h("p", { class: "error", id: "create-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create");
  const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");

  const form = h("form", { method: "dialog", class: "create", novalidate: true },
    h("h2", { id: "create-title" }, "Create a Product"),
    field("category", "Product Category", category, "A device division by usage scenario: a product template."),
    field("modelId", "Thing model", model), standard,
    radios("deviceType", "Device Type", DEVICE_TYPES, "direct"),
    h("img", { class: "device-types", src: "img/device-types.svg",
      alt: "A directly connected device reaches the platform itself; a gateway carries sub-devices, which connect only through it." }),
    field("networkMethod", "Network Connection Method", network),
    radios("connectedPlatform", "Connected Platform", PLATFORMS, "DeveloperCenter"),
    radios("encryption", "Data Encryption Method", ENCRYPTIONS, "DTLS"),
    radios("powerSaving", "Power Saving Mode", POWER_SAVING, "PSM"),
    field("edrxCycle", "eDRX cycle (seconds)", cycle, `The device's actual eDRX cycle, ${EDRX_MIN} to ${EDRX_MAX} s: it sets how long a command waits.`),
    field("qmode", "Qmode (commands in the wake window)", qmode),
    radios("specifiedGateway", "Specified Gateway", [
      { value: "disabled", label: "Disable", help: "Sub-devices may come in through any gateway." },
      { value: "enabled", label: "Enable", help: "Only through the gateways chosen." }], "disabled"),
    field("gatewayProductKeys", "Gateway products", gatewayKeys),
    radios("gatewayAccessMode", "Gateway Access Mode", [
      { value: "proxy", label: "Internet access only through proxy server" },
      { value: "integration", label: "Product integration" }], "proxy"),
    radios("dataFormat", "Data Format", [
      { value: "Json", label: "TSL (recommended)", help: "The platform's JSON protocol." },
      { value: "Custom", label: "Custom", help: "Your own bytes, decoded by a script or codec." }], "Json"),
    projects.length > 1 ? field("projectId", "Project", projectSelect) : null,
    field("productName", "Product Name", name, "Unique within the organisation."),
    formError,
    h("div", { class: "actions" }, cancel, submit));
  const dialog = h("dialog", { id: "create-dialog", "aria-labelledby": "create-title" }, form);
  document.body.append(dialog);

  const wrapper = (f) => form.querySelector(`[data-field="${f}"]`);
  const value = (f) => {
    const checked = form.querySelector(`input[name="${f}"]:checked`);
    return checked ? checked.value : "";
  };

  function choice() {
    const template = categories.find((c) => c.categoryId === category.value);
    return {
      category: category.value,
      modelId: template && template.modelId ? "" : model.value,
      deviceType: value("deviceType"),
      networkMethod: network.value,
      connectedPlatform: value("connectedPlatform"),
      encryption: value("encryption"),
      powerSaving: value("powerSaving"),
      edrxCycle: cycle.value,
      qmode: qmode.checked,
      specifiedGateway: value("specifiedGateway"),
      gatewayProductKeys: [...gatewayKeys.selectedOptions].map((o) => o.value),
      gatewayAccessMode: value("gatewayAccessMode"),
      dataFormat: value("dataFormat"),
      productName: name.value.trim(),
    };
  }

  // A standard-TSL category fixes the device type and brings its model; the device
  // type decides the networks offered; the network, platform and mode the rest.
  function update() {
    const template = categories.find((c) => c.categoryId === category.value);
    const fixed = template && template.deviceType;
    for (const input of form.querySelectorAll('input[name="deviceType"]')) {
      input.disabled = Boolean(fixed) && input.value !== fixed;
      if (fixed && input.value === fixed) input.checked = true;
    }
    wrapper("modelId").hidden = Boolean(template && template.modelId);
    standard.hidden = !(template && template.modelId);
    if (template && template.modelId) {
      const t = template.tsl || EMPTY_TSL;
      standard.textContent = `Thing model from the category: ${template.modelId} (` +
        `${(t.properties || []).length} properties, ${(t.events || []).length} events, ` +
        `${(t.services || []).length} services).`;
    }
    const type = value("deviceType");
    const offered = NETWORKS[type] || [];
    if (network.dataset.type !== type) {
      const before = network.value;
      network.replaceChildren(...offered.map((n) => h("option", { value: n }, n)));
      network.value = offered.includes(before) ? before : offered.includes("4G") ? "4G" : offered[0] || "";
      network.dataset.type = type;
    }
    const on = shown(choice());
    for (const [f, visible] of Object.entries(on)) {
      const el = wrapper(f);
      if (el) el.hidden = !visible;
    }
  }

  function clearErrors() {
    formError.textContent = "";
    for (const line of form.querySelectorAll(".error[id^=error-]")) line.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function refuse(message) {
    const visible = [...form.querySelectorAll("[data-field]")].filter((el) => !el.hidden).map((el) => el.dataset.field);
    const f = refusedField(message, visible);
    const el = f && wrapper(f);
    if (!el) {
      formError.textContent = message;
      return;
    }
    el.querySelector(`#error-${f}`).textContent = message;
    const control = el.querySelector("input:not([disabled]), select");
    (el.matches("fieldset") ? el : control).setAttribute("aria-invalid", "true");
    control.focus();
  }

  async function create() {
    clearErrors();
    const chosen = choice();
    if (!chosen.productName) {
      refuse("product.productName: a name is required");
      return;
    }
    const body = productBody(chosen);
    if (projects.length > 1) body.projectId = projectSelect.value;
    let madeModel = "";
    submit.disabled = true;
    try {
      if (!body.modelId && !(categories.find((c) => c.categoryId === chosen.category) || {}).modelId) {
        madeModel = `tsl_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
        await data("thing-models", "create", { modelId: madeModel, name: chosen.productName.slice(0, 100), tsl: EMPTY_TSL });
        body.modelId = madeModel;
      }
      const productKey = await data("products", "create", body);
      done(productKey, chosen.productName);
    } catch (failure) {
      if (madeModel) await data("thing-models", "delete", undefined, { modelId: madeModel }).catch(() => {});
      if (!(failure instanceof ApiError)) throw failure;
      refuse(failure.message);
    } finally {
      submit.disabled = false;
    }
  }

  function done(productKey, productName) {
    const stay = h("button", { type: "button", class: "primary", id: "stay" }, "Stay");
    const go = h("a", { class: "button", href: `#/products/${encodeURIComponent(productKey)}` }, "Go to the product");
    form.replaceChildren(
      h("h2", { id: "create-title" }, "Created"),
      h("p", { role: "status" }, `The product ${productName} is created. Its ProductKey is `,
        h("strong", { class: "mono" }, productKey), "."),
      h("div", { class: "actions" }, go, stay));
    stay.addEventListener("click", () => { dialog.close(); created(); });
    go.addEventListener("click", () => dialog.close());
    stay.focus();
  }

  form.addEventListener("change", update);
  form.addEventListener("submit", (event) => { event.preventDefault(); create(); });
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  update();
  dialog.showModal();
  category.focus();
}
