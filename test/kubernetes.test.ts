import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import { unknownFields } from './kubernetes-strict.ts';

// deploy/kubernetes against the Kubernetes API's own schemas (kubernetes-models carries
// validators generated from the OpenAPI spec: types, required fields, enums, formats), then
// against what Cove needs of them. No cluster runs here (deploy/kubernetes/README.md).
const dir = join(import.meta.dirname, '..', 'deploy', 'kubernetes');
const models = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
} as const;

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<
  string,
  unknown
>;
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
const docs: Array<Doc & { file: string }> = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return { ...(d.toJS() as Doc), file };
  }),
);
const find = <T>(kind: string, name: string) =>
  docs.find((d) => d.kind === kind && d.metadata.name === name) as T;

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  it('every object validates against its Kubernetes schema', () => {
    const objects = docs.filter((d) => d.kind !== 'Kustomization');
    expect(objects.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
      [
        'ConfigMap/cove-config',
        'DaemonSet/cove-node',
        'Deployment/cove-api',
        'Namespace/cove',
        'PodDisruptionBudget/cove-api',
        'Secret/cove-cluster',
        'Service/cove-api',
      ].sort(),
    );
    for (const d of objects) {
      const Model = models[`${d.apiVersion}/${d.kind}` as keyof typeof models];
      expect(Model, `${d.file}: ${d.apiVersion} ${d.kind}`).toBeDefined();
      const { file, ...object } = d;
      expect(() => new Model(object as never).validate(), file).not.toThrow();
      if (d.kind !== 'Namespace') expect(d.metadata.namespace, file).toBe('cove');
    }
    // The validator catches a wrong type (so that the pass above means something).
    const broken = structuredClone(find<Doc>('DaemonSet', 'cove-node')) as unknown as DaemonSet;
    broken.spec!.template.spec!.containers[0]!.securityContext = { privileged: 'yes' as never };
    expect(() => new DaemonSet(broken).validate()).toThrow(/privileged must be boolean/);
  });

  it('no object carries a field its Kubernetes schema does not define (strict field validation)', () => {
    for (const { file, ...object } of docs.filter((d) => d.kind !== 'Kustomization'))
      expect(unknownFields(object, `V1${object.kind}`), file).toEqual([]);
    // A misspelt field: kubernetes-models' validator lets it through, the strict check names it.
    const typo = structuredClone(find<Doc>('DaemonSet', 'cove-node')) as unknown as DaemonSet;
    delete (typo as unknown as { file?: string }).file; // this test's own, not the manifest's
    const box = typo.spec!.template.spec!.containers[0]! as IContainer & Record<string, unknown>;
    box.imagePullPolicyy = 'Always';
    (typo.spec!.template.spec! as unknown as Record<string, unknown>).hostPid = true; // hostPID
    expect(() => new DaemonSet(typo).validate()).not.toThrow();
    expect(unknownFields(typo, 'V1DaemonSet')).toEqual([
      '.spec.template.spec.containers[0].imagePullPolicyy',
      '.spec.template.spec.hostPid',
    ]);
  });

  it('kustomization lists every manifest but the example Secret', () => {
    const k = docs.find((d) => d.kind === 'Kustomization') as unknown as { resources: string[] };
    expect([...k.resources].sort()).toEqual(
      files.filter((f) => !/^(kustomization|secret\.example)\.yaml$/.test(f)).sort(),
    );
  });

  it('API replicas run unprivileged, nodes privileged, both probed; references resolve', () => {
    const api = find<Deployment>('Deployment', 'cove-api');
    const node = find<DaemonSet>('DaemonSet', 'cove-node');
    const apiPod = api.spec!.template.spec!;
    const nodePod = node.spec!.template.spec!;
    const apiBox = apiPod.containers[0]!;
    const nodeBox = nodePod.containers[0]!;
    expect(apiBox.args).toEqual(['api']);
    expect(nodeBox.args).toEqual(['node']);
    expect(apiPod.securityContext?.runAsNonRoot).toBe(true);
    expect(apiBox.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(apiBox.securityContext?.privileged).toBeUndefined();
    expect(nodeBox.securityContext?.privileged).toBe(true);
    expect(nodePod.hostNetwork).toBeUndefined(); // sandboxes live in the pod's network namespace
    for (const c of [apiBox, nodeBox]) {
      expect(c.readinessProbe?.httpGet?.path).toBe('/health');
      expect(c.livenessProbe?.httpGet?.path).toBe('/health');
    }
    // Only replicas hold the cluster secret; nodes read their own from the machine.
    expect(JSON.stringify(nodeBox)).not.toContain('cluster-secret');
    expect(env(nodeBox).COVE_NODE_SECRET_FILE).toBe('/etc/cove/node-secret');
    // Every Secret and ConfigMap key a container names exists.
    const secret = find<Secret>('Secret', 'cove-cluster');
    const config = find<ConfigMap>('ConfigMap', 'cove-config');
    for (const c of [apiBox, nodeBox])
      for (const e of c.env ?? []) {
        const s = e.valueFrom?.secretKeyRef;
        if (s) expect(Object.keys(secret.stringData ?? {}), e.name).toContain(s.key);
        const m = e.valueFrom?.configMapKeyRef;
        if (m) expect(Object.keys(config.data ?? {}), e.name).toContain(m.key);
      }
    // Each mounted volume is declared, and each host path is mounted.
    expectMounted(nodePod, nodeBox);
    expectMounted(apiPod, apiBox);
  });

  it('the Service and the PodDisruptionBudget select the API pods, and the node pods are not among them', () => {
    const labels = find<Deployment>('Deployment', 'cove-api').spec!.template.metadata!.labels!;
    const nodeLabels = find<DaemonSet>('DaemonSet', 'cove-node').spec!.template.metadata!.labels!;
    const selects = (sel: Record<string, string>, l: Record<string, string>) =>
      Object.entries(sel).every(([k, v]) => l[k] === v);
    const service = find<Service>('Service', 'cove-api').spec!.selector!;
    const pdb = find<PodDisruptionBudget>('PodDisruptionBudget', 'cove-api').spec!.selector!.matchLabels!;
    for (const sel of [service, pdb]) {
      expect(selects(sel, labels)).toBe(true);
      expect(selects(sel, nodeLabels)).toBe(false);
    }
  });
});

function env(c: IContainer): Record<string, string | undefined> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
}

function expectMounted(pod: IPodSpec, c: IContainer): void {
  const declared = new Set((pod.volumes ?? []).map((v) => v.name));
  const mounted = new Set((c.volumeMounts ?? []).map((m) => m.name));
  expect([...mounted].filter((n) => !declared.has(n))).toEqual([]);
  expect([...declared].filter((n) => !mounted.has(n))).toEqual([]);
}
