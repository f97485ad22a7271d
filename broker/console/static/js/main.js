// The console's shell: sign in and out, and the pages by the address's hash
// (#/products, #/products/PK, #/products/PK/devices/DK).
import { signIn, signOut, whoami } from "./api.js";
import { clear, h } from "./dom.js";
import * as live from "./live.js";
import { productManagement } from "./products.js";
import { productDetails } from "./product.js";
import { deviceDetails } from "./device.js";

const main = document.getElementById("main");
let leavePage = () => {};
let session = null;

function showAccount() {
  document.getElementById("account").hidden = !session;
  document.getElementById("who").textContent = session ? `${session.name} (${session.orgId})` : "";
}

function signInPage(problem = "") {
  leavePage();
  leavePage = () => {};
  const key = h("input", { id: "access-key", name: "accessKey", autocomplete: "username", required: true });
  const secret = h("input", {
    id: "access-secret", name: "accessSecret", type: "password", autocomplete: "current-password", required: true,
  });
  const error = h("p", { class: "error", id: "sign-in-error", role: "alert" }, problem);
  const form = h("form", { class: "card narrow", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "With your organisation's access key and secret (gatehouse-data/credentials.json)."),
    h("label", { for: "access-key" }, "Access key"), key,
    h("label", { for: "access-secret" }, "Access secret"), secret,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      session = await signIn(key.value.trim(), secret.value);
    } catch (failure) {
      error.textContent = failure.message;
      secret.select();
      return;
    }
    secret.value = "";
    started();
  });
  document.title = "Sign in · Gatehouse console";
  clear(main, form);
  key.focus();
}

function started() {
  showAccount();
  live.start();
  if (!location.hash.startsWith("#/products")) location.hash = "#/products";
  else route();
}

async function route() {
  if (!session) return;
  leavePage();
  leavePage = () => {};
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let page;
  if (parts[0] === "products" && parts.length === 1) page = productManagement;
  else if (parts[0] === "products" && parts.length === 2) page = productDetails;
  else if (parts[0] === "products" && parts[2] === "devices" && parts.length === 4) page = deviceDetails;
  if (!page) {
    location.hash = "#/products";
    return;
  }
  clear(main, h("p", {}, "Loading…"));
  try {
    leavePage = (await page(main, ...parts.filter((_, i) => i % 2 === 1))) || (() => {});
  } catch (failure) {
    clear(main, h("h1", {}, "This page cannot be shown"), h("p", { class: "error", role: "alert" }, failure.message),
      h("p", {}, h("a", { href: "#/products" }, "Back to Product Management")));
  }
  main.focus({ preventScroll: true });
}

function ended(problem) {
  session = null;
  live.stop();
  showAccount();
  signInPage(problem);
}

document.getElementById("sign-out").addEventListener("click", async () => {
  await signOut().catch(() => {});
  ended("");
});
window.addEventListener("gatehouse:signed-out", () => {
  if (session) ended("Your session has ended; sign in again.");
});
window.addEventListener("hashchange", route);

session = await whoami().catch(() => null);
if (session) started();
else ended("");
