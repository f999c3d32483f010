// The 96890 hotline desk board (desktop): every open help call, live; filters by street,
// community and grid; a phone case for a caller; reassign; notes; device and facility health.
//
// Live without polling the cases: the desk stream (/api/v1/stream/cases) sends an event for
// every case and task change, and the board re-reads /api/v1/desk/cases (who has it, the
// next step) once per burst of events. Waiting times and deadlines count down on the page
// every second from the hub's clock (the board says what "now" is on the hub). The health
// panel has no stream (edge status, devices): it is re-read every 15 s and on task changes.
import { api } from "./api.js";
import { clear, clock, h } from "./dom.js";
import { addStrings, either, onLangChange, pick, t } from "./i18n.js";
import { openLive } from "./live.js";
import { showProblem, showStatus, startShell } from "./shell.js";

addStrings({
  "desk.title": ["96890 热线坐席看板", "96890 hotline desk"],
  "nav.pages": ["页面", "Pages"],
  "nav.desk": ["坐席看板", "Desk board"],
  "nav.kpi": ["照护指标", "Care KPIs"],
  "desk.filters": ["筛选", "Filters"],
  "desk.street": ["街道", "Street"],
  "desk.community": ["社区", "Community"],
  "desk.grid": ["网格", "Grid"],
  "desk.all": ["全部", "All"],
  "desk.open_cases": ["待处理求助", "Open help calls"],
  "desk.no_cases": ["当前没有待处理的求助", "No open help calls"],
  "desk.loading": ["正在加载…", "Loading…"],
  "col.case": ["工单", "Case"],
  "col.state": ["状态", "State"],
  "col.tier": ["层级", "Tier"],
  "col.holder": ["负责人", "Who has it"],
  "col.resident": ["居民 / 地址", "Resident / address"],
  "col.waiting": ["等待时间", "Waiting"],
  "col.deadline": ["下次升级", "Next escalation"],
  "col.actions": ["操作", "Actions"],
  "holder.waiting": ["待接单：{names}", "Waiting for {names}"],
  "holder.nobody": ["‼ 无人可派", "‼ Nobody available"],
  "holder.presence": ["已到场（按键）", "On site (presence key)"],
  "wait.ok": ["✔ {d} 内应答", "✔ answered in {d}"],
  "wait.waiting": ["等待 {d}", "waiting {d}"],
  "wait.amber": ["⚠ 等待 {d}（超30秒）", "⚠ waiting {d} (over 30 s)"],
  "wait.red": ["‼ 等待 {d}（超60秒）", "‼ waiting {d} (over 60 s)"],
  "deadline.in": ["{d} 后{step}", "in {d}: {step}"],
  "deadline.due": ["已到期，正在{step}", "due: {step} now"],
  "deadline.none": ["—", "—"],
  "desk.handle": ["处理", "Handle"],
  "desk.cancel_requested": ["居民已按取消", "resident pressed cancel"],
  "desk.lives_alone": ["独居", "lives alone"],
  "desk.calls": ["第 {n} 次呼叫", "{n} calls"],
  "kind.sos": ["一键通求助", "SOS"],
  "kind.fall": ["跌倒报警", "Fall alarm"],
  "kind.phone": ["热线求助", "Hotline call"],
  "panel.close": ["关闭", "Close"],
  "panel.residents": ["居民", "Residents"],
  "panel.address": ["地址", "Address"],
  "panel.area": ["所属", "Area"],
  "panel.note": ["来电记录", "Intake note"],
  "panel.contacts": ["紧急联系人", "Emergency contacts"],
  "panel.none": ["无", "None"],
  "panel.reassign": ["改派给", "Reassign to"],
  "panel.reassign_note": ["改派原因", "Why"],
  "panel.reassign_submit": ["改派", "Reassign"],
  "panel.reassigned": ["已改派", "Reassigned"],
  "panel.add_note": ["添加备注", "Add a note"],
  "panel.note_submit": ["保存备注", "Save note"],
  "panel.noted": ["备注已保存", "Note saved"],
  "panel.timeline": ["处理记录", "Timeline"],
  "panel.pick_worker": ["选择工作人员…", "Choose a worker…"],
  "panel.closed": ["该工单已处置或关闭", "This case is resolved or closed"],
  "role.grid_worker": ["网格员", "grid worker"],
  "role.community_station": ["社区服务站", "community station"],
  "role.street_centre": ["街道中心", "street centre"],
  "role.hotline_desk": ["热线坐席", "hotline desk"],
  "action.open": ["建单", "opened"],
  "action.dispatch": ["派单", "dispatched"],
  "action.escalate": ["升级", "escalated"],
  "action.renotify": ["再次通知", "notified again"],
  "action.skip_tier": ["跳过（无人值班）", "tier skipped (nobody on duty)"],
  "action.unreachable": ["无人可派", "nobody reachable"],
  "action.join": ["再次呼叫", "called again"],
  "action.acknowledge": ["接单", "acknowledged"],
  "action.arrive": ["到场", "on site"],
  "action.resolve": ["处置", "resolved"],
  "action.close": ["关闭", "closed"],
  "action.request_cancel": ["居民按取消", "cancel pressed"],
  "action.reassign": ["改派", "reassigned"],
  "action.note": ["备注", "note"],
  "desk.intake": ["来电建单", "Phone case"],
  "desk.search_label": ["按姓名、电话或地址查找住户", "Find the household by name, phone or address"],
  "desk.search_placeholder": ["例如：张桂英 / 139… / 幸福里3号楼", "e.g. 张桂英 / 139… / 幸福里3号楼"],
  "desk.search": ["查找", "Search"],
  "desk.no_match": ["没有找到匹配的住户", "No household matches"],
  "desk.caller_note": ["来电内容", "What the caller said"],
  "desk.open_case": ["为此住户建单", "Open a case for this household"],
  "desk.opened": ["已建单 #{id}", "Case #{id} opened"],
  "desk.has_case": ["已有进行中的工单 #{id}", "Open case #{id}"],
  "desk.contact_of": ["{name}（{relation}）", "{name} ({relation})"],
  "desk.health": ["设备与设施状态", "Devices and facilities"],
  "desk.health_at": ["更新于 {t}", "as of {t}"],
  "health.offline": ["离线设备", "Offline devices"],
  "health.low_battery": ["低电量（≤{p}%）", "Low battery (≤{p}%)"],
  "health.edges": ["边缘网关", "Edge gateways"],
  "health.quarantine": ["隔离消息", "Quarantined messages"],
  "health.tasks": ["待办任务（按类型）", "Open tasks by kind"],
  "health.none": ["✔ 无", "✔ none"],
  "health.edges_ok": ["✔ {n} 个网关正常", "✔ {n} gateways fine"],
  "health.q_counts": ["共 {total} 条，24 小时内 {day} 条", "{total} in all, {day} in 24 h"],
  "health.task_counts": ["待接 {open} · 已接 {ack}", "{open} open · {ack} taken"],
  "health.last_seen": ["最后在线 {t}", "last seen {t}"],
  "problem.offline": ["⚠ 离线", "⚠ offline"],
  "problem.backlog": ["⚠ 积压 {n} 条，最久 {age} 秒", "⚠ backlog {n}, oldest {age} s"],
  "problem.buffer_pressure": ["⚠ 缓存将满（{pct}%）", "⚠ buffer pressure ({pct}%)"],
  "problem.dropped": ["‼ 已丢弃 {n} 条遥测", "‼ {n} telemetry dropped"],
});

