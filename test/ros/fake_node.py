"""Run encoder_node or decoder_node on the fake codec (tests only).

    python fake_node.py encoder|decoder --ros-args ...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_codec  # noqa: E402

fake_codec.install()

from xmodal_compress_ros.ros import decoder_node, encoder_node  # noqa: E402

if __name__ == '__main__':
    which = sys.argv.pop(1)
    node = {'encoder': encoder_node, 'decoder': decoder_node}[which]
    sys.exit(node.main(sys.argv))
