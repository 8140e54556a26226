import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  loadRoutingRules,
  plannedDeliveries,
  queueNamesOf,
  RoutingConfigError,
  routingTableFor,
  ruleMatches,
  selectRoutes,
  type RoutableEvent,
  type RuleMatch,
} from '../../../shared/route/routing.js';

const policy = { allowedHosts: ['hooks.example.com', '*.webhook.office.com', 'localhost'] };
const TENANT = '6f1c1c1e-1b5c-4c59-9a8e-0d5d1e2a3b4c';

function event(
  overrides: {
    incident?: Record<string, unknown>;
    enrichment?: Partial<RoutableEvent['enrichment']>;
    tenantId?: string;
  } = {},
): RoutableEvent {
  return {
    tenantId: overrides.tenantId ?? TENANT,
    incident: {
      incidentId: 7,
      severity: 'High',
      status: 'Active',
      classification: 'TruePositive',
      determination: 'CompromisedAccount',
      tags: ['VIP', 'Finance'],
      alerts: [{ serviceSource: 'MicrosoftDefenderForEndpoint', mitreTechniques: ['T1003.001', 'T1059.001'] }],
      ...overrides.incident,
    },
    enrichment: {
      priority: 75,
      tenantDisplayName: 'Fabrikam',
      serviceSources: ['MicrosoftDefenderForEndpoint'],
      mitre: { techniques: ['T1003.001', 'T1059.001'] },
      ...overrides.enrichment,
    },
  };
}

function problemsOf(raw: unknown): string[] {
  try {
    loadRoutingRules(raw, policy);
  } catch (err) {
    expect(err).toBeInstanceOf(RoutingConfigError);
    return (err as RoutingConfigError).problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message));
  }
  throw new Error('expected the rules to be refused');
}

const base = {
  destinations: {
    'soc-queue': { type: 'queue', queueName: 'routed-high' },
    archive: { type: 'queue', queueName: 'routed-archive' },
    teams: { type: 'teams', url: 'https://contoso.webhook.office.com/webhookb2/abc' },
    siem: { type: 'webhook', url: 'https://hooks.example.com/in', hmacSecretName: 'siem-hmac-key' },
    nowhere: { type: 'drop' },
  },
  rules: [] as unknown[],
  defaultRoute: { destinations: ['archive'] },
};
const withRules = (...rules: unknown[]) => ({ ...base, rules });

