// The grid worker's phone page: my open help calls (alarms first) and tasks, live.
//
// Lists come from the API (/api/v1/cases, /api/v1/tasks; the hub narrows them to the
// worker's grids); then the worker's stream (/api/v1/workers/<id>/stream) keeps them
// current: "case" and "task" events carry the new state of one record, "notification"
// a new call for this worker (sound, vibration, tab title and icon, system notification).
// Views: the list (/worker), a case (/worker?case=12), a task (/worker?task=5).
import { api } from "./api.js";
import { clear, clock, h } from "./dom.js";
import { addStrings, either, lang, onLangChange, pick, t } from "./i18n.js";
import { openLive } from "./live.js";
import { showProblem, showStatus, startShell } from "./shell.js";

addStrings({
  "worker.title": ["网格员工作台", "Grid worker"],
  "worker.enable_alerts": ["开启提醒（声音、震动、通知）", "Turn on alerts (sound, vibration, notifications)"],
  "worker.cases": ["求助工单", "Help calls"],
  "worker.tasks": ["任务", "Tasks"],
  "worker.no_cases": ["暂无待处理的求助", "No open help calls"],
  "worker.no_tasks": ["暂无待办任务", "No open tasks"],
  "worker.not_worker": ["此账号未关联网格员，无法接收求助", "This account is not linked to a grid worker"],
  "worker.loading": ["正在加载…", "Loading…"],
  "worker.back": ["← 返回列表", "← Back to the list"],
  "worker.acknowledge": ["接单", "Acknowledge"],
  "worker.on_site": ["已到场", "On site"],
  "worker.resolve": ["处置完成", "Resolve"],
  "worker.done": ["完成", "Done"],
  "worker.details": ["详情", "Details"],
  "worker.resident": ["居民", "Resident"],
  "worker.address": ["地址", "Address"],
  "worker.grid": ["网格", "Grid"],
  "worker.lives_alone": ["独居", "Lives alone"],
  "worker.notes": ["备注", "Notes"],
  "worker.medical": ["健康提示", "Medical notes"],
  "worker.medical_hidden": ["（无权查看）", "(not shown to you)"],
  "worker.contacts": ["紧急联系人", "Emergency contacts"],
  "worker.no_contacts": ["无", "None"],
  "worker.call": ["拨打", "Call"],
  "worker.timeline": ["处理记录", "Timeline"],
  "worker.outcome": ["处置结果", "Outcome"],
  "worker.note": ["处置说明", "Note"],
  "worker.submit_resolve": ["提交处置结果", "Submit outcome"],
  "worker.opened": ["发起", "Called"],
  "worker.tier": ["第 {tier} 级", "tier {tier}"],
  "worker.new_call": ["【新求助】", "[New call] "],
  "worker.not_found": ["找不到该记录，或已不在您的网格内", "Not found, or not in your grids"],
  "worker.done_ok": ["已更新", "Updated"],
  "outcome.false_alarm": ["误报", "False alarm"],
  "outcome.helped_on_site": ["已现场协助", "Helped on site"],
  "outcome.ambulance_called": ["已呼叫救护车", "Ambulance called"],
  "outcome.other": ["其他", "Other"],
  "kind.sos": ["一键通求助", "SOS"],
  "kind.fall": ["跌倒报警", "Fall alarm"],
  "kind.phone": ["热线求助", "Hotline call"],
  "task.service_request": ["便民服务", "Service request"],
  "task.maintenance": ["设备维护", "Device maintenance"],
  "task.collection": ["清运", "Collection"],
  "task.delivery": ["包裹送上门", "Parcel delivery"],
  "task.door_alert": ["门禁告警", "Door alert"],
  "task.bin_alert": ["垃圾桶告警", "Bin alert"],
  "task.leak_check": ["疑似漏水", "Suspected leak"],
  "task.outage": ["疑似停电", "Suspected power cut"],
  "task.welfare_check": ["关爱探访", "Welfare check"],
  "task.check_in_call": ["报平安未到，请致电", "Missed check-in: call"],
  "welfare.all_well": ["平安无事", "All well"],
  "welfare.helped": ["已协助", "Helped"],
  "welfare.hospital": ["已送医", "Taken to hospital"],
  "welfare.no_answer_door_opened": ["无应答，已会同社区开门", "No answer: door opened with the community"],
  "worker.welfare_outcome": ["探访结果", "What the visit found"],
  "worker.record_outcome": ["记录结果", "Record"],
  "task.open": ["待接单", "open"],
  "act.open": ["发起求助", "call opened"],
  "act.dispatch": ["派单", "dispatched"],
  "act.skip_tier": ["跳过无人值守的层级", "skipped an unstaffed tier"],
  "act.escalate": ["升级", "escalated"],
  "act.join": ["再次按键", "pressed again"],
  "act.acknowledge": ["接单", "acknowledged"],
  "act.arrive": ["到场", "arrived"],
  "act.resolve": ["处置完成", "resolved"],
  "act.close": ["关闭", "closed"],
  "act.request_cancel": ["申请取消", "cancel requested"],
  "task.acknowledged": ["已接单", "acknowledged"],
  "task.done": ["已完成", "done"],
});