const view = {
  board: document.getElementById("board-body"),
  count: document.getElementById("board-count"),
  panel: document.getElementById("case-panel"),
  results: document.getElementById("search-results"),
  health: document.getElementById("health-body"),
  healthAt: document.getElementById("health-at"),
};
const select = {
  street: document.getElementById("filter-street"),
  community: document.getElementById("filter-community"),
  grid: document.getElementById("filter-grid"),
};

let areas = [];
let boardCases = [];
let clockOffset = 0; // hub time minus this browser's time, in ms
let health = null;
let selected = null; // the case id shown in the panel
let detail = null;
let workers = null;
let lastSearch = null;
let boardTimer = 0;
let healthTimer = 0;

// --- times ----------------------------------------------------------------------------

function hubNow() {
  return Date.now() + clockOffset;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const rest = `${Math.floor((s % 3600) / 60)}:${String(s % 60).padStart(2, "0")}`;
  return hours ? `${hours}:${rest.padStart(5, "0")}` : rest;
}

// Waiting: amber at 30 s, red at 60 s, always with words and a symbol beside the colour.
function waitState(c, now) {
  const opened = Date.parse(c.opened_at);
  if (c.answered_at) {
    return { level: "ok", text: t("wait.ok", { d: duration((Date.parse(c.answered_at) - opened) / 1000) }) };
  }
  const seconds = (now - opened) / 1000;
  const level = seconds >= 60 ? "red" : seconds >= 30 ? "amber" : "waiting";
  return { level, text: t(`wait.${level}`, { d: duration(seconds) }) };
}

