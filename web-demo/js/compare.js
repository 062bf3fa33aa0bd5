// Compare: five clients in one page, one per transport and a Socket.IO client, all in the same
// room. Send once and watch the message arrive five times, with live latency, requests, bytes, empty responses,
// reconnects, and a timeline of what went over the wire.

import { postCommands, register } from './api.js';
import { TIMELINE_SPAN_MS } from './transport.js';
import { PANES, createTransport } from './transports.js';
import { $, describeError, el, formatBytes, formatMs, median, toast } from './ui.js';

const MAX_PANE_MESSAGES = 50;
const REFRESH_MS = 200;

const options = { interval: 1000, wait: 25000 };
let panes = [];
let sender = null;
let room = null;
let counter = 0;

export async function initCompare() {
  $('#cmp-room').value = `compare-${Math.floor(1000 + Math.random() * 9000)}`;
  $('#cmp-interval').addEventListener('input', (e) => { options.interval = clamp(+e.target.value, 50, 10000); });
  $('#cmp-wait').addEventListener('input', (e) => { options.wait = clamp(+e.target.value, 1000, 30000); });
  $('#cmp-room').addEventListener('change', (e) => enter(e.target.value.trim()));
  $('#cmp-composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('#cmp-text').value.trim();
    if (text) send([text]);
    $('#cmp-text').value = '';
  });
  $('#cmp-burst').addEventListener('click', () => send(Array.from({ length: 10 }, (_, i) => `burst ${i + 1}/10`)));
  panes = PANES.map(buildPane);
  $('#panes').replaceChildren(...panes.map((p) => p.root));
  setInterval(refresh, REFRESH_MS);
  await enter($('#cmp-room').value);
}

function clamp(value, low, high) {
  return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : low;
}

/** (Re)joins every pane and the sender to `name`. */
async function enter(name) {
  if (!name || name === room) return;
  const previous = room;
  room = name;
  try {
    if (!sender) sender = await register('compare-sender');
    const leave = previous ? [{ type: 'leave', room: previous }] : [];
    await postCommands(sender.client, [...leave, { type: 'join', room }]);
    await Promise.all(panes.map(async (pane) => {
      if (!pane.transport) {
        // Socket.IO registers its client itself, in its CONNECT.
        const session = pane.kind === 'socketio' ? { name: 'viewer-socketio' } : await register(`viewer-${pane.kind}`);
        pane.transport = createTransport(pane.kind, session, options, {
          onFrames: (frames) => arrive(pane, frames),
          onState: (state) => { pane.root.dataset.state = state; pane.stateChip.textContent = state; },
          onError: (error) => toast(`${pane.kind}: ${describeError(error)}`),
        });
        pane.transport.start();
      }
      await pane.transport.send([...leave, { type: 'join', room }]);
      pane.list.replaceChildren();
    }));
  } catch (error) {
    toast(`Could not join ${name}: ${error.message ?? error}`);
  }
}

/** Publishes each text once, from the sender, stamped with the page clock. */
async function send(texts) {
  if (!sender) return;
  const commands = texts.map((text) => ({
    type: 'publish', room, event: 'chat', id: `cmp-${++counter}`,
    data: { text, t: performance.now() },
  }));
  try {
    const { replies } = await postCommands(sender.client, commands);
    const refused = replies.find((r) => r.type === 'error');
    if (refused) toast(describeError(refused));
  } catch (error) {
    toast(`Send failed: ${error.message ?? error}`);
  }
}

function arrive(pane, frames) {
  const now = performance.now();
  for (const frame of frames) {
    if (frame.type !== 'event' || frame.room !== room) continue;
    let latency = null;
    if (frame.event === 'chat' && typeof frame.data?.t === 'number') {
      latency = now - frame.data.t;
      pane.latencies.push(latency);
      pane.last = latency;
    }
    const verb = { join: 'joined', leave: 'left', count: 'online' }[frame.data?.action];
    const label = frame.event === 'presence'
      ? (frame.data.action === 'count' ? `${frame.data.online} online` : `${frame.from} ${verb}`)
      : `${frame.from}: ${frame.data?.text ?? JSON.stringify(frame.data)}`;
    pane.list.prepend(el('li', { dataset: { seq: frame.seq, event: frame.event } },
      el('span', { class: 'seq' }, `#${frame.seq}`),
      el('span', { class: 'label', title: label }, label),
      latency === null ? '' : el('span', { class: 'lat' }, formatMs(latency))));
    while (pane.list.children.length > MAX_PANE_MESSAGES) pane.list.lastElementChild.remove();
  }
}

function buildPane(kind) {
  const stat = (name, label) => {
    const value = el('dd', { dataset: { stat: name } }, '–');
    return { node: [el('dt', {}, label), value], value };
  };
  const stats = {
    last: stat('last', 'last latency'),
    p50: stat('p50', 'p50 latency'),
    requests: stat('requests', 'HTTP requests'),
    bytes: stat('bytes', 'bytes received'),
    empty: stat('empty', 'empty responses'),
    reconnects: stat('reconnects', 'reconnects'),
  };
  const stateChip = el('span', { class: 'chip' }, 'connecting');
  const timeline = el('div', { class: 'timeline', title: `The last ${TIMELINE_SPAN_MS / 1000} s of traffic` });
  const list = el('ol', { class: 'pane-messages' });
  const root = el('article', { class: 'pane', dataset: { transport: kind } },
    el('header', {}, el('h3', {}, kind), stateChip),
    el('dl', { class: 'stats' }, ...Object.values(stats).flatMap((s) => s.node)),
    el('div', { class: 'timeline-axis' }, el('span', {}, `−${TIMELINE_SPAN_MS / 1000} s`), el('span', {}, 'now')),
    timeline, list);
  return { kind, root, stats, stateChip, timeline, list, transport: null, latencies: [], last: null };
}

/** Redraws stats and timelines from the transports' counters. */
function refresh() {
  const now = performance.now();
  for (const pane of panes) {
    const t = pane.transport;
    if (!t) continue;
    pane.stats.last.value.textContent = formatMs(pane.last);
    pane.stats.p50.value.textContent = formatMs(median(pane.latencies));
    pane.stats.requests.value.textContent = t.stats.requests;
    pane.stats.bytes.value.textContent = formatBytes(t.stats.bytes);
    pane.stats.empty.value.textContent = t.stats.empty;
    pane.stats.reconnects.value.textContent = t.stats.reconnects;
    if (t.carrier) {
      // Socket.IO: which Engine.IO carrier it uses now (polling, then websocket).
      pane.root.dataset.carrier = t.carrier;
      pane.stateChip.textContent = `${t.state} · ${t.carrier}`;
    }
    drawTimeline(pane.timeline, t.timeline, now);
  }
}

function drawTimeline(node, spans, now) {
  const from = now - TIMELINE_SPAN_MS;
  const pct = (time) => `${Math.max(0, ((time - from) / TIMELINE_SPAN_MS) * 100)}%`;
  node.replaceChildren(...spans
    .filter((s) => (s.end ?? now) >= from)
    .map((s) => {
      const end = s.end ?? now;
      const point = s.end !== null && s.end === s.start;
      const bar = el('i', { class: `tl ${s.kind}${s.empty ? ' empty' : ''}${point ? ' point' : ''}`, title: s.label });
      bar.style.left = pct(Math.max(s.start, from));
      if (!point) bar.style.width = `${Math.max(0.4, ((end - Math.max(s.start, from)) / TIMELINE_SPAN_MS) * 100)}%`;
      return bar;
    }));
}
