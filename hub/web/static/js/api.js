// Calling the hub's API from a page: the HttpOnly session cookie goes along by itself;
// unsafe methods add the session's CSRF token; a 401 (expired, revoked, logged out) sends
// the page to the login screen and back here afterwards.
import { pick } from "./i18n.js";

let csrf = "";

export class ApiError extends Error {
  constructor(status, detail) {
    super(pick(typeof detail === "string" ? detail : JSON.stringify(detail)));
    this.status = status;
  }
}

export function loginUrl() {
  const here = location.pathname + location.search + location.hash;
  return "/login?next=" + encodeURIComponent(here);
}

export function toLogin() {
  location.replace(loginUrl());
}

// Who is logged in (name, role, worker_id, grid_ids, csrf), or null when nobody is.
export async function loadSession() {
  const response = await fetch("/web/session", { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) return null;
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  const who = await response.json();
  csrf = who.csrf;
  return who;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, {
    method,
    headers,
    body: payload,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, "not logged in / 未登录");
  }
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const data = isJson ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, (data && data.detail) || response.statusText);
  return data;
}

export async function logout() {
  await fetch("/web/logout", {
    method: "POST",
    headers: { "X-CSRF-Token": csrf },
    credentials: "same-origin",
  }).catch(() => undefined);
  location.replace("/login");
}
