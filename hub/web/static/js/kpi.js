// Care KPIs (照护指标): an area's figures for a period, per child area and per worker, with
// the telecare standard beside them (97.5 % answered within 60 s, 99 % within 180 s).
//
// Every figure comes from /api/v1/kpi/care, which defines them once (hub/domain/care_kpi.py)
// and sends the table's cells already formatted; the page shows those cells as they are,
// and the CSV link asks the same endpoint for the same table, so the two never disagree.
// The chart is inline SVG drawn here (no chart library, no CDN).
import { api } from "./api.js";
import { clear, clock, h } from "./dom.js";
import { addStrings, either, lang, onLangChange, pick, t } from "./i18n.js";
import { showProblem, startShell } from "./shell.js";

addStrings({
  "kpi.title": ["照护指标", "Care KPIs"],
  "nav.pages": ["页面", "Pages"],
  "nav.desk": ["坐席看板", "Desk board"],
  "nav.kpi": ["照护指标", "Care KPIs"],
  "kpi.levels": ["层级", "Levels"],
  "kpi.everywhere": ["全部", "All areas"],
  "kpi.crumb": ["{level}：{name}", "{level}: {name}"],
  "kpi.period": ["统计周期", "Period"],
  "kpi.today": ["今天", "Today"],
  "kpi.week": ["近 7 天", "Last 7 days"],
  "kpi.month": ["近 30 天", "Last 30 days"],
  "kpi.start": ["开始日期", "From"],
  "kpi.end": ["结束日期", "To"],
  "kpi.apply": ["查看", "Show"],
  "kpi.csv": ["导出 CSV", "Export CSV"],
  "kpi.chart": ["60 秒内应答率（标准 97.5%）", "Answered within 60 s (standard 97.5 %)"],
  "kpi.services": ["便民服务请求（按类别）", "Service requests by category"],
  "kpi.table": ["明细", "Details"],
  "kpi.calls": ["本期求助呼叫", "Help calls in the period"],
  "kpi.summary": ["{name} · {start} 至 {end}", "{name} · {start} to {end}"],
  "kpi.loading": ["正在加载…", "Loading…"],
  "kpi.no_calls": ["本期没有求助呼叫", "No help calls in this period"],
  "kpi.no_services": ["本期没有便民服务请求", "No service requests in this period"],
  "kpi.no_data": ["无数据", "no data"],
  "kpi.met": ["✔ 达标", "✔ meets the standard"],
  "kpi.missed": ["✘ 未达标", "✘ below the standard"],
  "kpi.undecided": ["— 无数据", "— no data"],
  "kpi.standard": ["标准 {v}", "standard {v}"],
  "kpi.of": ["{met}/{decided} 次", "{met} of {decided}"],
  "kpi.target_line": ["标准 97.5%", "standard 97.5 %"],
  "kpi.chart_alt": ["各{level}60秒内应答率条形图，竖线为 97.5% 标准", "Bar chart: share answered within 60 s per {level}; the line is the 97.5 % standard"],
  "kpi.services_alt": ["便民服务请求按类别的条形图", "Bar chart of service requests by category"],
  "kpi.drill": ["查看 {name} 的明细", "Show {name}"],
  "tile.help_calls": ["求助呼叫", "Help calls"],
  "tile.within_60": ["60 秒内应答", "Answered within 60 s"],
  "tile.within_180": ["180 秒内应答", "Answered within 180 s"],
  "tile.answer": ["应答时间 中位数 / P90", "Time to answer, median / p90"],
  "tile.on_site": ["到场时间 中位数 / P90", "Time to on site, median / p90"],
  "tile.escalated": ["升级 / 改派", "Escalated / reassigned"],
  "tile.cancelled": ["取消 / 误报", "Cancelled / false calls"],
  "tile.services": ["便民服务请求", "Service requests"],
  "tile.s": ["{v} 秒", "{v} s"],
  "level.all": ["全部", "all"],
  "level.district": ["区", "district"],
  "level.street": ["街道", "street"],
  "level.community": ["社区", "community"],
  "level.grid": ["网格", "grid"],
  "level.worker": ["工作人员", "worker"],
  "call.case": ["工单", "Case"],
  "call.kind": ["类型", "Kind"],
  "call.grid": ["网格", "Grid"],
  "call.opened": ["发起时间", "Called at"],
  "call.to_answer": ["应答用时（秒）", "To answer (s)"],
  "call.to_on_site": ["到场用时（秒）", "To on site (s)"],
  "call.answered_by": ["应答人", "Answered by"],
  "call.escalated_to": ["升级至", "Escalated to"],
  "call.outcome": ["结果", "Outcome"],
  "kind.sos": ["一键通求助", "SOS"],
  "kind.fall": ["跌倒报警", "Fall alarm"],
  "kind.phone": ["热线求助", "Hotline call"],
  "tier.backup_worker": ["后备网格员", "backup worker"],
  "tier.community_station": ["社区服务站", "community station"],
  "tier.street_centre": ["街道中心", "street centre"],
  "tier.hotline_desk": ["96890 热线", "hotline desk"],
  "outcome.false_alarm": ["误报", "False alarm"],
  "outcome.helped_on_site": ["已现场协助", "Helped on site"],
  "outcome.ambulance_called": ["已呼叫救护车", "Ambulance called"],
  "outcome.other": ["其他", "Other"],
  "outcome.open": ["处理中", "in progress"],
  "outcome.cancelled": ["（居民取消）", "(cancelled)"],
});

