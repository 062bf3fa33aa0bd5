// WebSocket: one full-duplex socket. Events come down as text frames; commands go up as text
// frames, and each is answered by one reply frame, in order.
//   GET /v1/clients/{id}/ws?cursor=C  (Upgrade: websocket)  ->  101, then frames both ways
import { ApiError, utf8Length } from '../api.js';
import { Transport, backoff, diagnose, sleep } from '../transport.js';

/** Bytes of a server-to-client frame header (RFC 6455: unmasked, by payload length). */
function frameHeader(length) {
  return length <= 125 ? 2 : length <= 65535 ? 4 : 10;
}

export class Ws extends Transport {
  name = 'ws';

  start() {
    this.running = true;
    this.attempt = 0;
    this.waiting = []; // resolvers of sent commands, in order
    this.open();
  }

  open() {
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    this.stats.requests += 1;
    this.stream = this.span('stream', 'WebSocket');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const path = `/v1/clients/${this.client}/ws?cursor=${this.cursor}`;
    this.wire('out', `GET ${path} HTTP/1.1\nConnection: Upgrade\nUpgrade: websocket\n(the browser adds Sec-WebSocket-Key; the 101 answer is hidden from pages)`);
    const socket = new WebSocket(`${scheme}://${location.host}${path}`);
    this.socket = socket;
    // Sends wait for the socket to open; they fail if it closes first.
    this.opened = new Promise((resolve, reject) => {
      socket.addEventListener('open', resolve);
      socket.addEventListener('close', () => reject(new ApiError('disconnected', 'the socket closed')));
    });
    this.opened.catch(() => {}); // nobody may be waiting: not an unhandled rejection
    socket.addEventListener('open', () => {
      if (this.attempt) this.stats.reconnects += 1;
      this.attempt = 0;
      this.setState('connected');
    });
    socket.onmessage = (message) => {
      const size = utf8Length(message.data);
      this.stats.bytes += size + frameHeader(size);
      this.wire('in', `text frame: FIN, opcode 1, ${size} bytes (header ${frameHeader(size)} bytes, unmasked)\n${message.data}`);
      const frame = JSON.parse(message.data);
      if (frame.type === 'event' || frame.type === 'gap') {
        this.mark('event', frame.event ?? frame.type);
        this.deliver([frame]);
      } else {
        this.mark('reply', frame.type);
        this.waiting.shift()?.resolve(frame);
      }
    };
    socket.onclose = (close) => this.closed(socket, close);
  }

  async closed(socket, close) {
    if (socket !== this.socket) return;
    this.stream.end = performance.now();
    for (const pending of this.waiting.splice(0)) pending.reject(new ApiError('disconnected', 'the socket closed'));
    if (!this.running) return;
    this.setState('reconnecting');
    // 1008: the server removed this client. 1006 before opening: the upgrade was refused.
    if (close.code === 1008 || close.code === 1006) {
      const refusal = await diagnose(this.client, this.cursor);
      if (refusal) return this.fail(refusal);
    }
    await sleep(backoff(this.attempt++));
    if (this.running) this.open();
  }

  async send(commands) {
    await this.opened;
    const replies = commands.map((command) => new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.mark('send', command.type);
      const text = JSON.stringify(command);
      const size = utf8Length(text);
      this.wire('out', `text frame: FIN, opcode 1, ${size} bytes (header ${frameHeader(size) + 4} bytes with the mask key, masked)\n${text}`);
      this.socket.send(text);
    }));
    return Promise.all(replies);
  }

  stop() {
    this.running = false;
    this.socket?.close(1000);
    if (this.stream && this.stream.end === null) this.stream.end = performance.now();
    super.stop();
  }
}
