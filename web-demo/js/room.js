// The live-stream room: one client, one transport at a time, switchable mid-conversation.
// Shows chat, gifts with a running tally, presence (online count, join/leave notices) and the
// emit scopes (room / others / self / direct).

import { ApiError, register, tokenRole, unregister } from './api.js';
import { HINTS, TRANSPORTS, createTransport } from './transports.js';
import { $, GIFTS, describeError, el, guestName, toast } from './ui.js';

const MAX_MESSAGES = 300;

/** Lines the wire inspector keeps. */
const MAX_WIRE_LINES = 200;

/** Past events asked for when entering a room: the last messages and the gifts' tally. */
const HISTORY = 100;

const state = {
  session: null, // { client, name, cursor, heartbeat_ms }
  transportName: 'ws',
  transport: null,
  options: { interval: 1000, wait: 25000 },
  room: 'lobby',
  online: 0,
  tally: {},
  likes: 0,
  seen: new Set(),
  counter: 0,
  joinedAt: 0, // ms: events older than this came as history (no gift animation for them)
};

/** Links can preset the view: `/?room=quiz&transport=sse&name=ann#room`. */
function fromUrl() {
  const params = new URLSearchParams(location.search);
  const room = params.get('room');
  if (room && /^[A-Za-z0-9_-]{1,64}$/.test(room)) {
    if (![...$('#room').options].some((o) => o.value === room)) $('#room').append(el('option', { value: room }, room));
    $('#room').value = room;
    state.room = room;
    $('#room-title').textContent = room;
  }
  const transport = params.get('transport') ?? sessionStorage.getItem('quartet.transport');
  if (TRANSPORTS.includes(transport)) state.transportName = transport;
  return params.get('name');
}

export async function initRoom() {
  const name = fromUrl() || sessionStorage.getItem('quartet.name') || guestName();
  $('#name').value = name;
  bindControls();
  showTransport();
  await connect(name);
  window.addEventListener('pagehide', () => state.session && unregister(state.session.client));
}

/**
 * Registers (from `cursor`, when carrying on after the server forgot us), opens the transport
 * from the registration's cursor, joins the room.
 */
async function connect(name, cursor) {
  try {
    state.session = await register(name, cursor);
  } catch (error) {
    toast(error instanceof ApiError ? describeError(error) : 'The server is unreachable.');
    setConn('offline');
    return;
  }
  sessionStorage.setItem('quartet.name', state.session.name);
  startTransport(state.session.cursor);
  await join(state.room);
}

function startTransport(cursor) {
  state.transport = createTransport(state.transportName, { client: state.session.client, cursor }, state.options, {
    onFrames: render,
    onState: setConn,
    onError: recover,
    onWire: wire,
  });
  state.transport.start();
}

/** Leaves the current transport and resumes on `name` from its cursor. */
function switchTransport(name) {
  if (name === state.transportName) return;
  state.transportName = name;
  sessionStorage.setItem('quartet.transport', name);
  showTransport();
  if (!state.transport) return;
  const cursor = state.transport.cursor;
  state.transport.stop();
  startTransport(cursor);
  notice(`Now on ${name}, resumed from the cursor: nothing lost, nothing repeated.`, 'switch');
}

async function command(payload) {
  if (!state.transport) return null;
  try {
    const [reply] = await state.transport.send([payload]);
    if (reply.type === 'error') toast(describeError(reply));
    return reply;
  } catch (error) {
    toast(error instanceof ApiError ? describeError(error) : String(error));
    return null;
  }
}

async function join(room) {
  state.joinedAt = Date.now();
  const reply = await command({ type: 'join', room, history: HISTORY });
  if (reply?.type === 'joined') setOnline(reply.online);
}

async function changeRoom(room) {
  if (room === state.room) return;
  const old = state.room;
  state.room = room;
  $('#room-title').textContent = room;
  $('#messages').replaceChildren();
  state.tally = {};
  state.likes = 0;
  $('#likes').textContent = 0;
  renderTally();
  await command({ type: 'leave', room: old });
  await join(room);
}

/** The server no longer knows this client (it restarted, or we were silent too long). */
async function recover(error) {
  if (error.code !== 'unknown_client') {
    toast(describeError(error));
    return;
  }
  toast('The server forgot this session; carrying on from where we were.', 'info');
  const cursor = state.transport?.cursor;
  state.transport = null;
  await connect($('#name').value.trim() || guestName(), cursor);
}

