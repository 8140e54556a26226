import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';

/**
 * The SSRF guard for outbound webhooks: a destination URL must be https, its host on the allow-list,
 * and every address the host resolves to must be public. The request then connects to the checked
 * addresses only (a pinned lookup), so a DNS answer that changes between check and connect
 * (DNS rebinding) cannot redirect it to an internal address.
 */

export interface DestinationPolicy {
  /** Host names a destination may point at: exact (`hooks.example.com`) or `*.suffix` (subdomains only), optionally with `:port`. */
  allowedHosts: string[];
  /** Local demo only: lets a destination resolve to a loopback address. Nothing else private is ever allowed. */
  allowLoopback: boolean;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type AddressLookup = (host: string) => Promise<ResolvedAddress[]>;

/** Why a destination is refused; `reason` names the rule broken, never the URL's path or query (they may hold secrets). */
export class DestinationBlockedError extends Error {
  constructor(
    readonly host: string,
    readonly reason: string,
  ) {
    super(`Destination host ${host} refused: ${reason}`);
    // Stryker disable next-line StringLiteral: the name only labels stack traces; callers catch the error by instanceof and reword or wrap it
    this.name = 'DestinationBlockedError';
  }
}

interface Range {
  /** Network address and prefix length. */
  cidr: string;
  what: string;
}

const BLOCKED_V4: Range[] = [
  { cidr: '0.0.0.0/8', what: '"this network" (0.0.0.0/8)' },
  { cidr: '10.0.0.0/8', what: 'private (10.0.0.0/8)' },
  { cidr: '100.64.0.0/10', what: 'carrier-grade NAT (100.64.0.0/10)' },
  { cidr: '127.0.0.0/8', what: 'loopback (127.0.0.0/8)' },
  { cidr: '169.254.0.0/16', what: 'link-local, incl. the cloud metadata endpoint (169.254.0.0/16)' },
  { cidr: '172.16.0.0/12', what: 'private (172.16.0.0/12)' },
  { cidr: '192.0.0.0/24', what: 'IETF protocol assignments (192.0.0.0/24)' },
  { cidr: '192.0.2.0/24', what: 'documentation (192.0.2.0/24)' },
  { cidr: '192.168.0.0/16', what: 'private (192.168.0.0/16)' },
  { cidr: '198.18.0.0/15', what: 'benchmarking (198.18.0.0/15)' },
  { cidr: '198.51.100.0/24', what: 'documentation (198.51.100.0/24)' },
  { cidr: '203.0.113.0/24', what: 'documentation (203.0.113.0/24)' },
  { cidr: '224.0.0.0/4', what: 'multicast (224.0.0.0/4)' },
  { cidr: '240.0.0.0/4', what: 'reserved or broadcast (240.0.0.0/4)' },
];

const BLOCKED_V6: Range[] = [
  { cidr: '::/128', what: 'unspecified (::)' },
  { cidr: '::1/128', what: 'loopback (::1)' },
  { cidr: '::/96', what: 'IPv4-compatible (::/96, deprecated)' },
  { cidr: '100::/64', what: 'discard-only (100::/64)' },
  { cidr: '2001:db8::/32', what: 'documentation (2001:db8::/32)' },
  { cidr: 'fc00::/7', what: 'unique local / private (fc00::/7)' },
  { cidr: 'fe80::/10', what: 'link-local (fe80::/10)' },
  { cidr: 'fec0::/10', what: 'site-local (fec0::/10, deprecated)' },
  { cidr: 'ff00::/8', what: 'multicast (ff00::/8)' },
];

/** IPv6 prefixes that carry an IPv4 address in their last 32 bits: the embedded address decides. */
const EMBEDS_V4 = ['::ffff:0:0/96', '64:ff9b::/96'];

function v4ToBigInt(address: string): bigint {
  return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** A valid IPv6 address (as `isIP` accepts it, zone allowed) as a number; hex digits in either case. */
function v6ToBigInt(address: string): bigint {
  let text = address.split('%')[0]!;
  // A trailing dotted IPv4 (::ffff:10.0.0.1) becomes two hextets; a valid address has dots nowhere else.
  if (text.includes('.')) {
    const at = text.lastIndexOf(':') + 1;
    const v4 = v4ToBigInt(text.slice(at));
    text = `${text.slice(0, at)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  // `::` stands for the zero hextets that make eight (none in the full form, which has no `::`).
  const [head, tail] = text.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const parts = [...headParts, ...Array<string>(8 - headParts.length - tailParts.length).fill('0'), ...tailParts];
  return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

function inRange(value: bigint, cidr: string, bits: 32 | 128): boolean {
  const [network, prefix] = cidr.split('/') as [string, string];
  const base = bits === 32 ? v4ToBigInt(network) : v6ToBigInt(network);
  const shift = BigInt(bits - Number(prefix));
  return value >> shift === base >> shift;
}

function v4Range(address: string): Range | undefined {
  const value = v4ToBigInt(address);
  return BLOCKED_V4.find((r) => inRange(value, r.cidr, 32));
}

function bigIntToV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
}

/**
 * The blocked range an IP address falls in (loopback, private, link-local, CGNAT, multicast…), or
 * undefined when it is a public address. IPv4-mapped and NAT64 IPv6 addresses are judged by the
 * IPv4 address they carry.
 */
export function blockedRangeOf(address: string): { what: string; loopback: boolean } | undefined {
  const family = isIP(address.split('%')[0]!);
  if (family === 4) {
    const range = v4Range(address);
    return range && { what: range.what, loopback: range.cidr === '127.0.0.0/8' };
  }
  if (family !== 6) return { what: 'not an IP address', loopback: false };
  const value = v6ToBigInt(address);
  if (EMBEDS_V4.some((cidr) => inRange(value, cidr, 128))) {
    const embedded = bigIntToV4(value & 0xffffffffn);
    const range = v4Range(embedded);
    return range && { what: `${range.what}, as ${embedded} inside IPv6`, loopback: range.cidr === '127.0.0.0/8' };
  }
  const range = BLOCKED_V6.find((r) => inRange(value, r.cidr, 128));
  return range && { what: range.what, loopback: range.cidr === '::1/128' };
}

/** Whether `host` (and `port`) is on the allow-list: exact entries, or `*.suffix` for any subdomain of suffix. */
export function isHostAllowed(host: string, port: string, allowedHosts: readonly string[]): boolean {
  const name = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  return allowedHosts.some((entry) => {
    const [pattern, entryPort] = splitHostPort(entry.toLowerCase());
    if (entryPort !== undefined && entryPort !== (port || '443')) return false;
    if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1;
    return name === pattern;
  });
}

function splitHostPort(entry: string): [string, string | undefined] {
  const match = /^(.*?)(?::(\d+))?$/.exec(entry);
  return [match?.[1] ?? entry, match?.[2]];
}

/**
 * The checks that need no network: an https URL whose host is on the allow-list. Throws
 * `DestinationBlockedError`; returns the parsed URL.
 */
export function checkDestinationUrl(url: string, policy: DestinationPolicy): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DestinationBlockedError('(unparseable URL)', 'not a valid URL');
  }
  if (parsed.protocol !== 'https:')
    throw new DestinationBlockedError(parsed.hostname, `only https:// URLs are allowed, not ${parsed.protocol}//`);
  if (parsed.username || parsed.password)
    throw new DestinationBlockedError(parsed.hostname, 'credentials in the URL are not allowed');
  if (!isHostAllowed(parsed.hostname, parsed.port, policy.allowedHosts)) {
    const port = parsed.port ? `:${parsed.port}` : '';
    throw new DestinationBlockedError(`${parsed.hostname}${port}`, 'the host is not on DESTINATION_ALLOWED_HOSTS');
  }
  return parsed;
}

const systemLookup: AddressLookup = async (host) => {
  const answers = await dnsLookup(host, { all: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/**
 * Resolves the host and refuses it when any address it resolves to is blocked (a mixed answer is
 * refused as a whole: a client could connect to either). Loopback passes only with `allowLoopback`.
 */
export async function resolveSafeAddresses(
  host: string,
  policy: DestinationPolicy,
  lookup: AddressLookup = systemLookup,
): Promise<ResolvedAddress[]> {
  // Stryker disable next-line Regex: a URL's hostname holds brackets only around a whole IPv6 literal, so dropping either anchor changes nothing
  const bare = host.replace(/^\[|\]$/g, '');
  const literal = isIP(bare);
  const addresses = literal ? [{ address: bare, family: literal as 4 | 6 }] : await lookup(bare);
  if (addresses.length === 0) throw new DestinationBlockedError(host, 'the host resolves to no address');
  for (const { address } of addresses) {
    const blocked = blockedRangeOf(address);
    if (!blocked) continue;
    if (blocked.loopback && policy.allowLoopback) continue;
    throw new DestinationBlockedError(host, `it resolves to ${address}, a ${blocked.what} address`);
  }
  return addresses;
}

/** A `lookup` for `https.request` that answers only with the addresses already checked (no second DNS query). */
export function pinnedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) {
      (callback as unknown as (err: null, addresses: ResolvedAddress[]) => void)(null, [...addresses]);
      return;
    }
    const wanted = addresses.find((a) => a.family === options.family);
    const chosen = wanted ?? addresses[0]!;
    callback(null, chosen.address, chosen.family);
  };
}
