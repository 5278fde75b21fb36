// katcp-web page script. Every value from the device enters the document as text
// (textContent, attribute values): never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const SPARK_W = 100, SPARK_H = 20, HISTORY = 60;

const state = {
  control: false,
  rows: new Map(),          // sensor name -> row
  sortKey: "name",
  sortDir: 1,
  synced: false,
  lastUpdate: null,
  requestId: 0,
  outputs: new Map(),       // request id -> output element
  socket: null,
  retryDelay: 500,
};

function $(id) { return document.getElementById(id); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace("Z", "");
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) {
    return String(Math.round(value * 1e6) / 1e6);
  }
  return String(value);
}

// -- sensors table -----------------------------------------------------------------------

function makeRow(sensor) {
  const tr = el("tr");
  tr.dataset.name = sensor.name;
  const cells = {};
  for (const key of ["name", "value", "units", "status", "timestamp", "spark", "description"]) {
    cells[key] = el("td", key);
    tr.appendChild(cells[key]);
  }
  cells.name.textContent = sensor.name;
  cells.units.textContent = sensor.units;
  cells.description.textContent = sensor.description;
  const row = { sensor, tr, cells, reading: null, history: sensor.history.slice(-HISTORY),
                polyline: null };
  if (sensor.type === "integer" || sensor.type === "float") {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("viewBox", "0 0 " + SPARK_W + " " + SPARK_H);
    svg.setAttribute("preserveAspectRatio", "none");
    row.polyline = document.createElementNS(SVG_NS, "polyline");
    svg.appendChild(row.polyline);
    cells.spark.appendChild(svg);
  }
  setReading(row, sensor.reading);
  drawSparkline(row);
  return row;
}

function setReading(row, reading) {
  const [timestamp, status, value] = reading;
  row.reading = reading;
  row.cells.value.textContent = formatValue(value);
  row.cells.status.textContent = status;
  row.cells.status.className = "status status-" + status;
  row.cells.timestamp.textContent = formatTime(timestamp);
}

function drawSparkline(row) {
  if (!row.polyline) return;
  const points = row.history;
  if (points.length < 2) { row.polyline.setAttribute("points", ""); return; }
  const values = points.map((p) => p[1]);
  const low = Math.min(...values), high = Math.max(...values);
  const t0 = points[0][0], span = (points[points.length - 1][0] - t0) || 1;
  const range = (high - low) || 1;
  const coords = points.map((p) => {
    const x = ((p[0] - t0) / span) * SPARK_W;
    const y = SPARK_H - 1 - ((p[1] - low) / range) * (SPARK_H - 2);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  row.polyline.setAttribute("points", coords.join(" "));
}

function sortValue(row, key) {
  switch (key) {
    case "value": return row.reading ? row.reading[2] : "";
    case "status": return row.reading ? row.reading[1] : "";
    case "timestamp": return row.reading ? row.reading[0] : 0;
    default: return row.sensor[key];
  }
}

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

function sortRows() {
  const rows = Array.from(state.rows.values());
  rows.sort((a, b) => state.sortDir * compare(sortValue(a, state.sortKey),
                                              sortValue(b, state.sortKey))
                      || compare(a.sensor.name, b.sensor.name));
  const tbody = document.querySelector("#sensor-table tbody");
  for (const row of rows) tbody.appendChild(row.tr);
  for (const th of document.querySelectorAll("#sensor-table th")) {
    th.classList.toggle("sort-asc", th.dataset.sort === state.sortKey && state.sortDir > 0);
    th.classList.toggle("sort-desc", th.dataset.sort === state.sortKey && state.sortDir < 0);
  }
}

function applyFilter() {
  const text = $("filter").value.trim().toLowerCase();
  let shown = 0;
  for (const row of state.rows.values()) {
    const visible = row.sensor.name.toLowerCase().includes(text);
    row.tr.hidden = !visible;
    if (visible) shown += 1;
  }
  $("sensor-count").textContent = text ? "(" + shown + " of " + state.rows.size + ")"
                                       : "(" + state.rows.size + ")";
}

function showSensors(sensors) {
  const tbody = document.querySelector("#sensor-table tbody");
  const old = state.rows;
  state.rows = new Map();
  tbody.replaceChildren();
  for (const sensor of sensors) {
    // Keep sparklines of sensors that survive a resync.
    const previous = old.get(sensor.name);
    if (previous && sensor.history.length === 0) sensor.history = previous.history;
    const row = makeRow(sensor);
    state.rows.set(sensor.name, row);
    tbody.appendChild(row.tr);
  }
  sortRows();
  applyFilter();
}

function applyReadings(readings) {
  let reorder = false;
  for (const [name, list] of Object.entries(readings)) {
    const row = state.rows.get(name);
    if (!row) continue;
    setReading(row, list[list.length - 1]);
    if (row.polyline) {
      for (const [timestamp, , value] of list) {
        if (typeof value === "number") row.history.push([timestamp, value]);
      }
      if (row.history.length > HISTORY) row.history.splice(0, row.history.length - HISTORY);
      drawSparkline(row);
    }
    reorder = true;
  }
  if (reorder && state.sortKey !== "name" && state.sortKey !== "units"
      && state.sortKey !== "description") sortRows();
}

// -- device, connection and last update -------------------------------------------------

function showConnection(connection) {
  const box = $("connection");
  box.className = "conn conn-" + connection.state;
  $("device-address").textContent = connection.address;
  $("conn-state").textContent = connection.state;
  let detail = "since " + formatTime(connection.since).slice(11, 19) + " UTC";
  if (connection.reconnects > 0) {
    detail += ", reconnected " + connection.reconnects +
              (connection.reconnects === 1 ? " time" : " times");
  }
  $("conn-detail").textContent = "(" + detail + ")";
  state.synced = connection.state === "synced";
  for (const row of state.rows.values()) row.tr.classList.toggle("stale", !state.synced);
}

function showIdentity(identity) {
  const box = $("identity");
  box.replaceChildren();
  if (identity.versions.length === 0) { box.textContent = "unknown"; }
  for (const fields of identity.versions) {
    box.appendChild(el("div", "version", fields.join(" ")));
  }
  if (identity.protocol) {
    $("protocol").textContent = "KATCP " + identity.protocol +
      (identity.flags.length ? " (" + identity.flags.join(", ") + ")" : "");
  } else {
    $("protocol").textContent = "unknown";
  }
}

function showLastUpdate() {
  if (state.lastUpdate === null) return;
  const ago = Math.max(0, Date.now() / 1000 - state.lastUpdate);
  $("last-update").textContent = formatTime(state.lastUpdate) + " UTC (" +
    (ago < 1 ? "just now" : Math.round(ago) + " s ago") + ")";
}

// -- requests -----------------------------------------------------------------------------

function splitArguments(text) {
  // Whitespace separates arguments; "double quotes" keep spaces inside one.
  const args = [];
  const re = /"([^"]*)"|(\S+)/g;
  let match;
  while ((match = re.exec(text)) !== null) {
    args.push(match[1] !== undefined ? match[1] : match[2]);
  }
  return args;
}