const ACTIVE = ["open", "dispatched", "acknowledged", "on_site"];
const AWAITING = ["open", "dispatched"];
const OUTCOMES = ["helped_on_site", "false_alarm", "ambulance_called", "other"];
// A welfare check (关爱探访, issue #15) closes with what the visit found, not "done".
const WELFARE_OUTCOMES = ["all_well", "helped", "hospital", "no_answer_door_opened"];
const TITLE_ICON = "/static/icons/icon.svg";
const ALERT_ICON = "/static/icons/icon-alert.svg";

const cases = new Map();
const tasks = new Map();
const view = document.getElementById("view");
let me = null;
let unseen = 0;
let audio = null;

function caseUrgent(c) {
  return AWAITING.includes(c.state);
}

function badge(text, tone) {
  return h("span", { class: "badge", dataset: { tone } }, text);
}

function caseBadge(c) {
  const symbol = caseUrgent(c) ? "⚠ " : c.state === "on_site" ? "◉ " : "✔ ";
  const tone = caseUrgent(c) ? "alarm" : c.state === "on_site" ? "ok" : "warn";
  return badge(symbol + either(c.display), tone);
}

function taskBadge(task) {
  const tone = task.state === "open" ? "warn" : task.state === "done" ? "ok" : "plain";
  return badge(t(`task.${task.state}`), tone);
}

function taskTitle(task) {
  return t(`task.${task.kind}`);
}

// --- acting -------------------------------------------------------------------------

async function act(button, path, body = {}) {
  button.disabled = true;
  showProblem("");
  try {
    await api(path, { method: "POST", body });
    return true;
  } catch (err) {
    showProblem(err.message);
    return false;
  } finally {
    button.disabled = false;
  }
}

function caseActions(c) {
  const actions = [];
  const verb = (key, path, cls) =>
    h("button", {
      type: "button",
      class: cls,
      dataset: { action: key },
      onclick: async (e) => {
        if (await act(e.currentTarget, `/api/v1/cases/${c.id}/${path}`)) await refreshCase(c.id);
      },
    }, t(`worker.${key}`));
  if (AWAITING.includes(c.state)) actions.push(verb("acknowledge", "acknowledge", "danger"));
  if (c.state === "acknowledged") actions.push(verb("on_site", "on-site", "primary"));
  if (c.state === "acknowledged" || c.state === "on_site") {
    actions.push(h("button", {
      type: "button",
      class: "secondary",
      dataset: { action: "resolve" },
      onclick: () => go({ case: c.id, resolve: 1 }),
    }, t("worker.resolve")));
  }
  return actions;
}

function taskActions(task) {
  const verb = (key, path, cls) =>
    h("button", {
      type: "button",
      class: cls,
      dataset: { action: key },
      onclick: async (e) => {
        if (await act(e.currentTarget, `/api/v1/tasks/${task.id}/${path}`)) {
          tasks.set(task.id, { ...task, state: path === "done" ? "done" : "acknowledged" });
          render();
        }
      },
    }, t(`worker.${key}`));
  if (task.kind === "welfare_check" && task.state !== "done") {
    return [task.state === "open" ? verb("acknowledge", "acknowledge", "primary") : null, welfareOutcome(task)];
  }
  if (task.state === "open") return [verb("acknowledge", "acknowledge", "primary"), verb("done", "done", "secondary")];
  if (task.state === "acknowledged") return [verb("done", "done", "primary")];
  return [];
}

