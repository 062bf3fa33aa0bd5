// Test harness: starts the real quartet binary on an ephemeral port and Debian's Chromium
// through playwright-core (never a downloaded browser), and watches every page for console
// errors.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const BIN = process.env.QUARTET_BIN ?? join(ROOT, 'target', 'debug', 'quartet');

/** Starts `quartet serve` on `addr` (default: any free port) with `extra` flags; resolves with { url, stop }. */
export async function startServer(addr = '127.0.0.1:0', extra = []) {
  if (!existsSync(BIN)) throw new Error(`no quartet binary at ${BIN}: run cargo build first (or set QUARTET_BIN)`);
  const child = spawn(BIN, ['serve', '--addr', addr, '--store', 'memory', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('quartet did not start within 20 s')), 20000);
    lines.on('line', (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    });
    child.once('exit', (code) => reject(new Error(`quartet exited early with ${code}`)));
  });
  return {
    url,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return;
      child.kill(signal);
      await once(child, 'exit');
    },
  };
}

/** A token from `quartet token` (the binary under test) with `args`. */
export function mintToken(args) {
  const result = spawnSync(BIN, ['token', ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`quartet token failed: ${result.stderr}`);
  return result.stdout.trim().split('\n')[0];
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A new page in its own context (its own session storage: a separate user) that records console
 * errors and uncaught exceptions into `errors`.
 */
export async function openPage(browser, url, errors, viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${url}: console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`${url}: page error: ${error.message}`));
  await page.goto(url);
  return page;
}

/** Waits until the room view says it is connected. */
export async function connected(page) {
  await page.locator('#conn[data-state=connected]').waitFor({ timeout: 15000 });
}

/** A room name no other test uses. */
export function freshRoom(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Texts of the chat lines in the room view, in order. */
export async function chatTexts(page) {
  return page.locator('#messages li.chat').evaluateAll((items) =>
    items.map((li) => li.childNodes[1]?.textContent.trim() ?? ''));
}
