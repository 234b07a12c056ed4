// The Atrium dashboard: building summary, room tiles, a room's history, open alerts
// and the live alert feed, all from the public API through the gateway.
import { h, $, label, num, withUnit, unitOf, clock, when, ago } from './dom.js';
import { ApiError, keyStore, makeApi, qs } from './api.js';
import { LiveFeed } from './feed.js';
import { drawChart } from './chart.js';

const params = new URLSearchParams(location.search);
const ROOMS_EVERY = Math.max(1000, Number(params.get('poll')) || 5000);
const SUMMARY_EVERY = 15000;
const ALERTS_EVERY = 30000;
const CHART_EVERY = 30000;
const FEED_MAX = 50;

let key = keyStore.get();
const api = makeApi(() => key);
const airText = { good: 'good', moderate: 'moderate', poor: 'poor', bad: 'bad' };
const sevRank = { critical: 3, warning: 2, info: 1 };
const spans = { '1m': 2 * 3600e3, '5m': 12 * 3600e3, '15m': 48 * 3600e3, '1h': 7 * 86400e3, '1d': 90 * 86400e3 };

// Poller runs fn now and then every ms after it finishes; while the page is hidden
// it waits, and runs again as soon as the page is seen.
class Poller {
  constructor(fn, ms) { this.fn = fn; this.ms = ms; this.timer = 0; this.on = false; this.busy = null; this.again = false; }
  start() { this.on = true; this.now(); }
  stop() { this.on = false; clearTimeout(this.timer); }
  // now runs fn at once (or right after the run in progress) and resolves when done.
  async now() {
    clearTimeout(this.timer);
    if (!this.on) return;
    if (this.busy) { this.again = true; return this.busy; }
    if (document.hidden) { this.timer = setTimeout(() => this.now(), this.ms); return; }
    let wait = this.ms;
    this.busy = (async () => {
      try {
        await this.fn();
      } catch (e) {
        if (e instanceof ApiError && e.status === 429) wait = Math.max(wait, 1000 * (Number(e.retryAfter) || 5));
      }
    })();
    await this.busy;
    this.busy = null;
    if (this.again) { this.again = false; return this.now(); }
    if (this.on) this.timer = setTimeout(() => this.now(), wait);
  }
}

// ---------- status line ----------

const health = { rooms: null, feed: 'connecting', updated: null };

function renderStatus() {
  const dot = $('status-dot');
  const text = $('status-text');
  const parts = [];
  let cls = 'live';
  if (health.rooms === false) { parts.push('Gateway not answering'); cls = 'down'; }
  else if (health.updated) parts.push('Updated ' + clock(health.updated));
  if (health.feed === 'open') parts.push('live feed on');
  else if (health.feed === 'connecting') { parts.push('live feed connecting…'); if (cls === 'live') cls = 'warn'; }
  else { parts.push('live feed reconnecting…'); if (cls === 'live') cls = 'warn'; }
  dot.className = 'dot ' + cls;
  text.textContent = parts.join(' · ');
}

// ---------- failures ----------

function failed(e, where, el) {
  if (e instanceof ApiError && e.status === 401) {
    signOut('The API key was refused. Paste a valid key.');
    return;
  }
  if (el) el.textContent = e instanceof ApiError ? e.explain(where) : `${where}: ${e.message}`;
  throw e;
}

// ---------- the building summary ----------

function stat(labelText, value, sub, extra = {}) {
  return h('div', { class: 'stat', ...extra },
    h('span', { class: 'label' }, labelText),
    h('span', { class: 'value' }, value),
    sub ? h('span', { class: 'sub' }, sub) : null);
}