async function rename(name) {
  if (!state.session || name === state.session.name) return;
  state.transport?.stop();
  state.transport = null;
  await unregister(state.session.client);
  $('#messages').replaceChildren();
  state.seen.clear();
  await connect(name);
}

function publish(to) {
  const input = $('#text');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  const id = `${state.session?.client}-${++state.counter}`;
  command({ type: 'publish', room: state.room, event: 'chat', data: { text, to }, to, id });
}

async function direct() {
  const user = $('#dm-user').value.trim();
  const text = $('#text').value.trim();
  if (!user || !text) {
    toast('Name a user and type a message to send a direct message.', 'info');
    return;
  }
  $('#text').value = '';
  const id = `${state.session?.client}-${++state.counter}`;
  const reply = await command({ type: 'direct', user, event: 'chat', data: { text }, id });
  if (reply?.type === 'ack') {
    line({ kind: 'dm-out' }, el('b', {}, `you → ${user}`), ` ${text}`);
  }
}

/** Host controls: mute (a minute), unmute or kick (ten minutes) the user named in the box. */
async function moderate(action) {
  const user = $('#mod-user').value.trim();
  if (!user) {
    toast('Name the user to moderate (click a name in the chat).', 'info');
    return;
  }
  const seconds = { mute: 60, kick: 600 }[action];
  await command({ type: action, room: state.room, user, ...(seconds ? { seconds } : {}) });
}

/** A like: published droppable, so a reader far behind may skip it (never a gift or a chat). */
function like() {
  command({ type: 'publish', room: state.room, event: 'like', data: {}, droppable: true });
}

function gift(kind) {
  const id = `${state.session?.client}-${++state.counter}`;
  command({ type: 'publish', room: state.room, event: 'gift', data: { kind }, id });
}

// ---- rendering ---------------------------------------------------------------------------

function render(frames) {
  for (const frame of frames) {
    if (frame.type === 'gap') {
      // A new store lifetime numbers its events anew: what was seen of this log says nothing now.
      if (frame.reason === 'reset') for (const key of [...state.seen]) if (key.startsWith(`${frame.room}#`)) state.seen.delete(key);
      const what = frame.reason === 'reset'
        ? 'the server restarted without keeping anything; earlier messages are gone'
        : `missed ${frame.missed_to - frame.missed_from + 1} older events (${frame.reason})`;
      notice(`Gap in ${frame.room}: ${what}.`, 'gap');
      continue;
    }
    const inbox = frame.room.startsWith('@');
    if (!inbox && frame.room !== state.room) continue; // a late event of a room we just left
    const key = `${frame.room}#${frame.seq}`;
    if (state.seen.has(key)) {
      // Never expected: the protocol promises no repeats. Shown, not hidden, so tests catch it.
      notice(`Duplicate event ${key}`, 'dup');
      continue;
    }
    state.seen.add(key);
    const meta = { room: frame.room, seq: frame.seq, event: frame.event, from: frame.from };
    if (frame.event === 'presence') {
      setOnline(frame.data.online);
      if (frame.data.action === 'count') continue; // a crowded room's periodic head count
      const verb = frame.data.action === 'join' ? 'joined' : frame.data.reason === 'kicked' ? 'was kicked' : 'left';
      line({ ...meta, kind: 'presence' }, who(frame.from), ` ${verb} · ${frame.data.online} online`);
    } else if (frame.event === 'like') {
      state.likes += 1;
      $('#likes').textContent = state.likes;
      if (frame.ts >= state.joinedAt) burst('❤');
    } else if (frame.event === 'moderation') {
      moderation(meta, frame, inbox);
    } else if (frame.event === 'gift') {
      const kind = frame.data?.kind;
      state.tally[kind] = (state.tally[kind] ?? 0) + 1;
      renderTally();
      if (frame.ts >= state.joinedAt) burst(GIFTS[kind] ?? '🎁');
      line({ ...meta, kind: 'gift' }, who(frame.from), ` sent ${GIFTS[kind] ?? kind}`);
    } else if (inbox) {
      line({ ...meta, kind: 'dm-in' }, el('b', {}, `${frame.from} → you`), ` ${text(frame.data)}`);
    } else {
      const scope = { others: ' (to others)', self: ' (only you)' }[frame.data?.to] ?? '';
      line({ ...meta, kind: 'chat' }, who(frame.from), ` ${text(frame.data)}`, el('small', {}, scope),
        el('small', { class: 'seq', title: 'this event\'s seq in the room' }, ` #${frame.seq}`));
    }
  }
}

