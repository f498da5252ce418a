// Shared by smoke.js, load.js, stress.js and soak.js: settings from the
// environment, the headers every request carries, the API calls, and the
// options every script starts from.
//
// Environment (k6 run -e NAME=value, or the container's environment):
//   BASE_URL     the edge (nginx), default http://127.0.0.1:8080
//   VERIFY_URL   where stress.js and soak.js read a message's status back,
//                default BASE_URL. Natively, the api's own listener
//                (http://127.0.0.1:8081) keeps these reads out of nginx's
//                /api rate limit.
//   TESTID       tags every metric (label `testid` in Prometheus); default
//                the UTC start time, e.g. 20261127T154704Z
//   SLO_P95_MS, SLO_P99_MS, SLO_FAILED_RATE   override a script's SLOs
//
// Every request carries a W3C `traceparent` (a new sampled trace of k6's
// own; carteiro does not join it: it starts its own trace, links k6's, and
// names its trace in the answer's `trace_id` and `X-Trace-Id`) and a `name` tag
// (bounded label values: a message's URL holds its id). Every POST carries
// a fresh Idempotency-Key per message. GETs carry none: they are
// idempotent by definition, and the api reads the header on POST only.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

export const BASE_URL = trimSlash(__ENV.BASE_URL || 'http://127.0.0.1:8080');
export const VERIFY_URL = trimSlash(__ENV.VERIFY_URL || BASE_URL);
// Read into options.tags, which k6 takes once per run from the first
// evaluation of the script: every VU tags with the same value.
export const TESTID = __ENV.TESTID || new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');

// Messages committed by the api (202, not a replay). Each script puts an
// SLO on it.
export const accepted = new Counter('accepted');

// Route names, as carteiro labels its own metrics (the mux pattern).
export const CREATE = 'POST /api/messages';
export const STATUS = 'GET /api/messages/{id}';
export const PAGE = 'GET /';

// Statuses a message can be in (GET /api/messages/{id}).
export const STATUSES = ['queued', 'sending', 'sent', 'failed', 'dead'];

// System tags sent as metric tags (Prometheus labels). `url` and `vu`,
// `iter` are left out: they grow without bound.
const SYSTEM_TAGS = ['status', 'method', 'name', 'group', 'check', 'error_code', 'scenario', 'expected_response'];

// options builds a script's options: its scenarios and thresholds, plus
// what every script shares (the testid tag, the system tags, the summary's
// trend columns).
export function options(scenarios, thresholds) {
  return {
    scenarios,
    thresholds,
    tags: { testid: TESTID },
    systemTags: SYSTEM_TAGS,
    summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
    setupTimeout: '30s',
    teardownTimeout: '30s',
  };
}

// slo returns the SLO values of a script: its defaults, overridden by
// SLO_P95_MS, SLO_P99_MS and SLO_FAILED_RATE.
export function slo(defaults) {
  return {
    p95: envNumber('SLO_P95_MS', defaults.p95),
    p99: envNumber('SLO_P99_MS', defaults.p99),
    failed: envNumber('SLO_FAILED_RATE', defaults.failed),
  };
}

export function envNumber(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') {
    return def;
  }
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    throw new Error(`${name}=${v}: want a non-negative number`);
  }
  return n;
}

export function envDuration(name, def) {
  const v = __ENV[name] || def;
  seconds(v); // validates
  return v;
}

// seconds parses a k6 duration ("90s", "2m", "1h30m", "500ms").
export function seconds(d) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let used = 0;
  let m;
  while ((m = re.exec(d)) !== null) {
    const n = Number(m[1]);
    total += m[2] === 'ms' ? n / 1000 : m[2] === 's' ? n : m[2] === 'm' ? n * 60 : n * 3600;
    used += m[0].length;
  }
  if (used === 0 || used !== String(d).length) {
    throw new Error(`duration ${d}: want e.g. 30s, 2m, 1h30m`);
  }
  return total;
}

function trimSlash(u) {
  return u.replace(/\/+$/, '');
}

export function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  let s = '';
  for (let i = 0; i < b.length; i++) {
    s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
  }
  return s;
}

