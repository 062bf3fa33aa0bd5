// Short polling: ask every `interval` ms; the answer comes at once, events or not.
//   GET /v1/clients/{id}/poll?cursor=C  ->  {"events":[...],"cursor":"..."}
import { ApiError, fetchJson } from '../api.js';
import { PollingTransport, backoff, sleep } from '../transport.js';

export class ShortPoll extends PollingTransport {
  name = 'short-poll';

  async loop() {
    let failures = 0;
    while (this.running) {
      const span = this.span('request', 'GET poll');
      this.stats.requests += 1;
      try {
        const { body, bytes } = await fetchJson(`/v1/clients/${this.client}/poll?cursor=${this.cursor}`, { signal: this.abort.signal }, this.wireHook);
        this.stats.bytes += bytes;
        span.empty = body.events.length === 0;
        if (span.empty) this.stats.empty += 1;
        if (failures) this.stats.reconnects += 1;
        failures = 0;
        this.setState('connected');
        this.deliver(body.events);
        this.cursor = body.cursor;
        await sleep(this.options.interval, this.abort.signal);
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
