// The member centre: plain JavaScript on memberkit's public GraphQL API, with the member token the storefront
// passes in the URL fragment (/member?shop=demo#token=mkt_...; docs/member-centre.md). Everything a member or
// an integrator wrote (titles, names, benefits, codes) reaches the page through textContent, never as HTML.
"use strict";

const TEXT = {
  "zh-CN": {
    title: "会员中心", tier: "我的等级", upgradePath: "升级路径", points: "积分", coupons: "优惠券",
    mall: "积分商城", storedValue: "储值余额", calendar: "活动日历", flash: "会员专享秒杀", referral: "邀请好友",
    toNext: (money, tier) => `您距离升级${tier}仅差${money}`,
    ordersToNext: (n, tier) => `您距离升级${tier}还差${n}笔订单`,
    top: "您已是最高等级会员", current: "当前等级", spent: (money) => `累计消费${money}`,
    balance: "可用积分", pending: "待入账", held: "已冻结", expiring: "即将过期",
    expiresOn: (n, date) => `${n}积分将于${date}过期`, noExpiring: "近期没有积分过期",
    history: "积分明细", noHistory: "还没有积分记录",
    reasons: { EARN: "获得", SPEND: "使用", REFUND: "退款扣回", EXPIRE: "过期", ADJUST: "人工调整",
               TOP_UP: "充值", TOP_UP_REFUND: "充值退款", RETURN: "退回" },
    usable: "可用", used: "已使用", expired: "已过期", noCoupons: "暂无",
    validUntil: (date) => `有效期至${date}`, minSpend: (money) => `满${money}可用`, noMinimum: "无门槛",
    redeem: "兑换", cost: (n) => `${n}积分`, confirmRedeem: "确认兑换",
    confirmText: (n, title) => `使用${n}积分兑换“${title}”？`, cancel: "取消", confirm: "确认",
    redeemed: (title) => `兑换成功：${title}已放入您的优惠券`, noRewards: "暂无可兑换的奖励",
    principal: "本金", bonus: "赠送", svBalance: "余额",
    reserve: "立即预约", reserved: (n, time) => `已为您保留${n}件，请在${time}前完成支付`,
    notStarted: "未开始", startsIn: (t) => `距开始 ${t}`, endsIn: (t) => `距结束 ${t}`, ended: "已结束",
    soldOut: "已抢光", remaining: (n) => `剩余${n}件`, limit: (n) => `每人限购${n}件`,
    myReservations: "我的预约", holdUntil: (t) => `保留剩余 ${t}`, noSales: "近期没有秒杀活动",
    noEvents: "近期没有活动", kinds: { MEMBER_DAY: "会员日", FLASH_SALE: "秒杀", BIRTHDAY_MONTH: "生日月",
                                  PRODUCT_LAUNCH: "新品" },
    yourCode: "您的邀请码", invited: (n, r) => `已邀请${n}人，获得奖励${r}次`, share: "分享邀请链接",
    copied: "链接已复制", shareLink: "邀请链接",
    days: (d) => `${d}天`,
    noToken: "请从商城进入会员中心：链接中带有您的登录凭证。",
    expiredToken: "登录已过期，请从商城重新进入会员中心。",
    failed: "出错了，请稍后再试。",
    refusals: {
      INSUFFICIENT_POINTS: (x) => `积分不足：需要${x.cost}积分，您现有${x.balance}积分`,
      REWARD_NOT_FOUND: () => "该奖励已下架", REWARD_UNAVAILABLE: () => "该奖励暂时无法兑换",
      SALE_NOT_ACTIVE: () => "秒杀尚未开始或已结束", SOLD_OUT: () => "已抢光",
      LIMIT_EXCEEDED: (x) => `超出每人限购数量（${x.limit}件）`, NOT_ELIGIBLE: () => "您的会员等级暂不能参加此秒杀",
      NOT_IN_SEGMENT: () => "此秒杀仅限指定会员参加", SALE_CANCELLED: () => "该秒杀已取消",
    },
  },
  en: {
    title: "Member centre", tier: "My tier", upgradePath: "Upgrade path", points: "Points", coupons: "Coupons",
    mall: "Points mall", storedValue: "Stored value", calendar: "Activity calendar", flash: "Members' flash sales",
    referral: "Invite friends",
    toNext: (money, tier) => `${money} from ${tier}`,
    ordersToNext: (n, tier) => `${n} ${n === 1 ? "order" : "orders"} from ${tier}`,
    top: "You are at the top tier", current: "Current tier", spent: (money) => `${money} spent`,
    balance: "Balance", pending: "Pending", held: "Held", expiring: "Expiring soon",
    expiresOn: (n, date) => `${n} points expire on ${date}`, noExpiring: "No points expire soon",
    history: "History", noHistory: "No points yet",
    reasons: { EARN: "Earned", SPEND: "Spent", REFUND: "Refund", EXPIRE: "Expired", ADJUST: "Adjusted",
               TOP_UP: "Top-up", TOP_UP_REFUND: "Top-up refund", RETURN: "Returned" },
    usable: "Usable", used: "Used", expired: "Expired", noCoupons: "None",
    validUntil: (date) => `valid until ${date}`, minSpend: (money) => `on orders of ${money} or more`,
    noMinimum: "no minimum spend",
    redeem: "Redeem", cost: (n) => `${n} points`, confirmRedeem: "Confirm redemption",
    confirmText: (n, title) => `Spend ${n} points on “${title}”?`, cancel: "Cancel", confirm: "Redeem",
    redeemed: (title) => `Redeemed: ${title} is in your coupons`, noRewards: "No rewards to redeem",
    principal: "Principal", bonus: "Bonus", svBalance: "Balance",
    reserve: "Reserve", reserved: (n, time) => `${n} held for you: pay by ${time}`,
    notStarted: "Not started", startsIn: (t) => `starts in ${t}`, endsIn: (t) => `ends in ${t}`, ended: "Ended",
    soldOut: "Sold out", remaining: (n) => `${n} left`, limit: (n) => `at most ${n} per member`,
    myReservations: "My reservations", holdUntil: (t) => `held for ${t}`, noSales: "No flash sales coming up",
    noEvents: "Nothing coming up", kinds: { MEMBER_DAY: "Member day", FLASH_SALE: "Flash sale",
                                         BIRTHDAY_MONTH: "Birthday month", PRODUCT_LAUNCH: "New product" },
    yourCode: "Your referral code", invited: (n, r) => `${n} invited, ${r} rewarded`, share: "Share the invite link",
    copied: "Link copied", shareLink: "Invite link",
    days: (d) => `${d}d`,
    noToken: "Open the member centre from the shop: its link carries your sign-in.",
    expiredToken: "Your sign-in has expired: open the member centre from the shop again.",
    failed: "Something went wrong: please try again later.",
    refusals: {
      INSUFFICIENT_POINTS: (x) => `Not enough points: this needs ${x.cost}, you have ${x.balance}`,
      REWARD_NOT_FOUND: () => "This reward is no longer offered", REWARD_UNAVAILABLE: () => "This reward cannot be redeemed now",
      SALE_NOT_ACTIVE: () => "This sale is not on now", SOLD_OUT: () => "Sold out",
      LIMIT_EXCEEDED: (x) => `More than the ${x.limit} each member may buy`,
      NOT_ELIGIBLE: () => "Your tier cannot join this sale", NOT_IN_SEGMENT: () => "This sale is for selected members",
      SALE_CANCELLED: () => "This sale was cancelled",
    },
  },
};