function welfareOutcome(task) {
  const id = `welfare-outcome-${task.id}`;
  const select = h("select", { id, name: "outcome" },
    WELFARE_OUTCOMES.map((o) => h("option", { value: o }, t(`welfare.${o}`))));
  return h("div", { class: "welfare-outcome" },
    h("label", { for: id }, t("worker.welfare_outcome")), select,
    h("button", {
      type: "button",
      class: "primary",
      dataset: { action: "record-outcome" },
      onclick: async (e) => {
        const path = `/api/v1/wellbeing/checks/${task.id}/outcome`;
        if (await act(e.currentTarget, path, { outcome: select.value })) {
          tasks.set(task.id, { ...task, state: "done" });
          render();
        }
      },
    }, t("worker.record_outcome")));
}

// The hub writes the resident's phone into a welfare check's or missed check-in's text
// as "tel:<number>": offered as a button to call first (issue #15).
function phoneIn(detail) {
  const found = /tel:(\+?\d[\d-]{3,}\d)/.exec(detail || "");
  return found ? found[1] : null;
}

// --- the list -----------------------------------------------------------------------

function caseCard(c) {
  return h("li", {},
    h("article", { class: "card item", dataset: { caseId: c.id, urgent: String(caseUrgent(c)), state: c.state } },
      h("div", { class: "item-head" },
        h("a", { href: `/worker?case=${c.id}`, onclick: (e) => { e.preventDefault(); go({ case: c.id }); } },
          `${t(`kind.${c.kind}`)} #${c.id}`),
        caseBadge(c),
        c.tier > 0 ? badge(t("worker.tier", { tier: c.tier }), "warn") : null),
      h("p", { class: "meta" }, c.address || ""),
      h("p", { class: "meta" }, `${c.grid_name || ""} · ${t("worker.opened")} ${clock(c.opened_at, true)}`),
      h("div", { class: "actions" }, caseActions(c))));
}

function taskCard(task) {
  return h("li", {},
    h("article", { class: "card item", dataset: { taskId: task.id, state: task.state } },
      h("div", { class: "item-head" },
        h("a", { href: `/worker?task=${task.id}`, onclick: (e) => { e.preventDefault(); go({ task: task.id }); } },
          `${taskTitle(task)} #${task.id}`),
        taskBadge(task)),
      h("p", { class: "meta" }, task.address || ""),
      task.detail ? h("p", { class: "meta note" }, task.detail) : null,
      phoneIn(task.detail)
        ? h("ul", { class: "contacts" }, h("li", {}, telLink(t("worker.resident"), "", phoneIn(task.detail))))
        : null,
      h("div", { class: "actions" }, taskActions(task))));
}

function renderList() {
  const open = [...cases.values()].filter((c) => ACTIVE.includes(c.state));
  open.sort((a, b) => Number(caseUrgent(b)) - Number(caseUrgent(a)) || b.id - a.id);
  const todo = [...tasks.values()].filter((x) => x.state !== "done").sort((a, b) => b.id - a.id);
  clear(view).append(
    h("section", { "aria-labelledby": "cases-title" },
      h("h2", { id: "cases-title", class: "section-title" }, t("worker.cases"), h("span", { class: "count" }, `(${open.length})`)),
      open.length
        ? h("ul", { class: "items", id: "case-list" }, open.map(caseCard))
        : h("p", { class: "empty" }, t("worker.no_cases"))),
    h("section", { "aria-labelledby": "tasks-title" },
      h("h2", { id: "tasks-title", class: "section-title" }, t("worker.tasks"), h("span", { class: "count" }, `(${todo.length})`)),
      todo.length
        ? h("ul", { class: "items", id: "task-list" }, todo.map(taskCard))
        : h("p", { class: "empty" }, t("worker.no_tasks"))));
}

// --- one case -----------------------------------------------------------------------

function backLink() {
  return h("a", { href: "/worker", class: "back button ghost", onclick: (e) => { e.preventDefault(); go({}); } }, t("worker.back"));
}

function telLink(name, relation, phone) {
  const who = relation ? `${name}（${relation}）` : name;
  return h("a", { href: `tel:${phone}`, class: "button secondary", "aria-label": `${t("worker.call")} ${who} ${phone}` },
    h("span", {}, `☎ ${who}`), h("span", {}, phone));
}

