// The web demo in a real browser: send and receive on every transport, switch transport
// mid-conversation without loss or repeat, the compare view, gifts, scopes across two users,
// error notices, and recovery from a dropped server. Any console error fails the suite.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, chatTexts, connected, freshRoom, launchBrowser, mintToken, openPage, startServer } from './harness.mjs';

const TRANSPORTS = ['short-poll', 'long-poll', 'sse', 'ws'];
let server;
let browser;
const errors = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  assert.deepEqual(errors, [], 'no console errors during the suite');
});

async function say(page, text, scope = 'room') {
  await page.fill('#text', text);
  if (scope === 'room') await page.click('.scopes button[data-to=room]');
  else await page.click(`.scopes button[data-to=${scope}]`);
}

function chatLine(page, text) {
  return page.locator('#messages li.chat', { hasText: text });
}

describe('room view', () => {
  for (const transport of TRANSPORTS) {
    test(`sends and receives over ${transport}`, async () => {
      const room = freshRoom(transport);
      const page = await openPage(browser, `${server.url}/?room=${room}&transport=${transport}&name=solo`, errors);
      await connected(page);
      assert.equal(await page.locator(`#transport button[data-transport=${transport}]`).getAttribute('aria-checked'), 'true');
      await page.locator('#messages li.presence', { hasText: 'solo joined' }).waitFor();
      await say(page, `hello over ${transport}`);
      const line = chatLine(page, `hello over ${transport}`);
      await line.waitFor();
      assert.equal(await line.getAttribute('data-room'), room);
      assert.match(await line.getAttribute('data-seq'), /^\d+$/);
      assert.equal(await page.locator('#online').textContent(), '1');
      await page.context().close();
    });
  }

  test('switching transport mid-conversation loses and repeats nothing', async () => {
    const room = freshRoom('switch');
    const listener = await openPage(browser, `${server.url}/?room=${room}&transport=short-poll&name=listener`, errors);
    const talker = await openPage(browser, `${server.url}/?room=${room}&transport=ws&name=talker`, errors);
    await connected(listener);
    await connected(talker);
    const sent = [];
    const talking = (async () => {
      for (let i = 0; i < 24; i++) {
        const text = `line ${String(i).padStart(2, '0')}`;
        await say(talker, text);
        sent.push(text);
        await talker.waitForTimeout(60);
      }
    })();
    // Hop through every transport (twice) while the talker talks.
    for (const transport of [...TRANSPORTS.slice(1), ...TRANSPORTS]) {
      await listener.click(`#transport button[data-transport=${transport}]`);
      await listener.waitForTimeout(180);
    }
    await talking;
    await chatLine(listener, sent.at(-1)).waitFor();
    await listener.waitForTimeout(300); // a repeat would arrive by now
    const received = (await chatTexts(listener)).map((t) => t.replace(/^talker\s*/, ''));
    assert.deepEqual(received, sent);
    const seqs = await listener.locator('#messages li[data-seq]').evaluateAll((items) => items.map((li) => +li.dataset.seq));
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `seqs rise: ${seqs}`);
    assert.equal(await listener.locator('#messages li.dup').count(), 0);
    assert.ok(await listener.locator('#messages li.switch').count() >= 7, 'each switch is announced');
    await listener.context().close();
    await talker.context().close();
  });

  test('gifts show as events and add up in the tally, for everyone in the room', async () => {
    const room = freshRoom('gifts');
    const fan = await openPage(browser, `${server.url}/?room=${room}&transport=sse&name=fan`, errors);
    const star = await openPage(browser, `${server.url}/?room=${room}&transport=long-poll&name=star`, errors);
    await connected(fan);
    await connected(star);
    await fan.click('#gifts button[data-gift=rose]');
    await fan.click('#gifts button[data-gift=rose]');
    await fan.click('#gifts button[data-gift=rocket]');
    // Likes are droppable events: counted on the screen, no chat line.
    await star.click('#like');
    await star.click('#like');
    for (const page of [fan, star]) {
      await page.locator('#tally [data-gift=rose]', { hasText: '2' }).waitFor();
      await page.locator('#tally [data-gift=rocket]', { hasText: '1' }).waitFor();
      await page.locator('#likes', { hasText: '2' }).waitFor();
      assert.equal(await page.locator('#messages li.gift').count(), 3);
    }
    await fan.context().close();
    await star.context().close();
  });

  test('entering a room shows its last messages and its gift tally', async () => {
    const room = freshRoom('history');
    const host = await openPage(browser, `${server.url}/?room=${room}&transport=ws&name=host`, errors);
    await connected(host);
    await say(host, 'said before you came');
    await host.click('#gifts button[data-gift=rose]');
    await host.click('#gifts button[data-gift=rose]');
    await host.locator('#tally [data-gift=rose]', { hasText: '2' }).waitFor();
    const late = await openPage(browser, `${server.url}/?room=${room}&transport=long-poll&name=late`, errors);
    await connected(late);
    await chatLine(late, 'said before you came').waitFor();
    await late.locator('#tally [data-gift=rose]', { hasText: '2' }).waitFor();
    await late.locator('#messages li.presence', { hasText: 'late joined' }).waitFor();
    assert.equal(await late.locator('#messages li.dup').count(), 0);
    await host.context().close();
    await late.context().close();
  });

  test('"others", "myself" and direct messages reach exactly who they should', async () => {
    const room = freshRoom('scopes');
    const ann = await openPage(browser, `${server.url}/?room=${room}&transport=ws&name=ann`, errors);
    const ben = await openPage(browser, `${server.url}/?room=${room}&transport=sse&name=ben`, errors);
    await connected(ann);
    await connected(ben);
    await ann.locator('#messages li.presence', { hasText: 'ben joined' }).waitFor();
    await say(ann, 'for the others', 'others');
    await say(ann, 'note to self', 'self');
    await ann.fill('#dm-user', 'ben');
    await ann.fill('#text', 'psst ben');
    await ann.click('#dm-send');
    await say(ann, 'for everyone');
    // Both see the last room-wide line; by then every earlier event has been delivered.
    await chatLine(ben, 'for everyone').waitFor();
    await chatLine(ann, 'for everyone').waitFor();
    assert.equal(await chatLine(ben, 'for the others').count(), 1);
    assert.equal(await chatLine(ann, 'for the others').count(), 0);
    assert.equal(await chatLine(ann, 'note to self').count(), 1);
    assert.equal(await chatLine(ben, 'note to self').count(), 0);
    const dm = ben.locator('#messages li.dm-in', { hasText: 'psst ben' });
    await dm.waitFor();
    assert.equal(await dm.getAttribute('data-room'), '@ben');
    await ann.locator('#messages li.dm-out', { hasText: 'psst ben' }).waitFor();
    await ann.context().close();
    await ben.context().close();
  });

  test('server errors show as readable notices', async () => {
    const page = await openPage(browser, `${server.url}/?room=${freshRoom('errors')}&transport=short-poll&name=oops`, errors);
    await connected(page);
    await page.fill('#dm-user', 'nobody-here');
    await page.fill('#text', 'hello?');
    await page.click('#dm-send');
    await page.locator('.toast.error', { hasText: 'Nobody by that name is online' }).waitFor();
    await page.context().close();
  });

  test('the layout works at phone width', async () => {
    const page = await openPage(browser, `${server.url}/?room=${freshRoom('phone')}&transport=ws&name=mobile`, errors, { width: 390, height: 844 });
    await connected(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scroll at 390 px (overflow ${overflow}px)`);
    await say(page, 'from a phone');
    await chatLine(page, 'from a phone').waitFor();
    assert.ok(await page.locator('#transport').isVisible());
    await page.context().close();
  });
});

const PANES = [...TRANSPORTS, 'socketio'];

describe('compare view', () => {
  test('a message reaches all five panes and the stats move', async () => {
    const page = await openPage(browser, `${server.url}/#compare`, errors, { width: 1440, height: 900 });
    for (const transport of PANES) {
      await page.locator(`.pane[data-transport=${transport}][data-state=connected]`).waitFor({ timeout: 15000 });
    }
    await page.fill('#cmp-interval', '500');
    // The stats are drawn on a timer: wait for the first count before reading it.
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector('.pane[data-transport=short-poll] [data-stat=requests]')?.textContent ?? ''));
    const requestsBefore = +(await page.locator('.pane[data-transport=short-poll] [data-stat=requests]').textContent());
    for (const text of ['first message', 'second message', 'third message']) {
      await page.fill('#cmp-text', text);
      await page.click('#cmp-composer button[type=submit]');
      for (const transport of PANES) {
        await page.locator(`.pane[data-transport=${transport}] .pane-messages li`, { hasText: text }).waitFor();
      }
    }
    await page.waitForTimeout(1200); // let the stats refresh and short poll ask a few more times
    for (const transport of PANES) {
      const pane = page.locator(`.pane[data-transport=${transport}]`);
      assert.match(await pane.locator('[data-stat=last]').textContent(), /ms$/, `${transport} shows a latency`);
      assert.match(await pane.locator('[data-stat=p50]').textContent(), /ms$/, `${transport} shows a p50`);
      assert.ok(+(await pane.locator('[data-stat=requests]').textContent()) >= 1, `${transport} counted requests`);
      assert.match(await pane.locator('[data-stat=bytes]').textContent(), /B$/);
      assert.ok(await pane.locator('.timeline .tl').count() > 0, `${transport} draws a timeline`);
    }
    const requestsAfter = +(await page.locator('.pane[data-transport=short-poll] [data-stat=requests]').textContent());
    assert.ok(requestsAfter > requestsBefore + 2, `short poll keeps asking (${requestsBefore} -> ${requestsAfter})`);
    assert.ok(+(await page.locator('.pane[data-transport=short-poll] [data-stat=empty]').textContent()) > 0, 'short poll has empty responses');
    // The screenshot in the README comes from here, but only when asked
    // (UPDATE_SCREENSHOTS=1 npm test): a test run must not rewrite a tracked file.
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      mkdirSync(join(ROOT, 'docs', 'img'), { recursive: true });
      await page.screenshot({ path: join(ROOT, 'docs', 'img', 'compare.png') });
    }
    await page.context().close();
  });

  test('the Socket.IO pane starts on polling and upgrades to a WebSocket, on its timeline', async () => {
    const page = await openPage(browser, `${server.url}/#compare`, errors, { width: 1440, height: 900 });
    const pane = page.locator('.pane[data-transport=socketio]');
    await page.locator('.pane[data-transport=socketio][data-state=connected][data-carrier=websocket]').waitFor({ timeout: 15000 });
    assert.match(await pane.locator('.chip').textContent(), /connected · websocket/);
    // Before the upgrade: held GETs of the polling carrier; then the upgrade mark and the socket.
    assert.ok(await pane.locator('.timeline .tl.hold').count() >= 1, 'polling GETs on the timeline');
    assert.equal(await pane.locator('.timeline .tl.point.upgrade').count(), 1, 'one upgrade mark');
    assert.ok(await pane.locator('.timeline .tl.stream').count() >= 1, 'the WebSocket on the timeline');
    await page.fill('#cmp-text', 'over socket.io');
    await page.click('#cmp-composer button[type=submit]');
    const line = pane.locator('.pane-messages li', { hasText: 'over socket.io' });
    await line.waitFor();
    assert.match(await line.getAttribute('data-seq'), /^\d+$/);
    await page.context().close();
  });
});

