// The four transports by name, as everywhere in quartet, and Socket.IO beside them.
import { LongPoll } from './transports/long_poll.js';
import { ShortPoll } from './transports/short_poll.js';
import { SocketIo } from './transports/socketio.js';
import { Sse } from './transports/sse.js';
import { Ws } from './transports/ws.js';

export const TRANSPORTS = ['short-poll', 'long-poll', 'sse', 'ws'];

/** The compare view's panes: the four, and a Socket.IO client (Engine.IO's own technique). */
export const PANES = [...TRANSPORTS, 'socketio'];

const CLASSES = { 'short-poll': ShortPoll, 'long-poll': LongPoll, sse: Sse, ws: Ws, socketio: SocketIo };

/**
 * A stopped transport of kind `name` for `session` ({client, cursor}; for Socket.IO, {name}: its
 * CONNECT registers the client). Call start().
 */
export function createTransport(name, session, options, hooks) {
  return new CLASSES[name](session, options, hooks);
}

/** One line on what each technique costs, shown under the room view. */
export const HINTS = {
  'short-poll': 'Short poll: asks every second and gets an answer at once — an empty one most of the time. A message waits half an interval on average.',
  'long-poll': 'Long poll: the request waits at the server until something happens, then comes back; the page asks again at once.',
  sse: 'Server-Sent Events: one response that never ends. The browser reconnects by itself with Last-Event-ID. Sending still goes by POST.',
  ws: 'WebSocket: one socket both ways. Sends and events are frames of a few bytes of overhead.',
};