function deadlineText(c, now) {
  if (!c.deadline_at) return t("deadline.none");
  const left = (Date.parse(c.deadline_at) - now) / 1000;
  const step = either(c.next_step);
  return left > 0 ? t("deadline.in", { d: duration(left), step }) : t("deadline.due", { step });
}

// --- filters --------------------------------------------------------------------------

function filters() {
  const q = new URLSearchParams(location.search);
  return { street: q.get("street") || "", community: q.get("community") || "", grid: q.get("grid") || "" };
}

function filterQuery() {
  const f = filters();
  const q = new URLSearchParams();
  if (f.street) q.set("street_id", f.street);
  if (f.community) q.set("community_id", f.community);
  if (f.grid) q.set("grid_id", f.grid);
  return q.toString();
}

function options(el, items, value) {
  clear(el).append(h("option", { value: "" }, t("desk.all")),
    ...items.map(([id, name]) => h("option", { value: String(id), selected: String(id) === value }, name)));
}

function unique(rows, idKey, nameKey) {
  const seen = new Map();
  for (const row of rows) seen.set(row[idKey], row[nameKey]);
  return [...seen.entries()];
}

function renderFilters() {
  const f = filters();
  const inStreet = areas.filter((a) => !f.street || String(a.street_id) === f.street);
  const inCommunity = inStreet.filter((a) => !f.community || String(a.community_id) === f.community);
  options(select.street, unique(areas, "street_id", "street_name"), f.street);
  options(select.community, unique(inStreet, "community_id", "community_name"), f.community);
  options(select.grid, unique(inCommunity, "grid_id", "grid_name"), f.grid);
}

function onFilter(level) {
  const f = filters();
  f[level] = select[level].value;
  if (level === "street") f.community = f.grid = "";
  if (level === "community") f.grid = "";
  const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
  history.replaceState(null, "", q.size ? `/desk?${q}` : "/desk");
  renderFilters();
  loadBoard();
  loadHealth();
}

// --- the board ------------------------------------------------------------------------

function badge(text, tone) {
  return h("span", { class: "badge", dataset: { tone } }, text);
}

function stateBadge(c) {
  const waiting = ["open", "dispatched"].includes(c.state);
  const symbol = waiting ? "! " : c.state === "on_site" ? "⌂ " : "✔ ";
  return badge(symbol + either(c.display), waiting ? "alarm" : c.state === "on_site" ? "ok" : "warn");
}

function holderText(c) {
  const names = c.holders.map((x) => x.name).join("、");
  if (c.holder_kind === "taken") return names ? `✔ ${names}` : t("holder.presence");
  if (c.holder_kind === "waiting") return `… ${t("holder.waiting", { names })}`;
  return t("holder.nobody");
}

