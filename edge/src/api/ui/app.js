// The edge's status page. Asks for an API token once, keeps it in sessionStorage (this tab's
// session only), and reads the edge's own API with it every few seconds. Everything shown is
// built with DOM calls and text nodes, never parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "postern.token";
  const REFRESH_MS = 3000;

  const byId = (id) => document.getElementById(id);
  let timer = null;
  // Bumped on sign-in and sign-out, so an answer to an older session is dropped.
  let session = 0;

  class Unauthorized extends Error {}

  // === DOM helpers ===

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function chip(text, kind) {
    return el("span", { class: "chip" + (kind ? " chip-" + kind : "") }, text);
  }

  function table(columns, rows, empty, kind) {
    if (rows.length === 0) return el("p", { class: "empty" }, empty);
    const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)));
    const body = rows.map((cells) =>
      el("tr", cells.attrs || {}, cells.map((cell, i) =>
        el("td", { "data-label": columns[i] }, cell))));
    return el("div", { class: "table-wrap" },
      el("table", { class: kind }, el("thead", {}, head), el("tbody", {}, body)));
  }

  function percent(value) {
    if (!isFinite(value)) return "0%";
    return (value >= 10 || value === 0 ? value.toFixed(0) : value.toFixed(1)) + "%";
  }

  function ago(iso) {
    const then = Date.parse(iso);
    if (isNaN(then)) return iso;
    const seconds = Math.max(0, Math.round((Date.now() - then) / 1000));
    if (seconds < 60) return seconds + " s ago";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    const hours = Math.round(minutes / 60);
    if (hours < 48) return hours + " h ago";
    return Math.round(hours / 24) + " days ago";
  }

  function labels(map) {
    const entries = Object.entries(map || {});
    if (entries.length === 0) return el("span", { class: "muted" }, "no labels");
    return el("span", { class: "chips" }, entries.map(([k, v]) => chip(k + "=" + v)));
  }

  // === the API ===

  async function api(path, token) {
    let response;
    try {
      response = await fetch(path, {
        headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      throw new Error("cannot reach the edge (" + error.message + ")");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (response.status === 401) throw new Unauthorized("the edge did not accept the token");
    if (!response.ok) {
      const message = body && body.error && body.error.message;
      const failure = new Error(path + " answered " + response.status + (message ? ": " + message : ""));
      failure.status = response.status;
      throw failure;
    }
    return body;
  }

  async function load(token) {
    const [tunnels, hostnames, policies, status, certificates] = await Promise.all([
      api("/v1/tunnels", token),
      api("/v1/hostnames", token),
      api("/v1/policies", token),
      api("/v1/status", token),
      api("/v1/certificates", token),
    ]);
    const connections = {};
    await Promise.all(tunnels.items.filter((t) => t.connections > 0).map(async (t) => {
      try {
        const list = await api("/v1/tunnels/" + encodeURIComponent(t.id) + "/connections", token);
        connections[t.id] = list.items;
      } catch (error) {
        // Deleted since the list was read.
        if (error.status === 404) connections[t.id] = [];
        else throw error;
      }
    }));
    return {
      tunnels: tunnels.items, hostnames: hostnames.items, policies: policies.items, status, connections,
      certificates: certificates.items,
    };
  }

  // === rendering ===

  function render(data) {
    const tunnelNames = new Map(data.tunnels.map((t) => [t.id, t.name]));
    const policyById = new Map(data.policies.map((p) => [p.id, p]));
    byId("summary").replaceChildren(...summary(data));
    byId("tunnels").replaceChildren(tunnelsView(data));
    byId("hostnames").replaceChildren(hostnamesView(data, tunnelNames, policyById));
    byId("policies").replaceChildren(policiesView(data));
    byId("tcp-services").replaceChildren(tcpServicesView(data.status.tcp_services || []));
    byId("certificates").replaceChildren(certificatesView(data.certificates));
    byId("dns").replaceChildren(dnsView(data.status.dns));
    byId("window-note").textContent =
      "Weighted routes: configured weight beside the observed share of requests over the last " +
      data.status.window_seconds + " s.";
    byId("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  }

  function stat(label, value, note, kind) {
    return el("div", { class: "stat" + (kind ? " stat-" + kind : "") },
      el("span", { class: "stat-label" }, label),
      el("span", { class: "stat-value" }, value),
      el("span", { class: "stat-note" }, note));
  }

  function summary(data) {
    const connected = data.tunnels.filter((t) => t.connections > 0).length;
    const connections = data.tunnels.reduce((n, t) => n + t.connections, 0);
    const routed = data.status.routes.reduce((n, r) => n + r.requests, 0);
    const blocked = data.status.decisions
      .filter((d) => d.decision === "deny").reduce((n, d) => n + d.count, 0);
    const idle = data.tunnels.length - connected;
    return [
      stat("Tunnels", data.tunnels.length,
        idle > 0 ? idle + " without a connector" : "all connected", idle > 0 ? "warn" : null),
      stat("Connections", connections, connected + " tunnel" + (connected === 1 ? "" : "s") + " served"),
      stat("Hostnames", data.hostnames.length, data.status.routes.length > 0
        ? new Set(data.status.routes.map((r) => r.hostname)).size + " with weighted routes" : "no weighted routes"),
      stat("Routed requests", routed, "last " + data.status.window_seconds + " s"),
      stat("Blocked", blocked, "since the edge started", blocked > 0 ? "bad" : null),
    ];
  }

  function connectionsList(tunnel, list) {
    if (tunnel.connections === 0) return chip("no connector", "bad");
    if (!list || list.length === 0) {
      return el("span", { class: "muted" }, "connected to another edge node");
    }
    return el("ul", { class: "connections" }, list.map((c) =>
      el("li", {},
        el("span", { class: "mono" }, c.address),
        el("span", { class: "muted", title: c.since }, "since " + ago(c.since)),
        el("span", {}, "v" + c.version),
        el("span", { title: "the configuration version this connector acknowledged" },
          "config " + c.config_version + " applied"),
        c.draining ? chip("draining", "warn") : null)));
  }

  function tunnelsView(data) {
    const rows = data.tunnels.map((t) => {
      const row = [
        el("div", {}, el("div", { class: "strong" }, t.name), el("div", { class: "muted mono id" }, t.id)),
        labels(t.labels),
        el("span", { class: "count " + (t.connections > 0 ? "count-ok" : "count-bad") }, t.connections),
        connectionsList(t, data.connections[t.id]),
      ];
      row.attrs = { "data-tunnel": t.name, "data-connections": t.connections };
      return row;
    });
    return table(["Tunnel", "Labels", "Connections", "Connectors"], rows, "No tunnels yet.");
  }

  function bar(kind, share, text) {
    const fill = el("span", { class: "bar-fill" });
    // Set through the CSSOM, which the Content-Security-Policy allows (a style attribute would not be).
    fill.style.width = Math.max(0, Math.min(100, share)).toFixed(2) + "%";
    return el("div", { class: "bar bar-" + kind },
      el("span", { class: "bar-label" }, kind === "weight" ? "weight" : "observed"),
      el("span", { class: "bar-track" }, fill),
      el("span", { class: "bar-value" }, text));
  }

  function routesView(hostname, traffic, windowSeconds) {
    const routes = hostname.routes;
    const totalWeight = routes.reduce((n, r) => n + r.weight, 0);
    const seen = traffic.filter((t) => t.hostname === hostname.hostname);
    const totalRequests = seen.reduce((n, t) => n + t.requests, 0);
    const items = routes.map((route, index) => {
      const observed = seen.find((t) => t.index === index);
      const requests = observed ? observed.requests : 0;
      const weightShare = totalWeight > 0 ? (100 * route.weight) / totalWeight : 0;
      const observedShare = totalRequests > 0 ? (100 * requests) / totalRequests : 0;
      const selector = Object.entries(route.selector).map(([k, v]) => k + "=" + v).join(",");
      return el("div", {
        class: "route",
        "data-route": selector,
        "data-weight": route.weight,
        "data-weight-share": weightShare.toFixed(2),
        "data-requests": requests,
        "data-observed-share": observedShare.toFixed(2),
      },
      el("div", { class: "route-name" }, chip(selector, "route")),
      bar("weight", weightShare, percent(weightShare) + " (" + route.weight + ")"),
      bar("observed", observedShare, totalRequests > 0
        ? percent(observedShare) + " · " + requests + " req" : "no requests"));
    });
    return el("div", { class: "routes" }, items,
      el("p", { class: "muted small" }, totalRequests + " request" + (totalRequests === 1 ? "" : "s") +
        " in the last " + windowSeconds + " s"));
  }

  function hostnamesView(data, tunnelNames, policyById) {
    if (data.hostnames.length === 0) return el("p", { class: "empty" }, "No hostnames yet.");
    return el("div", { class: "hostnames" }, data.hostnames.map((h) => {
      const policies = (h.policy_ids || []).map((id) => {
        const policy = policyById.get(id);
        if (!policy) return chip("unknown policy", "bad");
        const report = policy.mode === "report";
        return chip(policy.name + (report ? " (report)" : ""), report ? "warn" : "policy");
      });
      const target = h.routes
        ? routesView(h, data.status.routes, data.status.window_seconds)
        : el("div", { class: "target" }, el("span", { class: "muted" }, "tunnel "),
          el("span", { class: "strong" }, tunnelNames.get(h.tunnel_id) || h.tunnel_id));
      return el("article", { class: "hostname", "data-hostname": h.hostname },
        el("div", { class: "hostname-head" },
          el("h3", { class: "mono" }, h.hostname),
          el("span", { class: "service mono" }, "→ " + h.service)),
        el("div", { class: "hostname-policies" }, el("span", { class: "muted" }, "policies "),
          policies.length > 0 ? el("span", { class: "chips" }, policies) : el("span", { class: "muted" }, "none")),
        target);
    }));
  }

  function reasons(counts) {
    const entries = Object.entries(counts);
    if (entries.length === 0) return el("span", { class: "muted" }, "none");
    return el("span", { class: "chips" }, entries.sort().map(([reason, n]) => chip(reason + " " + n, "bad")));
  }

  function policiesView(data) {
    const rows = data.policies.map((p) => {
      const mine = data.status.decisions.filter((d) => d.policy_id === p.id);
      const sum = (decision) => mine.filter((d) => d.decision === decision).reduce((n, d) => n + d.count, 0);
      const byReason = (decision) => {
        const out = {};
        for (const d of mine.filter((d) => d.decision === decision)) out[d.reason] = (out[d.reason] || 0) + d.count;
        return out;
      };
      const report = p.mode === "report";
      const row = [
        el("span", { class: "strong" }, p.name),
        chip(p.mode, report ? "mode-report" : "mode-enforce"),
        el("span", { class: "count" }, sum("allow")),
        report ? el("span", { class: "muted" }, "never blocks") : reasons(byReason("deny")),
        report ? reasons(byReason("report")) : el("span", { class: "muted" }, "—"),
      ];
      row.attrs = {
        "data-policy": p.name,
        "data-allowed": sum("allow"),
        "data-blocked": sum("deny"),
        "data-would-block": sum("report"),
      };
      return row;
    });
    return table(["Policy", "Mode", "Allowed", "Blocked, by reason", "Would block (report)"], rows, "No policies.");
  }

  function expires(iso) {
    if (!iso) return el("span", { class: "muted" }, "—");
    const then = Date.parse(iso);
    if (isNaN(then)) return el("span", {}, iso);
    const days = (then - Date.now()) / 86400000;
    const text = days >= 2 ? "in " + Math.round(days) + " days"
      : days > 0 ? "in " + Math.max(1, Math.round(days * 24 * 60)) + " min" : "expired";
    return el("span", { title: iso, class: days < 7 ? "warn-text" : "" }, text);
  }

  function certificatesView(certificates) {
    const sourceName = { acme: "ACME", uploaded: "uploaded", edge_ca: "visitors' CA" };
    const statusKind = { valid: "ok", pending: "warn", failed: "bad" };
    const rows = certificates.map((c) => {
      const row = [
        el("span", { class: "chips" }, c.names.map((n) => chip(n))),
        chip(sourceName[c.source] || c.source, c.source === "edge_ca" ? "warn" : "policy"),
        chip(c.status, statusKind[c.status]),
        expires(c.not_after),
        c.last_error ? el("span", { class: "error-text wrap" }, c.last_error) : el("span", { class: "muted" }, "—"),
      ];
      row.attrs = { "data-certificate": c.names.join(","), "data-source": c.source, "data-status": c.status };
      return row;
    });
    return table(["Names", "Source", "Status", "Expires", "Last error"], rows, "No certificates.");
  }

  function tcpServicesView(services) {
    const rows = services.map((s) => {
      const row = [
        el("span", { class: "mono" }, s.name),
        el("span", { class: "mono" }, s.listen || "—"),
        el("span", {}, s.connections),
        s.refused > 0 ? chip(String(s.refused), "bad") : el("span", { class: "muted" }, "0"),
      ];
      row.attrs = { "data-tcp-service": s.name, "data-connections": s.connections, "data-refused": s.refused };
      return row;
    });
    return table(["Name", "Listens on", "Connections", "Refused"], rows, "No TCP services.", "compact");
  }

  function dnsView(records) {
    const rows = records.map((r) => [
      el("span", { class: "mono" }, r.name),
      chip(r.type, "type"),
      el("span", {}, r.ttl),
      el("span", { class: "mono wrap" }, r.data),
    ]);
    return table(["Name", "Type", "TTL", "Data"], rows, "No records.", "compact");
  }

  // === the session ===

  function clearData() {
    for (const id of ["summary", "tunnels", "hostnames", "policies", "tcp-services", "certificates", "dns"]) byId(id).replaceChildren();
    byId("banner").hidden = true;
  }

  function showLogin(message) {
    session += 1;
    clearTimeout(timer);
    clearData();
    byId("dashboard").hidden = true;
    byId("session").hidden = true;
    byId("login").hidden = false;
    const error = byId("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    byId("sign-in").disabled = false;
    byId("token").focus();
  }

  function showDashboard() {
    byId("login").hidden = true;
    byId("dashboard").hidden = false;
    byId("session").hidden = false;
  }

  async function refresh(mine) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      showLogin("Your session ended; sign in again.");
      return;
    }
    try {
      const data = await load(token);
      if (mine !== session) return;
      render(data);
      showDashboard();
      byId("banner").hidden = true;
      byId("live").className = "live";
    } catch (error) {
      if (mine !== session) return;
      if (error instanceof Unauthorized) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("The edge refused the token (401); sign in again.");
        return;
      }
      showDashboard();
      const banner = byId("banner");
      banner.textContent = "Not up to date: " + error.message + ". Retrying.";
      banner.hidden = false;
      byId("live").className = "live live-stale";
    }
    clearTimeout(timer);
    timer = setTimeout(() => refresh(mine), REFRESH_MS);
  }

  async function signIn(event) {
    event.preventDefault();
    const input = byId("token");
    const token = input.value.trim();
    if (!token) {
      showLogin("Enter an API token.");
      return;
    }
    byId("sign-in").disabled = true;
    session += 1;
    const mine = session;
    try {
      const data = await load(token);
      if (mine !== session) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      render(data);
      showDashboard();
      timer = setTimeout(() => refresh(mine), REFRESH_MS);
    } catch (error) {
      if (mine !== session) return;
      showLogin(error instanceof Unauthorized
        ? "The edge did not accept this token."
        : "Could not read the edge's status: " + error.message + ".");
    }
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  }

  function start() {
    byId("login-form").addEventListener("submit", signIn);
    byId("sign-out").addEventListener("click", signOut);
    if (sessionStorage.getItem(TOKEN_KEY)) {
      session += 1;
      refresh(session);
    } else {
      showLogin("");
    }
  }

  start();
})();
