// Socket.IO: the real browser socket.io-client (installed with npm, served by quartet at
// /vendor/), talking Engine.IO to /socket.io/. It starts with HTTP long-polling, then probes a
// WebSocket and upgrades to it: the timeline shows the held GETs, the upgrade, then the socket.
// Commands are emits with an ack; events arrive as (data, meta, offset).
import { ApiError, TOKEN, utf8Length } from '../api.js';
import { Transport } from '../transport.js';

/** Where quartet serves the client library (from web-demo/node_modules, when installed). */
export const CLIENT_URL = '/vendor/socket.io.esm.min.js';

export class SocketIo extends Transport {
  name = 'socketio';

  constructor(session, options, hooks) {
    super(session, options, hooks);
    this.user = session.name;
    this.carrier = null; // 'polling', then 'websocket'
  }

  start() {
    this.running = true;
    this.setState('connecting');
    this.ready = this.connect();
    this.ready.catch(() => {}); // failures are reported through hooks
  }

  async connect() {
    let io;
    try {
      ({ io } = await import(CLIENT_URL));
    } catch {
      const error = new ApiError('unavailable', 'socket.io-client is not installed: run npm ci in web-demo/, then build quartet again');
      this.fail(error);
      throw error;
    }
    const socket = io({ auth: TOKEN ? { token: TOKEN } : { name: this.user }, reconnectionDelayMax: 5000 });
    this.socket = socket;
    socket.io.on('open', () => this.watch(socket.io.engine));
    socket.on('connect', () => {
      this.client = socket._pid; // the quartet client behind the socket
      this.setState('connected');
    });
    socket.on('disconnect', () => { if (this.running) this.setState('reconnecting'); });
    socket.io.on('reconnect', () => { this.stats.reconnects += 1; });
    socket.onAny((event, data, meta, offset) => {
      this.mark('event', event);
      const type = event === 'gap' ? 'gap' : 'event';
      this.deliver([{ type, room: meta?.room, seq: meta?.seq, event, from: meta?.from, data, ts: meta?.ts, cursor: offset }]);
    });
    await new Promise((resolve) => socket.once('connect', resolve));
  }

  /** Counts the requests and bytes of the Engine.IO carriers, and draws them. */
  watch(engine) {
    const track = (carrier) => {
      if (carrier.name === 'polling') {
        let held = null;
        carrier.on('poll', () => {
          this.stats.requests += 1;
          held = this.span('hold', 'GET /socket.io/ (polling)');
        });
        carrier.on('pollComplete', () => { if (held) held.end = performance.now(); });
        carrier.on('drain', () => { this.stats.requests += 1; this.mark('send', 'POST /socket.io/'); });
      } else {
        this.stats.requests += 1;
        this.stream = this.span('stream', 'WebSocket (probing)');
      }
      // Every body or frame that arrives, before the client parses it.
      const onData = carrier.onData.bind(carrier);
      carrier.onData = (data) => {
        const text = typeof data === 'string' ? data : null;
        this.stats.bytes += text === null ? data.byteLength : utf8Length(text);
        if (carrier.name === 'polling' && text !== null && !/(^|\x1e)4[25]/.test(text)) this.stats.empty += 1;
        onData(data);
      };
    };
    this.carrier = engine.transport.name;
    track(engine.transport);
    engine.on('upgrading', (carrier) => track(carrier));
    engine.on('upgrade', (carrier) => {
      this.carrier = carrier.name;
      this.mark('upgrade', `upgraded to ${carrier.name}`);
      if (this.stream) this.stream.label = 'WebSocket (upgraded)';
      this.hooks.onState?.(this.state);
    });
    engine.on('close', () => { if (this.stream && this.stream.end === null) this.stream.end = performance.now(); });
  }

  async send(commands) {
    await this.ready;
    const replies = [];
    for (const { type, ...fields } of commands) {
      this.mark('send', type);
      const reply = await this.socket.emitWithAck(type, fields);
      this.mark('reply', reply.type);
      replies.push(reply);
    }
    return replies;
  }

  stop() {
    this.running = false;
    this.socket?.disconnect();
    super.stop();
  }
}
