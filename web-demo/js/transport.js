// What the four transports share: stats, a request timeline, connection state, and the
// bookkeeping of the cursor. Each transport file only says how it asks the server.
//
// A transport is created with a client session and hooks:
//   onFrames(frames)    events and gaps, in order, each carrying the cursor after it
//   onState(state)      'connecting' | 'connected' | 'reconnecting' | 'stopped'
//   onError(apiError)   the server refused the client (e.g. unknown_client after a restart)
//   onWire(dir, text)   optional: what went over the wire, as text ('out' or 'in'), for the
//                       wire inspector
// and offers start(), stop(), send(commands) -> replies, and `cursor`.

import { ApiError, postCommands } from './api.js';

/** How long the timeline remembers, in ms. */
export const TIMELINE_SPAN_MS = 12000;

export class Transport {
  constructor(session, options, hooks) {
    this.client = session.client;
    this.cursor = session.cursor;
    this.options = options; // { interval, wait } read live, so sliders apply at once
    this.hooks = hooks;
    this.running = false;
    this.state = 'stopped';
    this.stats = { requests: 0, bytes: 0, empty: 0, reconnects: 0, frames: 0 };
    this.timeline = []; // { kind, start, end, label, empty }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.hooks.onState?.(state);
  }

  /** Records a span on the timeline; returns it so the caller can close it (`end`). */
  span(kind, label, start = performance.now()) {
    const span = { kind, label, start, end: null, empty: false };
    this.timeline.push(span);
    const horizon = performance.now() - TIMELINE_SPAN_MS;
    while (this.timeline.length && this.timeline[0].end !== null && this.timeline[0].end < horizon) {
      this.timeline.shift();
    }
    return span;
  }

  /** A point on the timeline (an event arriving, a frame going out). */
  mark(kind, label) {
    const span = this.span(kind, label);
    span.end = span.start;
    return span;
  }

  /** Tells the wire inspector what went out ('out') or came in ('in'), if the page listens. */
  wire(direction, text) {
    this.hooks.onWire?.(direction, text);
  }

  /** `wire` bound to this transport, or null when nobody listens (no text is built then). */
  get wireHook() {
    return this.hooks.onWire ? (direction, text) => this.wire(direction, text) : null;
  }

  /** Hands frames to the page and moves the cursor past them. */
  deliver(frames) {
    if (!frames.length) return;
    this.stats.frames += frames.length;
    this.cursor = frames[frames.length - 1].cursor;
    this.hooks.onFrames(frames);
  }

  /** Commands over POST (short poll, long poll, SSE). The WebSocket overrides this. */
  async send(commands) {
    const span = this.span('command', `POST commands ×${commands.length}`);
    this.stats.requests += 1;
    try {
      const { replies, bytes } = await postCommands(this.client, commands, this.wireHook);
      this.stats.bytes += bytes;
      return replies;
    } finally {
      span.end = performance.now();
    }
  }

  /** A refused client is final for this transport: stop and tell the page. */
  fail(error) {
    this.stop();
    this.hooks.onError?.(error instanceof ApiError ? error : new ApiError('network', String(error)));
  }

  start() { throw new Error('start() is per transport'); }
  stop() { this.running = false; this.setState('stopped'); }
}

/**
 * Base of the two polling transports: a loop of requests (`loop()`, per transport) that stop()
 * cuts short, in-flight request included.
 */
export class PollingTransport extends Transport {
  start() {
    this.running = true;
    this.abort = new AbortController();
    this.setState('connecting');
    this.loop();
  }

  stop() {
    this.abort?.abort();
    super.stop();
  }
}

/** Waits `ms`, or less if `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Back-off for reconnects: 0.5 s, 1 s, 2 s … capped at 5 s. */
export function backoff(attempt) {
  return Math.min(5000, 500 * 2 ** Math.min(attempt, 4));
}

/** Asks the server why reading failed: an ApiError if it refuses the client, else null. */
export async function diagnose(client, cursor) {
  try {
    const response = await fetch(`/v1/clients/${client}/poll?cursor=${cursor}`);
    if (response.ok) return null;
    const body = await response.json().catch(() => ({}));
    return new ApiError(body.code ?? 'http_error', body.message ?? `HTTP ${response.status}`, response.status);
  } catch {
    return null; // the server is unreachable: keep retrying
  }
}