function resolveForm(c) {
  const select = h("select", { id: "outcome", name: "outcome", required: true },
    OUTCOMES.map((o) => h("option", { value: o }, t(`outcome.${o}`))));
  const note = h("textarea", { id: "resolve-note", name: "note", maxlength: "2000" });
  const submit = h("button", { type: "submit", class: "primary", dataset: { action: "submit-resolve" } }, t("worker.submit_resolve"));
  return h("form", {
    class: "card",
    id: "resolve-form",
    onsubmit: async (e) => {
      e.preventDefault();
      if (await act(submit, `/api/v1/cases/${c.id}/resolve`, { outcome: select.value, note: note.value })) {
        await refreshCase(c.id);
        go({ case: c.id });
      }
    },
  },
  h("h3", {}, t("worker.resolve")),
  h("label", { for: "outcome" }, t("worker.outcome")), select,
  h("label", { for: "resolve-note" }, t("worker.note")), note,
  h("div", { class: "actions" }, submit));
}

function renderCase(detail, showResolve) {
  const house = detail.household;
  const residents = house.residents || [];
  const contacts = house.emergency_contacts || [];
  const medical = house.medical_notes_redacted ? t("worker.medical_hidden") : house.medical_notes;
  const facts = [
    ["worker.resident", residents.map((r) => r.name).join("、") || "—"],
    ["worker.address", house.address],
    ["worker.grid", house.grid_name],
  ];
  if (house.lives_alone) facts.push(["worker.lives_alone", "✔"]);
  if (house.notes) facts.push(["worker.notes", house.notes]);
  if (medical) facts.push(["worker.medical", medical]);
  const phones = [
    ...residents.filter((r) => r.phone).map((r) => telLink(r.name, t("worker.resident"), r.phone)),
    ...contacts.map((x) => telLink(x.name, x.relation, x.phone)),
  ];
  const parts = [
    backLink(),
    h("article", { class: "card item", id: "case-detail", dataset: { caseId: detail.id, urgent: String(caseUrgent(detail)), state: detail.state } },
      h("div", { class: "item-head" },
        h("h2", {}, `${t(`kind.${detail.kind}`)} #${detail.id}`), caseBadge(detail)),
      h("p", { class: "meta" }, `${t("worker.opened")} ${clock(detail.opened_at, true)}`),
      h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, t(k)), h("dd", { class: "note" }, v)])),
      h("div", { class: "actions" }, caseActions(detail))),
    showResolve && ["acknowledged", "on_site"].includes(detail.state) ? resolveForm(detail) : null,
    h("section", { class: "card" },
      h("h3", {}, t("worker.contacts")),
      phones.length ? h("ul", { class: "contacts" }, phones.map((p) => h("li", {}, p))) : h("p", {}, t("worker.no_contacts"))),
    h("section", { class: "card" },
      h("h3", {}, t("worker.timeline")),
      h("ol", { class: "timeline" }, (detail.audit || []).map((a) =>
        h("li", {}, h("time", { datetime: a.at }, clock(a.at, true)),
          t(`act.${a.action}`) === `act.${a.action}` ? a.action : t(`act.${a.action}`),
          ` · ${a.actor}`, a.detail ? ` · ${a.detail}` : "")))),
  ];
  clear(view).append(...parts.filter(Boolean));
}

async function showCase(id, showResolve) {
  clear(view).append(backLink(), h("p", {}, t("worker.loading")));
  try {
    const detail = await api(`/api/v1/cases/${id}`);
    cases.set(detail.id, { ...(cases.get(detail.id) || {}), ...detail, address: detail.household.address, grid_name: detail.household.grid_name });
    if (currentView().case === id) renderCase(detail, showResolve);
  } catch (err) {
    clear(view).append(backLink(), h("p", { class: "error" }, err.status === 403 || err.status === 404 ? t("worker.not_found") : err.message));
  }
}

function renderTask(id) {
  const task = tasks.get(id);
  if (!task) {
    clear(view).append(backLink(), h("p", { class: "error" }, t("worker.not_found")));
    return;
  }
  clear(view).append(backLink(), h("ul", { class: "items" }, taskCard(task)));
}

// --- navigation ---------------------------------------------------------------------

function currentView() {
  const q = new URLSearchParams(location.search);
  return {
    case: q.has("case") ? Number(q.get("case")) : null,
    task: q.has("task") ? Number(q.get("task")) : null,
    resolve: q.has("resolve"),
  };
}

function go(params) {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  history.pushState(null, "", q.size ? `/worker?${q}` : "/worker");
  render();
}

