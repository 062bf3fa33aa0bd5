// Socket.IO clients against the real quartet binary: the unmodified socket.io-client from npm
// (default transports with the upgrade, polling only, WebSocket only) sharing rooms with native
// clients, scopes, acks, recovery after a cut connection, refusals; then the protocol's own
// rules on the wire (raw HTTP and WebSocket): handshake, ping timing and timeout, maxPayload,
// unknown sid, a second concurrent GET, binary placeholders.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { freshRoom, mintToken, startServer } from './harness.mjs';

let server;
let fast; // a server with a 300 ms heartbeat, for the timing rules

before(async () => {
  server = await startServer();
  fast = await startServer('127.0.0.1:0', ['--heartbeat-ms', '300']);
});

after(async () => {
  await server?.stop();
  await fast?.stop();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the first `event` of `emitter`, or fails after `ms`. */
function next(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    emitter.once(event, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

/** A connected socket.io-client socket. */
async function connect(url, options = {}) {
  const socket = io(url, { reconnectionDelay: 50, reconnectionDelayMax: 200, ...options });
  await next(socket, 'connect');
  return socket;
}

/** Collects every `event` the socket receives, as {data, meta, offset}. */
function collect(socket, event) {
  const got = [];
  socket.on(event, (data, meta, offset) => got.push({ data, meta, offset }));
  return got;
}

async function until(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A native client over HTTP: register, send commands, long-poll. */
async function native(url, name) {
  const response = await fetch(`${url}/v1/clients`, { method: 'POST', body: JSON.stringify({ name }) });
  assert.equal(response.status, 201);
  const { client, cursor } = await response.json();
  const self = {
    cursor,
    async send(command) {
      const r = await fetch(`${url}/v1/clients/${client}/commands`, { method: 'POST', body: JSON.stringify(command) });
      return (await r.json()).replies[0];
    },
    async poll() {
      const r = await fetch(`${url}/v1/clients/${client}/long-poll?cursor=${self.cursor}&wait_ms=3000`);
      const body = await r.json();
      self.cursor = body.cursor;
      return body.events;
    },
  };
  return self;
}

describe('socket.io-client interop', () => {
  test('default transports: polling first, then the upgrade to WebSocket', async () => {
    const socket = io(server.url, { auth: { name: 'upgrader' } });
    const [upgraded] = await Promise.all([
      new Promise((resolve) => socket.io.on('open', () => socket.io.engine.once('upgrade', (t) => resolve(t.name)))),
      next(socket, 'connect'),
    ]);
    assert.equal(upgraded, 'websocket');
    assert.equal(socket.io.engine.transport.name, 'websocket');
    const reply = await socket.emitWithAck('join', { room: freshRoom('upgrade') });
    assert.equal(reply.type, 'joined');
    socket.close();
  });

  for (const transports of [['polling'], ['websocket']]) {
    test(`${transports[0]} only: join, publish with ack, receive in room order`, async () => {
      const room = freshRoom(transports[0]);
      const a = await connect(server.url, { auth: { name: 'ann' }, transports });
      const b = await connect(server.url, { auth: { name: 'ben' }, transports });
      assert.equal(a.io.engine.transport.name, transports[0]);
      const chats = collect(b, 'chat');
      await a.emitWithAck('join', { room });
      await b.emitWithAck('join', { room });
      const acks = [];
      for (let i = 0; i < 20; i++) {
        acks.push(await a.emitWithAck('publish', { room, event: 'chat', data: { i } }));
      }
      assert.ok(acks.every((ack) => ack.type === 'ack' && ack.room === room), JSON.stringify(acks[0]));
      await until(() => chats.length === 20, '20 chats');
      assert.deepEqual(chats.map((c) => c.data.i), [...Array(20).keys()]);
      assert.deepEqual(chats.map((c) => c.meta.seq), acks.map((ack) => ack.seq));
      const meta = chats[0].meta;
      assert.deepEqual(Object.keys(meta), ['room', 'seq', 'from', 'ts']);
      assert.equal(meta.room, room);
      assert.equal(meta.from, 'ann');
      assert.equal(typeof chats[0].offset, 'string');
      a.close();
      b.close();
    });
  }

  test('native clients and Socket.IO clients share a room, in one order, both ways', async () => {
    const room = freshRoom('mixed');
    const sio = await connect(server.url, { auth: { name: 'sio' } });
    const http = await native(server.url, 'http');
    await sio.emitWithAck('join', { room });
    assert.equal((await http.send({ type: 'join', room })).type, 'joined');
    const seen = collect(sio, 'chat');
    for (let i = 0; i < 10; i++) {
      if (i % 2) await sio.emitWithAck('publish', { room, event: 'chat', data: { i } });
      else await http.send({ type: 'publish', room, event: 'chat', data: { i } });
    }
    await until(() => seen.length === 10, 'ten chats on the Socket.IO side');
    const polled = [];
    while (polled.length < 10) polled.push(...(await http.poll()).filter((e) => e.event === 'chat'));
    assert.deepEqual(seen.map((c) => c.data.i), [...Array(10).keys()]);
    assert.deepEqual(polled.map((e) => e.data.i), [...Array(10).keys()]);
    assert.deepEqual(seen.map((c) => c.meta.seq), polled.map((e) => e.seq), 'the same seqs on both sides');
    sio.close();
  });

  test('"others" and "self" scopes reach exactly who they should', async () => {
    const room = freshRoom('scopes');
    const a = await connect(server.url, { auth: { name: 'ava' } });
    const b = await connect(server.url, { auth: { name: 'bea' } });
    await a.emitWithAck('join', { room });
    await b.emitWithAck('join', { room });
    const atA = collect(a, 'note');
    const atB = collect(b, 'note');
    await a.emitWithAck('publish', { room, event: 'note', data: 'to-others', to: 'others' });
    await a.emitWithAck('publish', { room, event: 'note', data: 'to-self', to: 'self' });
    await a.emitWithAck('publish', { room, event: 'note', data: 'to-room' });
    await until(() => atA.length === 2 && atB.length === 2, 'the notes');
    await sleep(100);
    assert.deepEqual(atA.map((n) => n.data), ['to-self', 'to-room']);
    assert.deepEqual(atB.map((n) => n.data), ['to-others', 'to-room']);
    a.close();
    b.close();
  });

  test('a cut connection recovers: same pid, socket.recovered, missed events exactly once', async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const proxy = await cuttableProxy(server.url);
      await cutAndRecover({ proxy, transports, talkerUrl: server.url, label: transports[0] });
      proxy.close();
    }
  });

  test('with the Redis cluster, a client cut from one node recovers on another', async (t) => {
    const redis = process.env.QUARTET_TEST_REDIS;
    if (!redis) {
      if (process.env.QUARTET_REQUIRE_REDIS === '1') assert.fail('QUARTET_TEST_REDIS is not set');
      t.skip('no Redis: set QUARTET_TEST_REDIS=redis://127.0.0.1:6379');
      return;
    }
    const prefix = `sio-test-${Math.random().toString(36).slice(2, 10)}`;
    const nodes = [];
    try {
      for (let i = 0; i < 2; i++) nodes.push(await startServer('127.0.0.1:0', ['--redis', redis, '--redis-prefix', prefix]));
      const [a, b] = nodes;
      const proxy = await cuttableProxy(a.url);
      // On node A until the cut, on node B after it; the talker publishes through node B.
      await cutAndRecover({ proxy, transports: ['websocket'], talkerUrl: b.url, moveTo: b.url, label: 'on node B' });
      proxy.close();
    } finally {
      for (const node of nodes) await node.stop();
      // Leave the shared Redis as it was: every key of this test's prefix goes.
      const keys = spawnSync('redis-cli', ['-u', redis, '--scan', '--pattern', `${prefix}*`], { encoding: 'utf8' });
      const names = (keys.stdout ?? '').split('\n').filter(Boolean);
      if (names.length) spawnSync('redis-cli', ['-u', redis, 'del', ...names]);
    }
  });

  test('a client removed by the server is told so; connecting again gives a new pid, not recovered', async () => {
    const socket = await connect(server.url, { auth: { name: 'gone' }, transports: ['websocket'] });
    const pid = socket._pid;
    assert.match(pid, /\S/);
    // DELETE the client behind the socket's back: the server disconnects the socket (41).
    const disconnected = next(socket, 'disconnect');
    await fetch(`${server.url}/v1/clients/${pid}`, { method: 'DELETE' });
    const [reason] = await disconnected;
    assert.equal(reason, 'io server disconnect');
    const reconnected = next(socket, 'connect', 10000);
    socket.connect();
    await reconnected;
    assert.equal(socket.recovered, false);
    assert.notEqual(socket._pid, pid);
    socket.close();
  });

  test('with --auth-secret, the handshake\'s auth carries the token: its user and its rooms', async () => {
    const secret = 'socket-io-test-secret-of-at-least-32-bytes';
    const guarded = await startServer('127.0.0.1:0', ['--auth-secret', secret]);
    try {
      const anonymous = io(guarded.url, { auth: { name: 'eve' }, reconnection: false });
      const [refused] = await next(anonymous, 'connect_error');
      assert.equal(refused.data.type, 'error');
      assert.equal(refused.data.code, 'unauthorized');
      assert.match(refused.message, /token/);
      anonymous.close();
      const token = mintToken(['--secret', secret, '--sub', 'tina', '--rooms', 'stage-*']);
      const impostor = io(guarded.url, { auth: { token, name: 'tom' }, reconnection: false });
      const [forbidden] = await next(impostor, 'connect_error');
      assert.equal(forbidden.data.code, 'forbidden');
      impostor.close();
      const tina = await connect(guarded.url, { auth: { token } });
      const room = freshRoom('stage');
      const presence = collect(tina, 'presence');
      assert.equal((await tina.emitWithAck('join', { room })).type, 'joined');
      await until(() => presence.length === 1, 'her own join');
      assert.equal(presence[0].meta.from, 'tina', 'registered as the token\'s user');
      const elsewhere = await tina.emitWithAck('join', { room: 'lobby' });
      assert.equal(elsewhere.code, 'forbidden', 'the token\'s rooms only');
      tina.close();
    } finally {
      await guarded.stop();
    }
  });

  test('a bad namespace gets connect_error, not a hang', async () => {
    const socket = io(`${server.url}/admin`, { reconnection: false });
    const [error] = await next(socket, 'connect_error');
    assert.equal(error.message, 'Invalid namespace');
    socket.close();
  });

  test('a malformed argument gets an error ack and the socket lives on', async () => {
    const socket = await connect(server.url, { auth: { name: 'mal' } });
    const bad = await socket.emitWithAck('join', 42);
    assert.equal(bad.type, 'error');
    assert.equal(bad.code, 'bad_request');
    const unknown = await socket.emitWithAck('shout', { room: 'x' });
    assert.equal(unknown.code, 'bad_request');
    const noRoom = await socket.emitWithAck('publish', { event: 'chat', data: 1 });
    assert.equal(noRoom.type, 'error');
    assert.equal((await socket.emitWithAck('join', { room: freshRoom('mal') })).type, 'joined');
    assert.equal(socket.connected, true);
    socket.close();
  });

  test('binary attachments round-trip between Socket.IO clients; native clients see base64', async () => {
    const room = freshRoom('binary');
    const a = await connect(server.url, { auth: { name: 'bin' }, transports: ['polling'] });
    const b = await connect(server.url, { auth: { name: 'bob' }, transports: ['websocket'] });
    const http = await native(server.url, 'http');
    await a.emitWithAck('join', { room });
    await b.emitWithAck('join', { room });
    await http.send({ type: 'join', room });
    const files = collect(b, 'file');
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const ack = await a.emitWithAck('publish', { room, event: 'file', data: { name: 'x.bin', body: bytes } });
    assert.equal(ack.type, 'ack');
    await until(() => files.length === 1, 'the file');
    assert.ok(Buffer.isBuffer(files[0].data.body), 'a Buffer again');
    assert.deepEqual([...files[0].data.body], [...bytes]);
    let polled = [];
    while (!polled.length) polled = (await http.poll()).filter((e) => e.event === 'file');
    assert.deepEqual(polled[0].data, { name: 'x.bin', body: { _binary: bytes.toString('base64') } });
    a.close();
    b.close();
  });

  test('an event named like a Socket.IO reserved event arrives as quartet:<name>', async () => {
    const room = freshRoom('reserved');
    const socket = await connect(server.url, { auth: { name: 'res' } });
    await socket.emitWithAck('join', { room });
    const got = collect(socket, 'quartet:disconnect');
    await socket.emitWithAck('publish', { room, event: 'disconnect', data: 'not really' });
    await until(() => got.length === 1, 'quartet:disconnect');
    assert.equal(socket.connected, true);
    socket.close();
  });
});

describe('the protocol on the wire', () => {
  const handshake = async (url, query = 'EIO=4&transport=polling') => {
    const response = await fetch(`${url}/socket.io/?${query}`);
    const text = await response.text();
    return { status: response.status, text };
  };
  const open = async (url) => JSON.parse((await handshake(url)).text.slice(1)).sid;
  const get = (url, sid) => fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${sid}`);
  const post = (url, sid, body) => fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body });

  test('the handshake announces sid, upgrades, ping timing and maxPayload', async () => {
    const { status, text } = await handshake(fast.url);
    assert.equal(status, 200);
    assert.equal(text[0], '0');
    const open = JSON.parse(text.slice(1));
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.equal(open.pingInterval, 300);
    assert.equal(open.pingTimeout, 240);
    assert.equal(open.maxPayload, 1000000);
    for (const bad of ['transport=polling', 'EIO=3&transport=polling', 'EIO=4', 'EIO=4&transport=carrier-pigeon']) {
      const refused = await handshake(fast.url, bad);
      assert.equal(refused.status, 400, bad);
      assert.ok('code' in JSON.parse(refused.text), bad);
    }
    const wrongMethod = await fetch(`${fast.url}/socket.io/?EIO=4&transport=polling`, { method: 'POST', body: '40' });
    assert.equal(wrongMethod.status, 400);
  });

  test('an unknown sid is refused with the documented error', async () => {
    const response = await get(fast.url, 'no-such-session');
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), { code: 1, message: 'Session ID unknown' });
  });

  test('pings come every pingInterval; a missing pong closes the session', async () => {
    const sid = await open(fast.url);
    assert.equal((await post(fast.url, sid, '40')).status, 200);
    assert.match(await (await get(fast.url, sid)).text(), /^40\{"sid"/);
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const poll = await get(fast.url, sid);
      assert.equal(await poll.text(), '2');
      const waited = Date.now() - started;
      assert.ok(waited >= 200 && waited < 1000, `ping after ${waited} ms (interval 300)`);
      assert.equal((await post(fast.url, sid, '3')).status, 200);
    }
    // No pong this time: closed within interval + timeout, and the sid is unknown after.
    assert.equal(await (await get(fast.url, sid)).text(), '2');
    await sleep(240 + 100);
    const afterTimeout = await get(fast.url, sid);
    assert.equal(afterTimeout.status, 400);
  });

  test('a second concurrent GET is refused and closes the session', async () => {
    const sid = await open(server.url);
    const first = get(server.url, sid);
    await sleep(50);
    const second = await get(server.url, sid);
    assert.equal(second.status, 400);
    const firstResponse = await first;
    assert.equal(firstResponse.status, 200);
    assert.equal(await firstResponse.text(), '1', 'the held GET is told the session closed');
    assert.equal((await get(server.url, sid)).status, 400);
  });

  test('a body over maxPayload gets 413 and closes the session', async () => {
    const sid = await open(server.url);
    const big = `4${'x'.repeat(1000000)}`;
    const response = await post(server.url, sid, big);
    assert.equal(response.status, 413);
    assert.equal((await get(server.url, sid)).status, 400);
  });

  test('a malformed packet closes the session', async () => {
    const sid = await open(server.url);
    assert.equal((await post(server.url, sid, 'abc')).status, 400);
    assert.equal((await get(server.url, sid)).status, 400);
  });

  test('a session that never connects a socket is closed after pingInterval + pingTimeout', async () => {
    const sid = await open(fast.url);
    await sleep(300 + 240 + 100);
    assert.equal((await get(fast.url, sid)).status, 400);
  });

  test('a silent WebSocket is closed after pingInterval + pingTimeout', async () => {
    const ws = new WebSocket(`${fast.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    const frames = [];
    ws.on('message', (data) => frames.push(data.toString()));
    const started = Date.now();
    await new Promise((resolve) => ws.once('close', resolve));
    const lasted = Date.now() - started;
    assert.ok(lasted >= 500 && lasted < 2000, `closed after ${lasted} ms (300 + 240 expected)`);
    assert.equal(frames[0][0], '0', 'the handshake first');
    assert.deepEqual(JSON.parse(frames[0].slice(1)).upgrades, []);
    assert.ok(frames.includes('2'), 'a ping before the close');
  });

  test('packets on the wire: connect, event with ack, binary placeholders and attachments', async () => {
    const room = freshRoom('wire');
    const wsUrl = `${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`;
    const connectRaw = async (name) => {
      const ws = new WebSocket(wsUrl);
      const frames = [];
      ws.on('message', (data, isBinary) => frames.push(isBinary ? [...data] : data.toString()));
      await new Promise((resolve) => ws.once('open', resolve));
      await until(() => frames.length === 1, 'handshake');
      ws.send(`40${JSON.stringify({ name })}`);
      await until(() => frames.length === 2, 'connect reply');
      assert.match(frames[1], /^40\{"sid":"[^"]+","pid":"[^"]+"\}$/);
      ws.send(`420${JSON.stringify(['join', { room }])}`);
      await until(() => frames.some((f) => typeof f === 'string' && f.startsWith('430[')), 'join ack');
      return { ws, frames };
    };
    const a = await connectRaw('wa');
    const b = await connectRaw('wb');
    a.ws.send(`451-7${JSON.stringify(['publish', { room, event: 'blob', data: { b: { _placeholder: true, num: 0 } } }])}`);
    a.ws.send(Buffer.from([9, 8, 7]));
    await until(() => a.frames.some((f) => typeof f === 'string' && f.startsWith('437[')), 'publish ack');
    const ack = JSON.parse(a.frames.find((f) => typeof f === 'string' && f.startsWith('437[')).slice(3));
    assert.equal(ack[0].type, 'ack');
    await until(() => b.frames.some((f) => typeof f === 'string' && f.startsWith('451-["blob"')), 'the binary event');
    const at = b.frames.findIndex((f) => typeof f === 'string' && f.startsWith('451-["blob"'));
    const [name, data, meta, offset] = JSON.parse(b.frames[at].slice(4));
    assert.equal(name, 'blob');
    assert.deepEqual(data, { b: { _placeholder: true, num: 0 } });
    assert.equal(meta.seq, ack[0].seq);
    assert.equal(typeof offset, 'string');
    assert.deepEqual(b.frames[at + 1], [9, 8, 7], 'the attachment follows as a binary frame');
    // A namespace that does not exist is refused in its own CONNECT_ERROR.
    a.ws.send('40/admin,');
    await until(() => a.frames.includes('44/admin,{"message":"Invalid namespace"}'), 'connect error');
    // A packet that is not Socket.IO closes the connection.
    const closed = new Promise((resolve) => a.ws.once('close', resolve));
    a.ws.send('4abc');
    await closed;
    b.ws.close();
  });

  test('CONNECT with a pid and no offset reads from where that client started', async () => {
    const room = freshRoom('nooffset');
    const wsUrl = `${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`;
    const raw = async (auth) => {
      const ws = new WebSocket(wsUrl);
      const frames = [];
      ws.on('message', (data) => frames.push(data.toString()));
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(`40${JSON.stringify(auth)}`);
      await until(() => frames.some((f) => f.startsWith('40{')), 'connect reply');
      const pid = JSON.parse(frames.find((f) => f.startsWith('40{')).slice(2)).pid;
      return { ws, frames, pid };
    };
    const chats = (frames) => frames.filter((f) => f.startsWith('42["chat"')).map((f) => JSON.parse(f.slice(2))[1]);
    const first = await raw({ name: 'nora' });
    first.ws.send(`420${JSON.stringify(['join', { room }])}`);
    await until(() => first.frames.some((f) => f.startsWith('430[')), 'join ack');
    const talker = await native(server.url, 'talker');
    await talker.send({ type: 'join', room });
    for (const text of ['one', 'two', 'three']) await talker.send({ type: 'publish', room, event: 'chat', data: text });
    await until(() => chats(first.frames).length === 3, 'three chats');
    first.ws.terminate();
    const again = await raw({ pid: first.pid });
    assert.equal(again.pid, first.pid, 'the same client');
    await until(() => chats(again.frames).length === 3, 'the chats again, from the start');
    assert.deepEqual(chats(again.frames), ['one', 'two', 'three']);
    again.ws.close();
  });

  test('a held GET whose client hangs up loses nothing: the next GET gets the event', async () => {
    const sid = await open(fast.url);
    const room = freshRoom('hangup');
    await post(fast.url, sid, '40{"name":"hang"}');
    assert.match(await (await get(fast.url, sid)).text(), /^40/);
    await post(fast.url, sid, `421${JSON.stringify(['join', { room }])}`);
    assert.match(await (await get(fast.url, sid)).text(), /^431/);
    // A GET held, then abandoned by its client before anything came.
    const abort = new AbortController();
    const held = fetch(`${fast.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { signal: abort.signal });
    await sleep(50);
    abort.abort();
    await held.catch(() => {});
    const talker = await native(fast.url, 'talker');
    await talker.send({ type: 'join', room });
    await talker.send({ type: 'publish', room, event: 'chat', data: 'after the hang-up' });
    let body = '';
    const deadline = Date.now() + 3000;
    while (!body.includes('after the hang-up') && Date.now() < deadline) {
      const response = await get(fast.url, sid);
      assert.equal(response.status, 200);
      body = await response.text();
      if (body.split('\x1e').includes('2')) await post(fast.url, sid, '3');
    }
    assert.match(body, /after the hang-up/);
  });

  test('attachments larger than a command may be get too_large, and the socket lives on', async () => {
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    const frames = [];
    ws.on('message', (data, isBinary) => frames.push(isBinary ? data : data.toString()));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send('40{"name":"heavy"}');
    await until(() => frames.some((f) => typeof f === 'string' && f.startsWith('40{')), 'connect');
    const room = freshRoom('heavy');
    ws.send(`421${JSON.stringify(['join', { room }])}`);
    await until(() => frames.some((f) => typeof f === 'string' && f.startsWith('431[')), 'join ack');
    const placeholder = (num) => ({ _placeholder: true, num });
    ws.send(`452-2${JSON.stringify(['publish', { room, event: 'blob', data: [placeholder(0), placeholder(1)] }])}`);
    ws.send(Buffer.alloc(40 * 1024, 1));
    ws.send(Buffer.alloc(40 * 1024, 2));
    await until(() => frames.some((f) => typeof f === 'string' && f.startsWith('432[')), 'the refusal');
    const [reply] = JSON.parse(frames.find((f) => typeof f === 'string' && f.startsWith('432[')).slice(3));
    assert.equal(reply.code, 'too_large');
    ws.send(`423${JSON.stringify(['publish', { room, event: 'chat', data: 'still here' }])}`);
    await until(() => frames.some((f) => typeof f === 'string' && f.startsWith('433[')), 'the next ack');
    ws.close();
  });

  test('the upgrade: probe, noop to the held GET, then everything on the WebSocket', async () => {
    const sid = await open(server.url);
    assert.equal((await post(server.url, sid, '40{"name":"up"}')).status, 200);
    assert.match(await (await get(server.url, sid)).text(), /^40\{"sid"/);
    const held = get(server.url, sid);
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
    const frames = [];
    ws.on('message', (data) => frames.push(data.toString()));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send('2probe');
    await until(() => frames.includes('3probe'), '3probe');
    assert.equal(await (await held).text(), '6', 'the held GET ends with a noop');
    ws.send('5');
    ws.send(`421${JSON.stringify(['join', { room: freshRoom('up') }])}`);
    await until(() => frames.some((f) => f.startsWith('431[')), 'the ack over the WebSocket');
    assert.equal((await get(server.url, sid)).status, 400, 'polling is over for this session');
    ws.close();
  });
});

/**
 * The recovery scenario: a Socket.IO client through `proxy` and a native talker (at `talkerUrl`)
 * in one room; five chats, then the cut (the proxy sent on to `moveTo` if given), ten chats
 * while the client cannot reach the server, then the reconnect. The client must come back
 * with the same pid, `recovered`, and each of the fifteen chats once, in order.
 */
async function cutAndRecover({ proxy, transports, talkerUrl, moveTo, label }) {
  const room = freshRoom('recover');
  const socket = await connect(proxy.url, { auth: { name: 'rita' }, transports });
  assert.equal(socket.recovered, false);
  await socket.emitWithAck('join', { room });
  const chats = collect(socket, 'chat');
  const talker = await native(talkerUrl, 'talker');
  await talker.send({ type: 'join', room });
  const publish = async (from, to) => {
    for (let i = from; i < to; i++) await talker.send({ type: 'publish', room, event: 'chat', data: { i } });
  };
  await publish(0, 5);
  await until(() => chats.length === 5, `${label}: five chats before the cut`);
  const pid = socket._pid;
  const disconnected = next(socket, 'disconnect');
  if (moveTo) proxy.retarget(moveTo);
  proxy.cut();
  await disconnected;
  // Published while the client cannot reach the server: it must get them on recovery.
  await publish(5, 15);
  const reconnected = next(socket, 'connect', 10000);
  proxy.resume();
  await reconnected;
  assert.equal(socket.recovered, true, `${label}: recovered`);
  assert.equal(socket._pid, pid, `${label}: the same client`);
  await until(() => chats.length >= 15, `${label}: the missed chats`);
  await sleep(200);
  assert.deepEqual(chats.map((c) => c.data.i), [...Array(15).keys()], `${label}: each chat once, in order`);
  socket.close();
}

/** A TCP proxy to `target` whose connections can all be cut at once, and sent elsewhere. */
async function cuttableProxy(target) {
  let { hostname, port } = new URL(target);
  const sockets = new Set();
  let paused = false;
  const proxy = net.createServer((client) => {
    if (paused) {
      client.destroy(); // the server is "unreachable"
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    /** Cuts every connection and refuses new ones until resume(). */
    cut() { paused = true; for (const s of sockets) s.destroy(); },
    resume() { paused = false; },
    retarget(url) { ({ hostname, port } = new URL(url)); },
    close() { this.cut(); proxy.close(); },
  };
}
