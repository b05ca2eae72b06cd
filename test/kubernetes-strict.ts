import * as k8s from '@kubernetes/client-node';

/** A field of a Kubernetes model as the official client generates it from the OpenAPI spec. */
interface Field {
  baseName: string;
  type: string;
}
const models = k8s as unknown as Record<string, { getAttributeTypeMap?: () => Field[] } | undefined>;
/** Types that are values, not objects with fields of their own. */
const SCALARS = new Set(['string', 'number', 'boolean', 'Date', 'IntOrString', 'any', 'object']);

/**
 * The paths of the fields in `value` that the Kubernetes API does not define for `type` (a
 * model name of `@kubernetes/client-node`, e.g. `V1DaemonSet`), as an API server with strict
 * field validation (`kubectl apply --validate=strict`) refuses them: the schema's
 * `additionalProperties: false`. kubernetes-models' validators check types, required fields
 * and formats but let unknown fields through, so a misspelt field would pass them unseen.
 * The field lists are the official client's, generated from the Kubernetes OpenAPI spec.
 */
export function unknownFields(value: unknown, type: string, path = ''): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array)
    return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map)
    return typeof value === 'object'
      ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`))
      : [];
  if (SCALARS.has(type)) return [];
  const fields = models[type]?.getAttributeTypeMap?.();
  if (!fields) throw new Error(`${path || '/'}: no Kubernetes model named ${type}`);
  if (typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const field = fields.find((f) => f.baseName === k);
    return field ? unknownFields(v, field.type, `${path}.${k}`) : [`${path}.${k}`];
  });
}
