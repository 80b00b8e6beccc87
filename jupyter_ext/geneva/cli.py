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

    pack = env_commands.add_parser(
        "pack",
        help="zip this environment into content-addressed layers and upload what is new",
        description="Package the workspace and site-packages for a cluster; prints the manifest.",
    )
    pack.add_argument("--upload-dir", metavar="DIR", help="where workers fetch layers (default: uploader.upload_dir)")
    pack.add_argument("--target", metavar="TARGET", help="cluster platform: pin what does not run there")
    pack.add_argument("--skip-site-packages", action="store_true", help="ship only the workspace")
    pack.add_argument("--json", action="store_true", help="print the manifest as JSON")
    pack.set_defaults(run=_env_pack)
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


def _env_pack(args: argparse.Namespace) -> int:
    import json

    from geneva.exceptions import GenevaError, InvalidInputError
    from geneva.package import pack

    try:
        manifest = pack(upload_dir=args.upload_dir, target=args.target, skip_site_packages=args.skip_site_packages)
    except InvalidInputError as exc:
        print(f"python -m geneva env pack: {exc}", file=sys.stderr)
        return 2
    except GenevaError as exc:
        print(f"python -m geneva env pack: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    for layer in manifest["layers"]:
        written = sum(s["bytes"] for s in layer["shards"] if s["written"])
        print(
            f"{layer['name']:<16} {layer['files']:>7} files {layer['bytes'] / 2**20:>9.1f} MiB  "
            f"{len(layer['shards'])} shard(s), {written / 2**20:.1f} MiB new  {layer['root']}"
        )
    print(
        f"manifest {manifest['digest']}: {manifest['bytes_uploaded'] / 2**20:.1f} MiB uploaded, "
        f"{manifest['bytes_hashed'] / 2**20:.1f} MiB hashed, {len(manifest['pins'])} pins"
    )
    if manifest["secrets_left_out"]:
        print("left out (secrets): " + ", ".join(manifest["secrets_left_out"]))
    for path, size in manifest["large_files"]:
        print(f"warning: large file {path} ({size / 2**20:.1f} MiB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