function boardRow(c, now) {
  const wait = waitState(c, now);
  const cell = (key, ...content) => h("td", { dataset: { label: t(`col.${key}`) } }, h("div", {}, ...content));
  return h("tr", { dataset: { caseId: c.id, state: c.state }, class: c.id === selected ? "selected" : null },
    cell("case", h("button", { type: "button", class: "link", dataset: { open: c.id }, onclick: () => openPanel(c.id) }, `#${c.id}`),
      h("div", { class: "meta" }, t(`kind.${c.kind}`))),
    cell("state", stateBadge(c),
      c.cancel_requested ? h("div", { class: "meta" }, `⚑ ${t("desk.cancel_requested")}`) : null),
    cell("tier", either(c.tier_label)),
    cell("holder", h("span", { class: "holder" }, holderText(c))),
    cell("resident",
      h("strong", {}, c.resident_name || "—"),
      c.lives_alone ? h("span", { class: "tag" }, t("desk.lives_alone")) : null,
      h("div", { class: "meta" }, c.address),
      h("div", { class: "meta" }, `${c.community_name} · ${c.grid_name}`)),
    cell("waiting", h("span", { class: "wait", dataset: { level: wait.level, opened: c.opened_at } }, wait.text)),
    cell("deadline", h("span", { class: "countdown" }, deadlineText(c, now))),
    cell("actions", h("button", { type: "button", class: "secondary small", dataset: { action: "handle" }, onclick: () => openPanel(c.id) }, t("desk.handle"))));
}

function renderBoard() {
  const now = hubNow();
  view.count.textContent = `(${boardCases.length})`;
  if (!boardCases.length) {
    clear(view.board).append(h("p", { class: "empty" }, t("desk.no_cases")));
    return;
  }
  const heads = ["case", "state", "tier", "holder", "resident", "waiting", "deadline", "actions"];
  clear(view.board).append(
    h("table", { class: "board-table", id: "board-table" },
      h("caption", { class: "visually-hidden" }, t("desk.open_cases")),
      h("thead", {}, h("tr", {}, heads.map((k) => h("th", { scope: "col" }, t(`col.${k}`))))),
      h("tbody", {}, boardCases.map((c) => boardRow(c, now)))));
}

// Every second: the waiting times and countdowns, without re-reading anything.
function tick() {
  const now = hubNow();
  for (const row of view.board.querySelectorAll("tr[data-case-id]")) {
    const c = boardCases.find((x) => String(x.id) === row.dataset.caseId);
    if (!c) continue;
    const wait = waitState(c, now);
    const cell = row.querySelector(".wait");
    if (cell.textContent !== wait.text) cell.textContent = wait.text;
    cell.dataset.level = wait.level;
    row.querySelector(".countdown").textContent = deadlineText(c, now);
  }
}

let boardAsked = 0; // answers can overtake each other: only the latest request's is shown

async function loadBoard() {
  const mine = ++boardAsked;
  try {
    const data = await api(`/api/v1/desk/cases?${filterQuery()}`);
    if (mine !== boardAsked) return;
    clockOffset = Date.parse(data.now) - Date.now();
    boardCases = data.cases;
    renderBoard();
  } catch (err) {
    showProblem(pick(err.message));
  }
}

function scheduleBoard() {
  clearTimeout(boardTimer);
  boardTimer = setTimeout(loadBoard, 150);
}

// --- one case: details, reassign, note --------------------------------------------------

async function openPanel(id) {
  selected = id;
  for (const row of view.board.querySelectorAll("tr[data-case-id]")) {
    row.classList.toggle("selected", row.dataset.caseId === String(id));
  }
  await loadPanel();
  view.panel.scrollIntoView({ block: "nearest" });
}

let panelAsked = 0;

async function loadPanel() {
  if (!selected) return;
  const mine = ++panelAsked;
  try {
    const [found, staff] = await Promise.all([
      api(`/api/v1/cases/${selected}`),
      workers ? Promise.resolve(workers) : api("/api/v1/workers?limit=500"),
    ]);
    workers = staff.filter((w) => w.active);
    if (mine !== panelAsked || found.id !== selected) return;
    detail = found;
    renderPanel();
  } catch (err) {
    showProblem(pick(err.message));
  }
}

