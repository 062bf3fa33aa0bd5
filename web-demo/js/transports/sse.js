// Server-Sent Events: one response that never ends; the browser's EventSource parses it and,
// if it drops, reconnects by itself sending the last `id:` as Last-Event-ID.
//   GET /v1/clients/{id}/sse?cursor=C  ->  id: <cursor>\ndata: <event JSON>\n\n ...
// Commands go by POST (inherited from Transport.send).
import { ApiError, utf8Length } from '../api.js';
import { Transport, backoff, diagnose, sleep } from '../transport.js';

export class Sse extends Transport {
  name = 'sse';

  start() {
    this.running = true;
    this.attempt = 0;
    this.open();
  }

  open() {
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    this.stats.requests += 1;
    this.stream = this.span('stream', 'GET sse (open)');
    const url = `/v1/clients/${this.client}/sse?cursor=${this.cursor}`;
    this.wire('out', `GET ${url} HTTP/1.1\nAccept: text/event-stream`);
    this.source = new EventSource(url);
    this.source.onopen = () => {
      if (this.attempt) this.stats.reconnects += 1;
      this.attempt = 0;
      this.setState('connected');
    };
    this.source.onmessage = (message) => {
      // What went over the wire for this event: its id and data lines.
      this.stats.bytes += utf8Length(`id: ${message.lastEventId}\ndata: ${message.data}\n\n`);
      this.wire('in', `id: ${message.lastEventId}\ndata: ${message.data}`);
      const frame = JSON.parse(message.data);
      // `slow`: the server ended a stream that stayed behind; EventSource reconnects by itself
      // from its Last-Event-ID. Any other error is final.
      if (frame.type === 'error' && frame.code === 'slow') return;
      if (frame.type === 'error') return this.fail(new ApiError(frame.code, frame.message));
      this.mark('event', frame.event ?? frame.type);
      this.deliver([frame]);
    };
    this.source.onerror = () => this.dropped();
  }

  /** The stream broke. EventSource retries by itself unless the server refused it outright. */
  async dropped() {
    if (!this.running) return;
    this.stream.end = performance.now();
    this.setState('reconnecting');
    if (this.source.readyState === EventSource.CONNECTING) {
      // The browser reconnects with Last-Event-ID; count it and open a new timeline span.
      this.attempt += 1;
      this.stats.requests += 1;
      this.stream = this.span('stream', 'GET sse (reconnect)');
      return;
    }
    // CLOSED: the server answered with an error status. Find out why.
    this.source.close();
    const refusal = await diagnose(this.client, this.cursor);
    if (refusal) return this.fail(refusal);
    await sleep(backoff(this.attempt++));
    if (this.running) this.open();
  }

  stop() {
    this.source?.close();
    if (this.stream && this.stream.end === null) this.stream.end = performance.now();
    super.stop();
  }
}
