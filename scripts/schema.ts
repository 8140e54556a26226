/**
 * `npm run schema`: writes the JSON Schema of every message the relay emits to `schema/`, from the zod
 * schemas in shared/messages/message-schemas.ts. `npm test` fails while a file differs from what this writes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchemaOf, PUBLISHED_SCHEMAS, type PublishedSchemaName } from '../shared/messages/message-schemas.js';

export const SCHEMA_DIR = 'schema';
/** The example consumer keeps copies of the schemas it validates with, as a user's copy of it would. */
export const CONSUMER_SCHEMA_DIR = 'examples/consumer/schema';
export const CONSUMER_SCHEMAS: PublishedSchemaName[] = ['routed-message', 'webhook-headers'];

export const schemaFileOf = (name: PublishedSchemaName) => `${name}.schema.json`;

/** The file's text: the schema as JSON, two-space indented, with a final newline. */
export function schemaFileText(name: PublishedSchemaName): string {
  return `${JSON.stringify(jsonSchemaOf(name), null, 2)}\n`;
}

function main(root: string): void {
  mkdirSync(join(root, SCHEMA_DIR), { recursive: true });
  for (const name of Object.keys(PUBLISHED_SCHEMAS) as PublishedSchemaName[]) {
    writeFileSync(join(root, SCHEMA_DIR, schemaFileOf(name)), schemaFileText(name));
    console.log(`wrote ${SCHEMA_DIR}/${schemaFileOf(name)}`);
  }
  for (const name of CONSUMER_SCHEMAS) {
    writeFileSync(join(root, CONSUMER_SCHEMA_DIR, schemaFileOf(name)), schemaFileText(name));
    console.log(`wrote ${CONSUMER_SCHEMA_DIR}/${schemaFileOf(name)}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.cwd());
