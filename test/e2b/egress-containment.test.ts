import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes } from '../helpers.ts';
import { internetAddresses, startEgressWorld, type EgressWorld } from '../netns-internet.ts';

/**
 * The stand-in internet's promise (netns-internet.ts): nothing a sandbox sends in a test leaves
 * the machine, even when the policy under test is broken. Here Cove's firewall is broken on
 * purpose (an `accept` ahead of its forward rules) and then the stand-in's own routing rule is
 * taken away: packets still end in the namespace, or at the guard that drops and counts them,
 * never on the host's uplink. 192.0.2.77 stands for "anywhere": no test host has it.
 */
describe.skipIf(!canRunSandboxes)('the stand-in internet contains a broken policy', () => {
  let world: EgressWorld;
  const nft = (...args: string[]) => execFileSync('nft', args).toString();
  const inNs = (...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', world.net.namespace, ...args]).toString();
  /** Packets to 192.0.2.77 that reached the namespace (counted there by a table of the test's). */
  const arrived = () =>
    Number(/counter packets (\d+)/.exec(inNs('nft', 'list', 'chain', 'ip', 'seen', 'in'))?.[1] ?? NaN);

  beforeAll(async () => {
    // This test takes the routing rule away on purpose, so that the guard must count.
    world = await startEgressWorld({
      leaks: 'the second half removes the routing rule to see the guard count',
    });
    inNs(
      'nft',
      'add table ip seen { chain in { type filter hook prerouting priority 0; ip daddr 192.0.2.77 counter; }; }',
    );
  });
  afterAll(() => world?.close());

  it('a sandbox whose policy denies everything, once the firewall breaks, still reaches only the namespace', async () => {
    const { cove, net, e2b } = world;
    const sbx = await e2b.Sandbox.create('base', { network: { denyOut: [e2b.ALL_TRAFFIC] } });
    const curl = async (url: string) =>
      (await sbx.commands.run(`curl -sS --connect-timeout 2 ${url}; echo " exit=$?"`)).stdout;
    expect(await curl(`http://${net.hosts.web}/`)).toMatch(/ exit=(7|28)/); // the policy holds…
    const { instance } = cove.config;
    nft('insert', 'rule', 'inet', instance, 'forward', 'accept'); // …until Cove's firewall breaks
    expect(await curl(`http://${net.hosts.web}/`)).toMatch(/ exit=0/);
    const before = arrived();
    expect(await curl('http://192.0.2.77/')).toMatch(/ exit=(7|28)/);
    expect(arrived()).toBeGreaterThan(before); // in the namespace, which has no route onwards
    expect(net.leaked()).toBe(0);

    // Without the routing rule, the bridge's traffic would take the main table's default
    // route: the guard drops it there, and counts it.
    const rule = ['iif', `${instance}0`, 'lookup', internetAddresses().table];
    const priority = internetAddresses().priority;
    execFileSync('ip', ['rule', 'del', ...rule]);
    try {
      expect(await curl('http://192.0.2.77/')).toMatch(/ exit=(7|28)/);
      expect(net.leaked()).toBeGreaterThan(0);
    } finally {
      execFileSync('ip', ['rule', 'add', ...rule, 'priority', priority]);
    }
  });
});