describe('loading routing rules', () => {
  it('loads the example and demo files shipped with the app', () => {
    const example = loadRoutingRules(join(import.meta.dirname, '../../../routes.example.json'), {
      allowedHosts: ['siem.contoso.com'],
    });
    expect(example.rules.map((r) => r.name)).toEqual([
      'ignore-false-positives',
      'credential-theft',
      'high-to-soc',
      'vip-tenants',
    ]);
    expect(queueNamesOf(example)).toEqual(['routed-high']);
    const demo = loadRoutingRules(join(import.meta.dirname, '../../../local/demo-routes.json'), {
      allowedHosts: ['localhost'],
    });
    expect(queueNamesOf(demo).sort()).toEqual(['routed-archive', 'routed-high']);
  });

  it('routes the demo world as the demo file says', () => {
    const demo = loadRoutingRules(join(import.meta.dirname, '../../../local/demo-routes.json'), {
      allowedHosts: ['localhost'],
    });
    const northwind = { tenantDisplayName: 'Northwind Traders', mitre: { techniques: ['T1003'] } };
    expect(selectRoutes(demo, event()).map((r) => [r.name, r.destinations])).toEqual([
      ['high-to-soc', ['soc-queue', 'teams', 'siem', 'sentinel']],
    ]);
    expect(selectRoutes(demo, event({ enrichment: northwind })).map((r) => r.name)).toEqual([
      'northwind-credential-access',
      'high-to-soc',
    ]);
    expect(selectRoutes(demo, event({ incident: { status: 'Resolved' } })).map((r) => r.name)).toEqual(['closed-drop']);
    expect(
      selectRoutes(demo, event({ incident: { severity: 'Medium' }, enrichment: { priority: 70 } })).map((r) => r.name),
    ).toEqual(['risky-medium']);
    expect(demo.destinations.get('sentinel')).toMatchObject({
      type: 'sentinel',
      streamName: 'Custom-DefenderRelayIncidents_CL',
    });
    expect(
      selectRoutes(demo, event({ incident: { severity: 'Medium' }, enrichment: { priority: 70 } }))[0]!.destinations,
    ).toContain('sentinel');
    expect(selectRoutes(demo, event({ incident: { severity: 'Low' }, enrichment: { priority: 27 } }))).toEqual([
      { name: 'default', destinations: ['archive', 'siem'] },
    ]);
  });

  it('applies defaults: mode first-match, an empty match that matches everything', () => {
    const table = loadRoutingRules(withRules({ name: 'all', destinations: ['siem'] }), policy);
    expect(table.rules[0]).toMatchObject({ name: 'all', mode: 'first-match', match: {} });
    expect(selectRoutes(table, event())).toEqual([{ name: 'all', destinations: ['siem'] }]);
  });

  it('names the rule and the field of each problem, and lists every problem at once', () => {
    const problems = problemsOf(
      withRules(
        { name: 'ok', destinations: ['siem'] },
        { name: 'bad-severity', match: { severity: ['Critical'] }, destinations: ['siem'] },
        { name: 'teams-high', match: { severity: ['High'], status: ['Open'] }, destinations: ['teams', 'pager'] },
        { match: { minPriority: 150 }, destinations: ['siem'] },
        { name: 'typo', match: { severty: ['High'] }, destinations: ['siem'], mode: 'fanout' },
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'rules[1] "bad-severity": match.severity[0]: must be one of UnSpecified, Informational, Low, Medium, High',
        'rules[2] "teams-high": match.status[0]: must be one of Active, InProgress, Resolved, Redirected',
        expect.stringMatching(/^rules\[3\]: name: /),
        'rules[3]: match.minPriority: must be between 0 and 100',
        'rules[4] "typo": match: unknown field "severty"',
        'rules[4] "typo": mode: must be first-match or fan-out',
      ]),
    );
    // The unknown destination of rule 2 is reported once its fields are valid.
    expect(problemsOf(withRules({ name: 'teams-high', destinations: ['teams', 'pager'] }))).toEqual([
      'rules[0] "teams-high": destinations[1]: no destination named "pager" (declared: soc-queue, archive, teams, siem, nowhere)',
    ]);
  });

  it('refuses a file that is not an object, unknown top-level fields and destination names it cannot use', () => {
    expect(problemsOf([])).toEqual(['must be a JSON object with "destinations", "rules" and "defaultRoute"']);
    expect(problemsOf({ ...base, rule: [] })).toEqual(['rule: unknown top-level field "rule"']);
    expect(problemsOf({ ...base, rule: [], default: {} })).toEqual([
      'rule: unknown top-level fields "rule", "default"',
    ]);
    expect(
      loadRoutingRules({ $schema: './routes.schema.json', description: 'MSSP routes', ...base }, policy).rules,
    ).toEqual([]);
    expect(problemsOf({ ...base, destinations: { ...base.destinations, _archive: { type: 'drop' } } })).toEqual([
      'destinations "_archive": the name must be 1-80 letters, digits, dots, dashes, colons or underscores, starting with a letter or digit',
    ]);
  });

  it('validates every match operator value', () => {
    const problems = problemsOf(
      withRules({
        name: 'r',
        match: {
          classification: ['Bad'],
          determination: ['Evil'],
          mitreTechnique: ['X1003'],
          tenant: [],
          tags: [''],
          minPriority: 'high',
        },
        destinations: ['siem'],
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^rules\[0\] "r": match\.classification\[0\]: must be one of Unknown, FalsePositive, TruePositive/,
        ),
        expect.stringMatching(/^rules\[0\] "r": match\.determination\[0\]: must be one of NotAvailable/),
        'rules[0] "r": match.mitreTechnique[0]: must be a MITRE technique id like T1003 or T1059.001, or a glob like T1059.*',
        'rules[0] "r": match.tenant: must list at least one value',
        'rules[0] "r": match.tags[0]: must not be empty',
        'rules[0] "r": match.minPriority: must be a number',
      ]),
    );
  });

  it('validates destinations: queue names, https, the host allow-list, exactly one URL source, unknown types', () => {
    const problems = problemsOf({
      destinations: {
        upper: { type: 'queue', queueName: 'Routed_High' },
        short: { type: 'queue', queueName: 'ab' },
        dashes: { type: 'queue', queueName: 'a--b' },
        plain: { type: 'webhook', url: 'http://hooks.example.com/in' },
        elsewhere: { type: 'webhook', url: 'https://evil.example.net/in' },
        apex: { type: 'teams', url: 'https://webhook.office.com/x' },
        both: { type: 'slack', url: 'https://hooks.example.com/s', urlSecretName: 'slack-url' },
        neither: { type: 'slack' },
        pager: { type: 'pagerduty' },
        extra: { type: 'drop', url: 'https://hooks.example.com' },
      },
      rules: [],
      defaultRoute: { destinations: ['upper'] },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^destinations "upper": queueName: must be an Azure queue name/),
        expect.stringMatching(/^destinations "short": queueName: must be an Azure queue name/),
        expect.stringMatching(/^destinations "dashes": queueName: must be an Azure queue name/),
        'destinations "plain": url: must be an https:// URL',
        'destinations "elsewhere": url: the host is not on DESTINATION_ALLOWED_HOSTS (host evil.example.net)',
        'destinations "apex": url: the host is not on DESTINATION_ALLOWED_HOSTS (host webhook.office.com)',
        'destinations "both": give exactly one of url and urlSecretName',
        'destinations "neither": give exactly one of url and urlSecretName',
        'destinations "pager": type: must be one of queue, webhook, teams, slack, sentinel, drop',
        'destinations "extra": unknown field "url"',
      ]),
    );
    // The default route names an invalid destination: reported once, at the destination.
    expect(problems.filter((p) => p.startsWith('defaultRoute'))).toEqual([]);
  });

  it('requires a default route and rule names that are unique', () => {
    const problems = problemsOf({
      destinations: base.destinations,
      rules: [
        { name: 'a', destinations: ['siem'] },
        { name: 'a', destinations: ['siem'] },
        { name: 'default', destinations: ['siem'] },
      ],
    });
    expect(problems).toEqual([
      'rules[1] "a": name: already used by rules[0]',
      'rules[2] "default": name: "default" is reserved for defaultRoute',
      'defaultRoute: is required (use a "drop" destination to discard unmatched events)',
    ]);
    expect(problemsOf({ ...base, defaultRoute: { destinations: ['gone'] } })).toEqual([
      'defaultRoute: destinations[0]: no destination named "gone" (declared: soc-queue, archive, teams, siem, nowhere)',
    ]);
  });

  it('validates write-back and hunting', () => {
    expect(
      problemsOf(
        withRules({
          name: 'w',
          destinations: ['siem'],
          writeBack: { tag: 'x', comment: 'y' },
          hunting: [{ name: 'q' }],
        }),
      ),
    ).toEqual([
      'rules[0] "w": writeBack: must be { "tag": "…" } or { "comment": "…" }',
      'rules[0] "w": hunting[0].query: is required',
    ]);
    const problems = problemsOf(
      withRules({
        name: 'h',
        destinations: ['siem'],
        hunting: [{ name: 'q', query: 'DeviceInfo | where DeviceName in ({hosts})', maxRows: 5000 }],
      }),
    );
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^rules\[0\] "h": hunting\[0\]\.maxRows: /);
    expect(problems[1]).toMatch(
      /^rules\[0\] "h": hunting\[0\]\.query: unknown placeholder \{hosts\} \(known: \{deviceNames\}/,
    );
  });

  it('reports an unreadable or malformed file by its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'routes-'));
    const broken = join(dir, 'routes.json');
    writeFileSync(broken, '{ "rules": [');
    expect(() => loadRoutingRules(broken, policy)).toThrow(
      `ROUTES_FILE ${broken}:1:13: not valid JSON: a closing ] was expected (the file ends here)`,
    );
    expect(() => loadRoutingRules(join(dir, 'missing.json'), policy)).toThrow(
      `ROUTES_FILE ${join(dir, 'missing.json')}: cannot read the file (ENOENT: it does not exist); set ROUTES_FILE`,
    );
  });

  it('names the file, the line and column, and the field of each problem in a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'routes-'));
    const file = join(dir, 'routes.json');
    writeFileSync(
      file,
      JSON.stringify(
        withRules(
          { name: 'ok', destinations: ['siem'] },
          { name: 'teams-high', match: { severity: ['Critical'] }, destinations: ['teams', 'pager'] },
        ),
        null,
        2,
      ),
    );
    const lines = readFileSync(file, 'utf8').split('\n');
    const lineOf = (text: string, after = 0) => lines.findIndex((l, i) => i >= after && l.includes(text)) + 1;
    const rule = lineOf('"teams-high"');
    let error: RoutingConfigError | undefined;
    try {
      loadRoutingRules(file, policy);
    } catch (err) {
      error = err as RoutingConfigError;
    }
    expect(error).toBeInstanceOf(RoutingConfigError);
    expect(error!.file).toBe(file);
    expect(error!.problems).toEqual([
      {
        line: lineOf('"Critical"', rule),
        column: 11,
        field: 'rules[1] "teams-high": match.severity[0]',
        message: 'must be one of UnSpecified, Informational, Low, Medium, High',
      },
    ]);
    expect(error!.message).toBe(
      `ROUTES_FILE ${file}:${lineOf('"Critical"', rule)}:11: rules[1] "teams-high": match.severity[0]: must be one of UnSpecified, Informational, Low, Medium, High`,
    );
    // What a log line of the thrown error (and its exception type) shows.
    expect(String(error)).toBe(`RoutingConfigError: ${error!.message}`);

    // Once the fields are valid, the unknown destination is found, at its place in the list.
    writeFileSync(file, JSON.stringify(withRules({ name: 'teams-high', destinations: ['teams', 'pager'] }), null, 2));
    const again = readFileSync(file, 'utf8').split('\n');
    expect(() => loadRoutingRules(file, policy)).toThrow(
      `ROUTES_FILE ${file}:${again.findIndex((l) => l.includes('"pager"')) + 1}:9: rules[0] "teams-high": destinations[1]: no destination named "pager"`,
    );
  });

  it('places structural, URL and rule-name problems in a file at their own field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'routes-'));
    const file = join(dir, 'routes.json');
    const problemsIn = (content: unknown) => {
      const lines = JSON.stringify(content, null, 2).split('\n');
      writeFileSync(file, lines.join('\n'));
      const at = (text: string, after = 0) =>
        `${lines.findIndex((l, i) => i >= after && l.includes(text)) + 1}:${lines.find((l, i) => i >= after && l.includes(text))!.indexOf('"') + 1}`;
      try {
        loadRoutingRules(file, policy);
      } catch (err) {
        return {
          at,
          problems: (err as RoutingConfigError).problems.map((p) => `${p.line}:${p.column} ${p.field}: ${p.message}`),
        };
      }
      throw new Error('expected the rules to be refused');
    };

    const shapes = problemsIn({ destinations: [], rules: {}, defaultRoute: { destinations: [] } });
    expect(shapes.problems).toEqual([
      `${shapes.at('"destinations"')} destinations: must be an object mapping destination names to destinations`,
      `${shapes.at('"rules"')} rules: must be a list of rules (it may be empty)`,
      `${shapes.at('"destinations"', 3)} defaultRoute: destinations: must name at least one destination`,
    ]);

    const named = problemsIn({
      destinations: { ...base.destinations, elsewhere: { type: 'webhook', url: 'https://evil.example.net/in' } },
      rules: [
        { name: 'a', destinations: ['siem'] },
        { name: 'a', destinations: ['siem'] },
        { name: 'default', destinations: ['siem'] },
      ],
      defaultRoute: base.defaultRoute,
    });
    const rules = named.at('"rules"');
    const afterRules = Number(rules.split(':')[0]);
    expect(named.problems).toEqual([
      `${named.at('"url": "https://evil')} destinations "elsewhere": url: the host is not on DESTINATION_ALLOWED_HOSTS (host evil.example.net)`,
      `${named.at('"name": "a"', afterRules + 5)} rules[1] "a": name: already used by rules[0]`,
      `${named.at('"name": "default"')} rules[2] "default": name: "default" is reserved for defaultRoute`,
    ]);
  });

  it('reads ROUTES_FILE once per process: a later edit does not change the table, a file that failed is read again', () => {
    const dir = mkdtempSync(join(tmpdir(), 'routes-'));
    const routesFile = join(dir, 'routes.json');
    const routing = { routesFile, allowedHosts: policy.allowedHosts, timeoutMs: 10_000, allowLoopback: false };
    writeFileSync(routesFile, '{ "rules": [');
    expect(() => routingTableFor(routing)).toThrow(RoutingConfigError);
    writeFileSync(routesFile, JSON.stringify(withRules({ name: 'all', destinations: ['siem'] })));
    const table = routingTableFor(routing);
    expect(table.rules.map((r) => r.name)).toEqual(['all']);
    writeFileSync(routesFile, '{ "rules": [');
    expect(routingTableFor(routing)).toBe(table);
  });
});

