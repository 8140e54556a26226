import { invalidQuery } from './errors.js';
import { FilterError, parseFilter, type FilterNode } from './odata-filter.js';
import { INCIDENT_PROPERTIES } from './types.js';

/**
 * The OData query options of `GET /security/incidents` and `GET /security/incidents/{id}`.
 * The list takes `$count`, `$filter`, `$skip`, `$top` and `$expand` (api-reference/v1.0/api/
 * security-list-incidents.md, "Optional query parameters") and, as every Graph entity set, `$select`;
 * `$top` is at most 50 (the service's own answer to more: wazuh/wazuh#28070), and a list without `$top` is cut
 * at 50 too (a page of the service without `$top` continues at `$skip=50`; the stand-in follows that
 * observation, the page does not document a default). A query option the API does not take is refused as
 * ASP.NET Core OData refuses it ("Query option 'OrderBy' is not allowed …"); an unknown `$` option is "not
 * supported"; a repeated one is refused. Options without `$` are not OData options and are ignored.
 */
export const MAX_PAGE_SIZE = 50;
export const DEFAULT_PAGE_SIZE = 50;
const INT32_MAX = 2_147_483_647;

export interface ListQuery {
  filterText?: string;
  filter?: FilterNode;
  top: number;
  skip: number;
  count: boolean;
  expandAlerts: boolean;
  select?: string[];
}

export interface EntityQuery {
  expandAlerts: boolean;
  select?: string[];
}

const ENTITY_TYPE = 'microsoft.graph.security.incident';
const SUPPORTED = ['$filter', '$top', '$skip', '$count', '$expand', '$select', '$skiptoken'];
/** System query options the API does not take, by the name ASP.NET Core OData's AllowedQueryOptions gives each. */
const NOT_ALLOWED: Record<string, string> = {
  $orderby: 'OrderBy',
  $search: 'Search',
  $apply: 'Apply',
  $compute: 'Compute',
  $format: 'Format',
  $deltatoken: 'DeltaToken',
};

/** The system query options given, each once, keyed by lower-case name (`$TOP` is `$top`). */
export function readOptions(params: URLSearchParams): Map<string, string> {
  const options = new Map<string, string>();
  for (const [rawName, value] of params) {
    if (!rawName.startsWith('$')) continue;
    const name = rawName.toLowerCase();
    if (options.has(name))
      throw invalidQuery(
        `Query option '${rawName}' was specified more than once, but it must be specified at most once.`,
      );
    if (NOT_ALLOWED[name])
      throw invalidQuery(
        `Query option '${NOT_ALLOWED[name]}' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.`,
      );
    if (!SUPPORTED.includes(name)) throw invalidQuery(`The query parameter '${rawName}' is not supported.`);
    if (value.trim() === '' && name !== '$skiptoken')
      throw invalidQuery(`The value for OData query '${rawName}' cannot be empty.`);
    options.set(name, value);
  }
  return options;
}

function nonNegativeInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^\d{1,10}$/.test(trimmed) || Number(trimmed) > INT32_MAX)
    throw invalidQuery(
      `Invalid value '${text}' for ${name} query option found. The ${name} query option requires a non-negative integer value.`,
    );
  return Number(trimmed);
}

function parseExpand(text: string | undefined): boolean {
  if (text === undefined) return false;
  let alerts = false;
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') throw invalidQuery(`Expression expected at position ${text.length} in '${text}'.`);
    if (item === 'alerts' || item === '*') {
      alerts = true;
      continue;
    }
    if (item.startsWith('alerts(') || item.startsWith('alerts/'))
      throw invalidQuery(
        `The stand-in does not take options or paths inside $expand ('${item}'): expand alerts whole, as the list page documents.`,
      );
    if ((INCIDENT_PROPERTIES as readonly string[]).includes(item))
      throw invalidQuery(
        `Property '${item}' on type '${ENTITY_TYPE}' is not a navigation property or complex property. Only navigation properties can be expanded.`,
      );
    throw invalidQuery(`Could not find a property named '${item}' on type '${ENTITY_TYPE}'.`);
  }
  return alerts;
}

function parseSelect(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const names: string[] = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') throw invalidQuery(`Expression expected at position ${text.length} in '${text}'.`);
    if (item === '*') return undefined;
    if (!(INCIDENT_PROPERTIES as readonly string[]).includes(item) && item !== 'alerts')
      throw invalidQuery(`Could not find a property named '${item}' on type '${ENTITY_TYPE}'.`);
    if (!names.includes(item)) names.push(item);
  }
  return names;
}

function parseCount(text: string | undefined): boolean {
  if (text === undefined) return false;
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw invalidQuery(`'${text}' is not a valid count option.`);
}

function parseFilterOption(text: string | undefined): FilterNode | undefined {
  if (text === undefined) return undefined;
  try {
    return parseFilter(text);
  } catch (err) {
    if (err instanceof FilterError) throw invalidQuery(err.message);
    throw err;
  }
}

/** The list's options (not `$skiptoken`, which the caller resolves first). */
export function parseListQuery(options: Map<string, string>): ListQuery {
  const top = nonNegativeInt('$top', options.get('$top'));
  if (top !== undefined && top > MAX_PAGE_SIZE)
    throw invalidQuery(
      `The limit of '${MAX_PAGE_SIZE}' for Top query has been exceeded. The value from the incoming request is '${options.get('$top')?.trim()}'.`,
    );
  const skip = nonNegativeInt('$skip', options.get('$skip')) ?? 0;
  const filterText = options.get('$filter');
  return {
    filterText,
    filter: parseFilterOption(filterText),
    top: top ?? DEFAULT_PAGE_SIZE,
    skip,
    count: parseCount(options.get('$count')),
    expandAlerts: parseExpand(options.get('$expand')),
    select: parseSelect(options.get('$select')),
  };
}

/** One incident takes `$select` and `$expand` only. */
export function parseEntityQuery(options: Map<string, string>): EntityQuery {
  const collectionOnly = [...options.keys()].filter((name) => !['$select', '$expand'].includes(name));
  if (collectionOnly.length > 0)
    throw invalidQuery(
      'The requested resource is not a collection. Query options $filter, $orderby, $count, $skip, and $top can be applied only on collections.',
    );
  return { expandAlerts: parseExpand(options.get('$expand')), select: parseSelect(options.get('$select')) };
}
