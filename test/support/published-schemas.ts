import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { PublishedSchemaName } from '../../shared/messages/message-schemas.js';

/**
 * The published JSON Schemas in `schema/`, read from the files (what a consumer uses, not the zod
 * they come from) and compiled with Ajv, a standard draft 2020-12 validator.
 */
const SCHEMA_DIR = resolve(import.meta.dirname, '..', '..', 'schema');
// Ajv's defaults, as a consumer would have them (strict schema keywords, formats from ajv-formats).
const ajv = new Ajv2020({ allErrors: true });
addFormats.default(ajv);
const validators = new Map<PublishedSchemaName, ValidateFunction>();

export function publishedValidator(name: PublishedSchemaName): ValidateFunction {
  let validate = validators.get(name);
  if (!validate) {
    validate = ajv.compile(JSON.parse(readFileSync(join(SCHEMA_DIR, `${name}.schema.json`), 'utf8')) as object);
    validators.set(name, validate);
  }
  return validate;
}

/** The schema's complaints about a message (empty when it validates), each as `path: message`. */
export function schemaProblems(name: PublishedSchemaName, message: unknown): string[] {
  const validate = publishedValidator(name);
  if (validate(message)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '(message)'}: ${e.message ?? e.keyword}`);
}
