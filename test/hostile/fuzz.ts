import { randomUUID } from 'node:crypto';

/**
 * A seeded generator of hostile input for the HTTP endpoints: the same seed gives the same requests,
 * so a failure names a seed and an index that reproduce it. Everything here is data; what a request
 * looks like per endpoint is in the tests.
 */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** mulberry32: small, fast, good enough to spread cases. */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Keys that poison prototypes or shadow built-ins when code copies objects carelessly. */
export const POLLUTING_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'then',
] as const;

/** Strings that have broken parsers, filters, paths and logs somewhere. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  '\t\n',
  '../',
  '../../../../etc/passwd',
  '..%2F..%2Fsecrets',
  '%2e%2e%2f%2e%2e%2f',
  '..\\..\\windows\\win.ini',
  'a/b',
  'a%2Fb',
  '%252F',
  '/',
  '//evil.example/x',
  '?x=1',
  '#frag',
  "'",
  "' or 1 eq 1 or '",
  "x' or PartitionKey ne '",
  "'; DROP TABLE tenants; --",
  '1 OR 1=1',
  "$filter=PartitionKey eq 'tenant'",
  "tenant') or (RowKey ne '",
  "PartitionKey eq 'tenant'",
  '<script>alert(1)</script>',
  '${jndi:ldap://evil.example/a}',
  '{{7*7}}',
  '%00',
  '\u0000',
  'nul\u0000byte',
  '\r\nSet-Cookie: pwned=1',
  '\uD800',
  '\uDFFF\uD800',
  '\u202Egnp.exe',
  '\uFEFF',
  'Ω≈ç√∫˜µ≤≥÷',
  '𝕿𝖍𝖊 𝖖𝖚𝖎𝖈𝖐',
  '👩‍👩‍👧‍👦🏳️‍🌈',
  'ÅÍÎÏ˝ÓÔÒÚÆ☃',
  'null',
  'undefined',
  'NaN',
  'true',
  '-1',
  '1e309',
  '0x10',
  '9'.repeat(400),
  '__proto__',
  'constructor',
  'prototype',
  'me',
  'Active',
  '2026-13-45T99:99:99Z',
  '*',
  '%',
  '\\',
  'CON',
  'a'.repeat(1025),
];

/** A hostile string: from the list, huge, random unicode, or a GUID bent out of shape. */
export function hostileString(rng: Rng): string {
  switch (rng.int(6)) {
    case 0:
      return 'A'.repeat(1 + rng.int(rng.chance(0.1) ? 200_000 : 5_000));
    case 1:
      return Array.from({ length: 1 + rng.int(40) }, () =>
        String.fromCodePoint(rng.chance(0.2) ? 0xd800 + rng.int(0x800) : rng.int(0x10ffff)),
      ).join('');
    case 2:
      return bentGuid(rng);
    default:
      return rng.pick(HOSTILE_STRINGS);
  }
}

/** Something GUID-like that is not a tenant id the relay should accept as-is. */
export function bentGuid(rng: Rng): string {
  const guid = randomUUID();
  return rng.pick([
    `{${guid}}`,
    `${guid}/../${randomUUID()}`,
    `${guid}%2F..%2F`,
    `${guid}\u0000`,
    guid.replace(/-/g, ''),
    `${guid}-0000`,
    guid.slice(0, 35),
    guid.replace(/[0-9a-f]/, 'g'),
    `${guid}'`,
    `${guid} or 1 eq 1`,
    `urn:uuid:${guid}`,
    guid.replace(/-/g, '‐'),
    `${guid}\n`,
    `${guid}${'0'.repeat(4096)}`,
  ]);
}

/** A random JSON value: every type, odd numbers, hostile strings, polluting keys, some depth. */
export function fuzzValue(rng: Rng, depth = 0, fieldNames: readonly string[] = []): unknown {
  const kinds = depth > 4 ? 5 : 8;
  switch (rng.int(kinds)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, Number.MIN_VALUE, 4294967296, 123456789012345]);
    case 3:
    case 4:
      return hostileString(rng);
    case 5:
      return Array.from({ length: rng.int(6) }, () => fuzzValue(rng, depth + 1, fieldNames));
    default: {
      const object: Record<string, unknown> = {};
      const keys = 1 + rng.int(6);
      for (let i = 0; i < keys; i++) {
        const key =
          rng.chance(0.4) && fieldNames.length
            ? rng.pick(fieldNames)
            : rng.chance(0.5)
              ? rng.pick(POLLUTING_KEYS)
              : hostileString(rng).slice(0, 64);
        // defineProperty: an own "__proto__" key, as JSON.parse makes it, not a prototype change.
        Object.defineProperty(object, key, {
          value: fuzzValue(rng, depth + 1, fieldNames),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return object;
    }
  }
}

/** A body that is not JSON, not UTF-8, cut short, or JSON of absurd shape. */
export function brokenBody(rng: Rng): { text?: string; bytes?: Uint8Array } {
  switch (rng.int(9)) {
    case 0:
      return { text: '{"incidentId": 1, "lastUpdateTime": "2026-01-01T00:00:00Z"' };
    case 1:
      return { bytes: Uint8Array.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]) }; // invalid UTF-8 inside JSON
    case 2:
      return { text: `\uFEFF{"a":1}` };
    case 3:
      return { text: `${'['.repeat(20_000)}${']'.repeat(20_000)}` };
    case 4:
      return { text: `{"a":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_001)}` };
    case 5:
      return { text: `{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}` };
    case 6:
      return { text: `{"a":1,"a":2,"a":{"__proto__":null}}` };
    case 7:
      return { text: 'NaN' };
    default:
      return { text: rng.pick(['', ' ', 'null', 'true', '0', '"string"', '[]', '{}', '<xml/>', 'a=1&b=2', '\u0000']) };
  }
}

/** A body far larger than any endpoint takes (a few MB). */
export function hugeBody(rng: Rng): string {
  const size = (2 + rng.int(4)) * 1024 * 1024;
  return rng.chance(0.5)
    ? `{"value":[${'{"incidentId":1},'.repeat(size / 17)}{}]}`
    : JSON.stringify({ displayName: 'x'.repeat(size) });
}

export const CONTENT_TYPES: readonly (string | undefined)[] = [
  undefined,
  '',
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/jsonx',
  'application/json\r\nX-Injected: 1',
  '*/*',
];

/** A query-string part: percent-encoded UTF-8, lone surrogates included (as raw bytes would arrive). */
export function queryPart(value: string): string {
  return [...value]
    .map((ch) => {
      try {
        return encodeURIComponent(ch);
      } catch {
        return `%ED%${(0xa0 + ((ch.charCodeAt(0) >> 6) & 0x1f)).toString(16).toUpperCase()}%${(0x80 + (ch.charCodeAt(0) & 0x3f)).toString(16).toUpperCase()}`;
      }
    })
    .join('');
}
