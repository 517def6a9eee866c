"""Entry point of the ``xmodal`` command: builds one subparser per subcommand module."""
import argparse
import importlib
import sys
from typing import List, Optional

from xmodal_compress_ros import __version__
from xmodal_compress_ros.errors import XmodalError
from xmodal_compress_ros.runtime.allocator import keep_freed_memory

# Subcommand name -> module under xmodal_compress_ros.cli. Order is the order of --help.
SUBCOMMANDS = {
    'project': 'project',
    'encode': 'encode',
    'decode': 'decode',
    'info': 'info',
    'export': 'export',
    'bench-runtime': 'bench_runtime',
    'synth': 'synth',
    'kitti2bag': 'kitti2bag',
    'train': 'train',
    'bench': 'bench',
    'demo': 'demo',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='xmodal', description='LiDAR-conditioned learned image compression for ROS 2.')
    parser.add_argument('--version', action='version', version='%(prog)s ' + __version__)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module('xmodal_compress_ros.cli.' + module_name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_main=module.main)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # as the nodes do: each frame's arrays on pages the last frame used
    try:
        return int(args._main(args) or 0)
    except XmodalError as exc:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f'xmodal {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