function render() {
  const v = currentView();
  if (v.case) showCase(v.case, v.resolve);
  else if (v.task) renderTask(v.task);
  else renderList();
}

async function refreshCase(id) {
  const v = currentView();
  if (v.case === id) await showCase(id, v.resolve);
  else render();
}

// --- alerts -------------------------------------------------------------------------

function setIcon(href) {
  document.getElementById("favicon").setAttribute("href", href);
}

function beep() {
  if (!audio) return;
  const now = audio.currentTime;
  for (const start of [0, 0.35, 0.7]) {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.25, now + start);
    gain.gain.exponentialRampToValueAtTime(0.001, now + start + 0.3);
    tone.connect(gain).connect(audio.destination);
    tone.start(now + start);
    tone.stop(now + start + 0.3);
  }
}

function alertNewCall(note) {
  unseen += 1;
  document.title = `${t("worker.new_call")}(${unseen}) ${t("worker.title")}`;
  setIcon(ALERT_ICON);
  beep();
  if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 400]);
  if ("Notification" in window && Notification.permission === "granted") {
    const body = lang() === "zh" ? note.message_zh : note.message_en;
    const n = new Notification(t("worker.new_call") + t(`kind.${note.kind}`), {
      body,
      tag: note.case_id ? `case-${note.case_id}` : `task-${note.task_id}`,
      icon: ALERT_ICON,
    });
    n.onclick = () => {
      window.focus();
      go(note.case_id ? { case: note.case_id } : { task: note.task_id });
    };
  }
}

function seen() {
  if (!unseen) return;
  unseen = 0;
  document.title = t("worker.title");
  setIcon(TITLE_ICON);
}

function setUpAlerts() {
  const button = document.getElementById("enable-alerts");
  const wantsPermission = "Notification" in window && Notification.permission === "default";
  button.hidden = !wantsPermission && audio !== null;
  button.addEventListener("click", async () => {
    audio = audio || new AudioContext();
    if ("Notification" in window && Notification.permission === "default") {
      await Notification.requestPermission();
    }
    button.hidden = true;
  });
  // Any tap unlocks sound (browsers allow audio only after a user gesture).
  document.addEventListener("pointerdown", () => {
    if (!audio && window.AudioContext) audio = new AudioContext();
    seen();
  }, { once: false });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") seen();
  });
}

// --- live ---------------------------------------------------------------------------

function onEvent(name, data) {
  if (name === "case") {
    const known = cases.get(data.id);
    cases.set(data.id, { ...(known || {}), ...data });
    const v = currentView();
    if (v.case === data.id) showCase(data.id, v.resolve);
    else if (!v.case && !v.task) renderList();
  } else if (name === "task") {
    tasks.set(data.id, { ...(tasks.get(data.id) || {}), ...data });
    const v = currentView();
    if (!v.case && (!v.task || v.task === data.id)) render();
  } else if (name === "notification") {
    alertNewCall(data);
  }
}

async function loadLists() {
  const caseStates = ["open", "dispatched", "acknowledged", "on_site"];
  const [caseLists, taskLists] = await Promise.all([
    Promise.all(caseStates.map((s) => api(`/api/v1/cases?state=${s}&limit=200`))),
    Promise.all(["open", "acknowledged"].map((s) => api(`/api/v1/tasks?state=${s}&limit=200`))),
  ]);
  cases.clear();
  tasks.clear();
  for (const c of caseLists.flat()) cases.set(c.id, c);
  for (const x of taskLists.flat()) tasks.set(x.id, x);
}

async function main() {
  me = await startShell({ roles: ["worker"] });
  document.title = t("worker.title");
  onLangChange(() => {
    document.title = t("worker.title");
    render();
  });
  setUpAlerts();
  if (!me || me.worker_id === null) {
    showProblem(t("worker.not_worker"));
    return;
  }
  window.addEventListener("popstate", render);
  let first = true;
  openLive(`/api/v1/workers/${me.worker_id}/stream`, {
    events: ["case", "task", "notification"],
    onEvent,
    onStatus: showStatus,
    onReady: async () => {
      // The stream is subscribed before the lists are read, so nothing falls between them;
      // after a reconnect the hub replays what was missed instead.
      if (!first) return;
      first = false;
      try {
        await loadLists();
      } catch (err) {
        showProblem(pick(err.message));
      }
      render();
    },
  });
  clear(view).append(h("p", {}, t("worker.loading")));
}

main();
