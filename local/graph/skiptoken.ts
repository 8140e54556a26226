import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { invalidQuery } from './errors.js';

/**
 * `@odata.nextLink` is the request's own URL with its query options (but `$skip`) and a `$skiptoken` that
 * holds the listing's position: "The URL also contains all the other query parameters present in the
 * original request. Do not try to extract the $skiptoken or $skip value and use it in a different request."
 * (microsoftgraph/microsoft-graph-docs-contrib concepts/paging.md). The token is opaque: the tenant it was
 * issued to, the query options it continues and the offset, signed with a key the stand-in makes at start.
 * A token this stand-in did not issue, an altered one, one sent with other query options than it continues,
 * or one replayed with another tenant's access token is refused as ASP.NET Core OData refuses a skiptoken it
 * cannot parse ("Unable to parse the skiptoken value. Skiptoken value should always be server generated.",
 * OData/AspNetCoreOData SRResources.resx SkipTokenParseError), saying nothing of whose it was.
 */
export interface ListPosition {
  tenantId: string;
  /** The query options the nextLink carries (`canonicalQuery`): the listing's, but `$skip`. */
  query: string;
  offset: number;
}

/** Query options but `$skiptoken`, in a stable order: a follow-up's must be the ones its token was issued for. */
export function canonicalQuery(options: Map<string, string>): string {
  return JSON.stringify([...options].filter(([name]) => name !== '$skiptoken').sort(([a], [b]) => (a < b ? -1 : 1)));
}

const refused = () =>
  invalidQuery('Unable to parse the skiptoken value. Skiptoken value should always be server generated.');

export class SkipTokens {
  readonly #key: Buffer;

  constructor(key: Buffer = randomBytes(32)) {
    this.#key = key;
  }

  issue(position: ListPosition): string {
    const payload = Buffer.from(
      JSON.stringify({ t: position.tenantId, q: position.query, o: position.offset }),
    ).toString('base64url');
    return `${payload}.${this.#sign(payload)}`;
  }

  /** The offset a token stands for, if this stand-in issued it, unaltered, to this tenant for this query. */
  resolve(token: string, tenantId: string, query: string): number {
    const [payload, signature, ...rest] = token.split('.');
    if (!payload || !signature || rest.length > 0) throw refused();
    const expected = Buffer.from(this.#sign(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw refused();
    let decoded: { t?: unknown; q?: unknown; o?: unknown };
    try {
      decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof decoded;
    } catch {
      throw refused();
    }
    if (decoded.t !== tenantId || decoded.q !== query) throw refused();
    const offset = Number(decoded.o);
    if (!Number.isSafeInteger(offset) || offset < 0) throw refused();
    return offset;
  }

  #sign(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}