function closePanel() {
  selected = null;
  detail = null;
  view.panel.hidden = true;
  renderBoard();
}

async function post(button, path, body) {
  button.disabled = true;
  showProblem("");
  try {
    return await api(path, { method: "POST", body });
  } catch (err) {
    showProblem(err.message);
    return null;
  } finally {
    button.disabled = false;
  }
}

function auditLine(a) {
  const action = t(`action.${a.action}`);
  const label = action === `action.${a.action}` ? a.action : action;
  return h("li", { dataset: { action: a.action } },
    h("time", { datetime: a.at }, clock(a.at, true)), `${label} · ${a.actor}`,
    a.detail ? h("div", { class: "note" }, a.detail) : null);
}

function reassignForm(c) {
  const choice = h("select", { id: "reassign-worker", required: true },
    h("option", { value: "" }, t("panel.pick_worker")),
    workers.map((w) => h("option", { value: String(w.id) }, `${w.name} · ${t(`role.${w.role}`)}`)));
  const why = h("input", { id: "reassign-note", maxlength: "2000", autocomplete: "off" });
  const submit = h("button", { type: "submit", class: "primary", dataset: { action: "reassign" } }, t("panel.reassign_submit"));
  return h("form", {
    id: "reassign-form",
    onsubmit: async (e) => {
      e.preventDefault();
      if (!choice.value) return;
      if (await post(submit, `/api/v1/cases/${c.id}/reassign`, { worker_id: Number(choice.value), note: why.value })) {
        await loadPanel();
        flash(t("panel.reassigned"));
      }
    },
  },
  h("label", { for: "reassign-worker" }, t("panel.reassign")), choice,
  h("label", { for: "reassign-note" }, t("panel.reassign_note")), why,
  h("div", { class: "actions" }, submit));
}

function noteForm(c) {
  const text = h("textarea", { id: "note-text", maxlength: "2000", required: true });
  const submit = h("button", { type: "submit", class: "secondary", dataset: { action: "add-note" } }, t("panel.note_submit"));
  return h("form", {
    id: "note-form",
    onsubmit: async (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      if (await post(submit, `/api/v1/cases/${c.id}/notes`, { text: text.value })) {
        await loadPanel();
        flash(t("panel.noted"));
      }
    },
  },
  h("label", { for: "note-text" }, t("panel.add_note")), text,
  h("div", { class: "actions" }, submit));
}

function flash(text) {
  const box = document.getElementById("panel-flash");
  if (box) box.textContent = text;
}

function renderPanel() {
  const c = detail;
  if (!c) return;
  const house = c.household;
  const active = ["open", "dispatched", "acknowledged", "on_site"].includes(c.state);
  const reassignable = ["open", "dispatched", "acknowledged"].includes(c.state);
  const contacts = house.emergency_contacts || [];
  view.panel.hidden = false;
  const parts = [
    h("div", { class: "item-head" },
      h("h2", { id: "case-panel-title" }, `${t(`kind.${c.kind}`)} #${c.id}`), stateBadge(c),
      h("button", { type: "button", class: "ghost small", id: "panel-close", onclick: closePanel }, t("panel.close"))),
    h("p", { id: "panel-flash", class: "flash", role: "status", "aria-live": "polite" }),
    h("dl", { class: "facts" },
      h("dt", {}, t("panel.residents")), h("dd", {}, (house.residents || []).map((r) => r.name).join("、") || "—"),
      h("dt", {}, t("panel.address")), h("dd", {}, house.address),
      h("dt", {}, t("panel.area")), h("dd", {}, house.grid_name),
      c.note ? [h("dt", {}, t("panel.note")), h("dd", { class: "note" }, c.note)] : null,
      h("dt", {}, t("panel.contacts")),
      h("dd", {}, contacts.length
        ? h("ul", { class: "contacts" }, contacts.map((x) => h("li", {},
          h("a", { href: `tel:${x.phone}` }, `☎ ${t("desk.contact_of", { name: x.name, relation: x.relation })} ${x.phone}`))))
        : t("panel.none"))),
    active ? null : h("p", { class: "meta" }, t("panel.closed")),
    reassignable ? reassignForm(c) : null,
    noteForm(c),
    h("h3", {}, t("panel.timeline")),
    h("ol", { class: "timeline", id: "panel-timeline" }, (c.audit || []).map(auditLine)),
  ];
  clear(view.panel).append(...parts.filter(Boolean)); // DOM append would show a null as "null"
}

