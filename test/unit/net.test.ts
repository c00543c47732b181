// Container networking planned and run over a fake: the bridge and attach
// plans step by step, interface names, addresses from the allocator
// (specific requests honoured or refused, exhaustion, persistence), a
// failed attach undone, and the files a container sees.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BridgeNetwork } from '../../agent/net/bridge-network.js';
import { bridgeMac, containerFiles, hostIfName, parseResolvConf, planAttach, planAttachNative, planProtect } from '../../agent/net/net-plan.js';
import { FakeNetRunner } from '../../agent/net/net-runner.js';
import type { LxrError } from '../../proto/shared/errors.js';
import { parseIpv4 } from '../../proto/shared/ipv4.js';
import { tempDir } from '../helpers/tmp.js';

async function net(subnet = '10.200.3.0/24') {
  const runner = new FakeNetRunner();
  const n = new BridgeNetwork({ runner, subnet, stateDir: path.join(await tempDir('net'), 'alloc') });
  return { runner, n };
}

describe('network plans', () => {
  it('interface names are stable, distinct per container and within 15 characters', () => {
    const names = ['a', 'b', 'ws-1', 'x'.repeat(64)];
    const host = names.map(hostIfName);
    assert.equal(new Set(host).size, names.length);
    for (const n of host) assert.ok(n.length <= 15, n);
    assert.equal(hostIfName('ws-1'), hostIfName('ws-1'));
    assert.match(hostIfName('ws-1'), /^lxv[0-9a-f]{10}$/);
  });

  it('attach: veth on the host with its peer made as eth0 in the container, then address, lo and default route inside', () => {
    const steps = planAttach({ bridge: 'lxr0', container: 'c1', pid: 4242, address: parseIpv4('10.200.3.2'), prefix: 24, gateway: parseIpv4('10.200.3.1') });
    const h = hostIfName('c1');
    assert.deepEqual(
      steps.map((s) => [s.ns === 'host' ? 'host' : s.ns.pid, s.args.join(' ')]),
      [
        ['host', `link add ${h} type veth peer name eth0 netns 4242`],
        ['host', `link set ${h} master lxr0 up`],
        [4242, 'addr add 10.200.3.2/24 dev eth0'],
        [4242, 'link set eth0 up'],
        [4242, 'link set lo up'],
        [4242, 'route add default via 10.200.3.1 dev eth0'],
      ],
    );
  });

  it('the native attach is one step with the same facts', () => {
    const steps = planAttachNative({ bridge: 'lxr0', container: 'c1', pid: 4242, address: parseIpv4('10.200.3.2'), prefix: 24, gateway: parseIpv4('10.200.3.1') });
    assert.deepEqual(steps, [{ ns: 'host', cmd: 'lxr-netsetup', args: ['attach', hostIfName('c1'), 'lxr0', '4242', '10.200.3.2/24', '10.200.3.1'] }]);
  });

  it('container files: hosts names the address, resolv.conf drops loopback nameservers', () => {
    const f = containerFiles({ hostname: 'ws1', address: '10.200.3.2', nameservers: ['127.0.0.53', '192.0.2.53', '::1'], search: ['example.org'] });
    assert.match(f.hosts, /^127\.0\.0\.1\tlocalhost\n/);
    assert.match(f.hosts, /\n10\.200\.3\.2\tws1\n$/);
    assert.equal(f.resolvConf, 'search example.org\nnameserver 192.0.2.53\n');
    assert.equal(f.hostname, 'ws1\n');
    assert.deepEqual(parseResolvConf('# c\nnameserver 1.1.1.1\nsearch a b # x\nnameserver 9.9.9.9\n'), { nameservers: ['1.1.1.1', '9.9.9.9'], search: ['a', 'b'] });
  });
});

