"""Two hosts joined by a lossy, delaying, reordering link: three network namespaces on this machine.

::

    ns enc                      ns relay                                   ns dec
    ENC 10.200.1.2 ─veth─ 10.200.1.1 [TUN: delay_relay, delay+jitter] 10.200.2.1 ─veth─ 10.200.2.2 DEC
       nft egress: drop N%                                                   nft egress: drop N%

Loss: this kernel has no netem, so an nftables rule on the egress hook of each end's veth drops
``numgen random mod 100 < N`` of the IP packets leaving it (IP fragments one by one, as a lossy
radio link would; acknowledgements in the other direction are lost too). Delay and reordering:
policy routing in the relay namespace sends every forwarded packet through a TUN device read by
:mod:`harness.delay_relay`, which writes each back after ``delay + uniform(0, jitter)``.

Everything lives inside namespaces this class creates (addresses too) and is deleted on exit,
also after an error. Needs root (CAP_NET_ADMIN), ``ip`` (iproute2) and ``nft`` (nftables);
:func:`unavailable_reason` says why not, for tests to skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

ENC_ADDR = '10.200.1.2'
DEC_ADDR = '10.200.2.2'
_RELAY_ENC_SIDE = '10.200.1.1'
_RELAY_DEC_SIDE = '10.200.2.1'
_TUN = 'xmdelay0'
_ROUTE_TABLE = '100'
_LOSS_TABLE = 'xmodal_loss'


class LinkError(RuntimeError):
    """A namespace, interface or rule could not be set up; the message has the failing command."""


def _run(argv: Sequence[str], stdin: Optional[str] = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise LinkError(f'`{" ".join(argv)}` failed ({result.returncode}): {result.stderr.strip()}')
    return result.stdout


def unavailable_reason() -> Optional[str]:
    """None if namespaces, veths, nft egress rules and TUN devices can be made here, else why not."""
    if os.geteuid() != 0:
        return 'needs root (CAP_NET_ADMIN) to create network namespaces'
    for tool, package in (('ip', 'iproute2'), ('nft', 'nftables')):
        if shutil.which(tool) is None:
            return f'`{tool}` not found: apt-get install -y {package}'
    if not os.path.exists('/dev/net/tun'):
        return '/dev/net/tun is missing (no TUN support for the delay relay)'
    probe = f'xmprobe{os.getpid()}'
    try:
        _run(['ip', 'netns', 'add', probe])
        try:
            _run(['ip', '-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'])
            _run(
                ['ip', 'netns', 'exec', probe, 'nft', '-f', '-'],
                'table netdev t {\n chain e {\n  type filter hook egress device "p0" priority 0;\n }\n}\n',
            )
            _run(['ip', '-n', probe, 'tuntap', 'add', 'dev', 't0', 'mode', 'tun'])
        finally:
            subprocess.run(['ip', 'netns', 'del', probe], capture_output=True, timeout=30)
    except (LinkError, OSError, subprocess.TimeoutExpired) as exc:
        return f'cannot build the namespace link here: {exc}'
    return None


@dataclass(frozen=True)
class LinkConfig:
    """The link's impairments.

    Attributes:
        loss_percent: IP packets dropped on leaving each end, 0..100 (both directions).
        delay_ms: one-way delay added by the relay.
        jitter_ms: extra per-packet delay, uniform in 0..jitter_ms (reorders packets).
        seconds: the relay stops by itself after this long (a bound on a forgotten run).
    """

    loss_percent: int = 0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    seconds: float = 900.0

    def __post_init__(self) -> None:
        if not 0 <= int(self.loss_percent) <= 100:
            raise ValueError(f'loss_percent is {self.loss_percent}; it must be in 0..100')
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f'delay_ms and jitter_ms must be >= 0, got {self.delay_ms}, {self.jitter_ms}')


class LossyLink:
    """Context manager: builds the three namespaces, starts the relay, tears everything down.

    ``link.popen('enc', argv, env)`` runs a process in the encoder namespace (``'dec'``: decoder
    side). ``link.set_loss(n)`` changes the loss at run time (e.g. a burst of 100 %).
    """

    def __init__(self, config: LinkConfig = LinkConfig(), tag: str = '') -> None:
        self.config = config
        base = f'xm{tag}{os.getpid()}'
        self.namespaces = {'enc': f'{base}-enc', 'relay': f'{base}-relay', 'dec': f'{base}-dec'}
        self.devices = {'enc': 'xmenc0', 'dec': 'xmdec0'}
        self.addresses = {'enc': ENC_ADDR, 'dec': DEC_ADDR}
        self._created: List[str] = []
        self._relay: Optional[subprocess.Popen] = None
        self._processes: List[subprocess.Popen] = []

    def __enter__(self) -> 'LossyLink':
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ns(self, side: str, *argv: str, stdin: Optional[str] = None) -> str:
        return _run(['ip', 'netns', 'exec', self.namespaces[side], *argv], stdin)

    def _nft(self, side: str, script: str) -> None:
        """Apply an nftables script in the namespace of ``side``."""
        self._ns(side, 'nft', '-f', '-', stdin=script)

    def _build(self) -> None:
        ns = self.namespaces
        for name in ns.values():
            _run(['ip', 'netns', 'add', name])
            self._created.append(name)
            _run(['ip', '-n', name, 'link', 'set', 'lo', 'up'])
        for side, relay_dev, relay_addr in (
            ('enc', 'xmr-enc', _RELAY_ENC_SIDE),
            ('dec', 'xmr-dec', _RELAY_DEC_SIDE),
        ):
            dev = self.devices[side]
            _run(
                [
                    'ip',
                    'link',
                    'add',
                    dev,
                    'netns',
                    ns[side],
                    'type',
                    'veth',
                    'peer',
                    'name',
                    relay_dev,
                    'netns',
                    ns['relay'],
                ]
            )
            _run(['ip', '-n', ns[side], 'addr', 'add', f'{self.addresses[side]}/24', 'dev', dev])
            _run(['ip', '-n', ns[side], 'link', 'set', dev, 'up'])
            _run(['ip', '-n', ns[side], 'route', 'add', 'default', 'via', relay_addr])
            _run(['ip', '-n', ns['relay'], 'addr', 'add', f'{relay_addr}/24', 'dev', relay_dev])
            _run(['ip', '-n', ns['relay'], 'link', 'set', relay_dev, 'up'])
        self._build_relay()
        for side in ('enc', 'dec'):
            self._nft(
                side,
                f'table netdev {_LOSS_TABLE} {{\n chain egress {{\n  type filter hook egress device '
                f'"{self.devices[side]}" priority 0; policy accept;\n }}\n}}\n',
            )
        self.set_loss(self.config.loss_percent)

    def _build_relay(self) -> None:
        relay = self.namespaces['relay']
        for key in (
            'net.ipv4.ip_forward=1',
            'net.ipv4.conf.all.rp_filter=0',
            'net.ipv4.conf.default.rp_filter=0',
        ):
            self._ns('relay', 'sysctl', '-q', '-w', key)
        _run(['ip', '-n', relay, 'tuntap', 'add', 'dev', _TUN, 'mode', 'tun'])
        _run(['ip', '-n', relay, 'link', 'set', _TUN, 'up'])
        self._ns('relay', 'sysctl', '-q', '-w', f'net.ipv4.conf.{_TUN}.rp_filter=0')
        # Packets from either veth go to the TUN (table 100); what the relay writes back arrives on the
        # TUN and is routed by the main table, straight out of the right veth.
        for dev in ('xmr-enc', 'xmr-dec'):
            self._ns('relay', 'sysctl', '-q', '-w', f'net.ipv4.conf.{dev}.rp_filter=0')
            _run(['ip', '-n', relay, 'rule', 'add', 'iif', dev, 'lookup', _ROUTE_TABLE])
        _run(['ip', '-n', relay, 'route', 'add', 'default', 'dev', _TUN, 'table', _ROUTE_TABLE])
        c = self.config
        self._relay = subprocess.Popen(
            [
                'ip',
                'netns',
                'exec',
                relay,
                sys.executable,
                str(Path(__file__).with_name('delay_relay.py')),
                '--tun',
                _TUN,
                '--delay-ms',
                str(c.delay_ms),
                '--jitter-ms',
                str(c.jitter_ms),
                '--seconds',
                str(c.seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        line = self._relay.stdout.readline().strip()
        if line != 'ready':
            raise LinkError(f'the delay relay did not start: {line} {self._relay.stdout.read()[-500:]}')

    def set_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the IPv4 packets leaving each end (0 = none), from now on.

        IPv4 only, so that the counters hold the link's own traffic (DDS and test datagrams) and not
        IPv6 neighbour discovery, which the kernel sends by itself.
        """
        if not 0 <= int(percent) <= 100:
            raise ValueError(f'loss percent is {percent}; it must be in 0..100')
        match = f'numgen random mod 100 < {int(percent)} ' if percent < 100 else ''
        rule = f'add rule netdev {_LOSS_TABLE} egress meta protocol ip {match}counter drop\n'
        for side in ('enc', 'dec'):
            self._nft(
                side,
                f'flush chain netdev {_LOSS_TABLE} egress\n'
                f'add rule netdev {_LOSS_TABLE} egress meta protocol ip counter\n'
                + (rule if percent else ''),
            )

    def packet_counts(self) -> Dict[str, Dict[str, int]]:
        """Per end: IP packets that left its veth (``sent``) and those dropped, since the last set_loss."""
        counts = {}
        for side in ('enc', 'dec'):
            rules = json.loads(self._ns(side, 'nft', '-j', 'list', 'chain', 'netdev', _LOSS_TABLE, 'egress'))
            packets = [item['rule'] for item in rules['nftables'] if 'rule' in item]
            values = [
                next((e['counter']['packets'] for e in r['expr'] if 'counter' in e), 0) for r in packets
            ]
            counts[side] = {
                'sent': values[0] if values else 0,
                'dropped': values[1] if len(values) > 1 else 0,
            }
        return counts

    def popen(self, side: str, argv: Sequence[str], env: Mapping[str, str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` in the namespace of ``side`` ('enc' or 'dec'); close() stops it if still running."""
        proc = subprocess.Popen(
            ['ip', 'netns', 'exec', self.namespaces[side], *argv],
            env=dict(env),
            start_new_session=True,
            **kwargs,
        )
        self._processes.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process started here and delete the namespaces (and with them veths, rules, TUN)."""
        import signal

        for proc in self._processes + ([self._relay] if self._relay else []):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                    proc.wait(timeout=5)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=5)
        if self._relay is not None and self._relay.stdin:
            self._relay.stdin.close()
        self._processes.clear()
        for name in reversed(self._created):
            subprocess.run(['ip', 'netns', 'del', name], capture_output=True, timeout=30)
        self._created.clear()
