"""Fast DDS XML profiles for a UDP link between two hosts (vehicle to remote), and their environment.

On one host the shipped profile (``config/fastdds_large_data.xml``, shared memory) is best. Between
hosts everything travels as UDP, and how a packet is cut up decides what a lossy link delivers:

* Fast DDS's default UDP transport sends each sample as one datagram of up to 64 KB that the IP
  layer fragments: a 20 KB packet is ~14 IP fragments and is lost when any one of them is, so at
  10 % fragment loss only ~0.9**14 = 23 % of packets arrive, reliable QoS or not (a retransmission
  is again 14 fragments).
* With ``max_message_size`` ~1400 bytes, DDS fragments the sample itself (RTPS DATA_FRAG, each in
  one IP packet). Best effort still loses the sample with any fragment, but RELIABLE QoS repairs
  exactly the missing fragments (NACK_FRAG), so nearly every packet arrives, a few round trips late.
  A short heartbeat period (20 ms; Fast DDS's default is 3 s) bounds how late: it decides how soon
  a reader learns of fragments lost at the end of a sample. ``bench/bench_lossy_link.py`` measures
  both; the numbers
  are in ``docs/reliability.md``.

No rclpy here: this writes files and environment variables for node processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence
from xml.sax.saxutils import escape

#: Largest UDP payload that fits one Ethernet frame with IP and UDP headers (1500 - 20 - 8), rounded down.
SINGLE_FRAME_MESSAGE_SIZE = 1400
#: Fast DDS's default, one datagram of up to 64 KB fragmented by IP.
IP_FRAGMENTED_MESSAGE_SIZE = 65500


@dataclass(frozen=True)
class UdpLinkProfile:
    """What goes into the XML.

    Attributes:
        peers: unicast addresses for discovery (multicast may not cross hosts): the other host(s), and
            this host's own address so that processes on it find each other by unicast too.
        max_message_size: bytes per RTPS message: ``SINGLE_FRAME_MESSAGE_SIZE`` makes DDS fragment,
            ``IP_FRAGMENTED_MESSAGE_SIZE`` leaves it to IP.
        heartbeat_ms: period of a reliable writer's heartbeats (Fast DDS default: 3000 ms), i.e. how
            soon a reader learns what it missed when the last fragments were lost.
        nack_response_ms: how long a writer waits before answering a NACK (default 5 ms).
        socket_buffer_bytes: UDP send/receive buffer sizes (0 = system default).
    """

    peers: Sequence[str] = ()
    max_message_size: int = SINGLE_FRAME_MESSAGE_SIZE
    heartbeat_ms: int = 20
    nack_response_ms: int = 2
    socket_buffer_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not 576 <= int(self.max_message_size) <= IP_FRAGMENTED_MESSAGE_SIZE:
            raise ValueError(
                f'max_message_size is {self.max_message_size}; use 576..{IP_FRAGMENTED_MESSAGE_SIZE}'
            )
        if self.heartbeat_ms <= 0 or self.nack_response_ms < 0:
            raise ValueError('heartbeat_ms must be > 0 and nack_response_ms >= 0')


def _duration(ms: int) -> str:
    return f'<sec>{ms // 1000}</sec><nanosec>{(ms % 1000) * 1_000_000}</nanosec>'


def profile_xml(profile: UdpLinkProfile) -> str:
    """The XML text: a UDPv4-only participant (no shared memory), its peers, and writer/reader timings."""
    peers = ''.join(
        f'<locator><udpv4><address>{escape(p)}</address></udpv4></locator>' for p in profile.peers
    )
    buffers = ''
    if profile.socket_buffer_bytes:
        buffers = (
            f'<sendBufferSize>{profile.socket_buffer_bytes}</sendBufferSize>'
            f'<receiveBufferSize>{profile.socket_buffer_bytes}</receiveBufferSize>'
        )
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by xmodal_compress_ros.ros.udp_profile: UDP only (shared memory would bypass the network). -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>xmodal_udp</transport_id>
        <type>UDPv4</type>
        <maxMessageSize>{int(profile.max_message_size)}</maxMessageSize>
        {buffers}
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="xmodal_udp_link" is_default_profile="true">
      <rtps>
        <userTransports><transport_id>xmodal_udp</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
        <builtin><initialPeersList>{peers}</initialPeersList></builtin>
      </rtps>
    </participant>
    <data_writer profile_name="xmodal_udp_writer" is_default_profile="true">
      <times>
        <heartbeat_period>{_duration(profile.heartbeat_ms)}</heartbeat_period>
        <nack_response_delay>{_duration(profile.nack_response_ms)}</nack_response_delay>
      </times>
    </data_writer>
    <data_reader profile_name="xmodal_udp_reader" is_default_profile="true">
      <times>
        <heartbeat_response_delay>{_duration(profile.nack_response_ms)}</heartbeat_response_delay>
      </times>
    </data_reader>
  </profiles>
</dds>
'''


def write_profile(path: Path, profile: UdpLinkProfile) -> Path:
    """Write :func:`profile_xml` to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_xml(profile))
    return path


def link_environment(
    profile_file: Path, domain_id: int, base: Optional[Mapping[str, str]] = None
) -> Dict[str, str]:
    """``base`` (default: this process's environment) set up to use ``profile_file`` on ``domain_id``."""
    import os

    env = dict(os.environ if base is None else base)
    # FASTRTPS_DEFAULT_PROFILES_FILE is the deprecated name (Fast DDS < 3); a stale one would win.
    for key in (
        'FASTDDS_BUILTIN_TRANSPORTS',
        'ROS_LOCALHOST_ONLY',
        'ROS_STATIC_PEERS',
        'FASTRTPS_DEFAULT_PROFILES_FILE',
    ):
        env.pop(key, None)
    env.update(
        {
            'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
            'FASTDDS_DEFAULT_PROFILES_FILE': str(profile_file),
            'ROS_DOMAIN_ID': str(int(domain_id)),
            'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
        }
    )
    return env
