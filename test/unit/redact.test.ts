import { describe, expect, it } from 'vitest';
import { describeError, redact } from '../../shared/redact.js';

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
    for (const secret of [jwt, 'abc.def-ghi', 'hunter2', 'Eby8vdM02xNOcqFl', 'abcDEF', 'hunter3']) expect(out).not.toContain(secret);
    expect(out).toContain('client_id=x');
    expect(out).toContain('"name":"ok"');
  });

  it('describes an error on one line, with its name, code and status, redacted', () => {
    const err = Object.assign(new Error('Failed\nclient_secret=hunter2 rejected'), { name: 'RestError', code: 'Forbidden', statusCode: 403 });
    expect(describeError(err)).toBe('RestError Forbidden HTTP 403: Failed client_secret=[redacted] rejected');
  });
});
