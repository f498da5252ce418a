// soak.js — a steady rate for a long time: does anything drift (latency,
// memory, the queue, delivery)? RATE messages per second for DURATION. One
// message in CHECK_EVERY is read back (from VERIFY_URL) once it is at least
// CHECK_AFTER old: it must be sent by then, and its accepted → sent time
// (sent_at − created_at, both from the database) goes into the
// delivery_latency trend.
//
//   RATE          messages per second (default 4: with the read-backs, under
//                 nginx's /api limit of 10 r/s per client)
//   DURATION      how long (default 30m)
//   VUS, MAX_VUS  VUs allocated up front / at most (default from RATE)
//   CHECK_EVERY   read back one message in this many (default 5)
//   CHECK_AFTER   age at which it must be sent (default 10s)
//   SLO_P95_MS / SLO_P99_MS / SLO_FAILED_RATE   default 200 / 500 / 0.01
//   DELIVERY_P99_MS   accepted → sent p99 (default 5000, the
//                 CarteiroDeliveryLatencyHigh alert's threshold)
//   ACCEPTED_MIN_RATIO   share of the iterations that must end in a 202
//                 (default 0.99)
import http from 'k6/http';
import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import {
  CREATE,
  VERIFY_URL,
  checkAccepted,
  envDuration,
  envNumber,
  get,
  newMessage,
  options as baseOptions,
  post,
  rfc3339ms,
  seconds,
  slo,
} from './lib/carteiro.js';

const RATE = envNumber('RATE', 4);
const DURATION = envDuration('DURATION', '30m');
const VUS = envNumber('VUS', Math.max(5, Math.ceil(RATE / 2)));
const MAX_VUS = Math.max(VUS, envNumber('MAX_VUS', Math.max(50, RATE * 2)));
const CHECK_EVERY = Math.max(1, envNumber('CHECK_EVERY', 5));
const CHECK_AFTER = envDuration('CHECK_AFTER', '10s');
const SLO = slo({ p95: 200, p99: 500, failed: 0.01 });
const DELIVERY_P99_MS = envNumber('DELIVERY_P99_MS', 5000);
const MIN_RATIO = envNumber('ACCEPTED_MIN_RATIO', 0.99);

// Share of the messages read back that were sent by CHECK_AFTER.
const delivered = new Rate('delivered');
// accepted → sent, as the database recorded it (milliseconds).
const deliveryLatency = new Trend('delivery_latency', true);

export const options = baseOptions(
  {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
    },
  },
  {
    http_req_failed: [`rate<${SLO.failed}`],
    [`http_req_duration{name:${CREATE}}`]: [`p(95)<${SLO.p95}`, `p(99)<${SLO.p99}`],
    checks: ['rate>0.99'],
    accepted: [`count>=${Math.floor(RATE * seconds(DURATION) * MIN_RATIO)}`],
    delivered: ['rate>0.99'],
    delivery_latency: [`p(99)<${DELIVERY_P99_MS}`],
  },
);

const expectFound = http.expectedStatuses(200);

// This VU's messages waiting to be read back, oldest first.
const pending = [];
let count = 0;

export default function () {
  const p = post(newMessage('soak'));
  const id = checkAccepted(p, 'create');
  if (id !== '' && count++ % CHECK_EVERY === 0) {
    pending.push({ id, at: Date.now() });
  }
  if (pending.length > 0 && Date.now() - pending[0].at >= seconds(CHECK_AFTER) * 1000) {
    readBack(pending.shift().id);
  }
}

function readBack(id) {
  const g = get(VERIFY_URL, id, { expected: expectFound });
  const m = g.body || {};
  check(g.res, { 'read back: 200': (r) => r.status === 200 && m.id === id });
  const sent = m.status === 'sent';
  delivered.add(sent);
  if (!sent) {
    console.warn(`soak: ${id} is ${m.status || `HTTP ${g.res.status}`} after ${CHECK_AFTER}`);
    return;
  }
  const ms = rfc3339ms(m.sent_at) - rfc3339ms(m.created_at);
  if (Number.isFinite(ms)) {
    deliveryLatency.add(ms);
  }
}