// --- a phone case for a caller ------------------------------------------------------------

function householdCard(house) {
  const note = h("textarea", { id: `caller-note-${house.id}`, maxlength: "2000" });
  const submit = h("button", { type: "submit", class: "danger", dataset: { action: "open-case" } }, t("desk.open_case"));
  const people = (house.residents || []).map((r) => (r.phone ? `${r.name} ${r.phone}` : r.name)).join("、");
  const relatives = (house.emergency_contacts || [])
    .map((x) => `${t("desk.contact_of", { name: x.name, relation: x.relation })} ${x.phone}`).join("、");
  return h("li", {},
    h("form", {
      class: "result",
      dataset: { householdId: house.id },
      onsubmit: async (e) => {
        e.preventDefault();
        const made = await post(submit, "/api/v1/cases", { household_id: house.id, note: note.value });
        if (made) {
          showProblem("");
          clear(view.results).append(h("p", { class: "flash", role: "status" }, t("desk.opened", { id: made.case_id })));
          scheduleBoard();
          openPanel(made.case_id);
        }
      },
    },
    h("strong", {}, house.address),
    house.lives_alone ? h("span", { class: "tag" }, t("desk.lives_alone")) : null,
    h("div", { class: "meta" }, `${house.street_name} · ${house.community_name} · ${house.grid_name}`),
    people ? h("div", { class: "meta" }, people) : null,
    relatives ? h("div", { class: "meta" }, relatives) : null,
    house.active_case_id
      ? h("button", { type: "button", class: "link", onclick: () => openPanel(house.active_case_id) }, t("desk.has_case", { id: house.active_case_id }))
      : null,
    h("label", { for: `caller-note-${house.id}` }, t("desk.caller_note")), note,
    h("div", { class: "actions" }, submit)));
}

function renderResults() {
  if (lastSearch === null) return;
  clear(view.results).append(lastSearch.length
    ? h("ul", { class: "items", id: "household-results" }, lastSearch.map(householdCard))
    : h("p", { class: "empty" }, t("desk.no_match")));
}

async function search(e) {
  e.preventDefault();
  const q = document.getElementById("household-q").value.trim();
  if (!q) return;
  try {
    lastSearch = await api(`/api/v1/desk/households?q=${encodeURIComponent(q)}`);
    renderResults();
  } catch (err) {
    showProblem(pick(err.message));
  }
}

// --- health ---------------------------------------------------------------------------

function healthCard(titleText, count, body) {
  return h("section", { class: "health-card", dataset: { count: String(count) } },
    h("h3", {}, titleText, " ", h("span", { class: "count" }, `(${count})`)), body);
}

function edgeLine(edge) {
  const words = edge.problems.map((p) => t(`problem.${p}`, {
    n: p === "dropped" ? edge.dropped : edge.outbox_depth,
    age: Math.round(edge.oldest_unsent_age_s || 0),
    pct: Math.round(edge.fill_pct || 0),
  }));
  return h("li", { dataset: { edge: edge.edge_id } }, h("strong", {}, edge.edge_id), " ", words.join(" · "));
}

