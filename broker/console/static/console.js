/* Operator console of the emergency vehicle alert broker (docs/console.md).
 *
 * One page, two sources: live (the worker pushes deltas over Server-Sent Events) or player (a
 * replay: the page asks for the frame of a moment as its clock moves). Both end up in
 * render(model). Data from the server is only ever put in the page as text (textContent), never
 * as HTML. The session is an HttpOnly cookie; the token is only ever sent in a POST body.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const api = (path) => "api/" + path;
  const ev = (window.evConsole = {
    mode: null, ready: false, connections: 0, snapshots: 0, frames: 0, lastEventId: null,
    layers: null, model: null,
  });

  // ---- session -------------------------------------------------------------------------
  async function signedIn() {
    const r = await fetch(api("session"), { credentials: "same-origin", cache: "no-store" });
    return r.status === 200 && (await r.json()).signed_in === true;
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token").value;
    $("login-error").textContent = "";
    const r = await fetch(api("session"), {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: token }),
    });
    $("token").value = "";
    if (r.status === 200) { start(); } else { showLogin("Wrong operator token."); }
  });

  $("logout").addEventListener("click", async () => {
    await fetch(api("session"), { method: "DELETE", credentials: "same-origin" });
    window.location.reload();
  });

  // ---- model ---------------------------------------------------------------------------
  function emptyModel() {
    return { alerts: new Map(), routes: new Map(), deliveries: new Map(), rejected: {},
             figures: {}, now: null };
  }
  let model = emptyModel();
  let info = {};

  function applySnapshot(snap) {
    model = emptyModel();
    for (const a of snap.alerts || []) model.alerts.set(a.alert.alert_id, a);
    for (const r of snap.routes || []) model.routes.set(r.vehicle_id, r);
    for (const [aid, d] of Object.entries(snap.deliveries || {})) model.deliveries.set(aid, d);
    model.rejected = snap.rejected || {};
    model.figures = snap.figures || {};
    model.now = snap.now ? new Date(snap.now) : snap.at ? new Date(snap.at) : null;
    ev.model = model;
  }

  function applyDelta(name, data) {
    if (name === "alert") {
      model.alerts.set(data.alert.alert_id, data);
      if (data.deliveries) model.deliveries.set(data.alert.alert_id, data.deliveries);
    } else if (name === "remove") {
      const old = model.alerts.get(data.alert_id);
      model.alerts.delete(data.alert_id);
      model.deliveries.delete(data.alert_id);
      const vid = data.vehicle_id || (old && old.alert.vehicle_id);
      const still = [...model.alerts.values()].some((a) => a.alert.vehicle_id === vid);
      if (vid && !still) model.routes.delete(vid);
    } else if (name === "route") {
      // no coordinates: no live alert of the unit is of the route's incident any more (its
      // alert's incident changed, its alert went, or the route was evicted); the route goes
      if (data.coordinates) model.routes.set(data.vehicle_id, data);
      else model.routes.delete(data.vehicle_id);
    } else if (name === "delivery") {
      if (model.alerts.has(data.alert_id)) model.deliveries.set(data.alert_id, data.deliveries);
    } else if (name === "figures") {
      model.figures = data.figures || {};
      model.rejected = data.rejected || {};
      model.now = data.now ? new Date(data.now) : model.now;
    }
  }

  // ---- map -----------------------------------------------------------------------------
  let map = null;
  let fitted = false;
  const L = () => window.L;

  function setupMap() {
    map = L().map("map", { preferCanvas: false, zoomControl: true, attributionControl: true });
    ev.map = map;
    map.createPane("roads").style.zIndex = 350;
    map.createPane("zones").style.zIndex = 400;
    map.createPane("stubs").style.zIndex = 410;
    map.createPane("routes").style.zIndex = 420;
    map.createPane("units").style.zIndex = 650;
    if (info.tiles && info.tiles.url) {
      L().tileLayer(info.tiles.url, { attribution: info.tiles.attribution || "",
                                      maxZoom: 19 }).addTo(map);
    }
    L().control.scale({ imperial: false }).addTo(map);
    ev.layers = {
      roads: L().geoJSON(null, { pane: "roads", interactive: false,
                                 style: { color: "#9aa3ad", weight: 2, opacity: 0.9 } }).addTo(map),
      zones: L().geoJSON(null, { pane: "zones", style: zoneStyle }).addTo(map),
      approaches: L().geoJSON(null, { pane: "stubs", interactive: false,
                                      style: { color: "#7b1fa2", weight: 2, dashArray: "5 4",
                                               fillColor: "#7b1fa2", fillOpacity: 0.3 } }).addTo(map),
      routes: L().geoJSON(null, { pane: "routes", interactive: false,
                                  style: { color: "#1565c0", weight: 3, dashArray: "8 6",
                                           opacity: 0.8 } }).addTo(map),
      trails: L().geoJSON(null, { pane: "units", interactive: false,
                                  style: { color: "#111", weight: 2, opacity: 0.6 } }).addTo(map),
      units: L().layerGroup([], { pane: "units" }).addTo(map),
    };
    if (info.bbox) {
      const [w, s, e, n] = info.bbox;
      map.fitBounds([[s, w], [n, e]], { padding: [20, 20] });
      fitted = true;
    } else {
      map.setView([0, 0], 2);
    }
    if (!info.roads) return;
    fetch(api("roads"), { credentials: "same-origin" }).then((r) => {
      if (r.status !== 200) return null;
      return r.json();
    }).then((roads) => {
      if (!roads) return;
      ev.layers.roads.addData(roads);
      if (!fitted && ev.layers.roads.getBounds().isValid()) {
        map.fitBounds(ev.layers.roads.getBounds(), { padding: [10, 10] });
        fitted = true;
      }
    });
  }

  function zoneStyle(feature) {
    const onScene = feature.properties.kind === "on_scene";
    return { color: onScene ? "#c62828" : "#e0701b", weight: 2,
             fillColor: onScene ? "#c62828" : "#e0701b", fillOpacity: onScene ? 0.3 : 0.25,
             dashArray: onScene ? "2 4" : null };
  }

  function unitIcon(unit) {
    const h = typeof unit.heading_deg === "number" ? unit.heading_deg : null;
    const fill = unit.kind === "on_scene" ? "#c62828" : "#e0701b";
    const arrow = h === null ? "" :
      `<g transform="rotate(${Number(h).toFixed(1)})"><path d="M0,-17 L5,-7 L-5,-7 Z" ` +
      `fill="#111" stroke="#fff" stroke-width="1"/></g>`;
    const html = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" ` +
      `viewBox="-20 -20 40 40">${arrow}<circle r="7" fill="${fill}" stroke="#fff" ` +
      `stroke-width="2"/></svg>`;
    return L().divIcon({ html: html, className: "unit-icon", iconSize: [40, 40],
                         iconAnchor: [20, 20] });
  }

  function feature(geometry, props) { return { type: "Feature", properties: props, geometry: geometry }; }

  function drawMap() {
    const lay = ev.layers;
    for (const k of ["zones", "approaches", "routes", "trails"]) lay[k].clearLayers();
    lay.units.clearLayers();
    const bounds = [];
    for (const { alert, unit } of model.alerts.values()) {
      const props = { alert_id: alert.alert_id, kind: alert.kind, version: alert.version,
                      vehicle_id: alert.vehicle_id };
      lay.zones.addData(feature(alert.zone, props));
      if (alert.approaches) lay.approaches.addData(feature(alert.approaches, props));
      if (unit) {
        if (unit.trail && unit.trail.length > 1) {
          lay.trails.addData(feature({ type: "LineString", coordinates: unit.trail }, props));
        }
        const m = L().marker([unit.lat, unit.lon], { icon: unitIcon(unit), pane: "units",
                                                      keyboard: false });
        m.feature = feature({ type: "Point", coordinates: [unit.lon, unit.lat] },
                            { ...props, heading_deg: unit.heading_deg });
        const label = document.createElement("span");
        label.textContent = unit.vehicle_id || alert.alert_id;
        m.bindTooltip(label, { permanent: true, direction: "right", offset: [12, 0],
                               className: "unit-label" });
        lay.units.addLayer(m);
        bounds.push([unit.lat, unit.lon]);
      }
    }
    for (const r of model.routes.values()) {
      lay.routes.addData(feature({ type: "LineString", coordinates: r.coordinates },
                                 { vehicle_id: r.vehicle_id }));
    }
    if (!fitted && bounds.length) {
      const zb = lay.zones.getBounds();
      map.fitBounds(zb.isValid() ? zb : L().latLngBounds(bounds), { padding: [30, 30], maxZoom: 16 });
      fitted = true;
    }
  }

  // ---- panel ---------------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function duration(ms) {
    if (ms === null || isNaN(ms)) return "–";
    const neg = ms < 0;
    let s = Math.round(Math.abs(ms) / 1000);
    const m = Math.floor(s / 60);
    s -= m * 60;
    return (neg ? "-" : "") + (m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`);
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return "–";
    return typeof v === "number" ? `${Math.round(v * 10) / 10}${unit || ""}` : String(v);
  }

  function dl(target, pairs) {
    target.replaceChildren();
    for (const [k, v] of pairs) { target.append(el("dt", k), el("dd", v)); }
  }

  function drawPanel() {
    const now = model.now ? model.now.getTime() : Date.now();
    const rows = $("alerts");
    rows.replaceChildren();
    const alerts = [...model.alerts.values()].map((a) => a.alert)
      .sort((a, b) => (a.vehicle_id || "").localeCompare(b.vehicle_id || ""));
    for (const a of alerts) {
      const tr = el("tr");
      tr.dataset.alertId = a.alert_id;
      tr.append(el("td", a.vehicle_id || a.alert_id));
      const kind = el("td");
      kind.append(el("span", a.kind === "on_scene" ? "on scene" : "approaching", "kind " + a.kind));
      tr.append(kind, el("td", a.version), el("td", duration(now - Date.parse(a.started_at))),
                el("td", duration(Date.parse(a.expires_at) - now)));
      rows.append(tr);
    }
    $("alert-count").textContent = String(alerts.length);
    $("no-alerts").hidden = alerts.length > 0;
    drawDeliveries(alerts);
    const f = model.figures || {};
    dl($("figures"), [
      ["positions / s", fmt(f.positions_per_s)],
      ["consumer lag" + (ev.mode === "live" ? " (this worker)" : ""), fmt(f.lag)],
      ["deliveries p50", fmt(f.delivery_p50_ms, " ms")],
      ["deliveries p99", fmt(f.delivery_p99_ms, " ms")],
    ]);
    const rej = Object.entries(model.rejected || {}).sort();
    dl($("rejected"), rej.length ? rej : [["none", "0"]]);
    $("clock").textContent = model.now ? model.now.toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
  }

  function drawDeliveries(alerts) {
    const box = $("deliveries");
    box.replaceChildren();
    const cols = info.delivery_columns || ["delivered", "pending", "failed", "expired"];
    let any = false;
    for (const a of alerts) {
      const per = model.deliveries.get(a.alert_id) || {};
      const partners = Object.keys(per).sort();
      if (!partners.length) continue;
      any = true;
      const t = el("table", null, "delivery");
      t.dataset.alertId = a.alert_id;
      t.append(el("caption", `${a.vehicle_id || a.alert_id} · ${a.kind.replace("_", " ")} v${a.version}`));
      const head = el("tr");
      head.append(el("th", "partner"), ...cols.map((c) => el("th", c)));
      t.append(head);
      for (const p of partners) {
        const tr = el("tr");
        tr.dataset.partner = p;
        tr.append(el("td", p), ...cols.map((c) => el("td", per[p][c] || 0)));
        t.append(tr);
      }
      box.append(t);
    }
    if (!any) box.append(el("p", "No deliveries for the active alerts.", "muted"));
  }

  function render() {
    drawMap();
    drawPanel();
  }

  // ---- live: Server-Sent Events ----------------------------------------------------------
  let source = null;
  function connect() {
    const q = ev.lastEventId ? "?last_event_id=" + encodeURIComponent(ev.lastEventId) : "";
    source = new EventSource(api("events") + q);
    source.onopen = () => { ev.connections += 1; setConn("live", "ok"); };
    const on = (name, fn) => source.addEventListener(name, (e) => {
      if (e.lastEventId) ev.lastEventId = e.lastEventId;
      ev.received = (ev.received || 0) + 1;
      fn(JSON.parse(e.data));
      render();
    });
    on("snapshot", (d) => { applySnapshot(d); ev.snapshots += 1; ev.ready = true; });
    for (const name of ["alert", "remove", "route", "delivery", "figures"]) {
      on(name, (d) => applyDelta(name, d));
    }
    source.onerror = () => {
      setConn("reconnecting…", "bad");
      if (source.readyState === EventSource.CLOSED) {  // the browser gave up: we do not
        source.close();
        setTimeout(retry, 2000);
      }
    };
  }

  async function retry() {
    try {
      if (!(await signedIn())) { showLogin("Your session ended; sign in again."); return; }
    } catch (e) {
      setTimeout(retry, 2000);
      return;
    }
    connect();
  }

  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = "conn " + (cls || "");
  }

  // ---- player ------------------------------------------------------------------------------
  const player = { t: 0, start: 0, end: 0, playing: false, speed: 10, wall: 0, busy: false,
                   pending: null, wired: false };
  ev.player = player;

  // Signing in again after a session ended runs start() again: the controls are wired once
  // (a second click handler on Play undid every click) and the replay stays where it was.
  function setupPlayer() {
    $("player").hidden = false;
    if (player.wired) { loadFrame(); return; }
    player.wired = true;
    player.start = Date.parse(info.start);
    player.end = Date.parse(info.end);
    player.t = player.start;
    const seek = $("seek");
    seek.min = "0";
    // whole seconds, the last step at or past the end: a bar that stopped short of it (a
    // duration of 440.3 s had its last step at 440 s) never showed what the last message did
    seek.max = String(Math.ceil((player.end - player.start) / 1000));
    seek.value = "0";
    $("t-start").textContent = info.start.slice(11, 19);
    $("t-end").textContent = info.end.slice(11, 19);
    seek.addEventListener("input", () => {
      player.t = Math.min(player.start + Number(seek.value) * 1000, player.end);
      loadFrame();
    });
    $("speed").addEventListener("change", () => { player.speed = Number($("speed").value); });
    player.speed = Number($("speed").value);
    $("play").addEventListener("click", () => (player.playing ? pause() : play()));
    const lt = info.lead_time || {};
    dl($("lead"), [
      ["median", fmt(lt.lead_time_median_s, " s")], ["p10", fmt(lt.lead_time_p10_s, " s")],
      ["warned ≥ 15 s", lt.frac_warned_15s === undefined ? "–" : `${Math.round(lt.frac_warned_15s * 1000) / 10} %`],
      ["points", fmt(lt.points)], ["alerts", fmt(info.alerts_total)],
      ["zone area-time", fmt(lt.zone_area_km2_s, " km²·s")],
    ]);
    setConn("recorded", "ok");
    setInterval(tick, 200);
    loadFrame();
  }

  function play() {
    if (player.t >= player.end) player.t = player.start;
    player.playing = true;
    player.wall = performance.now();
    $("play").textContent = "Pause";
  }

  function pause() {
    player.playing = false;
    $("play").textContent = "Play";
  }

  function tick() {
    if (!player.playing) return;
    const now = performance.now();
    player.t += (now - player.wall) * player.speed;
    player.wall = now;
    if (player.t >= player.end) { player.t = player.end; pause(); }
    const seek = $("seek");
    seek.value = player.t >= player.end ? seek.max
      : String(Math.round((player.t - player.start) / 1000));
    loadFrame();
  }

  async function loadFrame() {
    if (player.busy) { player.pending = player.t; return; }
    player.busy = true;
    try {
      const t = new Date(player.t).toISOString();
      const r = await fetch(api("frame") + "?t=" + encodeURIComponent(t),
                            { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) {  // the clock stops behind the login form, not runs on
        pause();
        showLogin("Your session ended; sign in again.");
        return;
      }
      const frame = await r.json();
      applySnapshot(frame);
      model.now = new Date(player.t);
      ev.frames += 1;
      ev.frameAt = frame.at;
      ev.ready = true;
      render();
    } finally {
      player.busy = false;
    }
    if (player.pending !== null) { player.pending = null; loadFrame(); }
  }

  // ---- start -----------------------------------------------------------------------------
  async function start() {
    const r = await fetch(api("info"), { credentials: "same-origin", cache: "no-store" });
    if (r.status !== 200) { showLogin(""); return; }
    info = await r.json();
    ev.mode = info.mode;
    ev.info = info;
    $("login").hidden = true;
    $("app").hidden = false;
    $("mode").textContent = info.mode === "player" ? "incident player" : "live";
    $("title").textContent = info.title || "";
    $("deliveries-title").textContent = info.mode === "player"
      ? "Deliveries per partner (queued by fan-out; a replay sends nothing)"
      : "Deliveries per partner (alert versions)";
    if (!map) setupMap();
    if (info.mode === "player") { setupPlayer(); } else { connect(); }
  }

  window.addEventListener("DOMContentLoaded", async () => {
    if (await signedIn()) { start(); } else { showLogin(""); }
  });
})();
