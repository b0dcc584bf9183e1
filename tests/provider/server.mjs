// Test-only OpenID Provider for the oauth_shield test suite.
//
// Wraps the real `oidc-provider` package so the Python tests validate tokens
// minted by an independent, spec-following implementation instead of tokens we
// forge ourselves. Started by tests/provider/__init__.py (OIDCProvider); never
// expose it beyond loopback: it has unauthenticated admin endpoints.
//
// Environment:
//   PORT          port to bind on 127.0.0.1 (0 = any free port)
//   CLIENTS_JSON  {"client-rs256": "<secret>", ...}; secrets come from Python so
//                 tests can look for them in logs (leak canaries)
//   EXIT_ON_STDIN_EOF=1  exit when stdin closes (the launcher died)
//   PROVIDER_DEBUG=1     log provider errors to stderr
//
// MCP authorization tests (tests/mcp): open dynamic client registration, the
// authorization-code flow with PKCE behind a test-only interaction that logs
// in and consents at once (no browser), and tokens for any loopback http
// resource (an MCP server on a random port), whose audience is that resource.
//
// Protocol: once listening, exactly one JSON line is written to stdout:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT}
// Everything else (including oidc-provider's own notices) goes to stderr.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints notices with console.info (stdout); keep stdout for the
// one handshake line only.
console.log = console.error;
console.info = console.error;

