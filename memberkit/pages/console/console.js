// memberkit's operator console: plain JavaScript, no build step, talking to /graphql only.
// Every text from the API is put in the page as text (textContent, never HTML); the CSRF token given at
// sign-in lives in this script's memory only, so a reload asks for the key again (docs/staff.md).
"use strict";

(() => {
  const session = { csrf: null, role: null, shop: null, label: null, currency: "CNY", timezone: "UTC" };
  const REFRESH_MS = 60000;
  let refreshTimer = null;

  // ------------------------------------------------------------ DOM helpers (text only)

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // replaceChildren, leaving out the children a condition left empty (null, undefined, false)
  const put = (el, ...children) => el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

  const $ = (id) => document.getElementById(id);
  const view = () => $("view");

  function show(...children) {
    const target = view();
    put(target, children);
    return target;
  }

  function table(caption, headers, rows, empty) {
    if (!rows.length) return h("p", { class: "empty" }, empty || "Nothing yet.");
    return h("div", { class: "scroll", role: "region", "aria-label": caption, tabindex: "0" },
      h("table", {},
        h("caption", {}, caption),
        h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))))));
  }

  function field(label, input, hint) {
    const id = input.id || "f-" + Math.random().toString(36).slice(2);
    input.id = id;
    const hintEl = hint ? h("span", { class: "hint", id: id + "-hint" }, hint) : null;
    if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
    return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
  }

  function select(name, options, value) {
    return h("select", { name },
      options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  }

  // ------------------------------------------------------------ formatting

  function money(minor) {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency: session.currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(Number(minor) / 10 ** digits);
  }
  const number = (n) => new Intl.NumberFormat().format(Number(n));
  const percent = (part, whole) => (Number(whole) > 0 ? (100 * Number(part) / Number(whole)).toFixed(1) + "%" : "–");
  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return h("time", { datetime: iso }, d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
  }
  const day = (iso) => new Date(iso).toLocaleDateString(undefined, { month: "short", day: "numeric" });

  // ------------------------------------------------------------ the API

  class ApiError extends Error {}

  async function gql(query, variables) {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": session.csrf || "" },
      body: JSON.stringify({ query, variables: variables || {} }),
      credentials: "same-origin",
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) {
      signedOut("Your session has ended: sign in again.");
      throw new ApiError("Your session has ended: sign in again.");
    }
    const errors = (body && body.errors) || [];
    if (!response.ok || errors.length) {
      throw new ApiError(errors.map((e) => e.message).join("; ") || "The server answered " + response.status);
    }
    return body.data;
  }

  function userErrors(errors) {
    return errors.map((e) => (e.field ? e.field + ": " : "") + e.message + " (" + e.code + ")").join("; ");
  }

  const status = (text, kind) => h("p", { class: kind === "error" ? "error" : "ok", role: kind === "error" ? "alert" : "status" }, text);

  // ------------------------------------------------------------ signing in and out

  async function signIn(event) {
    event.preventDefault();
    const input = $("staff-key"), error = $("sign-in-error");
    error.textContent = "";
    const key = input.value.trim();
    if (!key) { error.textContent = "Enter your staff key."; input.focus(); return; }
    let response, body = null;
    try {
      response = await fetch("/admin/session", {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key }),
        credentials: "same-origin",
      });
      body = await response.json();
    } catch (e) {
      error.textContent = "The server could not be reached.";
      return;
    }
    if (!response.ok) {
      error.textContent = (body && body.errors && body.errors[0].message) || "Sign-in refused (" + response.status + ").";
      input.focus();
      return;
    }
    input.value = "";
    Object.assign(session, { csrf: body.csrfToken, role: body.role, shop: body.shop, label: body.label });
    try {
      const data = await gql("{ shop { name currency timezone } }");
      session.currency = data.shop.currency;
      session.timezone = data.shop.timezone;
      session.shopName = data.shop.name;
    } catch (e) { session.shopName = session.shop; }
    $("sign-in").hidden = true;
    $("nav").hidden = false;
    $("who").hidden = false;
    $("who-text").textContent = session.label + " (" + session.role + ") · " + session.shopName;
    view().hidden = false;
    if (!location.hash || location.hash === "#") location.hash = "#/dashboard";
    else route();
  }

  async function signOut() {
    try {
      await fetch("/admin/session", { method: "DELETE", headers: { "x-csrf-token": session.csrf || "" }, credentials: "same-origin" });
    } finally {
      signedOut("You are signed out.");
    }
  }

  function signedOut(message) {
    Object.assign(session, { csrf: null, role: null, shop: null, label: null });
    clearInterval(refreshTimer);
    $("nav").hidden = true;
    $("who").hidden = true;
    view().hidden = true;
    put(view());
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    $("staff-key").focus();
  }

  const operator = () => session.role === "operator";
  function operatorOnly(fieldset, what) {
    if (operator()) return fieldset;
    fieldset.disabled = true;
    fieldset.appendChild(h("p", { class: "hint" }, "Your role is " + session.role + ": only an operator " + what + "."));
    return fieldset;
  }

  // ------------------------------------------------------------ routing

  const routes = {
    dashboard: dashboard,
    members: members,
    member: memberPage,
    webhooks: webhooks,
    jobs: jobsPage,
    audit: audit,
  };

  function route() {
    if (!session.csrf) return;
    clearInterval(refreshTimer);
    const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    const page = routes[name] || dashboard;
    for (const link of document.querySelectorAll("#nav a")) {
      const current = link.getAttribute("href") === "#/" + (name === "member" ? "members" : name || "dashboard");
      if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    page(...rest.map(decodeURIComponent)).catch((e) => show(h("h1", {}, "Something went wrong"), status(e.message, "error")));
  }

  function heading(text) {
    const el = h("h1", { tabindex: "-1" }, text);
    setTimeout(() => el.focus({ preventScroll: true }), 0);
    document.title = text + " · memberkit console";
    return el;
  }

  // ------------------------------------------------------------ dashboard

  const KPIS = `query($from: DateTime!, $to: DateTime!, $previousFrom: DateTime!) {
    programmeKpis(from: $from, to: $to) { members newMembers newMembersPrevious activeMembers memberOrders
      memberSales storeSales couponsIssued couponsUsed tierUpgrades tierDowngrades
      points { opening issued returned adjusted spent expired reversed closing pending }
      tierDistribution { tier members } }
    current: kpiSeries(metric: "newMembers", from: $from, to: $to, granularity: DAY) { start value }
    previous: kpiSeries(metric: "newMembers", from: $previousFrom, to: $from, granularity: DAY) { start value }
    tiers { code name } }`;

  let dashboardDays = 30;

  async function dashboard() {
    const updated = h("p", { class: "hint", role: "status", id: "kpi-updated" }, "Loading…");
    const rangeSelect = select("days", [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]], String(dashboardDays));
    rangeSelect.addEventListener("change", () => { dashboardDays = Number(rangeSelect.value); draw(); });
    const body = h("div", { id: "kpis", class: "grid" });
    show(heading("Dashboard"),
      h("div", { class: "toolbar" }, field("Period", rangeSelect), updated), body);

    let lastData = null, drawnWidth = 0;
    function render() {
      drawnWidth = body.clientWidth;
      put(body, kpiCards(lastData, Math.max(260, drawnWidth - 40)));
    }
    // the line chart is drawn at its card's width (its text stays 12px): drawn again when that changes
    const resized = () => {
      if (!body.isConnected) window.removeEventListener("resize", resized);
      else if (lastData && Math.abs(body.clientWidth - drawnWidth) > 20) render();
    };
    window.addEventListener("resize", resized);

    async function draw() {
      // whole days in the shop's timezone, today included: the API takes periods on the shop's hours
      const to = shopMidnight(1), from = shopMidnight(1 - dashboardDays), previousFrom = shopMidnight(1 - 2 * dashboardDays);
      let data;
      try {
        data = await gql(KPIS, { from, to, previousFrom });
      } catch (e) {
        put(updated, status(e.message, "error"));
        return;
      }
      lastData = data;
      render();
      updated.textContent = "Updated " + new Date().toLocaleTimeString() + "; refreshes every minute.";
    }
    await draw();
    refreshTimer = setInterval(draw, REFRESH_MS);
  }

  // The start of a day `days` after today in the shop's timezone, e.g. "2026-03-02T00:00:00+08:00".
  function shopMidnight(days) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
      timeZone: session.timezone, year: "numeric", month: "2-digit", day: "2-digit", timeZoneName: "longOffset",
    }).formatToParts(new Date()).map((p) => [p.type, p.value]));
    const date = new Date(Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day) + days));
    const offset = parts.timeZoneName.replace("GMT", "") || "+00:00";
    return date.toISOString().slice(0, 10) + "T00:00:00" + offset;
  }

  function kpiCards(data, width) {
    const k = data.programmeKpis;
    const names = Object.fromEntries(data.tiers.map((t) => [t.code, t.name]));
    const cards = [];
    cards.push(h("section", { class: "card wide", "aria-labelledby": "kpi-new" },
      h("h2", { id: "kpi-new" }, "New members per day"),
      h("p", { class: "figure" }, number(k.newMembers),
        h("span", { class: "hint" }, " against " + number(k.newMembersPrevious) + " in the previous period")),
      lineChart("New members per day, this period against the previous one", data.current, data.previous, width)));
    cards.push(ratioCard("kpi-active", "Active share", k.activeMembers, k.members,
      number(k.activeMembers) + " of " + number(k.members) + " members ordered or checked in"));
    cards.push(k.storeSales === null
      ? h("section", { class: "card", "aria-labelledby": "kpi-sales" }, h("h2", { id: "kpi-sales" }, "Members' share of sales"),
        h("p", { class: "figure" }, money(k.memberSales)),
        h("p", { class: "hint" }, "Members' sales; the shop's whole sales were not reported for this period (recordStoreSales)."))
      : ratioCard("kpi-sales", "Members' share of sales", k.memberSales, k.storeSales,
        money(k.memberSales) + " of " + money(k.storeSales)));
    cards.push(ratioCard("kpi-coupons", "Coupon redemption rate", k.couponsUsed, k.couponsIssued,
      number(k.couponsUsed) + " used of " + number(k.couponsIssued) + " issued"));
    if (k.points) {
      const p = k.points;
      cards.push(h("section", { class: "card", "aria-labelledby": "kpi-points" },
        h("h2", { id: "kpi-points" }, "Points liability"),
        h("p", { class: "figure" }, number(p.closing), h("span", { class: "hint" }, " points outstanding, " + number(p.pending) + " pending")),
        barChart("Points liability movements in the period", [
          ["Opening", p.opening], ["Issued", p.issued], ["Returned", p.returned], ["Adjusted", p.adjusted],
          ["Spent", p.spent], ["Expired", p.expired], ["Reversed", p.reversed], ["Closing", p.closing]])));
    }
    cards.push(h("section", { class: "card", "aria-labelledby": "kpi-tiers" },
      h("h2", { id: "kpi-tiers" }, "Tier distribution"),
      h("p", { class: "hint" }, number(k.tierUpgrades) + " upgrades, " + number(k.tierDowngrades) + " downgrades in the period"),
      barChart("Members per tier", k.tierDistribution.map((t) => [names[t.tier] || t.tier, t.members]))));
    return cards;
  }

  function ratioCard(id, title, part, whole, detail) {
    const share = Number(whole) > 0 ? Number(part) / Number(whole) : 0;
    return h("section", { class: "card", "aria-labelledby": id },
      h("h2", { id }, title),
      h("p", { class: "figure" }, percent(part, whole)),
      h("meter", { min: "0", max: "1", value: String(Math.min(share, 1)), "aria-label": title }),
      h("p", { class: "hint" }, detail));
  }

  // A line chart of two series, drawn in SVG: the period's points and the previous period's, day by day.
  function lineChart(label, current, previous, width) {
    const height = 220, left = 40, bottom = 28, top = 12, right = 12;  // drawn at the card's width: text stays 12px
    const values = [...current, ...previous].map((p) => Number(p.value));
    const max = Math.max(1, ...values);
    const n = Math.max(current.length, previous.length, 2);
    const x = (i) => left + (i * (width - left - right)) / (n - 1);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const line = (points) => points.map((p, i) => x(i).toFixed(1) + "," + y(Number(p.value)).toFixed(1)).join(" ");
    const ticks = [0, Math.round(max / 2), max].filter((v, i, a) => a.indexOf(v) === i);
    const title = s("title", { id: "chart-new-title" }, label);
    const desc = s("desc", {}, "This period: " + current.map((p) => day(p.start) + " " + p.value).join(", ") +
      ". Previous period: " + previous.map((p) => p.value).join(", ") + ".");
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-new-title", class: "chart", "data-points": current.length },
      title, desc,
      ticks.map((v) => s("g", {},
        s("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid-line" }),
        s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, number(v)))),
      current.length ? s("text", { x: left, y: height - 8, class: "axis" }, day(current[0].start)) : null,
      current.length ? s("text", { x: width - right, y: height - 8, "text-anchor": "end", class: "axis" }, day(current[current.length - 1].start)) : null,
      s("polyline", { points: line(previous), class: "series previous" }),
      s("polyline", { points: line(current), class: "series current" }));
    return h("figure", {}, svg, h("figcaption", { class: "legend" },
      h("span", { class: "key current" }, "This period"), " ", h("span", { class: "key previous" }, "Previous period")));
  }

  // Horizontal bars, one per label; negative values (adjustments) drawn from the same axis, marked.
  function barChart(label, rows) {
    const width = 360, row = 26, left = 90, right = 70;
    const max = Math.max(1, ...rows.map(([, v]) => Math.abs(Number(v))));
    const height = row * rows.length + 4;
    const id = "chart-" + Math.random().toString(36).slice(2);
    return h("figure", {}, s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": id, class: "chart bars" },
      s("title", { id }, label + ": " + rows.map(([t, v]) => t + " " + number(v)).join(", ")),
      rows.map(([text, value], i) => {
        const w = Math.max(1, ((width - left - right) * Math.abs(Number(value))) / max);
        return s("g", {},
          s("text", { x: left - 6, y: i * row + 18, "text-anchor": "end", class: "axis" }, text),
          s("rect", { x: left, y: i * row + 5, width: w.toFixed(1), height: row - 10, class: Number(value) < 0 ? "bar negative" : "bar" }),
          s("text", { x: left + w + 6, y: i * row + 18, class: "axis" }, number(value)));
      })));
  }

  // ------------------------------------------------------------ members

  const SEARCH = `query($filter: MemberFilter, $after: String) {
    members(filter: $filter, first: 25, after: $after) { totalCount pageInfo { hasNextPage endCursor }
      edges { node { id externalId joinedAt tier { name } points { balance } lifecycle { stage } segments } } } }`;
  const LOOKUP = `query($id: ID, $externalId: String) { member(id: $id, externalId: $externalId) { id } }`;
  const FILTER_OPTIONS = "{ tiers { code name } segments { code name memberCount } }";
  let lastFilter = {};

  async function members() {
    const options = await gql(FILTER_OPTIONS);
    const results = h("div", { id: "results", "aria-live": "polite" });
    const lookupInput = h("input", { name: "q", type: "search", autocomplete: "off", spellcheck: "false" });
    const lookupMessage = h("div");
    const lookup = h("form", { class: "inline", role: "search", "aria-label": "Find a member",
      onsubmit: async (e) => {
        e.preventDefault();
        const q = lookupInput.value.trim();
        put(lookupMessage);
        if (!q) return;
        try {
          const found = (await gql(LOOKUP, q.startsWith("mem_") ? { id: q } : { externalId: q })).member;
          if (found) location.hash = "#/member/" + encodeURIComponent(found.id);
          else put(lookupMessage, status("No member with the id or external id " + q + ".", "error"));
        } catch (err) { put(lookupMessage, status(err.message, "error")); }
      } },
      field("Member id or external id", lookupInput), h("button", { type: "submit" }, "Find"));

    const tier = select("tier", [["", "Any tier"], ...options.tiers.map((t) => [t.code, t.name])], lastFilter.tier || "");
    const segment = select("segment", [["", "Any segment"], ...options.segments.map((g) => [g.code, g.name + " (" + number(g.memberCount) + ")"])], lastFilter.segment || "");
    const lifecycle = select("lifecycle", [["", "Any stage"], ...["NEW", "ACTIVE", "DORMANT", "CHURNED"].map((v) => [v, v.toLowerCase()])], lastFilter.lifecycle || "");
    const tags = h("input", { name: "tags", autocomplete: "off", value: (lastFilter.tagsAny || []).join(", ") });
    const joinedFrom = h("input", { name: "joinedFrom", type: "date" });
    const joinedTo = h("input", { name: "joinedTo", type: "date" });
    const filterForm = h("form", { class: "filters", "aria-label": "Filter members",
      onsubmit: (e) => {
        e.preventDefault();
        const filter = {};
        if (tier.value) filter.tier = tier.value;
        if (segment.value) filter.segment = segment.value;
        if (lifecycle.value) filter.lifecycle = lifecycle.value;
        const tagList = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
        if (tagList.length) filter.tagsAny = tagList;
        if (joinedFrom.value) filter.joinedFrom = new Date(joinedFrom.value + "T00:00:00").toISOString();
        if (joinedTo.value) filter.joinedTo = new Date(joinedTo.value + "T00:00:00").toISOString();
        lastFilter = filter;
        search(filter, null);
      } },
      h("fieldset", {}, h("legend", {}, "Segment filters"),
        field("Tier", tier), field("Segment", segment), field("Lifecycle", lifecycle),
        field("Any of these tags", tags, "comma-separated"), field("Joined from", joinedFrom), field("Joined before", joinedTo),
        h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"))));

    async function search(filter, after) {
      put(results, h("p", { class: "hint" }, "Searching…"));
      try {
        const page = (await gql(SEARCH, { filter, after })).members;
        put(results,
          h("p", {}, page.totalCount === 1 ? "1 member matches." : number(page.totalCount) + " members match."),
          table("Members", ["Member", "Tier", "Points", "Stage", "Segments", "Joined"], page.edges.map(({ node: m }) => [
            h("a", { href: "#/member/" + encodeURIComponent(m.id) }, m.externalId),
            m.tier ? m.tier.name : "–", m.points ? number(m.points.balance) : "–",
            m.lifecycle ? m.lifecycle.stage.toLowerCase() : "–", m.segments.join(", ") || "–", when(m.joinedAt)]),
          "No member matches."),
          page.pageInfo.hasNextPage ? h("button", { type: "button", onclick: () => search(filter, page.pageInfo.endCursor) }, "Next page") : null);
      } catch (err) { put(results, status(err.message, "error")); }
    }

    show(heading("Members"), h("section", { class: "card" }, lookup, lookupMessage), h("section", { class: "card" }, filterForm), results);
    await search(lastFilter, null);
  }

  // ------------------------------------------------------------ a member

  const MEMBER = `query($id: ID!, $after: String) { tiers { code name rank }
    member(id: $id) { id externalId joinedAt erasedAt tags segments
      tier { code name } tierProgress { spendToNext { amount } next { name } setUntil downgradeAt }
      lifecycle { stage since }
      points { balance pending held lifetimeEarned expiring { points expiresAt }
        history(first: 20, after: $after) { pageInfo { hasNextPage endCursor }
          edges { node { id delta reason rule orderId note createdAt } } } }
      tierHistory(first: 20) { fromCode toCode reason reference note createdAt }
      coupons(status: null, first: 100) { id code title kind value status source validUntil } } }`;
  const ADJUST = `mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) {
    duplicate errors { code field message } member { points { balance } } } }`;
  const SET_TIER = `mutation($input: SetMemberTierInput!) { setMemberTier(input: $input) {
    duplicate errors { code field message } member { tier { name } } } }`;

  async function memberPage(id) {
    const data = await gql(MEMBER, { id });
    const m = data.member;
    if (!m) { show(heading("Member not found"), status("No member " + id + " in this shop.", "error")); return; }
    const points = m.points;
    const summary = h("dl", { class: "facts" },
      h("dt", {}, "Member id"), h("dd", {}, h("code", {}, m.id)),
      h("dt", {}, "Joined"), h("dd", {}, when(m.joinedAt)),
      h("dt", {}, "Tier"), h("dd", {}, m.tier ? m.tier.name : "–",
        m.tierProgress && m.tierProgress.next && m.tierProgress.spendToNext
          ? " (" + money(m.tierProgress.spendToNext.amount) + " from " + m.tierProgress.next.name + ")" : "",
        m.tierProgress && m.tierProgress.setUntil ? h("span", { class: "hint" }, " set by hand until ", when(m.tierProgress.setUntil)) : null),
      h("dt", {}, "Points"), h("dd", { id: "points-balance" }, points ? number(points.balance) : "–",
        points ? h("span", { class: "hint" }, " · " + number(points.pending) + " pending · " + number(points.held) + " held · " + number(points.lifetimeEarned) + " earned in all") : null),
      h("dt", {}, "Expiring"), h("dd", {}, points && points.expiring.length ? points.expiring.map((e) => number(e.points) + " on " + new Date(e.expiresAt).toLocaleDateString()).join("; ") : "–"),
      h("dt", {}, "Lifecycle"), h("dd", {}, m.lifecycle ? m.lifecycle.stage.toLowerCase() + " since " : "–", m.lifecycle ? when(m.lifecycle.since) : null),
      h("dt", {}, "Segments"), h("dd", {}, m.segments.length ? h("ul", { class: "chips" }, m.segments.map((t) => h("li", {}, t))) : "–"),
      h("dt", {}, "Tags"), h("dd", {}, m.tags.length ? h("ul", { class: "chips" }, m.tags.map((t) => h("li", {}, t))) : "–"));

    const ledger = h("section", { class: "card wide", "aria-labelledby": "ledger-title" }, h("h2", { id: "ledger-title" }, "Points ledger"));
    const ledgerRows = [];
    const ledgerBox = h("div");
    const addLedger = (history) => {
      ledgerRows.push(...history.edges.map(({ node: e }) => [when(e.createdAt), (e.delta > 0 ? "+" : "") + number(e.delta),
        e.reason, e.rule || "–", e.orderId || "–", e.note || "–"]));
      put(ledgerBox, table("Points ledger, newest first", ["When", "Points", "Kind", "Rule", "Order", "Reason or note"], ledgerRows, "No points yet."),
        history.pageInfo.hasNextPage ? h("button", { type: "button", onclick: async () => {
          const more = await gql(MEMBER, { id, after: history.pageInfo.endCursor });
          addLedger(more.member.points.history);
        } }, "Older entries") : null);
    };
    if (points) addLedger(points.history); else put(ledgerBox, h("p", { class: "empty" }, "This shop has no points."));
    ledger.appendChild(ledgerBox);

    const tierNames = Object.fromEntries(data.tiers.map((t) => [t.code, t.name]));
    const tiers = h("section", { class: "card", "aria-labelledby": "tiers-title" }, h("h2", { id: "tiers-title" }, "Tier history"),
      table("Tier changes, newest first", ["When", "From", "To", "Why", "Note"], m.tierHistory.map((c) => [
        when(c.createdAt), c.fromCode ? tierNames[c.fromCode] || c.fromCode : "–", tierNames[c.toCode] || c.toCode,
        c.reason.toLowerCase().replace(/_/g, " ") + (c.reference ? " (" + c.reference + ")" : ""), c.note || "–"]), "No tier changes."));

    const coupons = h("section", { class: "card", "aria-labelledby": "coupons-title" }, h("h2", { id: "coupons-title" }, "Coupons"),
      table("Coupons, oldest first", ["Title", "Code", "Status", "Valid until", "From"], m.coupons.map((c) => [
        c.title, h("code", {}, c.code), c.status.toLowerCase(), when(c.validUntil), c.source]), "No coupons."));

    show(heading("Member " + m.externalId), m.erasedAt ? status("This member was erased.", "error") : null,
      h("div", { class: "grid" }, h("section", { class: "card", "aria-label": "Summary" }, summary), adjustForm(m), tierForm(m, data.tiers)),
      ledger, h("div", { class: "grid" }, tiers, coupons));
  }

  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(36).slice(2));

  function adjustForm(m) {
    const delta = h("input", { name: "delta", type: "number", step: "1", required: true, inputmode: "numeric" });
    const reason = h("input", { name: "reason", required: true, maxlength: "500", autocomplete: "off" });
    const message = h("div", { class: "message" });
    let key = newKey();  // one per intended adjustment: a double submit is answered as a duplicate
    const fieldset = h("fieldset", {}, h("legend", {}, "Adjust points"),
      field("Points (negative to take back)", delta), field("Reason", reason, "kept in the ledger and the audit log"),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Adjust points")));
    return h("section", { class: "card" }, h("form", { "aria-label": "Adjust points", onsubmit: async (e) => {
      e.preventDefault();
      put(message);
      if (!delta.value || !Number.isInteger(Number(delta.value))) { put(message, status("Points: enter a whole number.", "error")); delta.focus(); return; }
      if (!reason.value.trim()) { put(message, status("Reason: say why.", "error")); reason.focus(); return; }
      try {
        const out = (await gql(ADJUST, { input: { memberId: m.id, delta: Number(delta.value), reason: reason.value.trim(), idempotencyKey: key } })).adjustPoints;
        if (out.errors.length) { put(message, status(userErrors(out.errors), "error")); return; }
        key = newKey();
        await memberPage(m.id);
        const note = $("adjust-message");
        if (note) put(note, status((out.duplicate ? "Already done: " : "Done: ") + "balance " + number(out.member.points.balance) + ".", "ok"));
      } catch (err) { put(message, status(err.message, "error")); }
    } }, operatorOnly(fieldset, "adjusts points"), h("div", { id: "adjust-message" }, message)));
  }

  function tierForm(m, tiers) {
    const tier = select("tier", tiers.map((t) => [t.code, t.name]), m.tier ? m.tier.code : "");
    const reason = h("input", { name: "reason", required: true, maxlength: "500", autocomplete: "off" });
    const until = h("input", { name: "expiresAt", type: "date" });
    const message = h("div", { class: "message" });
    const fieldset = h("fieldset", {}, h("legend", {}, "Set the tier by hand"),
      field("Tier", tier), field("Reason", reason), field("Until (optional)", until, "the tier ends on this day"),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Set tier")));
    if (!tiers.length) return h("section", { class: "card" }, h("p", { class: "empty" }, "This shop has no tiers."));
    return h("section", { class: "card" }, h("form", { "aria-label": "Set the tier", onsubmit: async (e) => {
      e.preventDefault();
      put(message);
      if (!reason.value.trim()) { put(message, status("Reason: say why.", "error")); reason.focus(); return; }
      const input = { memberId: m.id, tierCode: tier.value, reason: reason.value.trim(), idempotencyKey: newKey() };
      if (until.value) input.expiresAt = new Date(until.value + "T00:00:00").toISOString();
      try {
        const out = (await gql(SET_TIER, { input })).setMemberTier;
        if (out.errors.length) { put(message, status(userErrors(out.errors), "error")); return; }
        await memberPage(m.id);
        const note = $("tier-message");
        if (note) put(note, status("Done: tier " + out.member.tier.name + ".", "ok"));
      } catch (err) { put(message, status(err.message, "error")); }
    } }, operatorOnly(fieldset, "sets tiers"), h("div", { id: "tier-message" }, message)));
  }

  // ------------------------------------------------------------ webhooks

  const ENDPOINTS = "{ webhookEndpoints { id url eventTypes enabled createdAt disabledReason failingSince } }";
  const DELIVERIES = `query($endpointId: ID, $status: WebhookDeliveryStatus, $after: String) {
    webhookDeliveries(endpointId: $endpointId, status: $status, first: 25, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { node { id endpointId eventId eventType status attempts lastStatusCode lastError nextAttemptAt deliveredAt createdAt } } } }`;
  const REDELIVER = `mutation($id: ID!, $since: DateTime!) { redeliverWebhooks(endpointId: $id, since: $since) {
    queued errors { code field message } } }`;

  async function webhooks() {
    const endpoints = (await gql(ENDPOINTS)).webhookEndpoints;
    const deliveries = h("div", { "aria-live": "polite" });
    const endpointFilter = select("endpoint", [["", "Every endpoint"], ...endpoints.map((e) => [e.id, e.url])], "");
    const statusFilter = select("status", [["", "Any status"], ["PENDING", "pending"], ["DELIVERED", "delivered"], ["FAILED", "failed"]], "");

    async function list(after) {
      try {
        const page = (await gql(DELIVERIES, { endpointId: endpointFilter.value || null, status: statusFilter.value || null, after })).webhookDeliveries;
        put(deliveries, table("Deliveries, newest first", ["Created", "Event", "Status", "Attempts", "Last answer", "Next attempt"],
          page.edges.map(({ node: d }) => [when(d.createdAt), h("span", {}, d.eventType, h("br"), h("code", {}, d.eventId)), d.status.toLowerCase(),
            number(d.attempts), d.lastStatusCode ? String(d.lastStatusCode) : d.lastError || "–", d.deliveredAt ? "delivered " : when(d.nextAttemptAt)]),
          "No deliveries."),
        page.pageInfo.hasNextPage ? h("button", { type: "button", onclick: () => list(page.pageInfo.endCursor) }, "Next page") : null);
      } catch (err) { put(deliveries, status(err.message, "error")); }
    }

    const endpointRows = endpoints.map((e) => {
      const since = h("input", { type: "datetime-local", required: true, "aria-label": "Redeliver since, for " + e.url });
      const message = h("span");
      const form = h("form", { class: "inline", onsubmit: async (ev) => {
        ev.preventDefault();
        put(message);
        if (!since.value) { put(message, status("Since: pick a date and time.", "error")); return; }
        try {
          const out = (await gql(REDELIVER, { id: e.id, since: new Date(since.value).toISOString() })).redeliverWebhooks;
          put(message, out.errors.length ? status(userErrors(out.errors), "error") : status(number(out.queued) + " queued again.", "ok"));
          list(null);
        } catch (err) { put(message, status(err.message, "error")); }
      } }, operatorOnly(h("fieldset", { class: "bare" }, since, h("button", { type: "submit" }, "Redeliver")), "redelivers"), message);
      return [h("code", {}, e.url), e.eventTypes.length ? e.eventTypes.join(", ") : "every type",
        e.enabled ? "enabled" : "disabled" + (e.disabledReason ? ": " + e.disabledReason : ""),
        e.failingSince ? when(e.failingSince) : "–", form];
    });

    show(heading("Webhooks"),
      h("section", { class: "card wide", "aria-labelledby": "endpoints-title" }, h("h2", { id: "endpoints-title" }, "Endpoints"),
        table("Webhook endpoints", ["URL", "Events", "State", "Failing since", "Redeliver since"], endpointRows,
          "No endpoints: the integration creates them with the secret key (createWebhookEndpoint).")),
      h("section", { class: "card wide", "aria-labelledby": "deliveries-title" }, h("h2", { id: "deliveries-title" }, "Deliveries"),
        h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); list(null); } },
          field("Endpoint", endpointFilter), field("Status", statusFilter), h("button", { type: "submit" }, "Show")),
        deliveries));
    await list(null);
  }

  // ------------------------------------------------------------ jobs

  const JOBS = "{ jobs(first: 50) { id kind status total done startedAt finishedAt error } }";
  const JOB = "query($id: ID!) { job(id: $id) { id kind status total done startedAt finishedAt error } }";

  function jobRow(j) {
    const progress = j.total ? h("progress", { max: String(j.total), value: String(j.done), "aria-label": "Progress of " + j.id }) : null;
    return [h("code", {}, j.id), j.kind, j.status.toLowerCase(), h("span", {}, progress, " " + number(j.done) + (j.total ? " of " + number(j.total) : "")),
      when(j.startedAt), when(j.finishedAt), j.error || "–"];
  }

  async function jobsPage() {
    const box = h("div", { "aria-live": "polite" });
    const idInput = h("input", { name: "id", autocomplete: "off", spellcheck: "false" });
    const found = h("div");
    async function load() {
      try {
        put(box, table("Jobs, newest first", ["Job", "Kind", "Status", "Progress", "Started", "Finished", "Error"],
          (await gql(JOBS)).jobs.map(jobRow), "No jobs yet."));
      } catch (err) { put(box, status(err.message, "error")); }
    }
    show(heading("Jobs"),
      h("section", { class: "card" }, h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const job = (await gql(JOB, { id: idInput.value.trim() })).job;
          put(found, job ? table("Job", ["Job", "Kind", "Status", "Progress", "Started", "Finished", "Error"], [jobRow(job)])
            : status("No job " + idInput.value.trim() + ".", "error"));
        } catch (err) { put(found, status(err.message, "error")); }
      } }, field("Job id", idInput), h("button", { type: "submit" }, "Show job")), found),
      h("section", { class: "card wide" }, h("h2", {}, "Recent jobs"), h("p", { class: "hint" }, "Refreshes every 10 seconds."), box));
    await load();
    refreshTimer = setInterval(load, 10000);
  }

  // ------------------------------------------------------------ audit log

  const AUDIT = `query($after: String) { auditLog(first: 50, after: $after) { pageInfo { hasNextPage endCursor }
    edges { node { keyLabel role operation arguments { name value } reason createdAt } } } }`;

  async function audit() {
    const box = h("div");
    const rows = [];
    async function load(after) {
      const page = (await gql(AUDIT, { after })).auditLog;
      rows.push(...page.edges.map(({ node: a }) => [when(a.createdAt), a.keyLabel + " (" + a.role + ")", a.operation,
        a.arguments.map((x) => x.name + "=" + x.value).join(", "), a.reason || "–"]));
      put(box, table("Staff writes, newest first", ["When", "Who", "What", "Arguments", "Reason"], rows, "No staff writes yet."),
        page.pageInfo.hasNextPage ? h("button", { type: "button", onclick: () => load(page.pageInfo.endCursor) }, "Older entries") : null);
    }
    show(heading("Audit log"), h("section", { class: "card wide" }, box));
    await load(null);
  }

  // ------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    $("staff-key").focus();
  });
})();