describe('BridgeNetwork over a fake runner', () => {
  it('the bridge holds the gateway, with a MAC of its own that ports joining and leaving never change', async () => {
    const { runner, n } = await net();
    await n.ensureBridge();
    const text = runner.text();
    assert.deepEqual(text.slice(0, 4), ['host: ip link add lxr0 type bridge', 'host: ip link set lxr0 address 0a:58:0a:c8:03:01', 'host: ip addr replace 10.200.3.1/24 dev lxr0', 'host: ip link set lxr0 up']);
    assert.equal(bridgeMac(parseIpv4('198.19.255.1')), '0a:58:c6:13:ff:01');
    assert.ok(text.includes('host: sysctl -q -w net.ipv4.ip_forward=1'));
    assert.ok(text.includes('host: iptables -w -t nat -A LXR-POSTROUTING -s 10.200.3.0/24 ! -d 10.200.3.0/24 ! -o lxr0 -j MASQUERADE'), text.join('\n'));
    // every jump is removed before it is added: running it twice adds it once
    const jumps = text.filter((t) => / -A (POSTROUTING|PREROUTING|OUTPUT|FORWARD) /.test(t));
    assert.equal(jumps.length, 4);
    for (const j of jumps) assert.ok(text.includes(j.replace(' -A ', ' -D ')), j);
    n.close();
  });

  it('addresses: in order, never the network, gateway or broadcast; specific ones honoured or refused; released ones reused oldest first', async () => {
    const { n } = await net('10.0.0.8/29');
    assert.deepEqual([n.reserve(), n.reserve()], ['10.0.0.10', '10.0.0.11']);
    assert.equal(n.reserve('10.0.0.14'), '10.0.0.14');
    assert.throws(() => n.reserve('10.0.0.14'), (e: LxrError) => e.reason === 'LXR_ALREADY_EXISTS' && e.field === 'network.address' && /in use/.test(e.message));
    for (const [bad, why] of [['10.0.0.8', /network address/], ['10.0.0.9', /gateway/], ['10.0.0.15', /broadcast/], ['10.0.1.2', /not in/], ['10.0.0', /not an IPv4/]] as const) {
      assert.throws(() => n.reserve(bad), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'network.address' && why.test(e.message), bad);
    }
    assert.equal(n.release('10.0.0.10'), true);
    assert.equal(n.release('10.0.0.10'), false);
    assert.deepEqual([n.reserve(), n.reserve(), n.reserve()], ['10.0.0.10', '10.0.0.12', '10.0.0.13']);
    assert.throws(() => n.reserve(), (e: LxrError) => e.reason === 'LXR_IP_EXHAUSTED' && e.code === 8 && /10\.0\.0\.8\/29/.test(e.message));
    n.close();
  });

  it('addresses survive a restart: none is handed out twice', async () => {
    const stateDir = path.join(await tempDir('net'), 'alloc');
    const a = new BridgeNetwork({ runner: new FakeNetRunner(), subnet: '10.200.3.0/24', stateDir });
    const first = [a.reserve(), a.reserve(), a.reserve('10.200.3.100')];
    a.close();
    const b = new BridgeNetwork({ runner: new FakeNetRunner(), subnet: '10.200.3.0/24', stateDir });
    for (const addr of first) assert.equal(b.isReserved(addr), true, addr);
    assert.ok(!first.includes(b.reserve()));
    b.close();
    assert.throws(() => new BridgeNetwork({ runner: new FakeNetRunner(), subnet: '10.200.0.0/16', stateDir }), (e: LxrError) => e.reason === 'LXR_ILLEGAL_STATE');
  });

  it('a failed attach removes what it made and reports the step', async () => {
    const { runner, n } = await net();
    const addr = n.reserve();
    runner.failOn = /addr add/;
    await assert.rejects(n.attach('c1', 4242, addr), (e: LxrError) => e.reason === 'LXR_HOST_SETUP_FAILED' && /netns of 4242: ip addr add 10\.200\.3\.2\/24 dev eth0/.test(e.message));
    assert.deepEqual(runner.text().slice(-1), [`host: ip link del ${hostIfName('c1')}`]);
    // the address stays reserved for the caller to release
    assert.equal(n.isReserved(addr), true);
    n.close();
  });
});

