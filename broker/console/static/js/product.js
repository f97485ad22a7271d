// Product details: basic information on the right (name, image, binding permission,
// device sharing), statistics, activation codes, devices, the thing model, and the
// topics and connection facts a firmware engineer needs.
import { ApiError, data } from "./api.js";
import { clear, h, nameOf, time, toast } from "./dom.js";
import * as live from "./live.js";
import { devicesSection } from "./devices.js";
import { forgetImage, imageOf } from "./products.js";
import { connectionSection, thingModelSection } from "./model.js";

const BINDINGS = [
  { value: "multi", label: "Multibinding", help: "Many user accounts may bind the same device at once." },
  { value: "alternate", label: "Alternate Binding", help: "One account; a new binding replaces the old one." },
  { value: "single", label: "Single Binding", help: "One account; another one's binding fails until it unbinds." },
];
const TYPES = { direct: "Directly connected device", gateway: "Gateway", subdevice: "Gateway sub-device" };
const MAX_IMAGE = 1024 * 1024;

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export async function productDetails(main, productKey) {
  let product = await data("products", "get", undefined, { productKey });
  const [catalogue] = await Promise.all([data("categories", "list")]);
  const category = catalogue.find((c) => c.categoryId === product.category);
  document.title = `${nameOf(product.productName)} · Gatehouse console`;

  const title = h("h1", {}, nameOf(product.productName));
  const status = h("span", { class: `status ${product.developmentStatus}` });
  const release = h("button", { type: "button", id: "release" }, "Release");
  function showStatus() {
    status.className = `status ${product.developmentStatus}`;
    status.textContent = product.developmentStatus === "released" ? "Released" : "In development";
    release.hidden = product.developmentStatus === "released";
  }
  release.addEventListener("click", async () => {
    if (!window.confirm("Release freezes the thing model and most settings, for good. Release?")) return;
    try {
      product = await data("products", "release", undefined, { productKey });
      showStatus();
      toast("Released");
    } catch (failure) {
      toast(failure.message);
    }
  });
  showStatus();

  // ---------------------------------------------------------------- basic information
  async function update(change, errorLine) {
    errorLine.textContent = "";
    try {
      product = await data("products", "update", change, { productKey });
      toast("Saved");
      return true;
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      errorLine.textContent = failure.message;
      return false;
    }
  }

  const nameInput = h("input", { id: "product-name", value: nameOf(product.productName), maxlength: 100, "aria-describedby": "error-product-name" });
  const nameError = h("p", { class: "error", id: "error-product-name", role: "alert" });
  const nameForm = h("form", { class: "inline" },
    h("label", { for: "product-name" }, "Product name"), nameInput,
    h("button", { type: "submit" }, "Save name"), nameError);
  nameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await update({ productName: { defaultValue: nameInput.value.trim(), i18nValue: {} } }, nameError)) {
      title.textContent = nameOf(product.productName);
    }
  });

  const picture = h("div", { class: "picture large", id: "product-image" });
  const imageInput = h("input", { id: "image-file", type: "file", accept: "image/png,image/jpeg", "aria-describedby": "error-image" });
  const imageError = h("p", { class: "error", id: "error-image", role: "alert" });
  const removeImage = h("button", { type: "button" }, "Remove image");
  async function showImage() {
    removeImage.hidden = !product.hasImage;
    if (!product.hasImage) {
      clear(picture, h("span", { "aria-hidden": "true" }, nameOf(product.productName).slice(0, 1).toUpperCase()));
      return;
    }
    clear(picture, h("img", { src: await imageOf(productKey), alt: `The image of ${nameOf(product.productName)}` }));
  }
  imageInput.addEventListener("change", async () => {
    imageError.textContent = "";
    const file = imageInput.files[0];
    if (!file) return;
    if (file.size > MAX_IMAGE) {
      imageError.textContent = "The image is over 1 MiB.";
      return;
    }
    try {
      product = await data("product-images", "put", { imageBase64: await readAsBase64(file) }, { productKey });
      forgetImage(productKey);
      await showImage();
      toast("Image saved");
    } catch (failure) {
      imageError.textContent = failure.message;
    }
    imageInput.value = "";
  });
  removeImage.addEventListener("click", async () => {
    await data("product-images", "delete", undefined, { productKey });
    product = { ...product, hasImage: false };
    forgetImage(productKey);
    await showImage();
  });

  const bluetooth = product.networkMethod === "Bluetooth";
  const bindingError = h("p", { class: "error", id: "error-binding", role: "alert" });
  const binding = h("fieldset", { class: "field", id: "binding", "aria-describedby": "error-binding" },
    h("legend", {}, "Binding permission"),
    BINDINGS.map((b) => h("div", { class: "choice" },
      h("label", {}, h("input", { type: "radio", name: "bindingMode", value: b.value, checked: product.bindingMode === b.value,
        disabled: bluetooth && b.value === "multi", "aria-describedby": `help-binding-${b.value}` }), " ", b.label),
      h("small", { id: `help-binding-${b.value}` }, b.help))),
    h("p", { class: "hint" }, bluetooth
      ? "Products connected over Bluetooth support only Alternate and Single Binding."
      : "Multibinding cannot change while a device has two or more bound accounts."),
    bindingError);
  binding.addEventListener("change", async (event) => {
    if (!(await update({ bindingMode: event.target.value }, bindingError))) {
      for (const input of binding.querySelectorAll("input")) input.checked = input.value === product.bindingMode;
    }
  });

  const sharingError = h("p", { class: "error", id: "error-sharing", role: "alert" });
  const sharing = h("input", { type: "checkbox", role: "switch", id: "sharing", checked: product.sharingEnabled, "aria-describedby": "sharing-hint error-sharing" });
  sharing.addEventListener("change", async () => {
    if (!(await update({ sharingEnabled: sharing.checked }, sharingError))) sharing.checked = product.sharingEnabled;
  });
  const sharingField = h("div", { class: "field switch" },
    h("label", { for: "sharing" }, "Device sharing"), sharing,
    h("p", { class: "hint", id: "sharing-hint" }, "Off: existing shares stay, no new ones can be made."),
    sharingError);

  const secret = h("span", { class: "mono", id: "product-secret" }, "••••••••");
  const reveal = h("button", { type: "button", class: "small", "aria-controls": "product-secret" }, "Show");
  reveal.addEventListener("click", () => {
    const hidden = reveal.textContent === "Show";
    secret.textContent = hidden ? product.productSecret : "••••••••";
    reveal.textContent = hidden ? "Hide" : "Show";
  });
  const saving = product.powerSaving;
  const info = h("aside", { class: "card", "aria-labelledby": "info-title" },
    h("h2", { id: "info-title" }, "Basic information"),
    picture, h("label", { for: "image-file" }, "Product image (PNG or JPEG, up to 1 MiB)"), imageInput, removeImage, imageError,
    nameForm, binding, sharingField,
    facts([
      ["ProductKey", h("span", { class: "mono" }, productKey)],
      ["ProductSecret", [secret, " ", reveal]],
      ["Category", category ? `${category.name} (${category.kind})` : product.category],
      ["Device type", TYPES[product.deviceType] || product.deviceType],
      ["Network", product.networkMethod],
      ["Connected platform", product.connectedPlatform],
      ["Data encryption", product.encryption],
      ["Power saving", saving && `${saving.mode}${saving.edrxCycle ? `, cycle ${saving.edrxCycle} s` : ""}${saving.qmode ? ", Qmode" : ""}`],
      ["Gateway access mode", product.gatewayAccessMode],
      ["Data format", product.dataFormat === "Json" ? "TSL (JSON)" : product.dataFormat],
      ["Project", product.projectId],
      ["Created", time(product.createdAt)],
      ["Released", time(product.releasedAt)],
    ]));

  // ---------------------------------------------------------------- statistics
  const numbers = { total: h("dd", { id: "stat-total" }), activated: h("dd", { id: "stat-activated" }), online: h("dd", { id: "stat-online" }) };
  const stats = h("section", { class: "card", "aria-labelledby": "stats-title" },
    h("h2", { id: "stats-title" }, "Statistics ", h("small", { class: "muted" }, "(live)")),
    h("dl", { class: "stats" },
      h("dt", {}, "Devices"), numbers.total, h("dt", {}, "Activated"), numbers.activated,
      h("dt", {}, "Online"), numbers.online));
  const codes = h("section", { class: "card", id: "codes", "aria-labelledby": "codes-title" });
  async function loadStats() {
    const s = await data("statistics", "get", undefined, { productKey });
    for (const k of Object.keys(numbers)) numbers[k].textContent = String(s[k]);
    await loadCodes();
  }

  // Activation codes (Quectel's "Purchase Activation Code"): a batch of them, and the
  // product's totals; a device takes one when it is admitted.
  const codeNumbers = {
    total: h("dd", { id: "codes-total" }), available: h("dd", { id: "codes-available" }),
    consumed: h("dd", { id: "codes-consumed" }), inUse: h("dd", { id: "codes-in-use" }),
  };
  const codeCount = h("input", { id: "codes-count", type: "number", min: 1, value: 100, "aria-describedby": "error-codes" });
  const codeDays = h("input", { id: "codes-days", type: "number", min: 1, max: 3650, value: 365, "aria-describedby": "error-codes" });
  const codeError = h("p", { class: "error", id: "error-codes", role: "alert" });
  const codeForm = h("form", { class: "inline", "aria-label": "Add activation codes" },
    h("label", { for: "codes-count" }, "Add codes"), codeCount,
    h("label", { for: "codes-days" }, "valid for (days)"), codeDays,
    h("button", { type: "submit" }, "Add"), codeError);
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    codeError.textContent = "";
    try {
      const batch = await data("activation-codes", "purchase",
        { count: Number(codeCount.value), validDays: Number(codeDays.value) }, { productKey });
      toast(`${batch.count} codes added`);
      await loadCodes();
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      codeError.textContent = failure.message;
    }
  });
  clear(codes, h("h2", { id: "codes-title" }, "Activation codes"),
    h("dl", { class: "stats" },
      h("dt", {}, "Total"), codeNumbers.total, h("dt", {}, "Available"), codeNumbers.available,
      h("dt", {}, "Consumed"), codeNumbers.consumed, h("dt", {}, "In use"), codeNumbers.inUse),
    h("p", { class: "hint" }, "A product that never had codes admits its devices without them."),
    codeForm);
  async function loadCodes() {
    const totals = await data("activation-codes", "get", undefined, { productKey });
    for (const k of Object.keys(codeNumbers)) codeNumbers[k].textContent = String(totals[k]);
  }

  let pending = 0;
  const unsubscribe = live.subscribe((message) => {
    if (message.kind !== "open" && message.productKey !== productKey) return;
    if (!["open", "online", "offline"].includes(message.kind)) return;
    clearTimeout(pending);
    pending = setTimeout(() => loadStats().catch(() => {}), 200);
  });

  const devices = await devicesSection(product);
  const model = await thingModelSection(product);
  const connection = await connectionSection(product);
  clear(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/products" }, "Product Management"), " / ", nameOf(product.productName)),
    h("div", { class: "page-head" }, title, status, release),
    h("div", { class: "details" },
      h("div", { class: "column" }, stats, devices.element, model, connection),
      h("div", { class: "side" }, info, codes)));
  await Promise.all([showImage(), loadStats()]);
  return () => {
    unsubscribe();
    devices.leave();
    clearTimeout(pending);
  };
}
