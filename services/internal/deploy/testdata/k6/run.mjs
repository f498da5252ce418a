// node run.mjs SCRIPT ENV_JSON [ITERATIONS] [REFUSE_EVERY]
// Loads a k6 script against the stand-in modules, runs it, prints JSON.
import { webcrypto } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { H } from 'k6/harness';

// k6 has the Web Crypto API as a global; node has it only from 19 on.
if (globalThis.crypto === undefined) {
  globalThis.crypto = webcrypto;
}

const [script, envJSON = '{}', iterArg = '3', refuseArg = '0'] = process.argv.slice(2);
globalThis.__ENV = JSON.parse(envJSON);
globalThis.__VU = 0;
globalThis.__ITER = 0;
H.refuseEvery = Number(refuseArg);

const out = { errors: [] };
const mod = await import(pathToFileURL(script).href);
const options = mod.options || {};
H.options = options;
const declared = {};
for (const [name, m] of Object.entries(H.metrics)) declared[name] = { type: m.type, isTime: m.isTime };

const seconds = (d) => {
  let t = 0;
  for (const m of String(d || '0s').matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    t += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
  }
  return t;
};

globalThis.__VU = 1;
let data;
try {
  if (typeof mod.setup === 'function') {
    H.phase = 'setup';
    data = mod.setup();
  }
  // Scenarios in start order, each function ITERATIONS times, in one VU:
  // the same module instance, as k6 reuses a VU across scenarios.
  const scenarios = Object.entries(options.scenarios || { default: {} })
    .sort((a, b) => seconds(a[1].startTime) - seconds(b[1].startTime));
  for (const [name, sc] of scenarios) {
    const fn = mod[sc.exec || 'default'];
    if (typeof fn !== 'function') {
      out.errors.push(`scenario ${name}: exec ${sc.exec || 'default'} is not an exported function`);
      continue;
    }
    H.scenario = name;
    H.phase = 'iteration';
    // At most the scenario's own per-VU iterations (verify runs once).
    const n = Math.min(Number(iterArg), sc.executor === 'per-vu-iterations' && sc.iterations ? sc.iterations : Infinity);
    for (let i = 0; i < n; i++) {
      H.iteration = i;
      globalThis.__ITER = i;
      fn(data);
    }
  }
  if (typeof mod.teardown === 'function') {
    H.phase = 'teardown';
    H.scenario = '';
    mod.teardown(data);
  }
} catch (e) {
  out.errors.push(String(e && e.stack ? e.stack : e));
}

out.options = options;
out.declared = declared;
out.metrics = {};
for (const [name, m] of Object.entries(H.metrics)) {
  out.metrics[name] = { type: m.type, count: m.samples.length, sum: m.samples.reduce((a, b) => a + b, 0) };
}
out.requests = H.requests;
out.checks = H.checks;
out.failed = H.failed;
process.stdout.write(JSON.stringify(out));