describe('published ports', () => {
  it('DNAT rules marked with the container; removal finds exactly its rules', async () => {
    const { runner, n } = await net();
    await n.publish('web', '10.200.3.2', [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp' },
    ]);
    assert.deepEqual(runner.text(), [
      'host: iptables -w -t nat -A LXR-PORTS -p tcp --dport 8080 -m comment --comment lxr:web -j DNAT --to-destination 10.200.3.2:80',
      'host: iptables -w -t nat -A LXR-PORTS -p udp --dport 5353 -m comment --comment lxr:web -j DNAT --to-destination 10.200.3.2:53',
    ]);
    runner.steps.length = 0;
    runner.outputs = [
      [/-S LXR-PORTS/, '-N LXR-PORTS\n-A LXR-PORTS -p tcp -m tcp --dport 8080 -m comment --comment "lxr:web" -j DNAT --to-destination 10.200.3.2:80\n-A LXR-PORTS -p tcp -m tcp --dport 9090 -m comment --comment lxr:web2 -j DNAT --to-destination 10.200.3.3:80\n'],
    ];
    await n.unpublish('web');
    assert.deepEqual(runner.text(), [
      'host: iptables -w -t nat -S LXR-PORTS',
      'host: iptables -w -t nat -D LXR-PORTS -p tcp -m tcp --dport 8080 -m comment --comment lxr:web -j DNAT --to-destination 10.200.3.2:80',
    ]);
    n.close();
  });

  it('ports are checked by field', async () => {
    const { checkPorts } = await import('../../agent/containers/container-service.js');
    assert.deepEqual(checkPorts([{ hostPort: 80, containerPort: 8080 }]), [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' }]);
    const bad: Array<[object[], string]> = [
      [[{ hostPort: 0, containerPort: 80 }], 'network.ports[0].host_port'],
      [[{ hostPort: 80, containerPort: 70000 }], 'network.ports[0].container_port'],
      [[{ hostPort: 80, containerPort: 80, protocol: 'sctp' }], 'network.ports[0].protocol'],
      [[{ hostPort: 80, containerPort: 80 }, { hostPort: 80, containerPort: 81, protocol: 'TCP' }], 'network.ports[1].host_port'],
    ];
    for (const [ports, field] of bad) assert.throws(() => checkPorts(ports), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === field, field);
    assert.equal(checkPorts([{ hostPort: 53, containerPort: 53, protocol: 'udp' }, { hostPort: 53, containerPort: 53 }]).length, 2);
  });
});

describe('routes to peers', () => {
  it('replaces what differs, deletes what is gone, leaves what matches', async () => {
    const { parseRoutes, planRoutes } = await import('../../agent/net/net-plan.js');
    const current = parseRoutes('10.200.4.0/24 via 198.18.0.2 dev up0 \n10.200.5.0/24 via 198.18.0.3 dev up0\n10.200.6.0/24 via 198.18.0.4 dev up0\n');
    assert.deepEqual(current.map((r) => r.subnet), ['10.200.4.0/24', '10.200.5.0/24', '10.200.6.0/24']);
    const steps = planRoutes(current, [
      { subnet: '10.200.4.0/24', via: '198.18.0.2' },
      { subnet: '10.200.5.0/24', via: '198.18.0.9' },
      { subnet: '10.200.7.0/24', via: '198.18.0.5' },
    ]).map((s) => s.args.join(' '));
    assert.deepEqual(steps, [
      'route del 10.200.6.0/24 proto 77',
      'route replace 10.200.5.0/24 via 198.18.0.9 proto 77',
      'route replace 10.200.7.0/24 via 198.18.0.5 proto 77',
    ]);
  });

  it('setPeers checks the list by field before touching anything', async () => {
    const { runner, n } = await net();
    await assert.rejects(n.setPeers([{ name: 'a', address: '198.18.0.2', subnet: '10.200.3.0/24' }]), (e: LxrError) => e.field === 'peers[0].subnet' && /own subnet/.test(e.message));
    await assert.rejects(n.setPeers([{ name: 'a', address: '198.18.0', subnet: '10.200.4.0/24' }]), (e: LxrError) => e.field === 'peers[0].address');
    assert.deepEqual(runner.steps, []);
    n.close();
  });
});

describe('leftovers', () => {
  it('veth ends of containers that are gone are deleted; the others and foreign links stay', async () => {
    const { runner, n } = await net();
    runner.outputs = [[/link show/, `1: lo: <LOOPBACK,UP> mtu 65536\n2: eth0@if9: <UP> mtu 1500\n5: ${hostIfName('keep')}@if4: <UP>\n7: ${hostIfName('gone')}@if6: <UP>\n8: ${hostIfName('gone2')}: <BROADCAST>\n9: lxr0: <UP>\n`]];
    assert.deepEqual(await n.removeLeftovers(['keep']), [hostIfName('gone'), hostIfName('gone2')]);
    assert.deepEqual(runner.text().slice(1), [`host: ip link del ${hostIfName('gone')}`, `host: ip link del ${hostIfName('gone2')}`]);
    n.close();
  });
});

describe('protected endpoints (containers kept off LXR\'s own servers)', () => {
  it('plans the chain whole: own ports on any local address, remote endpoints exactly', () => {
    const text = (steps: ReturnType<typeof planProtect>) => steps.map((s) => s.args.join(' '));
    assert.deepEqual(text(planProtect({ ownPorts: [], remote: [] })), ['-w -t filter -N LXR-PROTECT', '-w -t filter -F LXR-PROTECT']);
    assert.deepEqual(text(planProtect({ ownPorts: [9100, 7070, 7070], remote: [{ ip: '198.18.0.2', port: 7070 }, { ip: '198.18.0.2', port: 7070 }, { ip: '198.18.0.254', port: 7000 }] })), [
      '-w -t filter -N LXR-PROTECT',
      '-w -t filter -F LXR-PROTECT',
      '-w -t filter -A LXR-PROTECT -p tcp -m addrtype --dst-type LOCAL -m multiport --dports 7070,9100 -j REJECT --reject-with tcp-reset',
      '-w -t filter -A LXR-PROTECT -d 198.18.0.2/32 -p tcp --dport 7070 -j REJECT --reject-with tcp-reset',
      '-w -t filter -A LXR-PROTECT -d 198.18.0.254/32 -p tcp --dport 7000 -j REJECT --reject-with tcp-reset',
    ]);
  });

  it('SetPeers checks the endpoints by field before changing anything, then rebuilds the chain with them', async () => {
    const runner = new FakeNetRunner();
    const n = new BridgeNetwork({ runner, subnet: '10.200.3.0/24', stateDir: path.join(await tempDir('net'), 'alloc'), protectPorts: [7070], protectEndpoints: [{ ip: '198.18.0.254', port: 7000 }] });
    for (const [bad, field] of [[['198.18.0.2'], 'protected_endpoints[0]'], [['x:1'], 'protected_endpoints[0]'], [['198.18.0.2:70', '198.18.0.2:0'], 'protected_endpoints[1]'], [['1.2.3.4:99999'], 'protected_endpoints[0]']] as const) {
      await assert.rejects(n.setPeers([], [...bad]), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === field, bad.join(','));
    }
    assert.deepEqual(runner.steps, [], 'nothing ran for a bad list');
    await n.setPeers([{ name: 'n2', address: '198.18.0.2', subnet: '10.200.4.0/24' }], ['198.18.0.2:7070']);
    const rules = runner.text().filter((t) => t.includes('-A LXR-PROTECT'));
    assert.equal(rules.length, 3);
    assert.match(rules[0]!, /--dst-type LOCAL -m multiport --dports 7070 /);
    assert.match(rules[1]!, /-d 198\.18\.0\.254\/32 -p tcp --dport 7000 /, 'the controller (from --controller) stays');
    assert.match(rules[2]!, /-d 198\.18\.0\.2\/32 -p tcp --dport 7070 /);
  });
});