const SVG = "http://www.w3.org/2000/svg";
const TARGET_60 = 0.975;
let me = null;
let report = null;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// --- the query, kept in the address bar ---------------------------------------------------

function query() {
  const q = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const key of ["level", "id", "start", "end"]) if (q.get(key)) out.set(key, q.get(key));
  return out;
}

function go(changes) {
  const q = query();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") q.delete(key);
    else q.set(key, String(value));
  }
  history.pushState(null, "", q.size ? `/kpi?${q}` : "/kpi");
  load();
}

function localDay(date) {
  return date.toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" }); // YYYY-MM-DD
}

function preset(days) {
  const end = new Date();
  const start = new Date(end.getTime() - (days - 1) * 86400000);
  go({ start: localDay(start), end: localDay(end) });
}

// --- rendering ----------------------------------------------------------------------------

function unitName(unit) {
  return unit.level === "all" ? t("level.all") : unit.name;
}

function renderCrumbs() {
  const crumbs = document.getElementById("crumbs");
  const staff = me && me.role !== "worker";
  const steps = [...report.path, report.unit];
  clear(crumbs).append(h("ol", {}, steps.map((u, i) => {
    const label = u.level === "all" ? t("kpi.everywhere") : t("kpi.crumb", { level: t(`level.${u.level}`), name: u.name });
    const last = i === steps.length - 1;
    if (last || !staff) return h("li", {}, h("span", { "aria-current": last ? "page" : null }, label));
    return h("li", {}, h("a", {
      href: `/kpi?level=${u.level}${u.id ? `&id=${u.id}` : ""}`,
      onclick: (e) => { e.preventDefault(); go({ level: u.level === "all" ? "" : u.level, id: u.id }); },
    }, label));
  })));
}

function shareOf(row, limit) {
  const s = row.shares[String(limit)];
  return s && s.decided ? s.met / s.decided : null;
}

function verdict(row, limit, target) {
  const value = shareOf(row, limit);
  if (value === null) return h("span", { class: "verdict", dataset: { met: "none" } }, t("kpi.undecided"));
  const met = value >= target;
  return h("span", { class: "verdict", dataset: { met: String(met) } }, t(met ? "kpi.met" : "kpi.missed"));
}

function tile(key, value, ...extra) {
  return h("div", { class: "tile", dataset: { tile: key } },
    h("div", { class: "tile-label" }, t(`tile.${key}`)),
    h("div", { class: "tile-value" }, value), ...extra);
}

