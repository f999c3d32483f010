import { addStrings, applyI18n, lang, pick, setLang, t } from "./i18n.js";

addStrings({
  "login.title": ["智慧社区 · 登录", "Smart community · Log in"],
  "login.heading": ["登录", "Log in"],
  "login.username": ["用户名", "Username"],
  "login.password": ["密码", "Password"],
  "login.submit": ["登录", "Log in"],
  "login.busy": ["正在登录…", "Logging in…"],
  "login.failed": ["登录失败", "Login failed"],
  "login.offline": ["无法连接中心平台，请检查网络", "Cannot reach the hub; check the network"],
  "shell.lang": ["English", "中文"],
});

// Where each role lands after logging in (the desk pages add themselves here).
export const HOME = { worker: "/worker", hotline: "/desk", operator: "/desk", admin: "/desk" };

function safeNext(raw) {
  // Only a path on this hub: never "//other.site" or an absolute address.
  if (raw && raw.startsWith("/") && !raw.startsWith("//") && !raw.startsWith("/\\")) return raw;
  return null;
}

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const button = document.getElementById("login-submit");

document.getElementById("lang-toggle").addEventListener("click", () => {
  setLang(lang() === "zh" ? "en" : "zh");
  document.title = t("login.title");
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  button.disabled = true;
  button.textContent = t("login.busy");
  try {
    const response = await fetch("/web/login", {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = `${t("login.failed")}: ${pick(data.detail || response.statusText)}`;
      return;
    }
    const next = safeNext(new URLSearchParams(location.search).get("next"));
    location.replace(next || HOME[data.role] || "/worker");
  } catch {
    error.textContent = t("login.offline");
  } finally {
    button.disabled = false;
    button.textContent = t("login.submit");
  }
});

applyI18n();
document.title = t("login.title");
