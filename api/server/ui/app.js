// paxlock status page: plain JavaScript, no framework, no build step. Read-only: GETs only.
//
// Follows GET /v1/changes (EventSource; a fetch long poll when a bearer token is needed, as
// EventSource cannot send headers) and refetches the lists on every change; polls
// /v1/cluster every second (members, lag, reachability, primary changes). Countdowns tick
// here, from each object's expires_in when it was fetched.
"use strict";

(() => {
  const API = "../v1/";
  const TOKEN_KEY = "paxlock.token";
  const CLUSTER_POLL_MS = 1000;
  const DATA_REFRESH_MS = 5000; // renewals move expiries without a revision: refetch anyway
  const TICK_MS = 200;
  const REFRESH_GAP_MS = 250; // back-to-back refreshes of a busy cluster: at most 4 a second
  const GROUPS_SHOWN_MAX = 30;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    authNeeded: false,
    revision: 0, // the newest revision this page heard of
    dataRevision: -1, // the revision its lists were fetched at (at least)
    refreshing: false,
    again: false,
    events: null,
    pollLoop: 0,
  };

  const $ = (selector) => document.querySelector(selector);
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // -- HTTP ------------------------------------------------------------------------------

  class AuthError extends Error {
    constructor(status, message) {
      super(message || (status === 401 ? "a valid token is needed" : "this token may not read this"));
      this.status = status;
    }
  }

  async function get(path) {
    const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
    const response = await fetch(API + path, { headers, cache: "no-store" });
    if (response.status === 204) return null;
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(response.status, body.message);
    }
    if (!response.ok) {
      throw new Error(`${path.split("?")[0]}: ${response.status} ${body.error || ""} ${body.message || ""}`.trim());
    }
    return body;
  }

  /** A linearizable read, or this node's own state when the primary does not answer. */
  async function read(path) {
    try {
      return { body: await get(path), local: false };
    } catch (error) {
      if (error instanceof AuthError) throw error;
      const sep = path.includes("?") ? "&" : "?";
      return { body: await get(`${path}${sep}consistent=false`), local: true };
    }
  }

  // -- auth ------------------------------------------------------------------------------

  function needToken(error) {
    state.authNeeded = true;
    const form = byTestId("token-form");
    form.hidden = false;
    byTestId("token-error").textContent = state.token ? error.message : "";
    setLive("offline", "token needed");
    setHealth("unknown", "token needed");
  }

  byTestId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    state.authNeeded = false;
    byTestId("token-error").textContent = "";
    pollCluster().then(() => {
      if (!state.authNeeded) {
        byTestId("token-form").hidden = true;
        follow();
        refresh();
      }
    });
  });

  // -- following changes -------------------------------------------------------------------

  function heard(revision) {
    if (revision > state.revision) state.revision = revision;
    if (state.revision > state.dataRevision) refresh();
  }

  function follow() {
    if (state.events) state.events.close();
    state.events = null;
    state.pollLoop += 1;
    if (state.token) {
      longPoll(state.pollLoop);
      return;
    }
    const events = new EventSource(`${API}changes`);
    state.events = events;
    events.onopen = () => setLive("live", "live");
    events.onmessage = (event) => {
      setLive("live", "live");
      heard(JSON.parse(event.data).revision);
    };
    events.onerror = () => {
      // It reconnects by itself (with Last-Event-ID); one closed for good (a 401) does not.
      setLive(events.readyState === EventSource.CLOSED ? "offline" : "polling", "reconnecting");
      if (events.readyState === EventSource.CLOSED) setTimeout(() => state.events === events && follow(), 2000);
    };
  }

  async function longPoll(loop) {
    while (loop === state.pollLoop) {
      try {
        setLive("live", "live (long poll)");
        const body = await get(`changes?after=${state.revision}&timeout=25`);
        if (body) heard(body.revision);
      } catch (error) {
        if (error instanceof AuthError) return needToken(error);
        setLive("offline", "reconnecting");
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  function setLive(kind, text) {
    const live = byTestId("live");
    live.dataset.state = kind;
    live.querySelector(".live-text").textContent = text;
  }

  function setHealth(kind, text) {
    const health = byTestId("health");
    health.dataset.state = kind;
    health.querySelector(".health-text").textContent = text;
  }

  function banner(messages) {
    const node = byTestId("banner");
    node.hidden = messages.length === 0;
    node.textContent = messages.join(" · ");
  }

  // -- the cluster (every second) ----------------------------------------------------------

  let clusterError = null;

  async function pollCluster() {
    try {
      const cluster = await get("cluster");
      clusterError = null;
      renderCluster(cluster);
      heard(cluster.revision);
    } catch (error) {
      if (error instanceof AuthError) return needToken(error);
      clusterError = `this node does not answer (${error.message})`;
      setHealth("down", "node unreachable");
      showErrors();
    }
  }

  function renderCluster(cluster) {
    const members = cluster.members || [];
    const reachable = members.filter((m) => m.reachable).length;
    const primary = cluster.primary;
    const changes = cluster.primary_changes || [];
    const last = changes.length ? changes[changes.length - 1] : null;
    const ballot = cluster.ballot || (last && last.primary === primary ? last.ballot : null);

    state.node = cluster.node;
    byTestId("served-by").textContent = cluster.node;
    byTestId("primary").textContent = primary || "none";
    byTestId("ballot").textContent = ballot ? `ballot ${ballot}` : "no ballot known";
    byTestId("reachable").textContent = `${reachable} / ${members.length}`;
    byTestId("learn-mode").textContent = `learning: ${cluster.learn_mode}`;
    byTestId("revision").textContent = cluster.revision;
    byTestId("indexes").textContent = `${cluster.chosen_index} / ${cluster.applied_index}`;
    if (!primary) setHealth("down", "No primary: an election is on");
    else if (reachable < members.length) setHealth("degraded", `Degraded · ${reachable} of ${members.length} members reachable`);
    else setHealth("ok", `Healthy · ${members.length} of ${members.length} members reachable`);

    const rows = members.map((m) => {
      const role = m.id === primary ? "primary" : "follower";
      return el("tr", { "data-member": m.id, "data-role": role, "data-reachable": String(m.reachable) },
        el("td", {}, el("strong", {}, m.id),
          m.id === primary ? el("span", { class: "tag primary", "data-testid": "primary-tag" }, "primary") : null,
          m.id === cluster.node ? el("span", { class: "tag self" }, "this node") : null),
        el("td", { class: "mono" }, m.url),
        el("td", {}, role),
        el("td", {}, el("span", { class: `dot ${m.reachable ? "ok" : "bad"}` }), m.reachable ? "yes" : el("span", { class: "down" }, "no")),
        el("td", { class: "num" }, m.chosen_index ?? "–"),
        el("td", { class: `num ${m.lag > 0 ? "lagging" : ""}` }, m.lag ?? "–"),
        el("td", { class: "num" }, heardText(m)));
    });
    $('[data-testid="members"] tbody').replaceChildren(...rows);

    const history = changes.slice().reverse().map((c) => el("tr", {},
      el("td", {}, when(c.at)),
      el("td", {}, c.primary ? el("strong", {}, c.primary) : el("span", { class: "muted" }, "none (election)")),
      el("td", { class: "mono" }, c.ballot || "–")));
    $('[data-testid="primary-changes"] tbody').replaceChildren(...history);
    showErrors();
  }

  function heardText(member) {
    const ago = member.heard_s_ago;
    if (ago === null) return "never";
    if (member.id === state.node) return "–";
    const via = member.heard_via ? ` via ${member.heard_via}` : "";
    return (ago < 0.1 ? "just now" : `${ago.toFixed(1)} s ago`) + via;
  }

  function when(seconds) {
    const date = new Date(seconds * 1000);
    const ago = Math.max(0, Date.now() / 1000 - seconds);
    const rel = ago < 90 ? `${Math.round(ago)} s ago` : ago < 5400 ? `${Math.round(ago / 60)} min ago` : `${Math.round(ago / 3600)} h ago`;
    return `${date.toLocaleTimeString()} (${rel})`;
  }

  // -- the lists (on every change) ---------------------------------------------------------

  let dataErrors = [];
  let localReads = false;

  async function refresh() {
    if (state.authNeeded) return;
    if (state.refreshing) {
      state.again = true;
      return;
    }
    state.refreshing = true;
    try {
      for (;;) {
        state.again = false;
        const revision = state.revision;
        await loadLists();
        state.dataRevision = Math.max(state.dataRevision, revision);
        if (!state.again && state.revision <= state.dataRevision) break;
        // Changes came in meanwhile: every list read is a quorum round at the primary, so a
        // page on a busy cluster asks again after a short gap, not in a tight loop.
        await new Promise((resolve) => setTimeout(resolve, REFRESH_GAP_MS));
      }
    } finally {
      state.refreshing = false;
    }
  }

  async function loadLists() {
    const names = ["leases", "sessions", "groups", "semaphores", "rwlocks"];
    const results = await Promise.allSettled(names.map((name) => read(name)));
    const got = {};
    dataErrors = [];
    localReads = false;
    results.forEach((result, i) => {
      if (result.status === "fulfilled") {
        got[names[i]] = result.value.body;
        localReads = localReads || result.value.local;
      } else if (result.reason instanceof AuthError) {
        needToken(result.reason);
      } else {
        dataErrors.push(result.reason.message);
      }
    });
    if (got.groups) {
      const groups = got.groups.groups.slice(0, GROUPS_SHOWN_MAX);
      const views = await Promise.allSettled(groups.map((g) => read(`groups/${g}`)));
      got.groupViews = views.map((v, i) => (v.status === "fulfilled" ? v.value.body : { name: groups[i], members: null }));
    }
    const fetchedAt = performance.now();
    if (got.leases) renderLeases(got.leases.leases, fetchedAt);
    if (got.sessions) renderSessions(got.sessions.sessions, fetchedAt);
    if (got.groupViews) renderGroups(got.groupViews, got.groups.groups.length);
    if (got.semaphores && got.rwlocks) renderShared(got.semaphores.semaphores, got.rwlocks.rwlocks);
    byTestId("held-count").textContent = got.leases ? got.leases.leases.length : "–";
    byTestId("held-sub").textContent = `${count(got.sessions && got.sessions.sessions, "session")} · ${count(got.groups && got.groups.groups, "group")}`;
    byTestId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    showErrors();
  }

  function count(list, noun) {
    if (!list) return `– ${noun}s`;
    return `${list.length} ${noun}${list.length === 1 ? "" : "s"}`;
  }

  function showErrors() {
    const messages = [];
    if (clusterError) messages.push(clusterError);
    if (localReads) messages.push("the primary does not answer reads: showing this node's own applied state");
    banner(messages.concat(dataErrors));
  }

  function countdown(expiresIn, ttl, fetchedAt) {
    if (expiresIn === null || expiresIn === undefined) return el("span", { class: "muted" }, "–");
    const deadline = fetchedAt + expiresIn * 1000;
    const node = el("div", { class: "countdown", "data-deadline": deadline, "data-ttl": ttl || expiresIn },
      el("div", { class: "bar" }, el("div", { class: "fill" })),
      el("span", { class: "secs", "data-testid": "expires-in" }));
    tickOne(node, performance.now());
    return node;
  }

  function tickOne(node, now) {
    const left = Math.max(0, (Number(node.dataset.deadline) - now) / 1000);
    const ttl = Math.max(Number(node.dataset.ttl), 0.001);
    node.querySelector(".fill").style.width = `${Math.min(100, (100 * left) / ttl).toFixed(1)}%`;
    node.querySelector(".secs").textContent = `${left.toFixed(1)} s`;
    node.classList.toggle("low", left < ttl * 0.25);
    node.classList.toggle("gone", left === 0);
    return left;
  }

  function tick() {
    const now = performance.now();
    let expired = false;
    for (const node of document.querySelectorAll(".countdown")) {
      if (tickOne(node, now) === 0 && !node.dataset.refetched) {
        node.dataset.refetched = "1";
        expired = true;
      }
    }
    if (expired) setTimeout(refresh, 300); // expired, or renewed since: ask again
  }

  function renderLeases(leases, fetchedAt) {
    const rows = leases.map((l) => el("tr", { "data-lease": l.name },
      el("td", { class: "mono" }, l.name),
      el("td", {}, el("strong", {}, l.holder)),
      el("td", { class: "mono wrap" }, l.value ?? el("span", { class: "muted" }, "–")),
      el("td", { class: "num mono" }, l.token),
      el("td", {}, countdown(l.expires_in, l.ttl, fetchedAt)),
      el("td", { class: "mono" }, l.session ?? el("span", { class: "muted" }, "–")),
      el("td", { class: `num ${l.waiters > 0 ? "waiters-some" : ""}`, "data-testid": "waiters" }, l.waiters ?? 0)));
    $('[data-testid="leases"] tbody').replaceChildren(...rows);
    byTestId("leases").hidden = rows.length === 0;
    byTestId("leases-empty").hidden = rows.length > 0;
  }

  function renderSessions(sessions, fetchedAt) {
    const rows = sessions.map((s) => el("tr", { "data-session": s.id },
      el("td", { class: "mono" }, s.id),
      el("td", {}, el("strong", {}, s.holder)),
      el("td", { class: "num" }, `${s.ttl} s`),
      el("td", {}, countdown(s.expires_in, s.ttl, fetchedAt))));
    $('[data-testid="sessions"] tbody').replaceChildren(...rows);
    byTestId("sessions").hidden = rows.length === 0;
    byTestId("sessions-empty").hidden = rows.length > 0;
  }

  function renderGroups(groups, total) {
    const rows = groups.map((g) => el("tr", { "data-group": g.name },
      el("td", { class: "mono" }, g.name),
      el("td", { class: "num", "data-testid": "group-size" }, g.members ? g.members.length : "?"),
      el("td", { class: "wrap" }, g.members ? g.members.map((m) => m.member).join(", ") || el("span", { class: "muted" }, "nobody") : "")));
    if (total > groups.length) rows.push(el("tr", {}, el("td", { colspan: 3, class: "muted" }, `and ${total - groups.length} more`)));
    $('[data-testid="groups"] tbody').replaceChildren(...rows);
    byTestId("groups").hidden = rows.length === 0;
    byTestId("groups-empty").hidden = rows.length > 0;
  }

  function renderShared(semaphores, rwlocks) {
    const row = (kind, s) => el("tr", { "data-shared": `${kind}/${s.name}` },
      el("td", { class: "mono" }, s.name),
      el("td", {}, kind),
      el("td", { class: "num" }, kind === "semaphore" ? `${s.holders.length} / ${s.limit}` : s.holders.length),
      el("td", { class: "wrap" }, s.holders.map((h) => (h.mode ? `${h.holder} (${h.mode})` : h.holder)).join(", ")));
    const rows = semaphores.map((s) => row("semaphore", s)).concat(rwlocks.map((s) => row("rwlock", s)));
    $('[data-testid="shared"] tbody').replaceChildren(...rows);
    byTestId("shared").hidden = rows.length === 0;
    byTestId("shared-empty").hidden = rows.length > 0;
  }

  // -- start -------------------------------------------------------------------------------

  async function start() {
    await pollCluster();
    if (!state.authNeeded) {
      follow();
      refresh();
    }
    setInterval(() => {
      if (!state.authNeeded || state.token) pollCluster();
    }, CLUSTER_POLL_MS);
    setInterval(() => refresh(), DATA_REFRESH_MS);
    setInterval(tick, TICK_MS);
  }

  start();
})();