async function pollSummary() {
  const box = $('summary');
  let s;
  try {
    s = await api.get('/analytics/summary');
  } catch (e) {
    if (e instanceof ApiError && e.status !== 401) {
      box.replaceChildren(h('p', { class: 'note muted', 'data-summary': 'unavailable' },
        'Building analytics are not available right now',
        e.status ? ` (${e.status}).` : '.', ' Rooms and alerts below are live.'));
      return;
    }
    failed(e, 'Analytics');
  }
  const means = s.means || {};
  const cards = [
    stat('Sensors online', `${s.sensors?.online ?? '—'} / ${s.sensors?.total ?? '—'}`,
      s.sensors?.offline ? `${s.sensors.offline} offline` : 'all reporting'),
    stat('Rooms', String(s.rooms ?? '—'), s.attention?.length ? `${s.attention.length} need attention` : 'all fine'),
    stat('Readings, 1 h', num(s.readings?.last_hour, 'count'), `${num(s.readings?.last_day, 'count')} in 24 h`),
    stat('Ingest rate', num(s.ingest_rate_per_s), 'readings / s'),
    stat('Open alerts', String(s.active_alerts ?? 0), null, s.active_alerts ? { class: 'stat alerting' } : {}),
  ];
  for (const [t, name] of [['temperature', 'Mean temperature'], ['humidity', 'Mean humidity'], ['co2', 'Mean CO₂']]) {
    if (means[t]) cards.push(stat(name, withUnit(means[t].mean, t), 'last hour'));
  }
  box.replaceChildren(...cards);
  box.dataset.summary = 'ok';
}

// ---------- room tiles ----------

const tiles = new Map(); // room id → elements
let roomNames = new Map();

function makeTile(room) {
  const link = h('a', { href: '#/rooms/' + encodeURIComponent(room.id) });
  const el = {
    root: h('article', { class: 'tile', 'data-room-id': room.id }),
    link,
    where: h('p', { class: 'where' }),
    temp: h('div', { class: 'big', 'data-metric': 'temperature' }),
    hum: h('dd', { 'data-metric': 'humidity' }),
    co2: h('dd', { 'data-metric': 'co2' }),
    occ: h('dd', { 'data-metric': 'occupancy' }),
    comfort: h('dd', { 'data-metric': 'comfort' }),
    alerts: h('p', { class: 'tile-alerts', 'data-alerts': '0' }),
  };
  el.root.append(h('h3', {}, link), el.where, el.temp,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Humidity'), el.hum,
      h('dt', {}, 'CO₂'), el.co2,
      h('dt', {}, 'Occupancy'), el.occ,
      h('dt', {}, 'Comfort'), el.comfort),
    el.alerts);
  return el;
}

function updateTile(el, room) {
  const m = room.metrics || {};
  el.link.textContent = room.name || room.id;
  const where = [];
  if (room.name && room.name !== room.id) where.push(room.id);
  if (room.floor !== null && room.floor !== undefined) where.push('floor ' + room.floor);
  if (room.building) where.push(room.building);
  where.push(`${room.sensor_count} sensor${room.sensor_count === 1 ? '' : 's'}`);
  el.where.textContent = where.join(' · ');

  if ('temperature' in m) {
    el.temp.replaceChildren(num(m.temperature, 'temperature'), h('span', { class: 'unit' }, '\u202f°C'));
  } else {
    el.temp.replaceChildren(h('span', { class: 'unit' }, 'no temperature'));
  }
  el.hum.textContent = 'humidity' in m ? withUnit(m.humidity, 'humidity') : '—';

  const air = room.air_quality || 'none';
  el.root.className = 'tile air-' + air + (Object.keys(m).length ? '' : ' stale');
  el.co2.replaceChildren('co2' in m
    ? h('span', { class: 'chip ' + air, title: 'Air quality: ' + (airText[air] || 'unknown') },
      withUnit(m.co2, 'co2'), ' · ', airText[air] || 'unknown')
    : '—');

  const cap = room.capacity;
  el.occ.title = '';
  if ('occupancy' in m) {
    const n = Math.round(m.occupancy);
    if (cap) {
      el.occ.replaceChildren(h('span', { class: 'occ' },
        `${n} / ${cap}`,
        h('meter', { min: 0, max: cap, low: cap * 0.7, high: cap * 0.95, optimum: cap * 0.4, value: Math.min(n, cap), 'aria-label': `${n} of ${cap} places taken` })));
    } else {
      el.occ.textContent = `${n} ${n === 1 ? 'person' : 'people'}`;
    }
  } else if ((room.occupied === true || room.occupied === false) && room.occupied_source === 'estimate') {
    // Estimated from co2, temperature, humidity and light: said as such.
    const p = Math.round(100 * (room.occupied_probability ?? 0));
    el.occ.textContent = room.occupied ? `likely occupied (estimate ${p} %)` : `likely empty (estimate ${p} %)`;
    el.occ.title = 'no occupancy sensor: estimated from the room\'s other sensors';
  } else if (room.occupied === true || room.occupied === false) {
    el.occ.textContent = room.occupied ? 'occupied' : 'empty';
  } else {
    el.occ.textContent = cap ? `— / ${cap}` : '—';
  }

  markAlerts(el, room.id);
  const comfort = room.comfort || 'unknown';
  el.comfort.replaceChildren(h('span', { class: 'chip ' + comfort },
    comfort === 'ok' ? 'comfortable' : comfort === 'uncomfortable' ? 'uncomfortable' : 'unknown'));
}

