// Product Management: every product of the organisation as a panel, newest first, with
// search; "Create a Product" opens the dialog (create.js).
import { all, data } from "./api.js";
import { openCreateDialog } from "./create.js";
import { clear, h, nameOf, time } from "./dom.js";

const images = new Map(); // productKey -> data URL, for this page's life

export async function imageOf(productKey) {
  if (!images.has(productKey)) {
    const image = await data("product-images", "get", undefined, { productKey });
    images.set(productKey, `data:${image.contentType};base64,${image.imageBase64}`);
  }
  return images.get(productKey);
}

export function forgetImage(productKey) {
  images.delete(productKey);
}

function panel(product, categories) {
  const name = nameOf(product.productName);
  const picture = h("div", { class: "picture", "aria-hidden": "true" }, name.slice(0, 1).toUpperCase());
  if (product.hasImage) {
    imageOf(product.productKey)
      .then((url) => picture.replaceChildren(h("img", { src: url, alt: "" })))
      .catch(() => {});
  }
  const category = categories.get(product.category);
  return h("li", { class: "panel", dataset: { productKey: product.productKey } },
    picture,
    h("div", { class: "panel-body" },
      h("h2", {}, h("a", { href: `#/products/${encodeURIComponent(product.productKey)}` }, name)),
      h("span", { class: `status ${product.developmentStatus}` },
        product.developmentStatus === "released" ? "Released" : "In development"),
      h("dl", {},
        h("dt", {}, "Category"), h("dd", {}, category ? category.name : product.category),
        h("dt", {}, "Created"), h("dd", {}, time(product.createdAt)),
        h("dt", {}, "ProductKey"), h("dd", { class: "mono" }, product.productKey))));
}

export async function productManagement(main) {
  document.title = "Product Management · Gatehouse console";
  const [catalogue, projects] = await Promise.all([data("categories", "list"), data("projects", "list")]);
  const categories = new Map(catalogue.map((c) => [c.categoryId, c]));
  let products = [];
  const project = h("select", { id: "project" },
    h("option", { value: "" }, "All projects"),
    projects.map((p) => h("option", { value: p.projectId }, p.name)));
  const search = h("input", { id: "search", type: "search", placeholder: "Name or ProductKey" });
  const list = h("ul", { class: "panels", "aria-label": "Products" });
  const count = h("p", { class: "muted", role: "status" });

  function show() {
    const words = search.value.trim().toLowerCase();
    const shown = products.filter((p) => !words ||
      nameOf(p.productName).toLowerCase().includes(words) || p.productKey.toLowerCase().includes(words));
    clear(list, shown.map((p) => panel(p, categories)));
    count.textContent = `${shown.length} of ${products.length} products`;
  }

  async function load() {
    products = await all("products", "list", { projectId: project.value || undefined });
    show();
  }

  const create = h("button", { type: "button", class: "primary", id: "create-product" }, "Create a Product");
  create.addEventListener("click", () => openCreateDialog({
    categories: catalogue,
    projects,
    project: project.value,
    created: load, // "Stay": the list again, the new product first
  }));
  search.addEventListener("input", show);
  project.addEventListener("change", load);
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Product Management"), create),
    h("div", { class: "toolbar" },
      h("label", { for: "project" }, "Project"), project,
      h("label", { for: "search" }, "Search"), search),
    count, list);
  await load();
}
