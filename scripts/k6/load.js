// load.js — the accept path at a target rate: k6 starts RATE messages per
// second (an open model: arrivals do not wait for answers), ramping up
// from 0 over RAMP, then holds RATE for DURATION. Do the answers stay fast
// and right?
//
//   RATE       messages per second to reach (default 5: under nginx's /api
//              limit of 10 r/s per client, so it passes against compose
//              as it is; above that, run against `make dev RATE_LIMIT=0`)
//   RAMP       ramp-up time (default 30s)
//   DURATION   time at RATE (default 2m)
//   VUS, MAX_VUS   VUs allocated up front / at most (default from RATE)
//   SLO_P95_MS / SLO_P99_MS / SLO_FAILED_RATE   default 200 / 500 / 0.01
//   ACCEPTED_MIN_RATIO   share of the iterations k6 starts that must end in
//              a 202 (default 0.99)
import { check } from 'k6';
import {
  CREATE,
  checkAccepted,
  envDuration,
  envNumber,
  isTraceId,
  newMessage,
  options as baseOptions,
  post,
  seconds,
  slo,
} from './lib/carteiro.js';

const RATE = envNumber('RATE', 5);
const RAMP = envDuration('RAMP', '30s');
const DURATION = envDuration('DURATION', '2m');
const VUS = envNumber('VUS', Math.max(5, Math.ceil(RATE / 2)));
const MAX_VUS = Math.max(VUS, envNumber('MAX_VUS', Math.max(50, RATE * 2)));
const SLO = slo({ p95: 200, p99: 500, failed: 0.01 });
const MIN_RATIO = envNumber('ACCEPTED_MIN_RATIO', 0.99);

// Iterations k6 starts: the linear ramp from 0 plus the plateau.
const PLANNED = RATE * (seconds(RAMP) / 2 + seconds(DURATION));

export const options = baseOptions(
  {
    load: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
      stages: [
        { duration: RAMP, target: RATE },
        { duration: DURATION, target: RATE },
      ],
    },
  },
  {
    http_req_failed: [`rate<${SLO.failed}`],
    [`http_req_duration{name:${CREATE}}`]: [`p(95)<${SLO.p95}`, `p(99)<${SLO.p99}`],
    checks: ['rate>0.99'],
    // Nearly every message offered is committed.
    accepted: [`count>=${Math.floor(PLANNED * MIN_RATIO)}`],
  },
);

export default function () {
  const p = post(newMessage('load'));
  const id = checkAccepted(p, 'create');
  check(p.res, {
    // carteiro's own trace, not the one k6 sent (linked, never joined).
    'create: trace_id is carteiro\'s': () => id === '' || (isTraceId(p.body.trace_id) && p.body.trace_id !== p.traceId),
  });
}
