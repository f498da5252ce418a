// Stand-in for k6/http: records every request and answers it from the
// fake API in harness.js.
import { H, fakeAPI } from './harness.js';

class Response {
  constructor(req, ans) {
    this.request = req;
    this.url = req.url;
    this.status = ans.status;
    this.headers = ans.headers || {};
    this.body = ans.body === undefined ? '' : ans.body;
    this.error = '';
    this.error_code = 0;
    this.timings = { duration: 1, waiting: 1, sending: 0, receiving: 0, blocked: 0, connecting: 0 };
  }
  json() {
    // Like k6: throws when the body is not JSON.
    return JSON.parse(this.body);
  }
}

const knownParams = new Set(['headers', 'tags', 'timeout', 'responseCallback', 'redirects', 'cookies', 'auth', 'compression', 'jar', 'responseType']);

function request(method, url, body, params) {
  if (H.phase === 'init') {
    throw new Error(`http.${method.toLowerCase()}() in the init context`);
  }
  params = params || {};
  for (const k of Object.keys(params)) {
    if (!knownParams.has(k)) {
      throw new Error(`http params: unknown key ${k}`);
    }
  }
  if (params.responseCallback !== undefined && !(params.responseCallback && params.responseCallback.__expectedStatuses)) {
    throw new Error('http params: responseCallback must come from http.expectedStatuses()');
  }
  if (body !== null && body !== undefined && typeof body !== 'string') {
    throw new Error(`http.${method.toLowerCase()}(): this harness wants string bodies`);
  }
  const req = {
    method,
    url,
    body: body === undefined ? null : body,
    headers: Object.assign({}, params.headers),
    tags: Object.assign({}, params.tags),
    expected: params.responseCallback ? params.responseCallback.__expectedStatuses : null,
    scenario: H.scenario,
  };
  const res = new Response(req, fakeAPI(req));
  req.status = res.status;
  H.requests.push(req);
  return res;
}

function expectedStatuses(...statuses) {
  for (const s of statuses) {
    const ok = Number.isInteger(s) || (s && Number.isInteger(s.min) && Number.isInteger(s.max));
    if (!ok) {
      throw new Error(`http.expectedStatuses(${JSON.stringify(s)}): want integers or {min, max}`);
    }
  }
  return { __expectedStatuses: statuses };
}

const http = {
  get(url, params, ...rest) {
    if (rest.length > 0) {
      throw new Error('http.get(url, params): extra arguments are ignored by k6');
    }
    return request('GET', url, null, params);
  },
  post(url, body, params) {
    return request('POST', url, body, params);
  },
  request(method, url, body, params) {
    return request(method, url, body, params);
  },
  expectedStatuses,
  setResponseCallback() {},
};

export default http;
export { expectedStatuses };
