"""The ``xmodal`` command line: one module per subcommand.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``. Modules import heavy dependencies (torch, rosbags, ...) inside ``main`` so
that ``xmodal --help`` stays fast.
"""
