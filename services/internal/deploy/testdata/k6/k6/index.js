// Stand-in for k6's `k6` module: check, group, sleep, fail.
import { H } from './harness.js';

export function check(val, sets, tags) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    let ok;
    try {
      ok = typeof fn === 'function' ? !!fn(val) : !!fn;
    } catch (e) {
      // k6 reports an exception in a check as a script error.
      throw new Error(`check ${JSON.stringify(name)} threw: ${e && e.stack ? e.stack : e}`);
    }
    H.checks.push({ name, ok, scenario: H.scenario });
    all = all && ok;
  }
  return all;
}

export function group(name, fn) {
  H.groups.push(name);
  return fn();
}

export function sleep(secs) {
  if (typeof secs !== 'number' || !(secs >= 0)) {
    throw new Error(`sleep(${secs}): want a non-negative number of seconds`);
  }
  H.slept += secs;
}

export function fail(msg) {
  throw new Error(`fail: ${msg}`);
}

export default { check, group, sleep, fail };