function messageText(message) {
  return message.mtype + message.name + (message.arguments.length ? " " : "") +
    message.arguments.join(" ");
}

function showRequests(requests) {
  const list = $("request-list");
  list.replaceChildren();
  state.outputs.clear();
  $("control-note").textContent = state.control
    ? "Control enabled: requests are sent to the device."
    : "Watch only (katcp-web runs without --control): requests cannot be sent from here.";
  for (const request of requests) {
    const box = el("div", "request");
    box.dataset.request = request.name;
    box.appendChild(el("div", "request-name", "?" + request.name));
    // The first line of the help is its summary; the rest opens on demand.
    const [summary, ...more] = request.description.split("\n");
    box.appendChild(el("div", "request-help", summary));
    const rest = more.join("\n").trim();
    if (rest) {
      const details = el("details", "request-more");
      details.append(el("summary", null, "more"), el("div", "request-help", rest));
      box.appendChild(details);
    }
    if (state.control) {
      const form = el("form");
      const input = el("input");
      input.type = "text";
      input.name = "arguments";
      input.placeholder = "arguments";
      input.setAttribute("aria-label", "arguments of ?" + request.name);
      const button = el("button", null, "Send");
      button.type = "submit";
      const output = el("div", "request-output");
      form.append(input, button);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sendRequest(request.name, splitArguments(input.value), output);
      });
      box.append(form, output);
    }
    list.appendChild(box);
  }
}

function sendRequest(name, args, output) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    output.replaceChildren(el("div", "reply reply-fail", "not connected to katcp-web"));
    return;
  }
  state.requestId += 1;
  state.outputs.set(state.requestId, output);
  output.replaceChildren(el("div", "pending", "?" + name + " sent..."));
  state.socket.send(JSON.stringify({ type: "request", id: state.requestId, name,
                                     arguments: args }));
}

function showReply(message) {
  const output = state.outputs.get(message.id);
  if (!output) return;
  state.outputs.delete(message.id);
  output.replaceChildren();
  if (message.type === "reply") {
    for (const inform of message.informs) output.appendChild(el("div", "inform",
                                                                 messageText(inform)));
    output.appendChild(el("div", "reply " + (message.ok ? "reply-ok" : "reply-fail"),
                          messageText(message.reply)));
  } else {
    output.appendChild(el("div", "reply reply-fail", message.reason || message.error));
  }
}

// -- websocket ------------------------------------------------------------------------------

const handlers = {
  page(message) { state.control = message.control; },
  snapshot(message) {
    showSensors(message.sensors);
    showRequests(message.requests);
    showIdentity(message.identity);
    showConnection(message.connection);
    if (message.last_update !== null) { state.lastUpdate = message.last_update; showLastUpdate(); }
  },
  connection(message) { showConnection(message.connection); },
  readings(message) {
    applyReadings(message.readings);
    state.lastUpdate = message.last_update;
    showLastUpdate();
  },
  reply: showReply,
  refused: showReply,
  error: showReply,
};

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/ws");
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.retryDelay = 500;
    $("page-link").className = "conn";
    $("page-link").textContent = "";
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    const handler = handlers[message.type];
    if (handler) handler(message);
  });
  socket.addEventListener("close", () => {
    $("page-link").className = "conn conn-page-lost";
    $("page-link").textContent = "katcp-web unreachable, retrying";
    for (const row of state.rows.values()) row.tr.classList.add("stale");
    setTimeout(connect, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, 10000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", applyFilter);
  for (const th of document.querySelectorAll("#sensor-table th.sortable")) {
    th.addEventListener("click", () => {
      if (state.sortKey === th.dataset.sort) state.sortDir = -state.sortDir;
      else { state.sortKey = th.dataset.sort; state.sortDir = 1; }
      sortRows();
    });
  }
  setInterval(showLastUpdate, 1000);
  connect();
});
