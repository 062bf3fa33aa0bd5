// Long polling: ask; the server holds the request until there is an event (or `wait` passes);
// ask again at once.
//   GET /v1/clients/{id}/long-poll?cursor=C&wait_ms=N  ->  {"events":[...],"cursor":"..."}
import { ApiError, fetchJson } from '../api.js';
import { PollingTransport, backoff, sleep } from '../transport.js';

export class LongPoll extends PollingTransport {
  name = 'long-poll';

  async loop() {
    let failures = 0;
    while (this.running) {
      const span = this.span('hold', 'GET long-poll');
      this.stats.requests += 1;
      this.setState(failures ? 'reconnecting' : 'connected');
      try {
        const url = `/v1/clients/${this.client}/long-poll?cursor=${this.cursor}&wait_ms=${this.options.wait}`;
        const { body, bytes } = await fetchJson(url, { signal: this.abort.signal }, this.wireHook);
        this.stats.bytes += bytes;
        span.empty = body.events.length === 0;
        if (span.empty) this.stats.empty += 1;
        if (failures) this.stats.reconnects += 1;
        failures = 0;
        this.deliver(body.events);
        this.cursor = body.cursor;
      } catch (error) {
        if (!this.running) break;
        if (error instanceof ApiError && error.status) return this.fail(error);
        this.setState('reconnecting');
        await sleep(backoff(failures++), this.abort.signal);
      } finally {
        span.end = performance.now();
      }
    }
  }
}