async function pollRooms() {
  let page;
  try {
    page = await api.get('/rooms' + qs({ limit: 1000 }));
    health.rooms = true;
    health.updated = new Date();
    $('rooms-error').textContent = '';
  } catch (e) {
    if (e instanceof ApiError && e.status === 0) health.rooms = false;
    renderStatus();
    failed(e, 'Rooms', $('rooms-error'));
  }
  renderStatus();
  const box = $('rooms');
  const seen = new Set();
  roomNames = new Map();
  const ordered = [];
  for (const room of page.rooms || []) {
    seen.add(room.id);
    roomNames.set(room.id, room.name || room.id);
    let el = tiles.get(room.id);
    if (!el) { el = makeTile(room); tiles.set(room.id, el); }
    updateTile(el, room);
    ordered.push(el.root);
  }
  for (const [id, el] of tiles) if (!seen.has(id)) { el.root.remove(); tiles.delete(id); }
  // Re-append in order only when it changed, so keyboard focus stays put.
  if (ordered.some((n, i) => box.children[i] !== n) || box.children.length !== ordered.length) {
    box.replaceChildren(...ordered);
  }
  if (!ordered.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No rooms yet: rooms appear when their sensors send readings.'));
  }
  $('rooms-updated').textContent = `${ordered.length} room${ordered.length === 1 ? '' : 's'} · refreshed every ${ROOMS_EVERY / 1000} s`;
}

// ---------- alerts ----------

let openByRoom = new Map(); // room id → {n, worst} of its unacknowledged alerts

function markAlerts(el, id) {
  const o = openByRoom.get(id);
  el.alerts.dataset.alerts = String(o ? o.n : 0);
  el.alerts.className = 'tile-alerts' + (o ? ' ' + o.worst : '');
  el.alerts.textContent = o ? `⚠ ${o.n} open alert${o.n === 1 ? '' : 's'}` : '';
}

function alertText(a) {
  return a.message || `${label(a.type)} ${withUnit(a.value, a.type)}`;
}

function roomName(id) { return roomNames.get(id) || id; }

async function acknowledge(a, button) {
  button.disabled = true;
  button.textContent = 'Acknowledging…';
  try {
    await api.post(`/alerts/${encodeURIComponent(a.id)}/ack`);
    $('alerts-error').textContent = '';
    await alertsPoller.now();
  } catch (e) {
    button.disabled = false;
    button.textContent = 'Acknowledge';
    try { failed(e, 'Acknowledge', $('alerts-error')); } catch { /* shown */ }
  }
}

