#!/usr/bin/env node
// A real OAuth 2.0 / OpenID Connect server (npm oidc-provider, pinned in package-lock.json) for
// oauth-keeper's conformance tests. Local only, never deployed, plain http on 127.0.0.1.
//
//   node local/oidc/server.mjs --port 0 --config cfg.json
//   node local/oidc/server.mjs --port 0 --client-id app --client-secret s3cret \
//        --redirect-uri https://keeper.example.com/callback/oidc
//
// When it listens it prints exactly one JSON line on stdout, and nothing else ever goes to stdout:
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "client_id": "...", "pid": N}
// Diagnostics (oidc-provider notices, grant errors) go to stderr. SIGTERM/SIGINT: clean exit 0.
//
// Config (JSON file; argv flags override it; every field optional except the client's):
//   {
//     "client": {
//       "client_id": "...", "client_secret": "...",
//       "redirect_uris": ["https://keeper.example.com/callback/oidc"],   // matched exactly
//       "token_endpoint_auth_method": "client_secret_post"               // or client_secret_basic
//     },
//     "access_token_ttl": 120,          // seconds (expires_in of every access token)
//     "refresh_token_ttl": 86400,       // seconds
//     "refresh_token_sliding": true,    // false: a rotated refresh token keeps its predecessor's end
//     "authorization_code_ttl": 60,
//     "strict_client_auth": true,       // false: accept basic and post whatever the client registered
//     "accounts": {"alice": {"name": "Alice Example", "picture": "https://..."}}  // optional claims
//   }
//
// Behaviour the suite relies on (see tests/conformance/test_oidc_server_itself.py):
//   * PKCE S256 required for every client (code_challenge_method must be sent explicitly);
//   * every refresh rotates the refresh token; presenting a consumed one gives invalid_grant AND
//     revokes the whole grant (all its access and refresh tokens);
//   * a refresh token is issued to any client allowed the refresh_token grant, with or without the
//     offline_access scope, and it does not die with the browser session at the provider;
//   * RFC 9207: authorization responses carry iss=<issuer>;
//   * devInteractions: login form (any login, any password) then consent form.
//
// Test-only extra (not OAuth): POST /__admin/accounts/<account_id>/revoke revokes every grant of that
// account, as if the user removed the app at the provider (the server listens on loopback only).

import { generateKeyPair, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs, promisify } from 'node:util';

// oidc-provider prints its NOTICEs with console.info, i.e. on stdout: stdout is reserved for the ready line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

// RSA key generation (~0.3 s) runs on the thread pool while oidc-provider loads.
const rsaKeyPair = promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`oidc server: ${message}\n`);
  process.exit(2);
}

let argv;
try {
  ({ values: argv } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      config: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'auth-method': { type: 'string' },
      'access-token-ttl': { type: 'string' },
      'refresh-token-ttl': { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}

let config = {};
if (argv.config) {
  try {
    config = JSON.parse(readFileSync(argv.config, 'utf8'));
  } catch (err) {
    fail(`cannot read --config ${argv.config}: ${err.message}`);
  }
}
const client = { ...(config.client ?? {}) };
if (argv['client-id']) client.client_id = argv['client-id'];
if (argv['client-secret']) client.client_secret = argv['client-secret'];
if (argv['redirect-uri']) client.redirect_uris = argv['redirect-uri'];
if (argv['auth-method']) client.token_endpoint_auth_method = argv['auth-method'];
if (argv['access-token-ttl']) config.access_token_ttl = Number(argv['access-token-ttl']);
if (argv['refresh-token-ttl']) config.refresh_token_ttl = Number(argv['refresh-token-ttl']);

if (!client.client_id || !client.client_secret || !Array.isArray(client.redirect_uris) || !client.redirect_uris.length) {
  fail('a client needs client_id, client_secret and redirect_uris (config "client" or --client-id/--client-secret/--redirect-uri)');
}
const authMethod = client.token_endpoint_auth_method ?? 'client_secret_post';
if (!['client_secret_post', 'client_secret_basic'].includes(authMethod)) {
  fail(`token_endpoint_auth_method must be client_secret_post or client_secret_basic, not ${authMethod}`);
}

function seconds(name, fallback) {
  const value = config[name] ?? fallback;
  if (!Number.isInteger(value) || value <= 0) fail(`${name} must be a positive integer (seconds), got ${value}`);
  return value;
}
const accessTokenTTL = seconds('access_token_ttl', 120);
const refreshTokenTTL = seconds('refresh_token_ttl', 24 * 60 * 60);
const codeTTL = seconds('authorization_code_ttl', 60);
const refreshSliding = config.refresh_token_sliding ?? true;
const strictClientAuth = config.strict_client_auth ?? true;
const accounts = config.accounts ?? {};

const port = Number(argv.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0..65535, got ${argv.port}`);

// ---------------------------------------------------------------------------------------------
// Storage: oidc-provider's bundled MemoryAdapter is an LRU capped at 1000 entries, so a long test
// (many refreshes) could silently evict a live grant. This one is unbounded, expiry-aware, and keeps
// a grant -> tokens index so that revoking a grant really kills every token in it.
const store = new Map(); // key -> { payload, expiresAt }
const grantMembers = new Map(); // grantId -> Set(key)
const uidIndex = new Map(); // session uid -> id
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);

function live(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

function dropGrant(grantId) {
  for (const key of grantMembers.get(grantId) ?? []) store.delete(key);
  grantMembers.delete(grantId);
  store.delete(`Grant:${grantId}`);
}

class Adapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined });
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
  }

  async find(id) { return live(this.key(id)); }

  async findByUid(uid) {
    const id = uidIndex.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() { return undefined; }

  async consume(id) {
    const payload = live(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = live(key);
    store.delete(key);
    if (payload?.grantId) grantMembers.get(payload.grantId)?.delete(key);
    if (this.model === 'Grant') grantMembers.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) store.delete(key);
    grantMembers.delete(grantId);
  }
}

// ---------------------------------------------------------------------------------------------
const issuer = `http://${argv.host}:__PORT__`;
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, argv.host, resolve);
});
const actualPort = server.address().port;
const actualIssuer = issuer.replace('__PORT__', String(actualPort));