/** A moderation notice: in the room, what a host did; in our inbox, what was done to us. */
function moderation(meta, frame, inbox) {
  const { action, room, user, by, seconds } = frame.data;
  const span = seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
  if (inbox) {
    const said = {
      mute: `You were muted in ${room} by ${by} for ${span}.`,
      unmute: `${by} unmuted you in ${room}.`,
      kick: `You were kicked from ${room} by ${by}; you may come back in ${span}.`,
    }[action];
    line({ ...meta, kind: 'notice moderation' }, said);
    if (action !== 'unmute') toast(said, 'info');
    return;
  }
  const did = { mute: `muted ${user} for ${span}`, unmute: `unmuted ${user}`, kick: `kicked ${user} for ${span}` }[action];
  line({ ...meta, kind: 'notice moderation' }, `${by} ${did}.`);
}

/** A user's name in the chat; for a host, a click puts it in the moderation box. */
function who(name) {
  return el('b', { class: 'who', onclick: () => { $('#mod-user').value = name; } }, name);
}

/** One line of the wire inspector: `direction` 'out' (→) or 'in' (←), the text as it went. */
function wire(direction, text) {
  const list = $('#wire');
  const item = el('li', { class: direction, dataset: { transport: state.transportName } },
    el('span', { class: 'dir' }, direction === 'out' ? '→' : '←'),
    el('span', { class: 'via' }, state.transportName),
    el('pre', {}, text));
  list.append(item);
  while (list.children.length > MAX_WIRE_LINES) list.firstElementChild.remove();
  if ($('#wire-panel').open) item.scrollIntoView({ block: 'nearest' });
}

function text(data) {
  return typeof data?.text === 'string' ? data.text : JSON.stringify(data);
}

function line(meta, ...children) {
  const { kind, ...data } = meta;
  const list = $('#messages');
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
  list.append(el('li', { class: kind, dataset: data }, ...children));
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

function notice(message, kind) {
  line({ kind: `notice ${kind}` }, message);
}

function setOnline(online) {
  state.online = online;
  $('#online').textContent = online;
}

function renderTally() {
  $('#tally').replaceChildren(
    ...Object.entries(state.tally).map(([kind, count]) =>
      el('span', { class: 'tally-item', dataset: { gift: kind } }, `${GIFTS[kind] ?? kind} ${count}`)),
  );
}

function burst(symbol) {
  const node = el('span', { class: 'float' }, symbol);
  node.style.left = `${10 + Math.random() * 70}%`;
  $('#gift-burst').append(node);
  setTimeout(() => node.remove(), 2000);
}

function setConn(connState) {
  const chip = $('#conn');
  chip.dataset.state = connState;
  chip.textContent = connState === 'reconnecting' ? 'reconnecting…' : connState;
}

function showTransport() {
  for (const button of document.querySelectorAll('#transport button')) {
    const on = button.dataset.transport === state.transportName;
    button.classList.toggle('active', on);
    button.setAttribute('aria-checked', String(on));
  }
  $('#transport-hint').textContent = HINTS[state.transportName];
}

function bindControls() {
  $('#transport').addEventListener('click', (e) => {
    const name = e.target.closest('button')?.dataset.transport;
    if (name) switchTransport(name);
  });
  $('#room').addEventListener('change', (e) => changeRoom(e.target.value));
  $('#name').addEventListener('change', (e) => rename(e.target.value.trim() || guestName()));
  $('#composer').addEventListener('submit', (e) => { e.preventDefault(); publish('room'); });
  for (const button of document.querySelectorAll('.scopes button[type=button]')) {
    button.addEventListener('click', () => publish(button.dataset.to));
  }
  $('#dm-send').addEventListener('click', direct);
  const host = ['host', 'moderator'].includes(tokenRole());
  $('#moderate').hidden = !host;
  $('#moderate').addEventListener('click', (e) => {
    const action = e.target.closest('button')?.dataset.action;
    if (action) moderate(action);
  });
  $('#like').addEventListener('click', like);
  $('#gifts').addEventListener('click', (e) => {
    const kind = e.target.closest('button')?.dataset.gift;
    if (kind) gift(kind);
  });
}