async function pollAlerts() {
  let lists;
  try {
    lists = await Promise.all(['active', 'acknowledged'].map((st) => api.get('/alerts' + qs({ state: st, limit: 100 }))));
    $('alerts-error').textContent = '';
  } catch (e) {
    failed(e, 'Alerts', $('alerts-error'));
  }
  // An alert can be in both lists (the service may count acknowledged alerts as active).
  const all = [...new Map(lists.flatMap((l) => l.alerts || []).map((a) => [a.id, a])).values()];
  all.sort((x, y) => (x.state === 'active' ? 0 : 1) - (y.state === 'active' ? 0 : 1) ||
    (sevRank[y.severity] || 0) - (sevRank[x.severity] || 0) || String(y.raised_at).localeCompare(String(x.raised_at)));
  const active = all.filter((a) => a.state === 'active').length;
  openByRoom = new Map();
  for (const a of all) {
    if (a.state !== 'active') continue;
    const o = openByRoom.get(a.room_id) || { n: 0, worst: a.severity };
    o.n++;
    if ((sevRank[a.severity] || 0) > (sevRank[o.worst] || 0)) o.worst = a.severity;
    openByRoom.set(a.room_id, o);
  }
  for (const [id, el] of tiles) markAlerts(el, id);
  $('alerts-count').textContent = active ? String(active) : '';
  const box = $('alerts');
  if (!all.length) {
    box.replaceChildren(h('li', { class: 'empty' }, 'No open alerts. All quiet.'));
    return;
  }
  box.replaceChildren(...all.map((a) => {
    const actions = h('div', { class: 'actions' }, h('span', { class: 'chip ' + a.severity }, a.severity));
    if (a.state === 'active') {
      const b = h('button', { type: 'button', 'aria-label': `Acknowledge ${a.severity} alert: ${alertText(a)} in ${roomName(a.room_id)}` }, 'Acknowledge');
      b.addEventListener('click', () => acknowledge(a, b));
      actions.append(b);
    } else {
      actions.append(h('span', { class: 'chip acknowledged' }, 'acknowledged'));
    }
    return h('li', { class: a.severity, 'data-alert-id': a.id, 'data-state': a.state },
      h('span', { class: 'what' }, alertText(a)),
      h('span', { class: 'meta' },
        h('a', { href: '#/rooms/' + encodeURIComponent(a.room_id) }, roomName(a.room_id)),
        a.sensor_id ? ` · ${a.sensor_id}` : '', ' · raised ',
        h('time', { datetime: a.raised_at, title: when(a.raised_at) }, ago(a.raised_at))),
      actions);
  }));
}

// ---------- live feed ----------

const verbs = { 'alert.raised': 'raised', 'alert.acknowledged': 'acknowledged', 'alert.resolved': 'resolved' };

function onPush(p) {
  const box = $('feed');
  box.querySelector('.empty')?.remove();
  let text;
  if (p.alert) {
    text = `${verbs[p.kind] || p.kind}: ${alertText(p.alert)}`;
  } else if (p.notification) {
    text = `${p.notification.title}${p.notification.message ? ' — ' + p.notification.message : ''}`;
  } else {
    text = p.kind;
  }
  const room = p.room_id || p.alert?.room_id;
  const li = h('li', { class: 'fresh', 'data-kind': p.kind, 'data-alert-id': p.alert?.id },
    h('time', { datetime: p.time }, clock(p.time || Date.now())),
    h('span', { class: 'chip ' + (p.severity || 'info') }, p.severity || 'info'), ' ',
    room ? h('a', { href: '#/rooms/' + encodeURIComponent(room) }, roomName(room)) : null,
    room ? ' · ' : '', text);
  box.prepend(li);
  while (box.children.length > FEED_MAX) box.lastElementChild.remove();
  if (String(p.kind).startsWith('alert.')) {
    alertsPoller.now();
    summaryPoller.now();
  }
}

function onFeedState(state, retryIn) {
  health.feed = state;
  $('feed-state').textContent = state === 'open' ? 'Connected: new alerts appear here as they happen.'
    : state === 'connecting' ? 'Connecting…' : `Disconnected; retrying in ${retryIn} s.`;
  renderStatus();
}

const feed = new LiveFeed({ getKey: () => key, onMessage: onPush, onState: onFeedState });

// ---------- room page ----------

let roomId = '';
let roomCtl = null;

