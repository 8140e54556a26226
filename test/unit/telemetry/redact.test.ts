import { describe, expect, it } from 'vitest';
import { redactingLogger } from '../../../shared/telemetry/logging.js';
import { describeError, redact } from '../../../shared/telemetry/redact.js';

describe('redact', () => {
  it('removes JWTs, bearer tokens, form secrets, storage keys and SAS signatures', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4In0.c2lnbmF0dXJl';
    const text = [
      `token ${jwt}`,
      'Authorization: Bearer abc.def-ghi',
      'grant_type=client_credentials&client_secret=hunter2&client_id=x',
      'client_assertion=eyJx.eyJy.z&scope=s',
      'AccountKey=Eby8vdM02xNOcqFl==;BlobEndpoint=http://x',
      'https://a.blob.core.windows.net/c/b?sv=1&sig=abcDEF%2B',
      '{"clientSecret":"hunter3","name":"ok"}',
    ].join('\n');
    const out = redact(text);
    for (const secret of [jwt, 'abc.def-ghi', 'hunter2', 'Eby8vdM02xNOcqFl', 'abcDEF', 'hunter3'])
      expect(out).not.toContain(secret);
    expect(out).toContain('client_id=x');
    expect(out).toContain('"name":"ok"');
  });

  it('describes an error on one line, with its name, code and status, redacted', () => {
    const err = Object.assign(new Error('Failed\nclient_secret=hunter2 rejected'), {
      name: 'RestError',
      code: 'Forbidden',
      statusCode: 403,
    });
    expect(describeError(err)).toBe('RestError Forbidden HTTP 403: Failed client_secret=[redacted] rejected');
  });

  it('describes a multi-line error (CRLF, blank and indented lines, as services answer) on one short line', () => {
    const err = new Error('The request failed.\r\n\r\n    RequestId: 42\r\n    Time: 2026-11-23T10:00:00Z\r\n');
    expect(describeError(err)).toBe('Error: The request failed. RequestId: 42 Time: 2026-11-23T10:00:00Z');
    expect(describeError(new Error('x'.repeat(5_000))).length).toBeLessThanOrEqual(600);
  });
});

describe('a Key Vault secret response in a log line', () => {
  /** What Key Vault answers to GET {vault}/secrets/{name}/{version} (REST API 7.4): the value beside its metadata. */
  const secretResponse = (value: string) => ({
    value,
    contentType: 'text/plain',
    id: 'https://relay-kv.vault.azure.net/secrets/northwind-client-secret/4387e9f3d6e14c459867679a90fd0f79',
    attributes: {
      enabled: true,
      created: 1_732_356_000,
      updated: 1_732_356_000,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: 90,
    },
    tags: { 'defender-relay': 'tenant-credential' },
  });
  /** Distinct words joined by characters JSON escapes: none of the words may reach the log. */
  const words = ['Kq7vAlpha', 'Rz4mBravo', 'Tn8xCharlie', 'Wp2dDelta', 'Ys5eEcho'];
  const hostile = `${words[0]}"${words[1]}\\${words[2]}", "id": "${words[3]}\n${words[4]}`;

  function logged(line: string): string {
    const lines: string[] = [];
    const sink = {
      info: (m: string) => lines.push(m),
      warn: (m: string) => lines.push(m),
      error: (m: string) => lines.push(m),
    };
    redactingLogger(sink).warn(line);
    return lines.join('\n');
  }

  it.each([
    ['compact JSON', (v: string) => JSON.stringify(secretResponse(v))],
    ['indented JSON', (v: string) => JSON.stringify(secretResponse(v), null, 2)],
  ])('keeps the value out of the line and keeps which secret it was (%s)', (_form, body) => {
    for (const value of ['plain-Kq7vAlpha-Rz4mBravo', hostile]) {
      const line = logged(`keyvault: unexpected answer to read tenant credential: ${body(value)}`);
      for (const word of words.filter((w) => value.includes(w))) expect(line).not.toContain(word);
      expect(line).toContain('/secrets/northwind-client-secret/4387e9f3d6e14c459867679a90fd0f79');
      expect(line).toContain('"contentType"');
    }
  });

  it('describeError does not leak a secret response the error carries, even where the description is cut short', () => {
    const body = JSON.stringify(secretResponse(hostile));
    const carried = [
      new Error(`Key Vault answered 200 with a body the relay could not use: ${body}`),
      Object.assign(new Error(`Unexpected answer:\n${JSON.stringify(secretResponse(hostile), null, 2)}`), {
        name: 'RestError',
        statusCode: 200,
      }),
      // The value straddles the 600-character cut of the description.
      new Error(`${'context '.repeat(70)}${body}`),
    ];
    for (const err of carried) {
      const description = describeError(err);
      for (const word of words) expect(description).not.toContain(word);
    }
    expect(describeError(carried[1])).toMatch(/^RestError HTTP 200: Unexpected answer: \{/);
  });
});
