// The HTTP calls every transport shares: registering a client and posting commands.
// Transports themselves live in transports/*.js, one file each.

/** An error the server answered with: {"type":"error","code":..,"message":..}. */
export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(`${code}: ${message}`);
    this.code = code;
    this.status = status;
  }
}

/** A fetch response's status line and headers, rebuilt as they came (for the wire inspector). */
export function responseHead(response) {
  let head = `HTTP/1.1 ${response.status} ${response.statusText}\r\n`;
  response.headers.forEach((value, name) => { head += `${name}: ${value}\r\n`; });
  return head;
}

/** Bytes of a fetch response as received: status line, headers and body (rebuilt). */
export function responseBytes(response, bodyText) {
  return utf8Length(responseHead(response)) + 2 + utf8Length(bodyText);
}

const encoder = new TextEncoder();
export function utf8Length(text) {
  return encoder.encode(text).length;
}

/**
 * fetch + JSON, turning error bodies into ApiError. Returns { body, bytes }. `wire`, if given, is
 * told the request line and the response (status line, headers, body) for the wire inspector.
 */
export async function fetchJson(url, init = {}, wire = null) {
  wire?.('out', `${init.method ?? 'GET'} ${url} HTTP/1.1${init.body ? `\n\n${init.body}` : ''}`);
  const response = await fetch(url, init);
  const text = await response.text();
  const bytes = responseBytes(response, text);
  wire?.('in', `${responseHead(response).trimEnd().replaceAll('\r\n', '\n')}\n\n${text}`);
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: handled below */ }
  if (!response.ok) {
    throw new ApiError(body?.code ?? 'http_error', body?.message ?? `HTTP ${response.status}`, response.status);
  }
  return { body, bytes };
}

/** The token of a `?token=` link (`quartet token --demo-link URL` prints one). */
export const TOKEN = new URLSearchParams(location.search).get('token');

/**
 * The role the link's token claims (`viewer`, `member`, `host`, `moderator`), read from its
 * payload for the page's controls only: the server checks the signature and every command.
 */
export function tokenRole() {
  if (!TOKEN) return 'member';
  try {
    const payload = TOKEN.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).role ?? 'member';
  } catch {
    return 'member';
  }
}

/**
 * POST /v1/clients: a new client for user `name` (or, opened with `?token=`, the token's user). With the `cursor` of a client the server
 * forgot, the new one rejoins its rooms and reads on from there: nothing missed.
 */
export async function register(name, cursor) {
  const headers = { 'content-type': 'application/json' };
  const request = cursor ? { cursor } : {};
  // On a server with --auth-secret the token names the user (and what it may do).
  if (TOKEN) headers.authorization = `Bearer ${TOKEN}`;
  else request.name = name;
  const { body } = await fetchJson('/v1/clients', { method: 'POST', headers, body: JSON.stringify(request) });
  return body; // { client, name, cursor, heartbeat_ms, timeout_ms }
}

/** DELETE /v1/clients/{id}: leave everything now. Best effort. */
export async function unregister(client) {
  try { await fetch(`/v1/clients/${client}`, { method: 'DELETE', keepalive: true }); } catch { /* gone anyway */ }
}

/** POST /v1/clients/{id}/commands. Returns { replies, bytes }. */
export async function postCommands(client, commands, wire = null) {
  const { body, bytes } = await fetchJson(`/v1/clients/${client}/commands`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(commands),
  }, wire);
  return { replies: body.replies, bytes };
}