const API_AUDIENCE = 'https://api.example.test';
const OTHER_AUDIENCE = 'https://other.example.test';
const RESOURCE_SCOPE = 'read write admin';
const DEFAULT_TTL = 3600;
// A resource server the tests start on loopback (an MCP server): http, any port, any path.
const LOOPBACK_RESOURCE = /^http:\/\/(127\.0\.0\.1|localhost):\d+(\/[^?#]*)?$/;
// The one end user of the authorization-code flow; the interaction logs it in.
const TEST_ACCOUNT = 'mcp-user';
const SHORT_TTL = 2;

// client_id -> how its tokens for API_AUDIENCE look.
const CLIENT_PROFILES = {
  'client-rs256': { format: 'jwt', alg: 'RS256', ttl: DEFAULT_TTL },
  'client-es256': { format: 'jwt', alg: 'ES256', ttl: DEFAULT_TTL },
  'client-opaque': { format: 'opaque', ttl: DEFAULT_TTL },
  'client-short': { format: 'jwt', alg: 'RS256', ttl: SHORT_TTL },
  // DPoP-bound tokens only (RFC 9449): the token request must carry a DPoP proof.
  'client-dpop': { format: 'jwt', alg: 'ES256', ttl: DEFAULT_TTL, dpop: true },
  'client-dpop-opaque': { format: 'opaque', ttl: DEFAULT_TTL, dpop: true },
  'resource-server': { format: 'opaque', ttl: DEFAULT_TTL },
};
const INTROSPECTOR = 'resource-server';

const port = Number.parseInt(process.env.PORT ?? '0', 10);
const secrets = JSON.parse(process.env.CLIENTS_JSON ?? '{}');
for (const id of Object.keys(CLIENT_PROFILES)) {
  if (typeof secrets[id] !== 'string' || !secrets[id]) {
    console.error(`CLIENTS_JSON is missing a secret for ${id}`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------
// Keys

let generation = 0;
function newSigningKeys() {
  generation += 1;
  const tag = `${generation}-${crypto.randomBytes(4).toString('hex')}`;
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return [
    { ...rsa.privateKey.export({ format: 'jwk' }), kid: `rs256-${tag}`, use: 'sig', alg: 'RS256' },
    { ...ec.privateKey.export({ format: 'jwk' }), kid: `es256-${tag}`, use: 'sig', alg: 'ES256' },
  ];
}

// Ordered newest first: oidc-provider signs with the first key matching the alg.
let keys = newSigningKeys();

// ---------------------------------------------------------------------------
// Storage shared by every Provider instance, so opaque tokens survive key
// rotation. Unbounded (unlike the built-in 1000-entry LRU) so load tests do not
// see old tokens silently evicted; expired entries are swept.

const store = new Map(); // key -> { value, expiresAt }
const MAX_ENTRIES = 200_000;

function sget(key) {
  const hit = store.get(key);
  if (!hit) return undefined;
  if (hit.expiresAt && hit.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return hit.value;
}
function sset(key, value, expiresIn) {
  store.delete(key);
  if (store.size >= MAX_ENTRIES) store.delete(store.keys().next().value);
  store.set(key, { value, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
}
setInterval(() => {
  const now = Date.now();
  for (const [key, { expiresAt }] of store) {
    if (expiresAt && expiresAt <= now) store.delete(key);
  }
}, 30_000).unref();

class SharedMemoryAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    // A registered client may ask for any supported scope later: an MCP client registers
    // with the scopes of its first challenge, then steps up to more.
    if (this.model === 'Client') delete payload.scope;
    sset(this.key(id), payload, expiresIn);
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const members = sget(grantKey) ?? [];
      members.push(this.key(id));
      sset(grantKey, members, expiresIn);
    }
    if (payload.uid) sset(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) sset(`userCode:${payload.userCode}`, id, expiresIn);
  }

  async find(id) { return sget(this.key(id)); }

  async findByUid(uid) {
    const id = sget(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = sget(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = sget(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of sget(grantKey) ?? []) store.delete(key);
    store.delete(grantKey);
  }
}

// ---------------------------------------------------------------------------
// Provider

let issuer;
let provider;
let providerCallback;

function resourceServerInfo(resource, client) {
  const profile = CLIENT_PROFILES[client?.clientId] ?? CLIENT_PROFILES['client-rs256'];
  if (resource === API_AUDIENCE) {
    const info = {
      scope: RESOURCE_SCOPE,
      audience: API_AUDIENCE,
      accessTokenTTL: profile.ttl,
      accessTokenFormat: profile.format,
    };
    if (profile.format === 'jwt') info.jwt = { sign: { alg: profile.alg } };
    return info;
  }
  if (LOOPBACK_RESOURCE.test(resource ?? '')) {
    return {
      scope: RESOURCE_SCOPE,
      audience: resource,
      accessTokenTTL: DEFAULT_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    };
  }
  if (resource === OTHER_AUDIENCE) {
    return {
      scope: RESOURCE_SCOPE,
      audience: OTHER_AUDIENCE,
      accessTokenTTL: DEFAULT_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    };
  }
  return undefined;
}

function buildProvider() {
  const p = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    jwks: { keys },
    // The proof algorithms oauth_shield accepts by default (oidc-provider: ES256, EdDSA).
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'RS256', 'PS256', 'EdDSA'] },
    clients: Object.keys(CLIENT_PROFILES).map((clientId) => ({
      client_id: clientId,
      client_secret: secrets[clientId],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      dpop_bound_access_tokens: CLIENT_PROFILES[clientId].dpop === true,
    })),
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    // The resource scopes too, so that a registered client may ask for them (RFC 7591
    // scope metadata); client-credentials tokens are unchanged by it.
    scopes: ['openid', 'offline_access', ...RESOURCE_SCOPE.split(' ')],
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    features: {
      // Only what a client-credentials resource-server test needs.
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      userinfo: { enabled: false },
      clientCredentials: { enabled: true },
      // A proof at the token endpoint binds the token to its key: cnf.jkt in the JWT, and in
      // the introspection answer of an opaque token (RFC 9449 §6). No nonces.
      dPoP: { enabled: true },
      introspection: {
        enabled: true,
        // The API (resource-server) may introspect anyone's token; other
        // clients only their own.
        allowedPolicy: async (ctx, client, token) => (
          client.clientId === INTROSPECTOR || client.clientId === token.clientId
        ),
      },
      revocation: { enabled: true },
      // Open dynamic client registration (RFC 7591), as MCP clients use it.
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? API_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource, client) => {
          const info = resourceServerInfo(resource, client);
          if (!info) throw new errors.InvalidTarget();
          return info;
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL,
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Error details go to stderr only when asked for; tests read responses.
  if (process.env.PROVIDER_DEBUG) {
    p.on('server_error', (ctx, err) => console.error('server_error', err));
    p.on('grant.error', (ctx, err) => console.error('grant.error', err));
  }
  return p;
}

function installProvider() {
  provider = buildProvider();
  providerCallback = provider.callback();
}

// ---------------------------------------------------------------------------
// Stats and faults (test-only)

const PATH_NAMES = {
  '/.well-known/openid-configuration': 'discovery',
  '/jwks': 'jwks',
  '/token': 'token',
  '/token/introspection': 'introspection',
  '/token/revocation': 'revocation',
};
const FAULTABLE = new Set(['discovery', 'jwks', 'introspection']);

function emptyStats() {
  return {
    discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0, other: 0,
  };
}
let stats = emptyStats();
let faults = {};

function validateFaults(body) {
  const out = {};
  if (body.delay_ms !== undefined) {
    if (!Number.isFinite(body.delay_ms) || body.delay_ms < 0) throw new Error('delay_ms must be a number >= 0');
    out.delay_ms = body.delay_ms;
  }
  if (body.mode !== undefined) {
    if (!['reset', 'status', 'html'].includes(body.mode)) throw new Error('mode must be reset, status or html');
    out.mode = body.mode;
  }
  if (body.status !== undefined) {
    if (!Number.isInteger(body.status) || body.status < 100 || body.status > 599) throw new Error('status must be an HTTP status code');
    out.status = body.status;
  }
  if (out.mode === 'status' && out.status === undefined) out.status = 503;
  return out;
}

function applyFault(req, res, proceed) {
  const { delay_ms: delayMs, mode, status } = faults;
  const act = () => {
    if (mode === 'reset') {
      // TCP RST where supported, so clients see "connection reset by peer".
      if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
      else req.socket.destroy();
    } else if (mode === 'status') {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<html><body><h1>${status} ${http.STATUS_CODES[status] ?? ''}</h1></body></html>\n`);
    } else if (mode === 'html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><html><body><p>Captive portal: please log in</p></body></html>\n');
    } else {
      proceed();
    }
  };
  if (delayMs) setTimeout(act, delayMs);
  else act();
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function publishedKids() {
  return keys.map((k) => k.kid);
}

async function handleAdmin(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case 'POST /__test__/rotate': {
        const dropOld = ['1', 'true', 'yes'].includes(url.searchParams.get('drop_old') ?? '');
        const fresh = newSigningKeys();
        keys = dropOld ? fresh : [...fresh, ...keys];
        installProvider();
        return sendJson(res, 200, { kids: publishedKids() });
      }
      case 'GET /__test__/keys':
        return sendJson(res, 200, { kids: publishedKids() });
      case 'GET /__test__/stats':
        return sendJson(res, 200, stats);
      case 'POST /__test__/stats/reset':
        stats = emptyStats();
        return sendJson(res, 200, stats);
      case 'POST /__test__/faults': {
        const raw = await readBody(req);
        faults = validateFaults(raw.trim() ? JSON.parse(raw) : {});
        return sendJson(res, 200, faults);
      }
      case 'GET /__test__/faults':
        return sendJson(res, 200, faults);
      default:
        return sendJson(res, 404, { error: 'not_found' });
    }
  } catch (err) {
    return sendJson(res, 400, { error: 'invalid_request', error_description: String(err.message ?? err) });
  }
}

// ---------------------------------------------------------------------------
// Test-only interaction: log TEST_ACCOUNT in, then grant every scope asked for,
// so the authorization-code flow completes without a browser.

async function handleInteraction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: TEST_ACCOUNT } };
    } else {
      const { Grant } = provider;
      const grant = details.grantId
        ? await Grant.find(details.grantId)
        : new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    sendJson(res, 400, { error: 'invalid_request', error_description: String(err.message ?? err) });
  }
}

// ---------------------------------------------------------------------------
// HTTP server: one server for the whole life of the process; the Provider
// behind it can be swapped (key rotation) without changing port or issuer.

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/__test__/')) {
    handleAdmin(req, res, url);
    return;
  }
  if (url.pathname.startsWith('/interaction/') && req.method === 'GET') {
    handleInteraction(req, res);
    return;
  }
  const name = PATH_NAMES[url.pathname] ?? 'other';
  stats[name] += 1;
  const proceed = () => {
    if (!providerCallback) {
      sendJson(res, 503, { error: 'temporarily_unavailable' });
      return;
    }
    providerCallback(req, res);
  };
  if (FAULTABLE.has(name) && (faults.delay_ms || faults.mode)) applyFault(req, res, proceed);
  else proceed();
});
server.keepAliveTimeout = 5_000;

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// The launcher holds our stdin open; EOF means it died without stop(), so do
// not linger as an orphan holding the port.
if (process.env.EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  issuer = `http://127.0.0.1:${actual}`;
  installProvider();
  process.stdout.write(`${JSON.stringify({ issuer, port: actual })}\n`);
});