describe('resilience', () => {
  test('a dropped server shows "reconnecting" and the page recovers by itself', async () => {
    // A server of its own, restarted on the same port. While it is down the browser logs its
    // own network lines (connection refused or reset, the 404 of the forgotten client); only
    // those are tolerated here, and only here.
    const own = await startServer();
    const port = new URL(own.url).port;
    const local = [];
    const page = await openPage(browser, `${own.url}/?room=${freshRoom('drop')}&transport=ws&name=survivor`, local);
    await connected(page);
    await own.stop('SIGKILL');
    await page.locator('#conn[data-state=reconnecting]').waitFor({ timeout: 15000 });
    const again = await startServer(`127.0.0.1:${port}`);
    await connected(page);
    await say(page, 'back again');
    await chatLine(page, 'back again').waitFor({ timeout: 15000 });
    await page.context().close();
    await again.stop();
    const networkNoise = /net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE)|WebSocket connection to .* failed|status of 404/;
    const unexpected = local.filter((e) => !networkNoise.test(e));
    assert.deepEqual(unexpected, []);
  });
});

describe('tokens', () => {
  test('a ?token= link registers as the token\'s user, with its rights', async () => {
    // A server of its own that needs tokens; the link is what `quartet token --demo-link` prints.
    const secret = 'the-secret-of-the-browser-suite-32-bytes';
    const own = await startServer('127.0.0.1:0', ['--auth-secret', secret]);
    const token = mintToken(['--secret', secret, '--sub', 'vicky', '--role', 'viewer', '--rooms', 'stage-*']);
    const room = freshRoom('stage');
    const page = await openPage(browser, `${own.url}/?room=${room}&transport=ws&name=ignored&token=${token}`, errors);
    await connected(page);
    // The token's name, not the link's `name`.
    await page.locator('#messages li.presence', { hasText: 'vicky joined' }).waitFor();
    // A viewer reads but may not publish: the server's reason shows.
    await say(page, 'may I?');
    await page.locator('.toast.error', { hasText: 'a viewer may join and read, not publish' }).waitFor();
    // A viewer's page has no host controls.
    assert.equal(await page.locator('#moderate').isVisible(), false);
    await page.context().close();
    await own.stop();
  });

  test('a host link shows host controls: mute, unmute and kick', async () => {
    const secret = 'the-secret-of-the-browser-suite-32-bytes';
    const own = await startServer('127.0.0.1:0', ['--auth-secret', secret]);
    const hostToken = mintToken(['--secret', secret, '--sub', 'hana', '--role', 'host']);
    const bobToken = mintToken(['--secret', secret, '--sub', 'bob']);
    const room = freshRoom('stage');
    const host = await openPage(browser, `${own.url}/?room=${room}&transport=sse&token=${hostToken}`, errors);
    const bob = await openPage(browser, `${own.url}/?room=${room}&transport=long-poll&token=${bobToken}`, errors);
    await connected(host);
    await connected(bob);
    assert.equal(await bob.locator('#moderate').isVisible(), false, 'a member has no host controls');
    await say(bob, 'hello from bob');
    await chatLine(host, 'hello from bob').waitFor();

    // Clicking bob's name fills the box; mute: bob is told, and his next message is refused.
    await host.locator('#messages li.chat b.who', { hasText: 'bob' }).click();
    assert.equal(await host.inputValue('#mod-user'), 'bob');
    await host.click('#moderate button[data-action=mute]');
    await host.locator('#messages li.moderation', { hasText: 'hana muted bob for 1 min' }).waitFor();
    await bob.locator('#messages li.moderation', { hasText: 'You were muted in' }).waitFor();
    await say(bob, 'can you hear me');
    await bob.locator('.toast.error', { hasText: 'you are muted in room' }).waitFor();
    await host.click('#moderate button[data-action=unmute]');
    await bob.locator('#messages li.moderation', { hasText: 'hana unmuted you' }).waitFor();
    await say(bob, 'thanks');
    await chatLine(host, 'thanks').waitFor();

    // Kick: the room sees bob kicked, bob is told, and may not rejoin (switching rooms back).
    await host.click('#moderate button[data-action=kick]');
    await host.locator('#messages li.presence', { hasText: 'bob was kicked' }).waitFor();
    await bob.locator('#messages li.moderation', { hasText: 'You were kicked from' }).waitFor();
    await say(bob, 'still here?');
    await bob.locator('.toast.error', { hasText: 'Join the room first' }).waitFor();
    await host.context().close();
    await bob.context().close();
    await own.stop();
  });
});