const { privateKey } = await rsaKeyPair;
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'local-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(actualIssuer, {
  adapter: Adapter,
  clients: [{
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: authMethod,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope: 'openid offline_access profile',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'picture'],
  },
  scopes: ['openid', 'offline_access', 'profile'],
  responseTypes: ['code'],
  async findAccount(_ctx, sub) {
    const extra = accounts[sub] ?? {};
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: sub,
          name: extra.name ?? `${sub.charAt(0).toUpperCase()}${sub.slice(1)} Example`,
          picture: extra.picture ?? `https://avatars.example.com/${encodeURIComponent(sub)}.png`,
        };
      },
    };
  },
  pkce: { required: () => true },
  rotateRefreshToken: () => true,
  async issueRefreshToken(_ctx, c) { return c.grantTypeAllowed('refresh_token'); },
  async expiresWithSession() { return false; },
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: { enabled: false },
    revocation: { enabled: true, allowedPolicy: async (_ctx, c, token) => token.clientId === c.clientId },
    introspection: { enabled: true, allowedPolicy: async (_ctx, c, token) => token.clientId === c.clientId },
    userinfo: { enabled: true },
  },
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: codeTTL,
    IdToken: accessTokenTTL,
    RefreshToken(ctx) {
      const rotated = ctx?.oidc?.entities?.RotatedRefreshToken;
      if (rotated && !refreshSliding) return Math.max(rotated.remainingTTL, 1);
      return refreshTokenTTL;
    },
    Grant: Math.max(refreshTokenTTL * 10, 30 * 24 * 60 * 60),
    Session: 24 * 60 * 60,
    Interaction: 60 * 60,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>oidc error</title></head><body>${
      Object.entries(out).map(([k, v]) => `<pre id="${k}">${k}: ${String(v).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)}</pre>`).join('')
    }</body></html>`;
  },
});

// One stderr line per protocol error: enough to debug a failing test, never a token.
for (const event of ['authorization.error', 'grant.error', 'introspection.error', 'revocation.error',
  'userinfo.error', 'server_error', 'discovery.error', 'check_session_origin.error']) {
  provider.on(event, (_ctx, err) => {
    process.stderr.write(`oidc server ${event}: ${err.error ?? err.name} ${err.error_description ?? err.message}${
      err.error_detail ? ` (${err.error_detail})` : ''}\n`);
  });
}

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably, whatever the client
// registered. A real provider may not, so (unless "strict_client_auth": false) the registered method is
// enforced here: the other one gets 401 invalid_client, like a wrong secret.
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation']);
const BODY_LIMIT = 56 * 1024;
provider.use(async (ctx, next) => {
  if (!strictClientAuth || ctx.method !== 'POST' || !CLIENT_AUTH_PATHS.has(ctx.path)
    || !ctx.is('application/x-www-form-urlencoded')) {
    return next();
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > BODY_LIMIT) ctx.throw(413);
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  ctx.req.body = raw; // oidc-provider parses a pre-read body instead of the (now consumed) stream
  const usedBasic = /^basic\s/i.test(ctx.get('authorization'));
  const usedPost = new URLSearchParams(raw).has('client_secret');
  const wrong = (authMethod === 'client_secret_post' && usedBasic && 'client_secret_basic')
    || (authMethod === 'client_secret_basic' && usedPost && !usedBasic && 'client_secret_post');
  if (wrong) {
    process.stderr.write(`oidc server client auth: ${wrong} used, client registered for ${authMethod}\n`);
    ctx.status = 401;
    ctx.set('Cache-Control', 'no-store');
    if (usedBasic) ctx.set('WWW-Authenticate', `Basic realm="${actualIssuer}"`);
    ctx.body = {
      error: 'invalid_client',
      error_description: `client authentication failed (the client is registered for ${authMethod}, not ${wrong})`,
    };
    return undefined;
  }
  return next();
});

provider.use(async (ctx, next) => {
  const match = /^\/__admin\/accounts\/([^/]+)\/revoke$/.exec(ctx.path);
  if (!match) return next();
  if (ctx.method !== 'POST') { ctx.status = 405; return undefined; }
  const accountId = decodeURIComponent(match[1]);
  let revoked = 0;
  for (const [key, entry] of [...store]) {
    if (key.startsWith('Grant:') && entry.payload.accountId === accountId) {
      dropGrant(key.slice('Grant:'.length));
      revoked += 1;
    }
  }
  ctx.body = { account_id: accountId, revoked_grants: revoked };
  return undefined;
});

server.on('request', provider.callback());

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`${JSON.stringify({
  issuer: actualIssuer, port: actualPort, client_id: client.client_id, pid: process.pid,
})}\n`);