const params = new URLSearchParams(location.search);
const SHOP = params.get("shop") || "";
const TOKEN_KEY = `memberkit.member-token.${SHOP}`;
let t = TEXT["zh-CN"];
let shop = null;
let state = null;

// ---------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function readToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);  // out of the address bar and history
    return token;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthenticated extends Error {}

async function gql(query, variables) {
  const response = await fetch("/graphql", {
    method: "POST", credentials: "omit",
    headers: { "Content-Type": "application/json", "Authorization": `Bearer ${TOKEN}` },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  if (response.status === 401) throw new Unauthenticated();
  const body = await response.json();
  if (body.errors && body.errors.length) throw new Error(body.errors.map((e) => e.message).join("; "));
  return body.data;
}

function money(value) {
  if (!value) return "";
  const { amount, currency } = value;
  const whole = amount % 100 === 0 ? String(amount / 100) : (amount / 100).toFixed(2);
  if (currency === "CNY") return shop.locale === "en" ? `${whole} yuan` : `${whole}元`;
  return new Intl.NumberFormat(shop.locale, { style: "currency", currency }).format(amount / 100);
}

function date(iso) {
  const moment = iso.length === 10 ? new Date(`${iso}T12:00:00Z`) : new Date(iso);
  const zone = iso.length === 10 ? "UTC" : shop.timezone;
  return new Intl.DateTimeFormat(shop.locale, { timeZone: zone, year: "numeric", month: "short", day: "numeric" })
    .format(moment);
}

function time(iso) {
  return new Intl.DateTimeFormat(shop.locale, { timeZone: shop.timezone, month: "short", day: "numeric",
                                                hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
}

function shopToday() {  // yyyy-mm-dd in the shop's time zone
  return new Intl.DateTimeFormat("en-CA", { timeZone: shop.timezone }).format(new Date());
}

function addDays(day, n) {
  const moment = new Date(`${day}T12:00:00Z`);
  moment.setUTCDate(moment.getUTCDate() + n);
  return moment.toISOString().slice(0, 10);
}

function duration(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(seconds / 86400);
  const clock = [Math.floor(seconds / 3600) % 24, Math.floor(seconds / 60) % 60, seconds % 60]
    .map((n) => String(n).padStart(2, "0")).join(":");
  return d ? `${t.days(d)} ${clock}` : clock;
}

function say(message) {
  document.getElementById("refusal").textContent = "";
  document.getElementById("notice").textContent = message;
}

function refuse(message) {
  document.getElementById("notice").textContent = "";
  document.getElementById("refusal").textContent = message;
}

function refusalText(error, details) {
  const known = t.refusals[error.code];
  return known ? known(details || {}) : error.message;
}

function section(id, title, ...children) {
  return h("section", { id, class: "card", "aria-labelledby": `${id}-title` },
           h("h2", { id: `${id}-title` }, title), ...children);
}

function confirmDialog(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = okLabel;
  cancel.textContent = t.cancel;
  return new Promise((resolve) => {
    const done = (answer) => () => { dialog.close(); resolve(answer); };
    ok.onclick = done(true);
    cancel.onclick = done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
    cancel.focus();
  });
}

// ---------------------------------------------------------------- what the page reads

const MONEY = "{ amount currency }";
const COUPON = `{ id code title kind value minSpend ${MONEY} validUntil status }`;

function centreQuery(plugins) {
  const has = (name) => plugins.includes(name);
  const me = [
    "id birthday",
    has("tiering") ? `tier { code localName } tierProgress { current { code localName rank }
      next { code localName rank } qualifyingSpend ${MONEY} spendToNext ${MONEY} qualifyingOrders ordersToNext }` : "",
    has("points") ? `points { balance pending held expiring { points expiresAt }
      history(first: 20) { edges { node { id delta reason rule orderId note createdAt } } } }` : "",
    `usable: coupons(status: AVAILABLE, first: 50) ${COUPON} used: coupons(status: USED, first: 20) ${COUPON}
     expired: coupons(status: EXPIRED, first: 20) ${COUPON}`,
    has("referral") ? "referral { code invited rewarded shareLink }" : "",
    has("stored_value") ? `storedValue { balance ${MONEY} principal ${MONEY} bonus ${MONEY} }` : "",
    has("flash_sale") ? "flashReservations(status: HELD) { id quantity expiresAt sale { id title } }" : "",
  ].join("\n");
  return `query Centre($from: Date!, $to: Date!) {
    me { ${me} }
    ${has("tiering") ? "tiers { code rank localName benefits }" : ""}
    ${has("points") ? "rewards { id title costPoints }" : ""}
    ${has("flash_sale") ? `flashSales { id title price ${MONEY} startsAt endsAt remaining perMemberLimit status }` : ""}
    calendar(from: $from, to: $to) { date kind title reference }
  }`;
}

async function load() {
  const today = shopToday();
  const data = await gql(centreQuery(shop.plugins), { from: today, to: addDays(today, 61) });
  state = data;
  render();
}

// ---------------------------------------------------------------- what the page shows

function tierCard(me) {
  const progress = me.tierProgress;
  if (!progress) return null;
  const next = progress.next;
  let sentence = t.top;
  let share = 1;
  if (next && progress.spendToNext) {
    sentence = t.toNext(money(progress.spendToNext), next.localName);
    const spent = progress.qualifyingSpend.amount;
    share = spent / (spent + progress.spendToNext.amount);
  } else if (next && progress.ordersToNext !== null) {
    sentence = t.ordersToNext(progress.ordersToNext, next.localName);
    share = progress.qualifyingOrders / (progress.qualifyingOrders + progress.ordersToNext);
  }
  const percent = Math.round(share * 100);
  return section("tier", t.tier,
    h("div", { class: `tier-card rank-${progress.current.rank}` },
      h("p", { class: "tier-name", id: "tier-name" }, progress.current.localName),
      h("p", { class: "muted" }, t.spent(money(progress.qualifyingSpend))),
      h("progress", { id: "tier-progress", max: 100, value: percent, "aria-labelledby": "tier-sentence" }),
      h("p", { id: "tier-sentence", class: "sentence" }, sentence)));
}

function upgradePath(tiers, me) {
  if (!tiers || !tiers.length) return null;
  const current = me.tier ? me.tier.code : null;
  return section("upgrade", t.upgradePath, h("ol", { class: "tiers" }, tiers.map((tier) =>
    h("li", { class: tier.code === current ? "tier current" : "tier", "aria-current": tier.code === current ? "true" : null },
      h("h3", {}, tier.localName, tier.code === current ? h("span", { class: "badge" }, t.current) : null),
      h("ul", {}, tier.benefits.map((benefit) => h("li", {}, benefit)))))));
}

function pointsCard(points, rewards) {
  if (!points) return null;
  const rewardTitle = (rule) => {
    const reward = (rewards || []).find((r) => `reward:${r.id}` === rule);
    return reward ? reward.title : rule;
  };
  const entries = points.history.edges.map((edge) => edge.node);
  return section("points", t.points,
    h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, t.balance), h("dd", { id: "points-balance" }, points.balance)),
      h("div", {}, h("dt", {}, t.pending), h("dd", {}, points.pending)),
      h("div", {}, h("dt", {}, t.held), h("dd", {}, points.held))),
    h("h3", {}, t.expiring),
    points.expiring.length
      ? h("ul", { class: "plain" }, points.expiring.map((lot) => h("li", {}, t.expiresOn(lot.points, date(lot.expiresAt)))))
      : h("p", { class: "muted" }, t.noExpiring),
    h("h3", {}, t.history),
    entries.length
      ? h("ul", { class: "ledger", id: "points-history" }, entries.map((entry) =>
          h("li", {},
            h("span", { class: "what" }, `${t.reasons[entry.reason] || entry.reason} · `,
              entry.orderId ? entry.orderId : rewardTitle(entry.rule), entry.note ? ` · ${entry.note}` : ""),
            h("span", { class: entry.delta < 0 ? "delta minus" : "delta plus" },
              entry.delta > 0 ? `+${entry.delta}` : String(entry.delta)),
            h("span", { class: "when muted" }, date(entry.createdAt)))))
      : h("p", { class: "muted" }, t.noHistory));
}

function couponList(id, title, coupons) {
  return h("div", { class: "coupon-group" }, h("h3", {}, `${title} (${coupons.length})`),
    coupons.length
      ? h("ul", { class: "coupons", id }, coupons.map((coupon) => h("li", { class: `coupon ${coupon.status.toLowerCase()}` },
          h("span", { class: "coupon-title" }, coupon.title),
          h("span", { class: "muted" }, coupon.minSpend && coupon.minSpend.amount ? t.minSpend(money(coupon.minSpend)) : t.noMinimum),
          coupon.validUntil ? h("span", { class: "muted" }, t.validUntil(date(coupon.validUntil))) : null)))
      : h("p", { class: "muted" }, t.noCoupons));
}

function couponsCard(me) {
  return section("coupons", t.coupons, couponList("coupons-usable", t.usable, me.usable),
                 couponList("coupons-used", t.used, me.used), couponList("coupons-expired", t.expired, me.expired));
}

function mallCard(rewards, points) {
  if (!rewards) return null;
  return section("mall", t.mall, rewards.length
    ? h("ul", { class: "rewards" }, rewards.map((reward) => h("li", { class: "reward" },
        h("span", { class: "reward-title" }, reward.title),
        h("span", { class: "cost" }, t.cost(reward.costPoints)),
        h("button", { type: "button", onclick: () => redeem(reward, points) }, t.redeem))))
    : h("p", { class: "muted" }, t.noRewards));
}

async function redeem(reward, points) {
  const sure = await confirmDialog(t.confirmRedeem, t.confirmText(reward.costPoints, reward.title), t.confirm);
  if (!sure) return;
  const data = await gql(`mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
    coupon { title } errors { code field message } } }`,
  { input: { rewardId: reward.id, idempotencyKey: crypto.randomUUID() } });
  const result = data.redeemReward;
  if (result.errors.length) {
    refuse(refusalText(result.errors[0], { cost: reward.costPoints, balance: points ? points.balance : 0 }));
    return;
  }
  await load();
  say(t.redeemed(result.coupon.title));
}

function storedValueCard(account) {
  if (!account) return null;
  return section("stored-value", t.storedValue, h("dl", { class: "figures" },
    h("div", {}, h("dt", {}, t.svBalance), h("dd", {}, money(account.balance))),
    h("div", {}, h("dt", {}, t.principal), h("dd", {}, money(account.principal))),
    h("div", {}, h("dt", {}, t.bonus), h("dd", {}, money(account.bonus)))));
}

function countdown(sale) {
  const now = Date.now();
  if (sale.status === "SCHEDULED") return t.startsIn(duration(Date.parse(sale.startsAt) - now));
  if (sale.status === "ACTIVE") return t.endsIn(duration(Date.parse(sale.endsAt) - now));
  return sale.status === "SOLD_OUT" ? t.soldOut : t.ended;
}

function flashCard(sales, reservations) {
  if (!sales) return null;
  const showing = sales.filter((sale) => sale.status === "SCHEDULED" || sale.status === "ACTIVE" || sale.status === "SOLD_OUT");
  return section("flash", t.flash,
    showing.length
      ? h("ul", { class: "sales" }, showing.map((sale) => h("li", { class: "sale", id: `sale-${sale.id}` },
          h("span", { class: "sale-title" }, sale.title),
          h("span", { class: "price" }, money(sale.price)),
          h("span", { class: "countdown", "data-sale": sale.id }, countdown(sale)),
          h("span", { class: "muted" }, `${t.remaining(sale.remaining)} · ${t.limit(sale.perMemberLimit)}`),
          sale.status === "ACTIVE"
            ? h("button", { type: "button", onclick: () => reserve(sale) }, t.reserve)
            : h("button", { type: "button", disabled: true }, sale.status === "SCHEDULED" ? t.notStarted : t.soldOut))))
      : h("p", { class: "muted" }, t.noSales),
    reservations && reservations.length
      ? [h("h3", {}, t.myReservations), h("ul", { class: "plain", id: "reservations" }, reservations.map((held) =>
          h("li", {}, `${held.sale.title} × ${held.quantity} · `,
            h("span", { class: "countdown", "data-held": held.expiresAt }, t.holdUntil(duration(Date.parse(held.expiresAt) - Date.now()))))))]
      : null);
}

async function reserve(sale) {
  const data = await gql(`mutation($input: ReserveFlashSaleInput!) { reserveFlashSale(input: $input) {
    reservation { quantity expiresAt } errors { code field message } } }`,
  { input: { saleId: sale.id, quantity: 1, idempotencyKey: crypto.randomUUID() } });
  const result = data.reserveFlashSale;
  if (result.errors.length) {
    refuse(refusalText(result.errors[0], { limit: sale.perMemberLimit }));
    return;
  }
  await load();
  say(t.reserved(result.reservation.quantity, time(result.reservation.expiresAt)));
}

function calendarCard(entries) {
  // consecutive days of one entry (a birthday month is one entry a day) shown as one line with its range
  const spans = [];
  for (const entry of entries) {
    const last = spans.find((span) => span.kind === entry.kind && span.title === entry.title &&
                                      span.reference === entry.reference && addDays(span.to, 1) === entry.date);
    if (last) last.to = entry.date;
    else spans.push({ ...entry, from: entry.date, to: entry.date });
  }
  spans.sort((a, b) => a.from.localeCompare(b.from));
  return section("calendar", t.calendar, spans.length
    ? h("ul", { class: "calendar", id: "calendar-entries" }, spans.map((span) => h("li", { class: `entry ${span.kind.toLowerCase()}` },
        h("span", { class: "day" }, span.from === span.to ? date(span.from) : `${date(span.from)} – ${date(span.to)}`),
        h("span", { class: "kind" }, t.kinds[span.kind] || span.kind),
        span.kind === "FLASH_SALE" && span.reference
          ? h("a", { href: `#sale-${encodeURIComponent(span.reference)}` }, span.title)
          : h("span", {}, span.title))))
    : h("p", { class: "muted" }, t.noEvents));
}

function referralCard(referral) {
  if (!referral) return null;
  const link = referral.shareLink && /^https?:\/\//.test(referral.shareLink) ? referral.shareLink : null;
  return section("referral", t.referral,
    h("p", {}, `${t.yourCode}: `, h("strong", { id: "referral-code", class: "code" }, referral.code)),
    h("p", { class: "muted" }, t.invited(referral.invited, referral.rewarded)),
    link ? h("p", {}, `${t.shareLink}: `, h("a", { href: link, rel: "noopener noreferrer", target: "_blank" }, link)) : null,
    h("button", { type: "button", onclick: () => share(link || referral.code) }, t.share));
}

async function share(text) {
  if (navigator.share) {
    try { await navigator.share({ title: t.referral, text, url: /^https?:/.test(text) ? text : undefined }); return; }
    catch (error) { if (error.name === "AbortError") return; }
  }
  if (navigator.clipboard) await navigator.clipboard.writeText(text).then(() => say(t.copied), () => {});
}

function render() {
  const { me } = state;
  const app = document.getElementById("app");
  app.replaceChildren(...[
    tierCard(me), pointsCard(me.points, state.rewards), couponsCard(me), mallCard(state.rewards, me.points),
    flashCard(state.flashSales, me.flashReservations), calendarCard(state.calendar),
    storedValueCard(me.storedValue), referralCard(me.referral), upgradePath(state.tiers, me),
  ].filter(Boolean));
  app.setAttribute("aria-busy", "false");
}

let refreshing = false;

function tick() {
  if (!state) return;
  const turned = (state.flashSales || []).some((sale) =>
    (sale.status === "SCHEDULED" && Date.parse(sale.startsAt) <= Date.now()) ||
    (sale.status === "ACTIVE" && Date.parse(sale.endsAt) <= Date.now()));
  if (turned && !refreshing) {  // a sale starts or ends: read it again, so its button follows
    refreshing = true;
    load().finally(() => { refreshing = false; });
  }
  for (const node of document.querySelectorAll(".countdown[data-sale]")) {
    const sale = (state.flashSales || []).find((s) => s.id === node.dataset.sale);
    if (sale) node.textContent = countdown(sale);
  }
  for (const node of document.querySelectorAll(".countdown[data-held]")) {
    node.textContent = t.holdUntil(duration(Date.parse(node.dataset.held) - Date.now()));
  }
}

// ---------------------------------------------------------------- start

const TOKEN = readToken();

async function start() {
  const app = document.getElementById("app");
  if (!TOKEN) {
    app.replaceChildren(h("p", { class: "refusal-text" }, t.noToken, " ", TEXT.en.noToken));
    return;
  }
  try {
    shop = (await gql("{ shop { slug name locale currency timezone plugins } }")).shop;
    t = TEXT[shop.locale] || TEXT.en;
    document.documentElement.lang = shop.locale;
    document.title = `${t.title} · ${shop.name}`;
    document.getElementById("page-title").textContent = t.title;
    document.getElementById("shop-name").textContent = shop.name;
    await load();
    setInterval(tick, 1000);
  } catch (error) {
    app.replaceChildren(h("p", { class: "refusal-text" },
      error instanceof Unauthenticated ? t.expiredToken : `${t.failed} (${error.message})`));
    app.setAttribute("aria-busy", "false");
  }
}

window.addEventListener("unhandledrejection", (event) => {
  refuse(event.reason instanceof Unauthenticated ? t.expiredToken : t.failed);
});

start();
