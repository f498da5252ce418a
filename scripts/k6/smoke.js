// smoke.js — one VU, a few iterations: does every answer the page and the
// API give have the right status and body? Run it before any heavier test.
//
// Each iteration: the page; a message (202, id/status/status_url, Location,
// the caller's trace id); the same message again with the same
// Idempotency-Key (the first answer replayed); the key with another message
// (422); its status (200) until it is sent; an unknown id (404); an
// invalid message (400 with stable error codes).
//
//   ITERATIONS     iterations (default 3)
//   SENT_TIMEOUT   how long a message may take to be sent (default 30s)
//   SLO_P95_MS / SLO_P99_MS / SLO_FAILED_RATE   default 500 / 1000 / 0
//
// Few requests, spaced out: it passes under nginx's /api rate limit.
import http from 'k6/http';
import { check, group, sleep } from 'k6';
import {
  BASE_URL,
  STATUSES,
  checkAccepted,
  envDuration,
  envNumber,
  get,
  getPage,
  isTraceId,
  newKey,
  newMessage,
  options as baseOptions,
  post,
  rfc3339ms,
  seconds,
  slo,
} from './lib/carteiro.js';

const ITERATIONS = envNumber('ITERATIONS', 3);
const SENT_TIMEOUT = envDuration('SENT_TIMEOUT', '30s');
const SLO = slo({ p95: 500, p99: 1000, failed: 0 });

export const options = baseOptions(
  {
    smoke: { executor: 'per-vu-iterations', vus: 1, iterations: ITERATIONS, maxDuration: '5m' },
  },
  {
    // Every check holds, on every iteration.
    checks: ['rate==1'],
    // Nothing unexpected: the 400, 404 and 422 asked for are expected.
    http_req_failed: [`rate<=${SLO.failed}`],
    http_req_duration: [`p(95)<${SLO.p95}`, `p(99)<${SLO.p99}`],
    // One new message per iteration (the replay is not a new one).
    accepted: [`count>=${ITERATIONS}`],
  },
);

const expect400 = http.expectedStatuses(400);
const expect404 = http.expectedStatuses(404);
const expect422 = http.expectedStatuses(422);

export default function () {
  group('page', () => {
    const res = getPage();
    check(res, {
      'page: 200': (r) => r.status === 200,
      'page: text/html': (r) => (r.headers['Content-Type'] || '').startsWith('text/html'),
      'page: the form': (r) =>
        typeof r.body === 'string' &&
        r.body.includes('id="formulario"') &&
        r.body.includes('name="assunto"') &&
        r.body.includes('name="mensagem"'),
      'page: nosniff': (r) => r.headers['X-Content-Type-Options'] === 'nosniff',
    });
  });

  let id = '';
  group('accept', () => {
    const msg = newMessage('smoke');
    const first = post(msg);
    id = checkAccepted(first, 'create');
    const b = first.body || {};
    check(first.res, {
      'create: JSON': (r) => (r.headers['Content-Type'] || '').startsWith('application/json'),
      'create: status queued': () => b.status === 'queued',
      'create: Location is status_url': (r) => id !== '' && r.headers.Location === b.status_url,
      // carteiro starts its own trace and links the caller's: a client's
      // traceparent decides neither the trace nor whether it is recorded.
      'create: trace_id is carteiro\'s': (r) =>
        isTraceId(b.trace_id) && b.trace_id !== first.traceId && r.headers['X-Trace-Id'] === b.trace_id,
    });
    if (id === '') {
      return;
    }

    // The same request again (a client retrying): the first answer, not a
    // second message, in the first request's trace.
    const again = post(msg, { key: first.key });
    const a = again.body || {};
    check(again.res, {
      'replay: 202': (r) => r.status === 202,
      'replay: Idempotent-Replayed': (r) => r.headers['Idempotent-Replayed'] === 'true',
      'replay: same id': () => a.id === id && a.status_url === b.status_url,
      'replay: first trace': () => a.trace_id === b.trace_id,
    });

    // The key again with another message: refused.
    const reuse = post(newMessage('smoke, other'), { key: first.key, expected: expect422 });
    check(reuse.res, {
      'key reuse: 422': (r) => r.status === 422,
      'key reuse: error': () => reuse.body !== null && typeof reuse.body.error === 'string',
    });
  });

  if (id !== '') {
    group('status', () => {
      const s = get(BASE_URL, id);
      const b = s.body || {};
      check(s.res, {
        'status: 200': (r) => r.status === 200,
        'status: no-store': (r) => r.headers['Cache-Control'] === 'no-store',
        'status: id and fields': () =>
          b.id === id &&
          STATUSES.includes(b.status) &&
          Number.isInteger(b.attempts) &&
          b.attempts >= 0 &&
          !Number.isNaN(rfc3339ms(b.created_at)),
      });

      // Until the worker has sent it (to Mailpit, or the configured relay).
      const deadline = Date.now() + seconds(SENT_TIMEOUT) * 1000;
      let last = b;
      while (last.status !== 'sent' && last.status !== 'dead' && Date.now() < deadline) {
        sleep(0.5);
        last = get(BASE_URL, id).body || {};
      }
      check(last, {
        'delivery: sent': (m) => m.status === 'sent',
        'delivery: sent_at, one attempt at least, no failure': (m) =>
          rfc3339ms(m.sent_at) >= rfc3339ms(m.created_at) && m.attempts >= 1 && m.failure === null,
        // The relay's reply stays internal: the public view has no last_error.
        'delivery: no relay reply in the public view': (m) => !('last_error' in m),
      });
    });
  }

  group('errors', () => {
    const unknown = get(BASE_URL, newKey(), { expected: expect404 });
    check(unknown.res, {
      'unknown id: 404': (r) => r.status === 404,
      'unknown id: error': () => unknown.body !== null && unknown.body.error === 'message not found',
    });

    const bad = post({ assunto: '', mensagem: '   ' }, { expected: expect400 });
    const e = bad.body || {};
    check(bad.res, {
      'invalid: 400': (r) => r.status === 400,
      'invalid: codes': () => e.error === 'invalid message' && e.codes && e.codes.assunto === 'required' && e.codes.mensagem === 'blank',
      'invalid: fields': () => e.fields && typeof e.fields.assunto === 'string' && typeof e.fields.mensagem === 'string',
    });
  });

  sleep(1);
}
