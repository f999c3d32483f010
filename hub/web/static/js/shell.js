// The part of every page around its content: session check, header, language, logout,
// and the live-connection banner. A page starts with `const me = await startShell(...)`.
import { loadSession, logout, toLogin } from "./api.js";
import { addStrings, applyI18n, lang, setLang, t } from "./i18n.js";

addStrings({
  "shell.lang": ["English", "中文"],
  "shell.logout": ["退出", "Log out"],
  "shell.live": ["● 实时连接", "● Live"],
  "shell.connecting": ["… 正在连接", "… Connecting"],
  "shell.offline": ["⚠ 离线：正在重新连接，新的求助可能延迟", "⚠ Offline: reconnecting, new calls may be late"],
  "shell.back": ["✓ 已恢复连接，已补收离线期间的消息", "✓ Back online; caught up on what was missed"],
  "shell.wrong_role": ["此页面不适用于您的账号角色", "This page is not for your account's role"],
});

export async function startShell({ roles } = {}) {
  let who = null;
  try {
    who = await loadSession();
  } catch {
    who = undefined;
  }
  if (who === null) {
    toLogin();
    return new Promise(() => {});
  }
  const toggle = document.getElementById("lang-toggle");
  if (toggle) toggle.addEventListener("click", () => setLang(lang() === "zh" ? "en" : "zh"));
  const out = document.getElementById("logout");
  if (out) out.addEventListener("click", () => logout());
  const name = document.getElementById("who");
  if (name && who) name.textContent = who.name;
  applyI18n();
  if (who && roles && !roles.includes(who.role)) {
    showProblem(t("shell.wrong_role"));
  }
  return who;
}

export function showProblem(text) {
  const box = document.getElementById("problem");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}

let wasOffline = false;
let backTimer = 0;

// The banner under the header: says plainly when the page is offline and when it is back.
export function showStatus(state) {
  const banner = document.getElementById("live-status");
  if (!banner) return;
  clearTimeout(backTimer);
  if (state === "offline") {
    wasOffline = true;
    banner.dataset.state = "offline";
    banner.dataset.i18n = "shell.offline";
  } else if (state === "live" && wasOffline) {
    wasOffline = false;
    banner.dataset.state = "back";
    banner.dataset.i18n = "shell.back";
    backTimer = setTimeout(() => showStatus("live"), 8000);
  } else {
    banner.dataset.state = state;
    banner.dataset.i18n = state === "live" ? "shell.live" : "shell.connecting";
  }
  banner.textContent = t(banner.dataset.i18n);
}