function renderSummary() {
  const total = report.rows[0];
  const c = total.cells;
  document.getElementById("summary-title").textContent = t("kpi.summary", {
    name: unitName(report.unit), start: report.period.start, end: report.period.end,
  });
  const share = (limit, target) => {
    const s = total.shares[String(limit)];
    return [
      h("div", { class: "meta" }, t("kpi.standard", { v: c[`target_${limit}`] }), " · ",
        t("kpi.of", { met: s.met, decided: s.decided })),
      verdict(total, limit, target),
    ];
  };
  const [t60, t180] = report.targets;
  clear(document.getElementById("summary-body")).append(
    tile("help_calls", c.help_calls),
    tile("within_60", c.within_60, ...share(60, t60.share)),
    tile("within_180", c.within_180, ...share(180, t180.share)),
    tile("answer", seconds(c.answer_median_s, c.answer_p90_s)),
    tile("on_site", seconds(c.on_site_median_s, c.on_site_p90_s)),
    tile("escalated", `${escalatedTotal(total)} / ${c.reassigned}`),
    tile("cancelled", `${c.cancelled} / ${c.false_calls}`),
    tile("services", c.service_requests));
}

function seconds(median, p90) {
  const unit = (v) => (v === "—" ? v : t("tile.s", { v }));
  return `${unit(median)} / ${unit(p90)}`;
}

function escalatedTotal(row) {
  return ["backup_worker", "community_station", "street_centre", "hotline_desk"]
    .map((tier) => Number(row.cells[`to_${tier}`]) || 0).reduce((a, b) => a + b, 0);
}

// Horizontal bars with their value written beside them and the standard as a line.
// One SVG unit is one CSS pixel at the width the chart gets, so its text stays readable on
// a 360 px phone instead of shrinking with the drawing.
function barChart(items, { max, target, alt, percent, width }) {
  const rowH = 34;
  const total = Math.max(300, Math.min(720, Math.round(width || 600)));
  const labelW = Math.min(150, Math.round(total * 0.28));
  const barW = total - labelW - 120;
  const height = Math.max(1, items.length) * rowH + (target ? 26 : 6);
  const x = (v) => labelW + (barW * v) / max;
  const chart = svg("svg", {
    viewBox: `0 0 ${total} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": alt,
  });
  items.forEach((item, i) => {
    const y = i * rowH + 4;
    const fits = Math.max(3, Math.floor((labelW - 10) / 15));
    const label = item.label.length > fits ? `${item.label.slice(0, fits - 1)}…` : item.label;
    chart.append(svg("text", { x: labelW - 8, y: y + 18, "text-anchor": "end", class: "chart-label" }, label));
    if (item.value === null) {
      chart.append(svg("text", { x: labelW + 4, y: y + 18, class: "chart-none" }, t("kpi.no_data")));
      return;
    }
    const missed = target !== undefined && item.value < target;
    chart.append(svg("rect", {
      x: labelW, y, width: Math.max(2, x(item.value) - labelW), height: rowH - 10, rx: 3,
      class: missed ? "bar bar-missed" : "bar",
    }));
    const text = percent ? `${(item.value * 100).toFixed(1)}%` : String(item.value);
    chart.append(svg("text", { x: x(item.value) + 6, y: y + 18, class: "chart-value" },
      target !== undefined ? `${text} ${missed ? "✘" : "✔"}` : text, item.note ? ` ${item.note}` : ""));
  });
  if (target !== undefined) {
    const tx = x(target);
    chart.append(
      svg("line", { x1: tx, x2: tx, y1: 0, y2: height - 20, class: "target-line" }),
      svg("text", { x: tx, y: height - 6, "text-anchor": "middle", class: "chart-target" }, t("kpi.target_line")));
  }
  return chart;
}

function renderChart() {
  const rows = report.rows.filter((r) => r.row === (report.child_level === "worker" ? "worker" : "child"));
  const items = rows.map((r) => {
    const s = r.shares["60"];
    return { label: r.name, value: shareOf(r, 60), note: s.decided ? `(${s.met}/${s.decided})` : "" };
  });
  const level = t(`level.${report.child_level}`);
  const box = document.getElementById("chart");
  clear(box).append(items.length
    ? barChart(items, { max: 1, target: TARGET_60, alt: t("kpi.chart_alt", { level }), percent: true, width: box.clientWidth })
    : h("p", { class: "empty" }, t("kpi.no_calls")));
}

// Only the categories asked for in the period: eleven bars of zero say nothing at a glance.
function renderServices() {
  const items = report.service_requests.filter((s) => s.count).map((s) => ({ label: either(s), value: s.count }));
  const max = Math.max(1, ...items.map((i) => i.value));
  const box = document.getElementById("services");
  clear(box).append(items.length
    ? barChart(items, { max, alt: t("kpi.services_alt"), percent: false, width: box.clientWidth })
    : h("p", { class: "empty" }, t("kpi.no_services")));
}

function renderTable() {
  const columns = report.columns.filter((c) => c.on_page);
  const staff = me && me.role !== "worker";
  const drill = (row) => {
    if (!staff || row.row !== "child") return row.cells.name;
    return h("a", {
      href: `/kpi?level=${row.level}&id=${row.id}`,
      "aria-label": t("kpi.drill", { name: row.name }),
      onclick: (e) => { e.preventDefault(); go({ level: row.level, id: row.id }); },
    }, row.cells.name);
  };
  clear(document.getElementById("table")).append(
    h("table", { class: "kpi-table", id: "kpi-table" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", dataset: { key: c.key } }, either(c))))),
      h("tbody", {}, report.rows.map((row) => h("tr", { dataset: { row: row.row, id: row.id ?? "" } },
        columns.map((c) => (c.key === "name"
          ? h("th", { scope: "row", dataset: { key: c.key } }, drill(row))
          : h("td", { dataset: { key: c.key } }, row.cells[c.key]))))))));
}

function renderCalls() {
  document.getElementById("calls-count").textContent = `(${report.rows[0].cells.help_calls})`;
  const box = clear(document.getElementById("calls"));
  if (!report.calls.length) {
    box.append(h("p", { class: "empty" }, t("kpi.no_calls")));
    return;
  }
  const heads = ["case", "kind", "grid", "opened", "to_answer", "to_on_site", "answered_by", "escalated_to", "outcome"];
  box.append(h("table", { class: "kpi-table", id: "calls-table" },
    h("thead", {}, h("tr", {}, heads.map((k) => h("th", { scope: "col" }, t(`call.${k}`))))),
    h("tbody", {}, report.calls.map((call) => h("tr", { dataset: { caseId: call.case_id } },
      h("th", { scope: "row" }, `#${call.case_id}`),
      h("td", {}, t(`kind.${call.kind}`)),
      h("td", {}, call.grid_name),
      h("td", {}, clock(call.opened_at, true)),
      h("td", { class: "to-answer" }, call.seconds_to_answer),
      h("td", { class: "to-on-site" }, call.seconds_to_on_site),
      h("td", {}, call.answered_by || "—"),
      h("td", {}, call.escalated_to.map((tier) => t(`tier.${tier}`)).join("、") || "—"),
      h("td", {}, t(`outcome.${call.outcome || "open"}`), call.cancelled ? ` ${t("outcome.cancelled")}` : ""))))));
}

