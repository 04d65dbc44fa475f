// The console's shell: login, navigation by role, and routing on the URL path so that every
// object has a deep link (/ui/enclaves/ID, /ui/policies/NAME, /ui/log/INDEX).

import { ApiError, get, token } from "./api.js";
import { h, replace } from "./dom.js";
import { clusterPage, hostsPage, enclavesPage } from "./pages.js";
import { enclavePage } from "./enclave.js";
import { policiesPage, policyPage } from "./policies.js";
import { logPage } from "./log.js";

const main = document.getElementById("main");
let me = null; // GET /v1/whoami
let leave = null; // the current page's cleanup (streams, timers)

export const may = (op) => !!me && me.may.includes(op);

export function go(path) {
  history.pushState(null, "", path);
  route();
}

// Links inside the app navigate without a reload.
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href^='/ui/']");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", () => route());
document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  me = null;
  // Nothing of the session that ended stays on screen (its role's sections, its name), and the
  // page is not ready again until the next session's first page is.
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  replace(document.getElementById("who"));
  delete document.body.dataset.ready;
  go("/ui/");
});

function loginPage(message) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const error = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = h("form", { class: "login", id: "login" },
    h("h1", {}, "Log in"),
    h("p", { id: "token-help" }, "Paste an API token (", h("code", {}, "tribune token create --name me --role admin --ttl 8h"),
      "). It stays in this tab only (sessionStorage) and is sent as a bearer token."),
    h("label", { for: "token" }, "API token", input),
    h("p", {}, h("button", { type: "submit" }, "Log in")),
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    token.set(input.value.trim());
    try {
      await whoami();
      const next = location.pathname === "/ui/" || location.pathname === "/ui/login" ? home() : location.pathname;
      go(next);
    } catch (err) {
      token.clear();
      replace(error, err instanceof ApiError && err.status === 401 ? "That token was not accepted (unknown, expired or revoked)." : `Could not log in: ${err.message}`);
    }
  });
  replace(main, form);
  input.focus();
}

async function whoami() {
  me = await get("/v1/whoami");
  const nav = document.getElementById("nav");
  for (const a of nav.querySelectorAll("a")) a.hidden = !may(a.dataset.needs);
  nav.hidden = false;
  document.getElementById("logout").hidden = false;
  replace(document.getElementById("who"), `${me.actor} · ${me.role}${me.tenant ? ` of ${me.tenant}` : ""}`);
}

const home = () => (may("read_cluster") ? "/ui/cluster" : "/ui/enclaves");

const ROUTES = [
  [/^\/ui\/cluster$/, () => clusterPage],
  [/^\/ui\/hosts$/, () => hostsPage],
  [/^\/ui\/enclaves$/, () => enclavesPage],
  [/^\/ui\/enclaves\/([^/]+)$/, (m) => (el) => enclavePage(el, decodeURIComponent(m[1]))],
  [/^\/ui\/policies$/, () => policiesPage],
  [/^\/ui\/policies\/([^/]+)$/, (m) => (el) => policyPage(el, decodeURIComponent(m[1]))],
  [/^\/ui\/log$/, () => (el) => logPage(el, null)],
  [/^\/ui\/log\/(\d+)$/, (m) => (el) => logPage(el, Number(m[1]))],
];

async function route() {
  if (leave) { try { leave(); } catch { /* ignore */ } leave = null; }
  if (!token.get()) return loginPage();
  try {
    if (!me) await whoami();
  } catch (err) {
    token.clear();
    return loginPage(err instanceof ApiError && err.status === 401 ? "Your token is no longer accepted; log in again." : err.message);
  }
  let path = location.pathname.replace(/\/+$/, "") || "/ui";
  if (path === "/ui" || path === "/ui/login") { history.replaceState(null, "", home()); path = home(); }
  for (const a of document.querySelectorAll("#nav a")) {
    if (path.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const found = ROUTES.map(([re, f]) => [path.match(re), f]).find(([m]) => m);
  replace(main, h("p", {}, "Loading…"));
  if (!found) { replace(main, h("h1", {}, "Not found"), h("p", {}, `Nothing at ${path}.`)); return; }
  try {
    leave = (await found[1](found[0])(main)) || null;
  } catch (err) {
    replace(main, h("h1", {}, "Error"), h("p", { class: "error", role: "alert" }, err instanceof ApiError ? `${err.status}: ${err.message}` : String(err)));
  }
  main.focus({ preventScroll: true });
  document.body.dataset.ready = path;
  // The first page with its data on screen: "time to interactive" in bench/README.md.
  if (!performance.getEntriesByName("tribune-ready").length) performance.mark("tribune-ready");
}

route();
