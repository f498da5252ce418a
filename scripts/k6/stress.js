// stress.js — past the limit. The arrival rate ramps up to PEAK, well above
// what carteiro admits (nginx's /api limit, 10 r/s per client, or, without
// it, what Postgres commits), and holds it. carteiro must refuse cleanly
// and lose nothing:
//   - refusals appear: 429 (nginx's rate limit) or 503 (the store is too
//     slow, nothing stored): otherwise the limit was never reached;
//   - no other 5xx, ever; no other answer to a valid message than 202,
//     429 or 503;
//   - no lost 202: every message the api accepted is stored. After the
//     stress scenario, the `verify` scenario reads each accepted id back
//     (GET VERIFY_URL/api/messages/{id}); a 404 is a lost message.
//
// How the ids reach `verify`: each VU records the ids it was given (a
// uniform sample of at most VERIFY_PER_VU, reservoir sampling) in its own
// memory. k6 keeps a VU's JavaScript state from one scenario to the next,
// and hands VUs back to one pool when a scenario ends. Every VU is
// allocated up front (preAllocatedVUs == maxVUs == MAX_VUS) and `verify`
// starts once `stress` is over and runs exactly once on each of those
// MAX_VUS VUs: every VU that stored ids checks them itself.
//
//   PEAK          arrivals per second at the top (default 100)
//   RAMP, HOLD    time to reach PEAK (default 1m), time at PEAK (default 1m)
//   MAX_VUS       VUs (default 100); iterations k6 cannot start for want of
//                 a free VU are counted in dropped_iterations
//   VERIFY_PER_VU ids each VU checks at most (default 1000)
//   VERIFY_TIMEOUT how long `verify` may take (default 10m). A read that is
//                 refused (429, 503) or fails is tried again until then; an
//                 id still unread at the end counts in verify_errors.
//   SLO_P95_MS / SLO_P99_MS / SLO_FAILED_RATE   default 1000 / 2500 / 0.01
//     (refusals are cheap: nginx answers 429 at once, the api 503 within
//     3 × DB_QUERY_TIMEOUT, 4.5 s with the defaults; usually far sooner)
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  STATUS,
  VERIFY_URL,
  checkAccepted,
  envDuration,
  envNumber,
  get,
  newMessage,
  options as baseOptions,
  post,
  retryAfter,
  seconds,
  slo,
} from './lib/carteiro.js';

const PEAK = envNumber('PEAK', 100);
const RAMP = envDuration('RAMP', '1m');
const HOLD = envDuration('HOLD', '1m');
const MAX_VUS = envNumber('MAX_VUS', 100);
const VERIFY_PER_VU = envNumber('VERIFY_PER_VU', 1000);
const VERIFY_TIMEOUT = envDuration('VERIFY_TIMEOUT', '10m');
const SLO = slo({ p95: 1000, p99: 2500, failed: 0.01 });
const GRACEFUL_STOP = '30s';

const refused = new Counter('refused');
const serverErrors = new Counter('server_errors');
const unexpected = new Counter('unexpected_status');
const verified = new Counter('verified');
const lost = new Counter('lost');
const verifyErrors = new Counter('verify_errors');
const notChecked = new Counter('verify_skipped');

// verify starts after stress, its in-flight iterations included.
const VERIFY_START = seconds(RAMP) + seconds(HOLD) + seconds(GRACEFUL_STOP) + 1;

export const options = baseOptions(
  {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: MAX_VUS,
      maxVUs: MAX_VUS,
      stages: [
        { duration: RAMP, target: PEAK },
        { duration: HOLD, target: PEAK },
      ],
      gracefulStop: GRACEFUL_STOP,
    },
    verify: {
      executor: 'per-vu-iterations',
      exec: 'verify',
      vus: MAX_VUS,
      iterations: 1,
      startTime: `${VERIFY_START}s`,
      maxDuration: VERIFY_TIMEOUT,
    },
  },
  {
    // The limit was reached.
    refused: ['count>0'],
    // ... and carteiro refused cleanly.
    server_errors: ['count==0'],
    unexpected_status: ['count==0'],
    // With 429 and 503 expected, a failure is anything else.
    'http_req_failed{scenario:stress}': [`rate<${SLO.failed}`],
    'http_req_duration{scenario:stress}': [`p(95)<${SLO.p95}`, `p(99)<${SLO.p99}`],
    // Some messages got through, and not one of them is lost.
    accepted: ['count>0'],
    lost: ['count==0'],
    verified: ['count>0'],
    verify_errors: ['count==0'],
  },
);

const expectRefusals = http.expectedStatuses(202, 429, 503);
const expectFound = http.expectedStatuses(200);

// This VU's accepted ids: a uniform sample of at most VERIFY_PER_VU.
const mine = [];
let seen = 0;

function remember(id) {
  seen++;
  if (mine.length < VERIFY_PER_VU) {
    mine.push(id);
    return;
  }
  const j = Math.floor(Math.random() * seen);
  if (j < VERIFY_PER_VU) {
    mine[j] = id;
  }
}

export default function () {
  const p = post(newMessage('stress'), { expected: expectRefusals });
  const s = p.res.status;
  if (s === 202) {
    const id = checkAccepted(p, 'create');
    if (id !== '') {
      remember(id);
    }
    return;
  }
  check(p.res, { 'create: 202, 429 or 503': (r) => r.status === 429 || r.status === 503 });
  if (s === 429 || s === 503) {
    refused.add(1, { status: String(s) });
  } else if (s >= 500) {
    serverErrors.add(1, { status: String(s) });
    unexpected.add(1, { status: String(s) });
  } else {
    // 0 is a transport error or a timeout: no answer at all.
    unexpected.add(1, { status: String(s) });
  }
}

// verify reads back every id this VU was given, and stops in time to
// count what it could not read (rather than be cut off by maxDuration).
export function verify() {
  notChecked.add(seen - mine.length);
  const deadline = Date.now() + Math.max(0.5 * seconds(VERIFY_TIMEOUT), seconds(VERIFY_TIMEOUT) - 15) * 1000;
  for (let i = 0; i < mine.length; i++) {
    if (!verifyOne(mine[i], deadline)) {
      verifyErrors.add(mine.length - i);
      console.error(`verify: ${mine.length - i} ids unread after VERIFY_TIMEOUT=${VERIFY_TIMEOUT}`);
      return;
    }
  }
}

// verifyOne reads id until it gets an answer about it (200 or 404), or
// until deadline; it returns false when the deadline came first.
function verifyOne(id, deadline) {
  for (let attempt = 1; Date.now() < deadline; attempt++) {
    const g = get(VERIFY_URL, id, { expected: expectFound });
    if (g.res.status === 200) {
      const ok = check(g.body, { 'verify: stored': (b) => b !== null && b.id === id });
      (ok ? verified : verifyErrors).add(1);
      return true;
    }
    if (g.res.status === 404) {
      lost.add(1);
      console.error(`lost: ${id} was accepted (202) but ${STATUS} answers 404`);
      return true;
    }
    // Refused (nginx's limit applies to reads too) or failed: the answer
    // says nothing about the message. Again, after Retry-After or a
    // growing pause.
    sleep(Math.min(retryAfter(g.res) || 0.25 * attempt, 5));
  }
  return false;
}