function render() {
  if (!report) return;
  document.title = `${t("kpi.title")} · ${unitName(report.unit)}`;
  document.getElementById("start").value = report.period.start;
  document.getElementById("end").value = report.period.end;
  const q = new URLSearchParams({ level: report.unit.level, start: report.period.start, end: report.period.end });
  if (report.unit.id) q.set("id", report.unit.id);
  document.getElementById("csv-link").setAttribute("href", `/api/v1/kpi/care.csv?${q}`);
  renderCrumbs();
  renderSummary();
  renderChart();
  renderServices();
  renderTable();
  renderCalls();
}

let asked = 0; // a slow answer for an older choice must not replace the newer one

async function load() {
  showProblem("");
  const mine = ++asked;
  try {
    const answer = await api(`/api/v1/kpi/care?${query()}`);
    if (mine !== asked) return;
    report = answer;
    render();
  } catch (err) {
    showProblem(pick(err.message));
  }
}

async function main() {
  me = await startShell({ roles: ["admin", "operator", "worker"] });
  document.title = t("kpi.title");
  if (me && me.role === "worker") document.getElementById("nav-desk").hidden = true;
  onLangChange(() => render());
  document.documentElement.dataset.lang = lang();
  for (const button of document.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => preset(Number(button.dataset.days)));
  }
  document.getElementById("period").addEventListener("submit", (e) => {
    e.preventDefault();
    go({ start: document.getElementById("start").value, end: document.getElementById("end").value });
  });
  window.addEventListener("popstate", load);
  let resized = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => {
      if (!report) return;
      renderChart();
      renderServices();
    }, 200);
  });
  await load();
}

main();