async function pollRoom() {
  if (!roomId) return;
  const id = roomId;
  let room;
  let metrics;
  try {
    [room, metrics] = await Promise.all([
      api.get('/rooms/' + encodeURIComponent(id)),
      api.get('/rooms/' + encodeURIComponent(id) + '/metrics'),
    ]);
    $('room-error').textContent = '';
  } catch (e) {
    failed(e, 'Room ' + id, $('room-error'));
  }
  if (id !== roomId) return;
  $('room-title').textContent = room.name || room.id;
  document.title = `${room.name || room.id} — Atrium`;
  const meta = [];
  if (room.name && room.name !== room.id) meta.push(room.id);
  if (room.floor !== null && room.floor !== undefined) meta.push('floor ' + room.floor);
  if (room.capacity) meta.push('capacity ' + room.capacity);
  if (room.area_m2) meta.push(num(room.area_m2) + ' m²');
  meta.push(`${room.sensor_count} sensor${room.sensor_count === 1 ? '' : 's'}`);
  meta.push('updated ' + clock(metrics.at));
  $('room-meta').textContent = meta.join(' · ');

  const types = Object.keys(metrics.metrics || {}).sort((a, b) => {
    const order = ['temperature', 'humidity', 'co2', 'occupancy'];
    const ia = order.indexOf(a) < 0 ? 99 : order.indexOf(a);
    const ib = order.indexOf(b) < 0 ? 99 : order.indexOf(b);
    return ia - ib || a.localeCompare(b);
  });
  const cards = [];
  if (metrics.air_quality) {
    cards.push(h('div', { class: 'metric' }, h('div', { class: 'label' }, 'Air quality'),
      h('div', { class: 'value' }, h('span', { class: 'chip ' + metrics.air_quality }, metrics.air_quality))));
  }
  const c = metrics.comfort || {};
  cards.push(h('div', { class: 'metric' }, h('div', { class: 'label' }, 'Comfort'),
    h('div', { class: 'value' }, h('span', { class: 'chip ' + (c.status || 'unknown') }, c.status === 'ok' ? 'comfortable' : c.status || 'unknown')),
    c.issues?.length ? h('div', { class: 'sub' }, c.issues.map((i) => i.replace('_', ' ')).join(', ')) : null));
  for (const t of types) {
    const tm = metrics.metrics[t];
    if (t === 'occupancy' && room.capacity) {
      const ratio = metrics.occupancy_ratio ?? tm.value / room.capacity;
      cards.push(h('div', { class: 'metric', 'data-metric': t },
        h('div', { class: 'label' }, 'Occupancy'),
        h('div', { class: 'value' }, `${Math.round(tm.value)} / ${room.capacity}`),
        h('div', { class: 'sub' }, `${Math.round(ratio * 100)}\u202f% of capacity`)));
      continue;
    }
    cards.push(h('div', { class: 'metric', 'data-metric': t },
      h('div', { class: 'label' }, label(t)),
      h('div', { class: 'value' }, withUnit(tm.value, t, tm.unit)),
      h('div', { class: 'sub' }, tm.mean_5m !== null && tm.mean_5m !== undefined
        ? `5 min: mean ${num(tm.mean_5m, t)}, ${num(tm.min_5m, t)}–${num(tm.max_5m, t)}` : 'no readings in 5 min')));
  }
  $('room-metrics').replaceChildren(...cards);

  const sel = $('chart-type');
  const current = sel.value;
  if ([...sel.options].map((o) => o.value).join() !== types.join()) {
    sel.replaceChildren(...types.map((t) => h('option', { value: t }, label(t))));
    sel.value = types.includes(current) ? current : (types.includes('temperature') ? 'temperature' : types[0] || '');
    if (sel.value !== current) chartPoller.now();
  }
}

let lastChart = null;

