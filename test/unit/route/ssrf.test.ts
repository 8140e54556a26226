import { describe, expect, it, vi } from 'vitest';
import {
  blockedRangeOf,
  checkDestinationUrl,
  DestinationBlockedError,
  isHostAllowed,
  pinnedLookup,
  resolveSafeAddresses,
  type ResolvedAddress,
} from '../../../shared/route/ssrf.js';

const policy = {
  allowedHosts: ['hooks.example.com', '*.webhook.office.com', 'localhost', 'siem.example.com:8443'],
  allowLoopback: false,
};
/** The system resolver's answers (node:dns/promises), for the default lookup. */
const dns = vi.hoisted(() => ({ asked: [] as string[], answers: [] as { address: string; family: number }[] }));
vi.mock('node:dns/promises', () => ({
  lookup: async (host: string, options?: { all?: boolean }) => {
    dns.asked.push(host);
    return options?.all ? dns.answers : dns.answers[0];
  },
}));

const resolvesTo =
  (...addresses: string[]) =>
  async (): Promise<ResolvedAddress[]> =>
    addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

describe('blocked address ranges', () => {
  it.each([
    ['0.0.0.0', '"this network"'],
    ['0.1.2.3', '"this network"'],
    ['10.0.0.1', 'private (10.0.0.0/8)'],
    ['10.255.255.255', 'private (10.0.0.0/8)'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.254', 'carrier-grade NAT'],
    ['127.0.0.1', 'loopback'],
    ['127.8.9.10', 'loopback'],
    ['169.254.169.254', 'link-local, incl. the cloud metadata endpoint'],
    ['172.16.0.1', 'private (172.16.0.0/12)'],
    ['172.31.255.255', 'private (172.16.0.0/12)'],
    ['192.168.1.1', 'private (192.168.0.0/16)'],
    ['224.0.0.251', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'reserved or broadcast'],
    ['198.18.0.1', 'benchmarking'],
    ['::', 'unspecified'],
    ['::1', 'loopback (::1)'],
    ['fc00::1', 'unique local'],
    ['fd12:3456:789a::1', 'unique local'],
    ['fe80::1', 'link-local (fe80::/10)'],
    ['fe80::1%eth0', 'link-local (fe80::/10)'],
    ['fec0::1', 'site-local'],
    ['febf:ffff::1', 'link-local (fe80::/10)'],
    ['ff02::1', 'multicast (ff00::/8)'],
    ['::ffff:10.0.0.1', 'private (10.0.0.0/8), as 10.0.0.1 inside IPv6'],
    [
      '::ffff:a9fe:a9fe',
      'link-local, incl. the cloud metadata endpoint (169.254.0.0/16), as 169.254.169.254 inside IPv6',
    ],
    ['::ffff:127.0.0.1', 'loopback (127.0.0.0/8), as 127.0.0.1 inside IPv6'],
    ['64:ff9b::192.168.0.1', 'private (192.168.0.0/16), as 192.168.0.1 inside IPv6'],
    ['::10.0.0.1', 'IPv4-compatible'],
    // Every way of writing an address: upper-case hex, zone, full form without ::, dotted tails of any width.
    ['FE80::1%eth0', 'link-local (fe80::/10)'],
    ['FD00:0:0:0:0:0:0:1', 'unique local'],
    ['2001:db8:0:0:1:0:0:1', 'documentation (2001:db8::/32)'],
    ['0:0:0:0:0:ffff:10.0.0.1', 'private (10.0.0.0/8), as 10.0.0.1 inside IPv6'],
    ['::FFFF:192.168.100.200', 'private (192.168.0.0/16), as 192.168.100.200 inside IPv6'],
    [
      '64:ff9b::a9fe:a9fe',
      'link-local, incl. the cloud metadata endpoint (169.254.0.0/16), as 169.254.169.254 inside IPv6',
    ],
  ])('%s is blocked: %s', (address, what) => {
    expect(blockedRangeOf(address)?.what).toContain(what);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '100.63.255.255',
    '100.128.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '169.253.0.1',
    '52.96.1.1',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '2a00:1450::1',
    '2606:4700:4700:0:0:0:0:1111',
    '2606:4700:4700:0:0:0:0:1111%eth0',
    '::ffff:52.96.100.200',
    '2A00:1450::1',
  ])('%s is public', (address) => {
    expect(blockedRangeOf(address)).toBeUndefined();
  });

  it('knows loopback from other blocked ranges (only loopback can be allowed)', () => {
    expect(blockedRangeOf('127.0.0.1')?.loopback).toBe(true);
    expect(blockedRangeOf('::1')?.loopback).toBe(true);
    expect(blockedRangeOf('::ffff:127.0.0.1')?.loopback).toBe(true);
    expect(blockedRangeOf('10.0.0.1')?.loopback).toBe(false);
    expect(blockedRangeOf('169.254.169.254')?.loopback).toBe(false);
  });

  it('takes nothing that is not an IP address for public, or for loopback', () => {
    expect(blockedRangeOf('hooks.example.com')).toEqual({ what: 'not an IP address', loopback: false });
    expect(blockedRangeOf('localhost')).toEqual({ what: 'not an IP address', loopback: false });
  });
});

describe('the host allow-list', () => {
  it('matches exact hosts, case-insensitively, on any port unless the entry names one', () => {
    expect(isHostAllowed('hooks.example.com', '', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('HOOKS.example.com', '8443', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('hooks.example.com.', '', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('evil-hooks.example.com', '', policy.allowedHosts)).toBe(false);
    expect(isHostAllowed('hooks.example.com.evil.net', '', policy.allowedHosts)).toBe(false);
    expect(isHostAllowed('siem.example.com', '8443', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('siem.example.com', '', policy.allowedHosts)).toBe(false);
    // An entry's :443 is the https default, which a URL leaves out.
    expect(
      checkDestinationUrl('https://hooks.example.net/in', { ...policy, allowedHosts: ['hooks.example.net:443'] })
        .hostname,
    ).toBe('hooks.example.net');
    expect(
      checkDestinationUrl('https://hooks.example.net:443/in', { ...policy, allowedHosts: ['hooks.example.net:443'] })
        .hostname,
    ).toBe('hooks.example.net');
  });

  it('matches *.suffix for subdomains only', () => {
    expect(isHostAllowed('contoso.webhook.office.com', '', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('a.b.webhook.office.com', '', policy.allowedHosts)).toBe(true);
    expect(isHostAllowed('webhook.office.com', '', policy.allowedHosts)).toBe(false);
    expect(isHostAllowed('evilwebhook.office.com', '', policy.allowedHosts)).toBe(false);
  });

  it('refuses non-https URLs, credentials in URLs, and hosts off the list, naming only the host', () => {
    expect(checkDestinationUrl('https://hooks.example.com/in?code=secret', policy).hostname).toBe('hooks.example.com');
    const refused = (url: string) => {
      try {
        checkDestinationUrl(url, policy);
      } catch (err) {
        expect(err).toBeInstanceOf(DestinationBlockedError);
        return (err as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(refused('http://hooks.example.com/in')).toBe(
      'Destination host hooks.example.com refused: only https:// URLs are allowed, not http://',
    );
    expect(refused('https://user:pw@hooks.example.com/in')).toContain('credentials in the URL are not allowed');
    const offList = refused('https://evil.example.net/webhookb2/SECRET-PATH?sig=SECRET');
    expect(offList).toBe('Destination host evil.example.net refused: the host is not on DESTINATION_ALLOWED_HOSTS');
    expect(offList).not.toContain('SECRET');
    expect(refused('https://169.254.169.254/metadata')).toContain('not on DESTINATION_ALLOWED_HOSTS');
    // The port is named when the URL gives one: it is what the allow-list entry has to match.
    expect(refused('https://siem.example.com:9443/in')).toBe(
      'Destination host siem.example.com:9443 refused: the host is not on DESTINATION_ALLOWED_HOSTS',
    );
    expect(refused('hooks.example.com/in')).toBe('Destination host (unparseable URL) refused: not a valid URL');
  });
});

describe('resolving a destination', () => {
  it('returns the public addresses a host resolves to', async () => {
    expect(await resolveSafeAddresses('hooks.example.com', policy, resolvesTo('52.96.1.1', '2606:4700::1'))).toEqual([
      { address: '52.96.1.1', family: 4 },
      { address: '2606:4700::1', family: 6 },
    ]);
  });

  it('refuses a host when any address it resolves to is blocked (DNS pointing inside)', async () => {
    await expect(
      resolveSafeAddresses('hooks.example.com', policy, resolvesTo('52.96.1.1', '169.254.169.254')),
    ).rejects.toThrow(
      'Destination host hooks.example.com refused: it resolves to 169.254.169.254, a link-local, incl. the cloud metadata endpoint (169.254.0.0/16) address',
    );
    await expect(resolveSafeAddresses('hooks.example.com', policy, resolvesTo('::ffff:10.0.0.1'))).rejects.toThrow(
      /a private \(10\.0\.0\.0\/8\), as 10\.0\.0\.1 inside IPv6 address/,
    );
    await expect(resolveSafeAddresses('hooks.example.com', policy, resolvesTo())).rejects.toThrow(
      'resolves to no address',
    );
  });

  it('judges IP literals without DNS', async () => {
    const noDns = async () => {
      throw new Error('DNS must not be asked');
    };
    await expect(resolveSafeAddresses('[fd00::1]', policy, noDns)).rejects.toThrow(/unique local/);
    expect(await resolveSafeAddresses('8.8.8.8', policy, noDns)).toEqual([{ address: '8.8.8.8', family: 4 }]);
  });

  it('allows loopback only with the flag, and nothing else private even then', async () => {
    await expect(resolveSafeAddresses('localhost', policy, resolvesTo('127.0.0.1', '::1'))).rejects.toThrow(/loopback/);
    const local = { ...policy, allowLoopback: true };
    expect(await resolveSafeAddresses('localhost', local, resolvesTo('127.0.0.1', '::1'))).toHaveLength(2);
    await expect(resolveSafeAddresses('localhost', local, resolvesTo('127.0.0.1', '10.0.0.1'))).rejects.toThrow(
      /10\.0\.0\.1, a private/,
    );
    await expect(resolveSafeAddresses('hooks.example.com', local, resolvesTo('169.254.169.254'))).rejects.toThrow(
      /link-local/,
    );
    // IPv4 loopback inside IPv6 is loopback; private addresses in any IPv6 form are not.
    expect(await resolveSafeAddresses('localhost', local, resolvesTo('::ffff:127.0.0.1'))).toHaveLength(1);
    await expect(resolveSafeAddresses('localhost', local, resolvesTo('::ffff:10.0.0.1'))).rejects.toThrow(
      /private \(10\.0\.0\.0\/8\), as 10\.0\.0\.1 inside IPv6/,
    );
    await expect(resolveSafeAddresses('localhost', local, resolvesTo('64:ff9b::a9fe:a9fe'))).rejects.toThrow(
      /link-local/,
    );
    await expect(resolveSafeAddresses('localhost', local, resolvesTo('fd00::1'))).rejects.toThrow(/unique local/);
    await expect(resolveSafeAddresses('[fe80::1]', local, resolvesTo())).rejects.toThrow(/link-local \(fe80::\/10\)/);
  });

  it("asks the system resolver for every address by default, and keeps each answer's family for the connection", async () => {
    dns.asked = [];
    dns.answers = [
      { address: '2606:4700::1', family: 6 },
      { address: '52.96.1.1', family: 4 },
    ];
    expect(await resolveSafeAddresses('hooks.example.com', policy)).toEqual([
      { address: '2606:4700::1', family: 6 },
      { address: '52.96.1.1', family: 4 },
    ]);
    expect(dns.asked).toEqual(['hooks.example.com']);
    dns.answers = [
      { address: '52.96.1.1', family: 4 },
      { address: 'fd00::1', family: 6 },
    ];
    await expect(resolveSafeAddresses('hooks.example.com', policy)).rejects.toThrow(
      'it resolves to fd00::1, a unique local / private (fc00::/7) address',
    );
  });

  it('connects only to the checked addresses (pinned lookup), in both lookup forms', () => {
    const lookup = pinnedLookup([
      { address: '52.96.1.1', family: 4 },
      { address: '2606:4700::1', family: 6 },
    ]);
    const calls: unknown[] = [];
    lookup('hooks.example.com', { all: true }, (...args: unknown[]) => calls.push(args));
    lookup('hooks.example.com', {}, (...args: unknown[]) => calls.push(args));
    lookup('hooks.example.com', { family: 6 }, (...args: unknown[]) => calls.push(args));
    expect(calls).toEqual([
      [
        null,
        [
          { address: '52.96.1.1', family: 4 },
          { address: '2606:4700::1', family: 6 },
        ],
      ],
      [null, '52.96.1.1', 4],
      [null, '2606:4700::1', 6],
    ]);
    // A socket that asks for IPv4 gets the IPv4 address, whatever came first.
    pinnedLookup([
      { address: '2606:4700::1', family: 6 },
      { address: '52.96.1.1', family: 4 },
    ])('hooks.example.com', { family: 4 }, (...args: unknown[]) => calls.push(args));
    expect(calls.at(-1)).toEqual([null, '52.96.1.1', 4]);
  });
});