function renderHealth() {
  if (!health) return;
  view.healthAt.textContent = t("desk.health_at", { t: clock(health.now) });
  const none = () => h("p", { class: "empty" }, t("health.none"));
  const offline = health.offline_devices;
  const low = health.low_battery;
  const troubled = health.edges.filter((e) => e.problems.length);
  const fine = health.edges.length - troubled.length;
  const q = health.quarantine;
  const open = health.open_tasks.reduce((n, x) => n + x.open + x.acknowledged, 0);
  clear(view.health).append(
    healthCard(t("health.offline"), offline.total, offline.rows.length
      ? h("ul", { class: "plain" }, offline.rows.map((d) => h("li", {}, h("strong", {}, d.id), ` ${d.address || d.place || ""} · `,
        t("health.last_seen", { t: clock(d.last_seen, true) }), d.offline_reason ? ` · ${d.offline_reason}` : "")))
      : none()),
    healthCard(t("health.low_battery", { p: low.threshold_pct }), low.total, low.rows.length
      ? h("ul", { class: "plain" }, low.rows.map((d) => h("li", {}, h("strong", {}, d.id), ` ${d.battery_pct}% · ${d.address || d.place || ""}`)))
      : none()),
    healthCard(t("health.edges"), troubled.length, h("div", {},
      troubled.length ? h("ul", { class: "plain", id: "edge-problems" }, troubled.map(edgeLine)) : null,
      h("p", { class: "meta" }, t("health.edges_ok", { n: fine })))),
    healthCard(t("health.quarantine"), q.total, h("div", {},
      h("p", { class: "meta" }, t("health.q_counts", { total: q.total, day: q.last_24h })),
      q.latest.length ? h("ul", { class: "plain" }, q.latest.map((x) => h("li", {}, `${clock(x.received_at, true)} · ${x.edge_id || "?"} · ${x.reason}`))) : null)),
    healthCard(t("health.tasks"), open,
      h("ul", { class: "plain", id: "task-kinds" }, health.open_tasks.map((x) => h("li", { dataset: { kind: x.kind } },
        h("strong", {}, either(x)), " ", t("health.task_counts", { open: x.open, ack: x.acknowledged }))))));
}

let healthAsked = 0;

async function loadHealth() {
  const mine = ++healthAsked;
  try {
    const answer = await api(`/api/v1/desk/health?${filterQuery()}`);
    if (mine !== healthAsked) return;
    health = answer;
    renderHealth();
  } catch (err) {
    showProblem(pick(err.message));
  }
}

function scheduleHealth() {
  clearTimeout(healthTimer);
  healthTimer = setTimeout(loadHealth, 1000);
}

// --- start ------------------------------------------------------------------------------

function onEvent(name, data) {
  if (name === "reset") {
    scheduleBoard();
    scheduleHealth();
  } else if (name === "case") {
    scheduleBoard();
    if (selected === data.id) loadPanel();
  } else if (name === "task") {
    scheduleHealth();
  }
}

async function main() {
  const me = await startShell({ roles: ["hotline", "operator", "admin"] });
  document.title = t("desk.title");
  if (me && me.role === "hotline") document.getElementById("nav-kpi").hidden = true;
  onLangChange(() => {
    document.title = t("desk.title");
    renderFilters();
    renderBoard();
    renderPanel();
    renderResults();
    renderHealth();
  });
  clear(view.board).append(h("p", {}, t("desk.loading")));
  for (const level of ["street", "community", "grid"]) {
    select[level].addEventListener("change", () => onFilter(level));
  }
  document.getElementById("search-form").addEventListener("submit", search);
  try {
    areas = await api("/api/v1/desk/areas");
  } catch (err) {
    showProblem(pick(err.message));
  }
  renderFilters();
  let first = true;
  openLive("/api/v1/stream/cases", {
    events: ["case", "task", "reset"],
    onEvent,
    onStatus: showStatus,
    onReady: () => {
      // Subscribed before reading, so no change falls between the two; after a reconnect
      // the hub replays what was missed, and a re-read costs little: do it anyway.
      if (first) loadHealth();
      first = false;
      loadBoard();
    },
  });
  setInterval(tick, 1000);
  setInterval(loadHealth, 15000);
}

main();
