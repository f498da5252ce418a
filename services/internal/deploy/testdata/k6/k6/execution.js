// Stand-in for k6/execution.
import { H } from './harness.js';

export default {
  get scenario() {
    return { name: H.scenario, iterationInTest: H.iteration, iterationInInstance: H.iteration };
  },
  get vu() {
    return { idInTest: 1, idInInstance: 1, iterationInScenario: H.iteration, tags: {}, metrics: { tags: {} } };
  },
  get instance() {
    return { vusActive: 1, vusInitialized: 1, iterationsCompleted: H.iteration, iterationsInterrupted: 0 };
  },
  test: {
    abort(msg) {
      throw new Error(`test aborted: ${msg}`);
    },
    fail(msg) {
      H.failed.push(String(msg));
    },
    get options() {
      return H.options;
    },
  },
};
