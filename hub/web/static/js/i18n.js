// Simplified Chinese by default, English one tap away; the choice is kept on the device.
// Pages register their strings with addStrings({key: ["中文", "English"]}) and mark
// elements with data-i18n="key" (text), data-i18n-aria="key" (aria-label) or
// data-i18n-placeholder="key".
const STRINGS = {};
const listeners = [];
let current = localStorage.getItem("lang") === "en" ? "en" : "zh";

export function addStrings(table) {
  Object.assign(STRINGS, table);
}

export function lang() {
  return current;
}

export function t(key, vars) {
  const pair = STRINGS[key];
  let text = pair ? pair[current === "zh" ? 0 : 1] : key;
  for (const [name, value] of Object.entries(vars || {})) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

// A bilingual server string ("english / 中文" or "中文 / English"): the half in our language.
export function pick(text) {
  if (typeof text !== "string") return "";
  const parts = text.split(" / ");
  if (parts.length < 2) return text;
  const cjk = /[\u3400-\u9fff]/;
  const zh = parts.find((p) => cjk.test(p));
  const en = parts.find((p) => !cjk.test(p));
  return (current === "zh" ? zh : en) || text;
}

// The Chinese or English one of a {zh, en} pair from the API.
export function either(pair) {
  return pair ? (current === "zh" ? pair.zh : pair.en) : "";
}

export function applyI18n(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  // The language button names the other language, in that language.
  for (const el of root.querySelectorAll("[data-i18n='shell.lang']")) {
    el.setAttribute("lang", current === "zh" ? "en" : "zh-CN");
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
}

export function setLang(value) {
  current = value === "en" ? "en" : "zh";
  localStorage.setItem("lang", current);
  applyI18n();
  for (const listener of listeners) listener(current);
}

export function onLangChange(listener) {
  listeners.push(listener);
}