async function pollChart() {
  const type = $('chart-type').value;
  const bucket = $('chart-bucket').value;
  if (!roomId || !type) return;
  const id = roomId;
  const to = new Date();
  const from = new Date(to.getTime() - spans[bucket]);
  let page;
  try {
    page = await api.get('/rooms/' + encodeURIComponent(id) + '/history' + qs({ type, bucket, from: from.toISOString(), to: to.toISOString(), limit: 1000 }));
  } catch (e) {
    failed(e, 'History', $('room-error'));
  }
  if (id !== roomId || type !== $('chart-type').value || bucket !== $('chart-bucket').value) return;
  const unit = unitOf(type);
  lastChart = { type, bucket, from: page.from, to: page.to, buckets: page.buckets || [] };
  $('chart-title').textContent = `History: ${label(type)}`;
  redrawChart();
  const rows = lastChart.buckets.slice().reverse().map((b) => h('tr', {},
    h('td', {}, when(b.start)), h('td', {}, num(b.min, type)), h('td', {}, num(b.mean, type)), h('td', {}, num(b.max, type)), h('td', {}, String(b.count))));
  $('chart-table').replaceChildren(rows.length ? h('div', {}, h('table', {},
    h('caption', { class: 'muted' }, `${label(type)}${unit ? ' (' + unit + ')' : ''} per ${bucket}`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Bucket'), h('th', { scope: 'col' }, 'Min'), h('th', { scope: 'col' }, 'Mean'), h('th', { scope: 'col' }, 'Max'), h('th', { scope: 'col' }, 'Readings'))),
    h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No data.'));
}

function redrawChart() {
  if (!lastChart) return;
  const fig = $('chart');
  drawChart(fig, lastChart, fig.clientWidth || 640);
}

let lastWidth = 0;
new ResizeObserver(() => {
  const w = $('chart').clientWidth;
  if (w && Math.abs(w - lastWidth) > 4) { lastWidth = w; redrawChart(); }
}).observe($('chart'));

$('chart-form').addEventListener('change', () => {
  $('chart').replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
  lastChart = null;
  chartPoller.now();
});
$('chart-form').addEventListener('submit', (e) => e.preventDefault());

// ---------- pollers, views and the key ----------

const roomsPoller = new Poller(pollRooms, ROOMS_EVERY);
const summaryPoller = new Poller(pollSummary, SUMMARY_EVERY);
const alertsPoller = new Poller(pollAlerts, ALERTS_EVERY);
const roomPoller = new Poller(pollRoom, ROOMS_EVERY);
const chartPoller = new Poller(pollChart, CHART_EVERY);
const all = [roomsPoller, summaryPoller, alertsPoller, roomPoller, chartPoller];

function show(view) {
  for (const v of ['key-view', 'overview-view', 'room-view']) $(v).hidden = v !== view;
}

function focusHeading(id) {
  const el = $(id);
  el.setAttribute('tabindex', '-1');
  el.focus({ preventScroll: false });
}

function route(moveFocus) {
  if (!key) return;
  const m = location.hash.match(/^#\/rooms\/(.+)$/);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (id !== roomId) {
      roomId = id;
      lastChart = null;
      $('room-title').textContent = id;
      $('room-meta').textContent = '';
      $('room-metrics').replaceChildren();
      $('chart-type').replaceChildren();
      $('chart').replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
      $('chart-table').replaceChildren();
    }
    show('room-view');
    roomsPoller.stop();
    roomPoller.start();
    chartPoller.start();
    if (moveFocus) focusHeading('room-title');
  } else {
    roomId = '';
    document.title = 'Atrium — building dashboard';
    show('overview-view');
    roomPoller.stop();
    chartPoller.stop();
    roomsPoller.start();
    if (moveFocus) focusHeading('summary-title');
  }
}

function start() {
  $('change-key').hidden = false;
  $('feed').replaceChildren(h('li', { class: 'empty' }, 'Waiting for alerts and notifications…'));
  summaryPoller.start();
  alertsPoller.start();
  feed.start();
  route(false);
}

function signOut(message) {
  for (const p of all) p.stop();
  feed.stop();
  key = '';
  keyStore.clear();
  roomId = '';
  tiles.clear();
  $('rooms').replaceChildren();
  $('feed').replaceChildren();
  $('change-key').hidden = true;
  health.rooms = null; health.updated = null; health.feed = 'connecting';
  $('status-dot').className = 'dot';
  $('status-text').textContent = 'Not connected';
  document.title = 'Atrium — building dashboard';
  show('key-view');
  $('key-error').textContent = message || '';
  $('key-input').value = '';
  $('key-input').focus();
}

$('key-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('key-input');
  const candidate = input.value.trim();
  const err = $('key-error');
  if (!candidate) { err.textContent = 'Paste an API key first.'; input.focus(); return; }
  const button = e.submitter || $('key-form').querySelector('button');
  button.disabled = true;
  err.textContent = '';
  try {
    await makeApi(() => candidate).get('/rooms' + qs({ limit: 1 }));
  } catch (ex) {
    button.disabled = false;
    err.textContent = ex instanceof ApiError
      ? (ex.status === 401 ? 'That key was refused: check it and paste it again.'
        : ex.status === 403 ? 'That key lacks the read scope the dashboard needs.' : ex.explain('Checking the key'))
      : 'Could not check the key.';
    input.focus();
    input.select(); // pasting the right key replaces the wrong one
    return;
  }
  button.disabled = false;
  key = candidate;
  keyStore.set(key);
  input.value = '';
  start();
  focusHeading(location.hash.startsWith('#/rooms/') ? 'room-title' : 'summary-title');
});

$('change-key').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', () => route(true));
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && key) for (const p of all) if (p.on) p.now();
});

if (key) start(); else signOut('');
