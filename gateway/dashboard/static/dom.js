// Small DOM and formatting helpers. Every text goes in as text, never as HTML.

// h builds an element: h('p', {class: 'x', 'data-id': id}, 'text', child, …).
// Attributes whose value is null, undefined or false are left out; "on*" functions
// become listeners.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

// Units as people read them.
const units = { Cel: '°C', '%RH': '%', ppm: 'ppm', lx: 'lx', count: '', dB: 'dB', ppb: 'ppb', 'ug/m3': 'µg/m³', hPa: 'hPa' };
const typeUnits = { temperature: 'Cel', humidity: '%RH', co2: 'ppm', light: 'lx', occupancy: 'count', noise: 'dB', voc: 'ppb', pm25: 'ug/m3', pressure: 'hPa' };
const labels = { co2: 'CO₂', pm25: 'PM2.5', voc: 'VOC', pir: 'Motion (PIR)' };

export function unitOf(type, unit) {
  const u = unit || typeUnits[type] || '';
  return u in units ? units[u] : u;
}

export function label(type) {
  if (labels[type]) return labels[type];
  const s = String(type).replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const fmt1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const fmt0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const fmt2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

// num formats a value with the precision its type deserves.
export function num(v, type) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (type === 'co2' || type === 'light' || type === 'occupancy' || type === 'voc' || Math.abs(v) >= 1000) return fmt0.format(v);
  if (Math.abs(v) < 1 && v !== 0) return fmt2.format(v);
  return fmt1.format(v);
}

export function withUnit(v, type, unit) {
  const u = unitOf(type, unit);
  const n = num(v, type);
  if (n === '—' || !u) return n;
  return u === '°C' || u === '%' ? n + '\u202f' + u : n + '\u00a0' + u;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

export function clock(t) {
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? '' : timeFmt.format(d);
}

export function when(t) {
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? '' : dateTimeFmt.format(d);
}

// ago says how long ago t was, coarsely: "just now", "4 min ago", "3 h ago".
export function ago(t, now = Date.now()) {
  const s = Math.round((now - new Date(t).getTime()) / 1000);
  if (!Number.isFinite(s)) return '';
  if (s < 45) return 'just now';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}