describe('matching', () => {
  const matches = (match: RuleMatch, e = event()) => ruleMatches(match, e);

  it('tenant: by id or display name, case-insensitive', () => {
    expect(matches({ tenant: [TENANT.toUpperCase()] })).toBe(true);
    expect(matches({ tenant: ['fabrikam'] })).toBe(true);
    expect(matches({ tenant: ['Northwind Traders'] })).toBe(false);
  });

  it('severity, status, classification: any of the listed values', () => {
    expect(matches({ severity: ['Medium', 'High'] })).toBe(true);
    expect(matches({ severity: ['Low'] })).toBe(false);
    expect(matches({ status: ['Active'] })).toBe(true);
    expect(matches({ status: ['Resolved'] })).toBe(false);
    expect(matches({ classification: ['TruePositive'] })).toBe(true);
    expect(matches({ classification: ['FalsePositive'] })).toBe(false);
    expect(matches({ severity: ['High'] }, event({ incident: { severity: undefined } }))).toBe(false);
  });

  it('determination: either spelling of a renamed value matches', () => {
    expect(matches({ determination: ['CompromisedUser'] })).toBe(true);
    expect(matches({ determination: ['CompromisedAccount'] })).toBe(true);
    expect(matches({ determination: ['Clean'] }, event({ incident: { determination: 'NotMalicious' } }))).toBe(true);
    // Defender's update page spells it NoEnoughDataToValidate, Graph's schema notEnoughDataToValidate (read as NotEnough…).
    for (const determination of ['NotEnoughDataToValidate', 'NoEnoughDataToValidate', 'InsufficientData'])
      expect(matches({ determination: ['NoEnoughDataToValidate'] }, event({ incident: { determination } }))).toBe(true);
    expect(matches({ determination: ['Malware'] })).toBe(false);
    expect(matches({ determination: ['Malware', 'CompromisedUser'] })).toBe(true);
    expect(matches({ determination: ['CompromisedUser'] }, event({ incident: { determination: undefined } }))).toBe(
      false,
    );
  });

  it('serviceSource: from the enrichment, else from the alerts', () => {
    expect(matches({ serviceSource: ['MicrosoftDefenderForEndpoint'] })).toBe(true);
    expect(matches({ serviceSource: ['MicrosoftDefenderForOffice'] })).toBe(false);
    expect(
      matches(
        { serviceSource: ['microsoftdefenderforendpoint'] },
        event({ enrichment: { serviceSources: undefined } }),
      ),
    ).toBe(true);
  });

  it('tags: any of', () => {
    expect(matches({ tags: ['vip', 'Board'] })).toBe(true);
    expect(matches({ tags: ['Board'] })).toBe(false);
    expect(matches({ tags: ['VIP'] }, event({ incident: { tags: null } }))).toBe(false);
  });

  it('mitreTechnique: exact ids and globs', () => {
    expect(matches({ mitreTechnique: ['T1003.001'] })).toBe(true);
    expect(matches({ mitreTechnique: ['T1003'] })).toBe(false);
    expect(matches({ mitreTechnique: ['T1059.*'] })).toBe(true);
    expect(matches({ mitreTechnique: ['T1059*'] }, event({ enrichment: { mitre: { techniques: ['T1059'] } } }))).toBe(
      true,
    );
    expect(matches({ mitreTechnique: ['T1059.*'] }, event({ enrichment: { mitre: { techniques: ['T1059'] } } }))).toBe(
      false,
    );
    expect(matches({ mitreTechnique: ['T15??'] })).toBe(false);
    expect(matches({ mitreTechnique: ['T100?.00?'] })).toBe(true);
    expect(matches({ mitreTechnique: ['t1003.*'] }, event({ enrichment: { mitre: undefined } }))).toBe(true);
  });

  it('minPriority: at least N', () => {
    expect(matches({ minPriority: 75 })).toBe(true);
    expect(matches({ minPriority: 76 })).toBe(false);
    expect(matches({ minPriority: 0 }, event({ enrichment: { priority: 0 } }))).toBe(true);
  });

  it('ignores values of the wrong type in the incident instead of failing', () => {
    const odd = event({
      incident: {
        tags: ['VIP', 42, null],
        alerts: [null, 'alert', {}, { serviceSource: 'MicrosoftDefenderForOffice', mitreTechniques: [7, 'T1566'] }],
      },
      enrichment: { tenantDisplayName: null, serviceSources: undefined, mitre: undefined },
    });
    expect(matches({ tags: ['vip'] }, odd)).toBe(true);
    expect(matches({ serviceSource: ['MicrosoftDefenderForOffice'] }, odd)).toBe(true);
    expect(matches({ mitreTechnique: ['T1566'] }, odd)).toBe(true);
    expect(matches({ tenant: [TENANT] }, odd)).toBe(true);
    expect(matches({ tenant: ['Fabrikam'] }, odd)).toBe(false);
  });

  it('ANDs fields', () => {
    expect(matches({ severity: ['High'], tenant: ['Fabrikam'], minPriority: 70 })).toBe(true);
    expect(matches({ severity: ['High'], tenant: ['Fabrikam'], minPriority: 80 })).toBe(false);
  });
});