// traceparent starts a new sampled W3C trace: 00-<trace id>-<span id>-01.
// All-zero ids are invalid.
export function traceparent() {
  let traceId = randomHex(16);
  while (/^0+$/.test(traceId)) {
    traceId = randomHex(16);
  }
  let spanId = randomHex(8);
  while (/^0+$/.test(spanId)) {
    spanId = randomHex(8);
  }
  return { traceId, header: `00-${traceId}-${spanId}-01` };
}

// newKey is a fresh Idempotency-Key value (a UUID).
export function newKey() {
  return crypto.randomUUID();
}

// newMessage returns a valid message (assunto ≤ 100, mensagem ≤ 250
// characters) that says which test sent it.
export function newMessage(label) {
  return {
    assunto: `k6 ${label} ${TESTID}`.slice(0, 100),
    mensagem: `Mensagem de teste de carga (${label}), testid ${TESTID}, ${randomHex(6)}.`.slice(0, 250),
  };
}

// post sends msg (an object, sent as JSON; or a string, sent as it is) to
// POST /api/messages with a new Idempotency-Key (or opts.key) and a new
// trace. opts.expected is a responseCallback (http.expectedStatuses) for
// answers other than 2xx/3xx that the caller expects. Returns the response,
// its parsed JSON body (null if none), the key and the trace id sent (the
// caller's, which carteiro links but never joins).
export function post(msg, opts = {}) {
  const key = opts.key || newKey();
  const tp = traceparent();
  const params = {
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json',
      // A structured-field string, as the IETF draft writes it.
      'Idempotency-Key': `"${key}"`,
      traceparent: tp.header,
    },
    tags: { name: CREATE },
    timeout: opts.timeout || '30s',
  };
  if (opts.expected) {
    params.responseCallback = opts.expected;
  }
  const body = typeof msg === 'string' ? msg : JSON.stringify(msg);
  const res = http.post(`${BASE_URL}/api/messages`, body, params);
  return { res, body: parseJSON(res), key, traceId: tp.traceId };
}

// get reads a message's status from base (BASE_URL or VERIFY_URL).
export function get(base, id, opts = {}) {
  const params = {
    headers: { Accept: 'application/json', traceparent: traceparent().header },
    tags: { name: STATUS },
    timeout: opts.timeout || '30s',
  };
  if (opts.expected) {
    params.responseCallback = opts.expected;
  }
  const res = http.get(`${base}/api/messages/${encodeURIComponent(id)}`, params);
  return { res, body: parseJSON(res) };
}

// getPage fetches the form.
export function getPage() {
  return http.get(`${BASE_URL}/`, {
    headers: { Accept: 'text/html', traceparent: traceparent().header },
    tags: { name: PAGE },
  });
}

export function parseJSON(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// checkAccepted checks a 202 answer and counts it in `accepted` (a replay,
// Idempotent-Replayed: true, is not a new message). Returns the message id,
// or "" when the answer is not a well-formed 202.
export function checkAccepted(p, label) {
  const b = p.body || {};
  const ok = check(p.res, {
    [`${label}: 202`]: (r) => r.status === 202,
    [`${label}: id, status, status_url`]: () =>
      typeof b.id === 'string' && b.id !== '' && STATUSES.includes(b.status) && b.status_url === `/api/messages/${b.id}`,
  });
  if (!ok) {
    return '';
  }
  if (p.res.headers['Idempotent-Replayed'] !== 'true') {
    accepted.add(1);
  }
  return b.id;
}

// isTraceId reports whether s is a W3C trace id: 32 lower-case hex digits,
// not all zero.
export function isTraceId(s) {
  return typeof s === 'string' && /^[0-9a-f]{32}$/.test(s) && !/^0+$/.test(s);
}

// retryAfter returns a 429/503 answer's Retry-After in seconds (0 if none).
export function retryAfter(res) {
  const n = Number(res.headers['Retry-After']);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

// rfc3339ms parses the api's timestamps (Go's RFC 3339 with nanoseconds)
// into milliseconds since the epoch; NaN if it cannot.
export function rfc3339ms(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(s || '');
  if (!m) {
    return NaN;
  }
  let t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  if (m[7]) {
    t += Number(`0.${m[7]}`) * 1000;
  }
  if (m[8] !== 'Z') {
    const sign = m[8][0] === '-' ? -1 : 1;
    t -= sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6))) * 60000;
  }
  return t;
}
