"""The ``python -m geneva`` command line.

python -m geneva env info [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m geneva",
        description="geneva: Lance table backfills with Python UDFs on Ray.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    env = commands.add_parser("env", help="inspect this Python environment")
    env_commands = env.add_subparsers(dest="env_command", metavar="ENV_COMMAND", required=True)
    info = env_commands.add_parser(
        "info",
        help="host platform facts: OS, CPU arch, libc, Python, supported wheel tags",
        description="Print the host platform facts geneva compares with a cluster.",
    )
    info.add_argument("--json", action="store_true", help="print JSON (key 'tags': wheel tags, best first)")
    info.set_defaults(run=_env_info)
    return parser


def _env_info(args: argparse.Namespace) -> int:
    from geneva import host_platform
    from geneva.widgets.host import HostReport

    host = host_platform()
    print(host.to_json() if args.json else repr(HostReport(host)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