describe('selecting routes', () => {
  const table = loadRoutingRules(
    withRules(
      { name: 'everything-to-siem', mode: 'fan-out', destinations: ['siem'] },
      { name: 'fp-drop', match: { classification: ['FalsePositive'] }, destinations: ['nowhere'] },
      {
        name: 'high',
        match: { severity: ['High'] },
        destinations: ['soc-queue', 'teams'],
        writeBack: { tag: 'relayed:high' },
        hunting: [{ name: 'logons', query: 'DeviceLogonEvents | take 5' }],
      },
      { name: 'also-high', match: { severity: ['High'] }, destinations: ['archive'] },
      { name: 'vip-fanout', mode: 'fan-out', match: { tags: ['VIP'] }, destinations: ['teams', 'archive'] },
    ),
    policy,
  );
  const names = (e: RoutableEvent) => selectRoutes(table, e).map((r) => r.name);

  it('a fan-out rule adds its destinations and evaluation goes on; the first first-match rule stops it', () => {
    const routes = selectRoutes(table, event());
    expect(routes).toEqual([
      { name: 'everything-to-siem', destinations: ['siem'] },
      {
        name: 'high',
        destinations: ['soc-queue', 'teams'],
        writeBack: { tag: 'relayed:high' },
        hunting: [{ name: 'logons', query: 'DeviceLogonEvents | take 5' }],
      },
    ]);
    expect(names(event({ incident: { classification: 'FalsePositive' } }))).toEqual(['everything-to-siem', 'fp-drop']);
  });

  it('fan-out rules after the last first-match rule all apply', () => {
    expect(names(event({ incident: { severity: 'Low' } }))).toEqual(['everything-to-siem', 'vip-fanout']);
  });

  it('uses the default route only when no rule matched', () => {
    const onlyHigh = loadRoutingRules(
      withRules({ name: 'high', match: { severity: ['High'] }, destinations: ['soc-queue'] }),
      policy,
    );
    expect(selectRoutes(onlyHigh, event({ incident: { severity: 'Low' } }))).toEqual([
      { name: 'default', destinations: ['archive'] },
    ]);
    const dropping = loadRoutingRules({ ...base, defaultRoute: { destinations: ['nowhere'] } }, policy);
    expect(selectRoutes(dropping, event())).toEqual([{ name: 'default', destinations: ['nowhere'] }]);
  });

  it('plans one delivery per destination, owned by the first route naming it', () => {
    const routes = [
      { name: 'a', destinations: ['siem', 'teams'] },
      { name: 'b', destinations: ['teams', 'archive'] },
    ];
    expect(plannedDeliveries(routes).map((d) => `${d.route.name}→${d.destination}`)).toEqual([
      'a→siem',
      'a→teams',
      'b→archive',
    ]);
  });
});