describe('wire inspector', () => {
  const expected = {
    'short-poll': { out: ['GET /v1/clients/', '/poll?cursor='], in: ['HTTP/1.1 200', 'content-type: application/json', '"events":['] },
    'long-poll': { out: ['GET /v1/clients/', '/long-poll?cursor=', 'wait_ms='], in: ['HTTP/1.1 200', '"events":['] },
    sse: { out: ['GET /v1/clients/', '/sse?cursor=', 'text/event-stream'], in: ['id: ', 'data: {"type":"event"'] },
    ws: { out: ['text frame: FIN, opcode 1', 'masked', '"type":"publish"'], in: ['text frame: FIN, opcode 1', 'unmasked', '"type":"ack"'] },
  };
  for (const transport of TRANSPORTS) {
    test(`shows what ${transport} sends and receives, and each message's seq`, async () => {
      const room = freshRoom(`wire-${transport}`);
      const page = await openPage(browser, `${server.url}/?room=${room}&transport=${transport}&name=wirer`, errors);
      await connected(page);
      await page.click('#wire-panel summary');
      await say(page, `on the wire via ${transport}`);
      await chatLine(page, `on the wire via ${transport}`).waitFor();
      // The message's own line shows its seq in the room.
      assert.match(await chatLine(page, `on the wire via ${transport}`).innerText(), /#\d+/);
      // The event itself came in over this transport, and what went out and in reads as the protocol.
      await page.locator(`#wire li.in[data-transport=${transport}]`, { hasText: `on the wire via ${transport}` }).first().waitFor();
      for (const [direction, pieces] of Object.entries(expected[transport])) {
        for (const piece of pieces) {
          assert.ok(
            await page.locator(`#wire li.${direction}[data-transport=${transport}]`, { hasText: piece }).count() > 0,
            `${transport}: no ${direction} line with ${piece}`,
          );
        }
      }
      // Commands over HTTP are shown as POSTs with their body (the WebSocket sends them as frames).
      if (transport !== 'ws') {
        await page.locator('#wire li.out', { hasText: 'POST /v1/clients/' }).filter({ hasText: '"type":"publish"' }).first().waitFor();
      }
      await page.context().close();
    });
  }
});
