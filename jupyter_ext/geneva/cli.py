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

    check = env_commands.add_parser(
        "check",
        help="ship / pin / block verdict for every installed distribution on a target platform",
        description="Judge each installed distribution against a cluster platform: ship, pin or block.",
    )
    check.add_argument(
        "--target",
        required=True,
        metavar="TARGET",
        help="platform as wheels name it, e.g. manylinux_2_28_x86_64-cp311 or macosx_14_0_arm64-cp312",
    )
    check.add_argument(
        "--site-packages",
        action="append",
        metavar="DIR",
        help="a site-packages folder to judge (repeatable; default: this interpreter's)",
    )
    check.add_argument("--json", action="store_true", help="print JSON: {target, distributions: [...]}")
    check.set_defaults(run=_env_check)
    return parser


def _env_info(args: argparse.Namespace) -> int:
    from geneva import host_platform
    from geneva.widgets.host import HostReport

    host = host_platform()
    print(host.to_json() if args.json else repr(HostReport(host)))
    return 0


def _env_check(args: argparse.Namespace) -> int:
    import json

    from geneva.exceptions import InvalidInputError
    from geneva.package import check

    try:
        table = check(args.target, args.site_packages)
    except InvalidInputError as exc:
        print(f"python -m geneva env check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(table.to_json(), indent=1) if args.json else repr(table))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
