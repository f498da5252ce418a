// Stand-in for k6/metrics: records each custom metric and its samples.
import { H } from './harness.js';

// k6's rule for metric names.
const nameRe = /^[a-zA-Z_][a-zA-Z0-9_]{1,128}$/;

class Metric {
  constructor(type, name, isTime) {
    if (!nameRe.test(name)) {
      throw new Error(`metric name ${JSON.stringify(name)} is not valid in k6`);
    }
    const prev = H.metrics[name];
    if (prev && prev.type !== type) {
      throw new Error(`metric ${name} declared as ${prev.type} and as ${type}`);
    }
    H.metrics[name] = prev || { type, isTime: !!isTime, samples: [] };
    this.name = name;
  }
  add(value, tags) {
    if (H.phase === 'init') {
      throw new Error(`${this.name}.add() in the init context`);
    }
    const t = typeof value;
    if (t !== 'number' && t !== 'boolean') {
      throw new Error(`${this.name}.add(${JSON.stringify(value)}): want a number or a boolean`);
    }
    if (t === 'number' && !Number.isFinite(value)) {
      throw new Error(`${this.name}.add(${value}): not a finite number`);
    }
    if (tags !== undefined && (typeof tags !== 'object' || tags === null)) {
      throw new Error(`${this.name}.add(): tags must be an object`);
    }
    H.metrics[this.name].samples.push(Number(value));
    return true;
  }
}

export class Counter extends Metric {
  constructor(name, isTime) { super('counter', name, isTime); }
}
export class Gauge extends Metric {
  constructor(name, isTime) { super('gauge', name, isTime); }
}
export class Rate extends Metric {
  constructor(name, isTime) { super('rate', name, isTime); }
}
export class Trend extends Metric {
  constructor(name, isTime) { super('trend', name, isTime); }
}

export default { Counter, Gauge, Rate, Trend };
