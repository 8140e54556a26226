/**
 * ASP.NET Core route templates as the Functions host uses them for HTTP triggers: literal
 * segments (case-insensitive), `{name}`, `{name:constraint}`, `{name?}` (optional, trailing),
 * `{*rest}` (catch-all, last). A segment is either literal or one parameter.
 */

type Constraint = (value: string) => boolean;

interface LiteralSegment {
  kind: 'literal';
  text: string;
}
interface ParameterSegment {
  kind: 'parameter';
  name: string;
  optional: boolean;
  catchAll: boolean;
  constraints: Constraint[];
}
type Segment = LiteralSegment | ParameterSegment;

export interface RouteTemplate {
  template: string;
  segments: Segment[];
}

const GUID =
  /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$|^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$/i;

function constraint(spec: string, template: string): Constraint {
  const match = /^(\w+)(?:\((.*)\))?$/.exec(spec);
  const [name, arg] = [match?.[1]?.toLowerCase(), match?.[2]];
  const num = (): number => {
    const n = Number(arg);
    if (arg === undefined || !Number.isFinite(n))
      throw new Error(`Route '${template}': constraint '${spec}' needs a number.`);
    return n;
  };
  switch (name) {
    case 'int':
      return (v) => /^-?\d+$/.test(v) && Math.abs(Number(v)) <= 2 ** 31;
    case 'long':
      return (v) => /^-?\d+$/.test(v);
    case 'bool':
      return (v) => /^(true|false)$/i.test(v);
    case 'guid':
      return (v) => GUID.test(v);
    case 'alpha':
      return (v) => /^[a-z]+$/i.test(v);
    case 'double':
    case 'float':
    case 'decimal':
      return (v) => v.trim() !== '' && Number.isFinite(Number(v));
    case 'datetime':
      return (v) => !Number.isNaN(Date.parse(v));
    case 'min': {
      const n = num();
      return (v) => /^-?\d+$/.test(v) && Number(v) >= n;
    }
    case 'max': {
      const n = num();
      return (v) => /^-?\d+$/.test(v) && Number(v) <= n;
    }
    case 'minlength': {
      const n = num();
      return (v) => v.length >= n;
    }
    case 'maxlength': {
      const n = num();
      return (v) => v.length <= n;
    }
    case 'length': {
      const [lo, hi] = (arg ?? '').split(',').map(Number);
      if (lo === undefined || !Number.isFinite(lo))
        throw new Error(`Route '${template}': constraint '${spec}' needs a number.`);
      return (v) => v.length >= lo && v.length <= (hi ?? lo);
    }
    case 'range': {
      const [lo, hi] = (arg ?? '').split(',').map(Number);
      if (lo === undefined || hi === undefined || !Number.isFinite(lo) || !Number.isFinite(hi)) {
        throw new Error(`Route '${template}': constraint '${spec}' needs two numbers.`);
      }
      return (v) => /^-?\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi;
    }
    case 'regex': {
      const re = new RegExp(arg ?? '', 'i');
      return (v) => re.test(v);
    }
    default:
      throw new Error(`Route '${template}': unsupported route constraint '${spec}'.`);
  }
}

export function parseRouteTemplate(template: string): RouteTemplate {
  const trimmed = template.replace(/^[~/]+|\/+$/g, '');
  const parts = trimmed === '' ? [] : trimmed.split('/');
  const segments = parts.map((part, index): Segment => {
    const param = /^\{(\*{1,2})?([A-Za-z_][\w]*)((?::[^:}?=]+(?:\([^)]*\))?)*)(\?)?\}$/.exec(part);
    if (!param) {
      if (/[{}]/.test(part))
        throw new Error(`Route '${template}': unsupported segment '${part}' (one parameter or literal per segment).`);
      if (part === '') throw new Error(`Route '${template}': empty segment.`);
      return { kind: 'literal', text: part };
    }
    const [, star, name, constraintText, optional] = param;
    const catchAll = Boolean(star);
    if (catchAll && index !== parts.length - 1)
      throw new Error(`Route '${template}': a catch-all parameter must be last.`);
    const constraints = (constraintText ?? '')
      .split(':')
      .filter(Boolean)
      .map((spec) => constraint(spec, template));
    return { kind: 'parameter', name: name!, optional: Boolean(optional), catchAll, constraints };
  });
  let sawOptional = false;
  for (const segment of segments) {
    if (segment.kind === 'parameter' && (segment.optional || segment.catchAll)) sawOptional = true;
    else if (sawOptional) throw new Error(`Route '${template}': an optional parameter must be at the end.`);
  }
  return { template, segments };
}

/** Matches a path (below the route prefix, no leading slash) and returns the route parameters. */
export function matchRoute(route: RouteTemplate, path: string): Record<string, string> | undefined {
  const parts = path === '' ? [] : path.replace(/\/+$/, '').split('/');
  const params: Record<string, string> = {};
  for (let i = 0; i < route.segments.length; i++) {
    const segment = route.segments[i]!;
    const raw = parts[i];
    if (segment.kind === 'literal') {
      if (raw === undefined || safeDecode(raw)?.toLowerCase() !== segment.text.toLowerCase()) return undefined;
      continue;
    }
    if (segment.catchAll) {
      const rest = parts.slice(i).map(safeDecode);
      if (rest.some((p) => p === undefined)) return undefined;
      if (rest.length > 0) params[segment.name] = rest.join('/');
      return segment.constraints.every((c) => params[segment.name] === undefined || c(params[segment.name]!))
        ? params
        : undefined;
    }
    if (raw === undefined) {
      if (segment.optional) continue;
      return undefined;
    }
    const value = safeDecode(raw);
    if (value === undefined || value === '' || !segment.constraints.every((c) => c(value))) return undefined;
    params[segment.name] = value;
  }
  return parts.length <= route.segments.length ? params : undefined;
}

function safeDecode(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}
