// Build elements without innerHTML: every value from the API goes in as text, never markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "class") {
      el.className = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// A time from the API (UTC ISO-8601) in the community's zone (Asia/Shanghai), short form.
export function clock(iso, withDate = false) {
  if (!iso) return "";
  const options = { timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(options, { month: "2-digit", day: "2-digit" });
  return new Date(iso).toLocaleString("zh-CN", options);
}
