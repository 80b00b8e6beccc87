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
    pack.add_argument(
        "--upload-dir",
        metavar="URI",
        help="where workers fetch layers: a folder, file://, s3://, gs:// or az:// (default: uploader.upload_dir)",
    )
    pack.add_argument("--target", metavar="TARGET", help="cluster platform: pin what does not run there")
    pack.add_argument("--skip-site-packages", action="store_true", help="ship only the workspace")
    pack.add_argument("--json", action="store_true", help="print the manifest as JSON")
    pack.set_defaults(run=_env_pack)

    jupyter = commands.add_parser("jupyter", help="load geneva in every IPython kernel (hosted JupyterHub images)")
    jupyter_commands = jupyter.add_subparsers(dest="jupyter_command", metavar="JUPYTER_COMMAND", required=True)
    for name, helptext in (("enable", "load the extension in every kernel"), ("disable", "undo enable")):
        sub = jupyter_commands.add_parser(
            name,
            help=helptext,
            description=f"{helptext.capitalize()}: edits the extensions list of an IPython config file "
            "(ipython_config.json), which terminal IPython and ipykernel both read.",
        )
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true", help="~/.ipython/profile_default (the default)")
        where.add_argument("--sys-prefix", action="store_true", help="this environment: <sys.prefix>/etc/ipython")
        sub.set_defaults(run=_jupyter_toggle, enable=name == "enable")

    clusters = commands.add_parser("clusters", help="KubeRay clusters geneva created (find and remove orphans)")
    cluster_commands = clusters.add_subparsers(dest="clusters_command", metavar="CLUSTERS_COMMAND", required=True)
    listing = cluster_commands.add_parser(
        "list",
        help="RayClusters labelled app.kubernetes.io/managed-by=geneva",
        description="List the RayClusters geneva created, with owner, session, age and whether their TTL expired.",
    )
    listing.add_argument("--namespace", "-n", metavar="NS", help="one namespace (default: all)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_clusters_list)
    delete = cluster_commands.add_parser("delete", help="delete a RayCluster geneva created")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--namespace", "-n", metavar="NS", default="default")
    delete.set_defaults(run=_clusters_delete)
    return parser


def _jupyter_toggle(args: argparse.Namespace) -> int:
    from geneva.jupyter import config_file, set_enabled

    path = config_file(sys_prefix=args.sys_prefix)
    changed = set_enabled(path, args.enable)
    state = "loads" if args.enable else "no longer loads"
    print(f"{path}: IPython {state} geneva in every kernel" + ("" if changed else " (already so)"))
    return 0


def _clusters_list(args: argparse.Namespace) -> int:
    import json

    from geneva.exceptions import GenevaError
    from geneva.runners.ray.kuberay import list_clusters

    try:
        clusters = list_clusters(args.namespace)
    except GenevaError as exc:
        print(f"python -m geneva clusters list: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(clusters, indent=1))
        return 0
    if not clusters:
        print("no RayClusters created by geneva" + (f" in namespace {args.namespace}" if args.namespace else ""))
        return 0
    for c in clusters:
        age = f"{c['age_seconds'] / 3600:.1f} h" if c["age_seconds"] is not None else "?"
        expired = (
            "  EXPIRED (python -m geneva clusters delete " + c["name"] + f" -n {c['namespace']})"
            if c["expired"]
            else ""
        )
        print(
            f"{c['namespace']}/{c['name']}  user {c['user']}  session {c['session']}  age {age}  "
            f"{c['state'] or ''}{expired}"
        )
    return 0


def _clusters_delete(args: argparse.Namespace) -> int:
    from geneva.exceptions import GenevaError
    from geneva.runners.ray.kuberay import delete_cluster

    try:
        deleted = delete_cluster(args.name, args.namespace)
    except GenevaError as exc:
        print(f"python -m geneva clusters delete: {exc}", file=sys.stderr)
        return 1
    print(
        f"deleted RayCluster {args.namespace}/{args.name}" if deleted else f"no RayCluster {args.namespace}/{args.name}"
    )
    return 0 if deleted else 1


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
