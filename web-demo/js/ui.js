// Small DOM helpers shared by the views. User text only ever goes in via textContent.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Creates an element with attributes/properties and children (strings become text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

/** A notice in the corner for a few seconds; `kind` is 'error' or 'info'. */
export function toast(message, kind = 'error') {
  const node = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  $('#toasts').append(node);
  setTimeout(() => node.remove(), 5000);
}

/** The sentence to show for a server error code. */
export function describeError(error) {
  const text = {
    rate_limited: 'Slow down: too many messages per second.',
    too_large: 'That message is too large.',
    unauthorized: 'This server needs a valid token: open the demo with a ?token= link (quartet token --demo-link).',
    token_expired: 'The token of this link has expired: ask for a new link.',
    not_joined: 'Join the room first.',
    unknown_user: 'Nobody by that name is online.',
    bad_request: 'The server could not understand that.',
  }[error.code];
  // A refusal's own sentence says what is not allowed (a viewer publishing, a room outside
  // the token's rooms).
  if (error.code === 'forbidden') return `Not allowed: ${error.message} (forbidden)`;
  return text ? `${text} (${error.code})` : `${error.code}: ${error.message}`;
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export const GIFTS = { rose: '🌹', star: '⭐', rocket: '🚀' };

/** A random guest name, kept for the tab. */
export function guestName() {
  return `guest-${Math.floor(1000 + Math.random() * 9000)}`;
}
