// State shared by the stand-in modules and run.mjs, and a fake of
// carteiro's API that answers the requests the scripts make.
export const H = {
  phase: 'init', // init, setup, iteration, teardown
  scenario: '',
  iteration: 0,
  options: null,
  metrics: {}, // name -> {type, isTime, samples}
  requests: [],
  checks: [],
  groups: [],
  failed: [],
  slept: 0,
  // The fake answers every refuseEvery-th POST with 429 (0: never).
  refuseEvery: 0,
};

const messages = new Map(); // id -> {id, created}
const keys = new Map(); // key -> {id, fingerprint, traceId}
let posts = 0;

function answer(status, body, headers) {
  const h = Object.assign({}, headers);
  if (body !== undefined && typeof body !== 'string') {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(body);
  }
  return { status, headers: h, body };
}

function uuid() {
  return globalThis.crypto.randomUUID();
}

function problem(s, max, subject) {
  if (typeof s !== 'string' || s === '') return 'required';
  if (s.trim() === '') return 'blank';
  if ([...s].length > max) return 'too_long';
  if (subject && /[\u0000-\u001f\u007f]/.test(s)) return 'control_chars';
  return '';
}

// fakeAPI answers like nginx + carteiro's api, as README.md documents them.
export function fakeAPI(req) {
  const u = new URL(req.url);
  // Like the api, a trace of its own whatever the caller's traceparent
  // (which the api links, never joins).
  const traceId = globalThis.crypto.randomUUID().replace(/-/g, '');
  if (req.method === 'GET' && u.pathname === '/') {
    return answer(200, '<form id="formulario"><input name="assunto"><textarea name="mensagem"></textarea></form>',
      { 'Content-Type': 'text/html; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  }
  if (req.method === 'POST' && (u.pathname === '/api/messages' || u.pathname === '/api')) {
    posts++;
    if (H.refuseEvery > 0 && posts % H.refuseEvery === 0) {
      return answer(429, { error: 'too many requests from this address; nothing was stored, retry after the seconds in Retry-After' },
        { 'Retry-After': '1', 'Cache-Control': 'no-store' });
    }
    let m;
    try {
      m = JSON.parse(req.body);
    } catch (e) {
      return answer(400, { error: 'invalid message', fields: { body: 'malformed JSON' }, codes: { body: 'malformed' } });
    }
    const codes = {};
    const a = problem(m.assunto, 100, true);
    const b = problem(m.mensagem, 250, false);
    if (a) codes.assunto = a;
    if (b) codes.mensagem = b;
    if (Object.keys(codes).length > 0) {
      const fields = {};
      for (const [f, c] of Object.entries(codes)) fields[f] = `${f} is ${c}`;
      return answer(400, { error: 'invalid message', fields, codes }, { 'Cache-Control': 'no-store' });
    }
    let key = req.headers['Idempotency-Key'];
    if (key !== undefined) {
      key = key.trim();
      if (key.length >= 2 && key.startsWith('"') && key.endsWith('"')) key = key.slice(1, -1);
      if (key === '' || key.length > 255 || /[^\x21-\x7e]|["\\]/.test(key)) {
        return answer(400, { error: 'Idempotency-Key must be 1 to 255 printable ASCII characters' });
      }
    }
    const fingerprint = `${m.assunto}\u0000${m.mensagem}`;
    if (key && keys.has(key)) {
      const k = keys.get(key);
      if (k.fingerprint !== fingerprint) {
        return answer(422, { error: 'this Idempotency-Key was already used with a different message' });
      }
      return answer(202, { id: k.id, status: 'queued', status_url: `/api/messages/${k.id}`, trace_id: k.traceId },
        { Location: `/api/messages/${k.id}`, 'Idempotent-Replayed': 'true', 'X-Trace-Id': traceId });
    }
    const id = uuid();
    messages.set(id, { id, created: new Date() });
    if (key) keys.set(key, { id, fingerprint, traceId });
    return answer(202, { id, status: 'queued', status_url: `/api/messages/${id}`, trace_id: traceId },
      { Location: `/api/messages/${id}`, 'X-Trace-Id': traceId });
  }
  const st = /^\/api\/messages\/([^/]+)$/.exec(u.pathname);
  if (req.method === 'GET' && st) {
    const msg = messages.get(decodeURIComponent(st[1]));
    if (!msg) {
      return answer(404, { error: 'message not found' }, { 'Cache-Control': 'no-store' });
    }
    const created = msg.created.toISOString().replace('Z', '123Z'); // nanoseconds, as Go writes them
    const sent = new Date(msg.created.getTime() + 42).toISOString().replace('Z', '456Z');
    return answer(200, { id: msg.id, status: 'sent', attempts: 1, failure: null, created_at: created,
      next_attempt_at: null, sent_at: sent }, { 'Cache-Control': 'no-store' });
  }
  return answer(404, { error: 'message not found' });
}
