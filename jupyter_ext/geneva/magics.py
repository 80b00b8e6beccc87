"""IPython magics: ``%geneva``, ``%%geneva_cluster`` / ``%geneva_cluster``, ``%backfill``.

Magics only orchestrate: parse the line (magic_arguments: ``%backfill?`` shows the real
help), call the library, display the result. Input mistakes raise UsageError (shown
without a traceback). Settings are traitlets: ``%config GenevaMagics.progress_interval = 0.2``.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Float, Int

GROUP_KEYS = {"head_group", "worker_groups"}


@magics_class
class GenevaMagics(Magics):
    """geneva's magics, registered by ``%load_ext geneva``."""

    progress_interval = Float(0.1, help="Seconds between live progress updates (at most 10 a second).").tag(config=True)
    default_concurrency = Int(8, help="%backfill's --concurrency when not given.").tag(config=True)
    show_cluster_display = Bool(True, help="Show the cluster display when entering a session.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        if shell is not None:
            shell.configurables.append(self)

    # -- %geneva ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("action", nargs="?", help="jobs: list the backfill jobs recorded in the database")
    @argument("--tags", type=int, default=10, metavar="N", help="how many wheel tags to list (default 10)")
    @argument("--db", metavar="VAR", help="jobs: the connection variable (default: the last geneva.connect)")
    @argument("--table", metavar="NAME", help="jobs: only this table's")
    @argument("--status", metavar="STATUS", help="jobs: only these (running, done, failed, cancelled, lost...)")
    @line_magic
    def geneva(self, line: str) -> None:
        """Show the geneva version, this host's platform report and the active cluster session.

        The report is HTML in notebooks and text in terminal IPython. When the active
        cluster's Python or Ray differs from this kernel's, a warning says so.

        ``%geneva jobs [--table T] [--status S] [--db VAR]`` lists the backfill jobs recorded in the
        database (any kernel's; ``db.get_job(id)`` follows or cancels one).

        Magics: %%geneva_cluster (enter a Ray cluster; %geneva_cluster status | exit | dashboard),
        %backfill TABLE COLUMN (compute a column). Add ? for their help.
        """
        args = parse_argstring(self.geneva, line)
        if args.action == "jobs":
            self._jobs(args)
            return
        if args.action is not None:
            raise UsageError(f"unknown %geneva action {args.action!r}: the one action is 'jobs'")
        if args.tags < 0:
            raise UsageError(f"--tags must be 0 or more, got {args.tags}")
        from IPython.display import display

        from geneva import host_platform
        from geneva.runners.ray._mgr import active_session
        from geneva.widgets.cluster import ClusterDisplay
        from geneva.widgets.host import HostReport

        display(HostReport(host_platform(), max_tags=args.tags))
        session = active_session()
        if session is None:
            print("no cluster session: backfills run on an embedded local Ray (enter one with %%geneva_cluster)")
            return
        display(ClusterDisplay(session))
        different = [(n, h, t) for n, h, t in ClusterDisplay(session).versions() if t not in (h, "-")]
        for name, here, there in different:
            print(f"warning: the cluster runs {name} {there}, this kernel {here}; use the same {name} on both sides")

    def _jobs(self, args: Any) -> None:
        from IPython.display import display

        from geneva.db import Connection, current_connection

        db = current_connection()
        if args.db is not None:
            db = (self.shell.user_ns if self.shell is not None else {}).get(args.db)
            if not isinstance(db, Connection):
                raise UsageError(f"--db {args.db}: no geneva connection by that name in the notebook")
        if db is None:
            raise UsageError("no database: connect first (db = geneva.connect(...)) or pass --db VAR")
        display(db.list_jobs(table=args.table, status=args.status))

    # -- %%geneva_cluster -------------------------------------------------------------------
    @magic_arguments()
    @argument("action", nargs="?", help="line form: status | exit | dashboard")
    @argument(
        "--force",
        action="store_true",
        help="exit the active session first when the body differs; with exit: delete the cluster under running jobs",
    )
    @argument("--dry-run", action="store_true", help="show the RayCluster manifest (KubeRay) without creating it")
    @line_cell_magic
    def geneva_cluster(self, line: str, cell: str | None = None) -> Any:
        """Enter a Ray cluster for the backfills of the following cells.

        The cell body is YAML; its keys are ray_cluster()'s parameters (addr, name,
        namespace, skip_site_packages, use_portforwarding, pip, exit_mode, head_group,
        worker_groups, extra_env, ray_init_kwargs, ...). An empty body (or one with only
        comments) is the embedded local Ray. Examples::

            %%geneva_cluster
            addr: ray-head:10001
            use_portforwarding: false

            %%geneva_cluster --dry-run
            name: geneva-alice
            namespace: ml
            head_group: {image: "rayproject/ray:2.60.0-py311", num_cpus: 4}
            worker_groups:
              - {name: cpu, num_cpus: 8, memory: 16Gi, replicas: 2}

        ``${NAME}`` is replaced by the environment variable NAME. Rerunning the same cell is a
        no-op. A changed body refuses unless --force, which
        exits the active session first. Line form: %geneva_cluster status | exit | dashboard.
        """
        args = _parse_posix(self.geneva_cluster, line)
        if cell is None:
            return self._cluster_line(args)
        if args.action:
            raise UsageError(f"%%geneva_cluster takes no action in cell form (got {args.action!r}); use the line form")
        return self._cluster_cell(cell, force=args.force, dry_run=args.dry_run)

    def _cluster_line(self, args: Any) -> Any:
        from IPython.display import display

        from geneva.runners.ray._mgr import active_session
        from geneva.widgets.cluster import ClusterDisplay

        session = active_session()
        action = args.action or "status"
        if action not in ("status", "exit", "dashboard"):
            import difflib

            close = difflib.get_close_matches(action, ["status", "exit", "dashboard"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"%geneva_cluster {action}: unknown action{hint} (status, exit, dashboard)")
        if session is None:
            print("no active cluster session (enter one with a %%geneva_cluster cell)")
            return None
        if action == "status":
            display(ClusterDisplay(session))
        elif action == "exit":
            session.exit(force=args.force)
            display(ClusterDisplay(session, note="exited"))
        elif not session.dashboard_url:
            print(f"{session.describe()} has no dashboard URL (the embedded Ray runs without its dashboard)")
        else:
            from IPython.display import HTML

            display(HTML(f"<a href='{session.dashboard_url}' target='_blank'>{session.dashboard_url}</a>"))
            print(session.dashboard_url)
        return None

    def _cluster_cell(self, body: str, force: bool, dry_run: bool) -> Any:  # noqa: PLR0912 - one branch per outcome
        from IPython.display import display

        from geneva.exceptions import GenevaError
        from geneva.runners.ray._mgr import active_session, ray_cluster
        from geneva.widgets.cluster import ClusterDisplay

        params = parse_cluster_yaml(body)
        if dry_run:
            if not (GROUP_KEYS & params.keys() or "name" in params):
                raise UsageError(
                    "--dry-run shows a KubeRay RayCluster manifest: the body needs name: (and group specs)"
                )
            params["dry_run"] = True
            try:
                manifest = ray_cluster(**params)
            except (GenevaError, TypeError, ValueError) as exc:
                raise UsageError(str(exc)) from None
            import yaml

            print(yaml.safe_dump(manifest, sort_keys=False))
            return manifest
        session = active_session()
        if session is not None:
            if getattr(session, "magic_params", None) == params:
                print(f"already active: {session.describe()} (same cell body; nothing reconnected or uploaded)")
                return None
            if not force:
                raise UsageError(
                    f"a different cluster session is active ({session.describe()}); entering this one would exit it"
                    + (
                        f" and delete KubeRay cluster {session.namespace}/{session.name}"
                        if session.kind == "kuberay"
                        else ""
                    )
                    + ". Rerun with %%geneva_cluster --force, or run %geneva_cluster exit first"
                )
            session.__exit__()
        try:
            new = ray_cluster(**params)
        except (GenevaError, TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        new.magic_params = params
        new.show_verdicts = False  # the cluster display below includes the verdict table
        handle = display(ClusterDisplay(new, note="entering"), display_id=True) if self.show_cluster_display else None
        if handle is not None:
            new.listeners.append(lambda s: handle.update(ClusterDisplay(s, note="entering")))
        try:
            new.__enter__()
        except KeyboardInterrupt:
            if handle is not None:
                handle.update(ClusterDisplay(new, note="interrupted"))
            raise
        except GenevaError as exc:
            if handle is not None:
                handle.update(ClusterDisplay(new, note=f"failed: {exc}"))
            raise
        finally:
            new.listeners.clear()
        if handle is not None:
            handle.update(ClusterDisplay(new))
        return None

    # -- %backfill --------------------------------------------------------------------------
    @magic_arguments()
    @argument(
        "table", nargs="?", help="a Table variable, or a table name in the current connection (the last connect())"
    )
    @argument("column", nargs="?", help="the UDF column to compute (added with tbl.add_columns)")
    @argument("--where", metavar="SQL", help='only rows matching this filter (DataFusion SQL), e.g. "x > 5"')
    @argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="Ray tasks in flight (default: %%config GenevaMagics.default_concurrency)",
    )
    @argument("--checkpoint-size", type=int, metavar="N", help="rows per checkpoint (default: adaptive)")
    @argument(
        "--batch-bytes",
        type=int,
        metavar="N",
        help="bytes of input a batch reads (default: 32 MiB; rows per batch follow from the inputs' size)",
    )
    @argument(
        "--on-error", choices=("fail", "skip"), default="fail", help="skip: failing rows become NULL and are recorded"
    )
    @argument("--attach", metavar="JOB_ID", help="follow a job started elsewhere (e.g. another kernel)")
    @argument(
        "--async",
        dest="run_async",
        action="store_true",
        help="return the Job at once (also in _); the display keeps updating",
    )
    @line_magic
    def backfill(self, line: str) -> Any:
        """Compute a column of a Lance table with its UDF, on the active cluster (or an embedded local Ray).

        Checkpointed and resumable: interrupting the kernel cancels the Ray tasks and keeps
        the checkpoints, so running it again resumes. Shows a live progress display.

            %backfill tbl embedding --where "embedding is null and lang = 'en'"
            job = %backfill tbl embedding --async
        """
        args = _parse_posix(self.backfill, line)
        if args.attach is not None:
            return self._attach(args)
        if args.table is None or args.column is None:
            raise UsageError("%backfill TABLE COLUMN [options], or %backfill --attach JOB_ID")
        table = self._resolve_table(args.table)
        from geneva.backfill import start
        from geneva.exceptions import BackfillError, GenevaError
        from geneva.widgets.progress import BackfillDisplay, follow_in_terminal, wait_interruptibly

        concurrency = args.concurrency if args.concurrency is not None else self.default_concurrency
        try:
            job = start(
                table,
                args.column,
                wait=False,
                where=args.where,
                concurrency=concurrency,
                checkpoint_size=args.checkpoint_size,
                batch_bytes=args.batch_bytes,
                on_error=args.on_error,
            )
        except BackfillError:
            raise
        except (GenevaError, TypeError, ValueError) as exc:  # bad column, filter, option: nothing started
            raise UsageError(str(exc)) from None
        view = BackfillDisplay(job, interval=self.progress_interval)
        if view._live:
            view.show()
        if args.run_async:
            if not view._live:
                print(f"started {job!r}; job.progress() shows where it is")
            if self.shell is not None:  # also in `_`, even when the line is an assignment (job = %backfill ...)
                self.shell.user_ns["_"] = job
            return job
        try:
            if view._live:
                wait_interruptibly(job)
            else:
                follow_in_terminal(job)
        finally:
            view.wait(5)  # the final state is shown before the cell ends
        return job.result()

    def _attach(self, args: Any) -> Any:
        """The live display of a recorded job (this kernel's or another's) until it ends; its result."""
        from geneva.db import current_connection
        from geneva.exceptions import GenevaError
        from geneva.widgets.progress import BackfillDisplay, text

        db = self._resolve_table(args.table)._db if args.table is not None else current_connection()
        if db is None:
            raise UsageError("no database: connect first (db = geneva.connect(...)) or name a table of it")
        try:
            job = db.get_job(args.attach)
        except GenevaError as exc:
            raise UsageError(str(exc)) from None
        view = BackfillDisplay(job, interval=max(self.progress_interval, 1.0))
        if view._live:
            view.show()
        try:  # Ctrl-C detaches: the job goes on
            while not job.wait(1.0):
                if not view._live:
                    print("\r" + text(job.progress(), job.table_name).splitlines()[0], end="", flush=True)
        except KeyboardInterrupt:
            print(f"\ndetached from backfill {args.attach}; it goes on (db.get_job({args.attach!r}) follows it)")
            return job
        if view._live:
            view.wait(5)
        else:
            print("\r" + text(job.progress(), job.table_name))
        return job.result()

    def _resolve_table(self, name: str) -> Any:
        from geneva.db import Table, current_connection, did_you_mean

        ns = self.shell.user_ns if self.shell is not None else {}
        value = ns.get(name)
        if isinstance(value, Table):
            return value
        if value is not None:
            raise UsageError(
                f"%backfill: {name!r} is a {type(value).__name__}, not a geneva Table (db.open_table(...))"
            )
        variables = [k for k, v in ns.items() if isinstance(v, Table) and not k.startswith("_")]
        connection = current_connection()
        if connection is None:
            raise UsageError(
                f"%backfill: no variable or table named {name!r}"
                + did_you_mean(name, variables)
                + ("" if variables else "; open one with db = geneva.connect(PATH); tbl = db.open_table(NAME)")
            )
        names = connection.table_names()
        if name not in names:
            raise UsageError(
                f"%backfill: no variable or table named {name!r} in {connection.uri}"
                + did_you_mean(name, names + variables)
            )
        return connection.open_table(name)


def empty_cluster_body(lines: list[str]) -> list[str]:
    """Input transformer: a cell that is only ``%%geneva_cluster [flags]`` gets an empty YAML body.

    IPython refuses a cell magic whose body is empty, but for %%geneva_cluster an empty
    body is meaningful: the embedded local Ray.
    """
    code = [line for line in lines if line.strip()]
    if len(code) == 1 and code[0].lstrip().startswith("%%geneva_cluster"):
        return [code[0].rstrip("\n") + "\n", "# (empty body: the embedded local Ray)\n"]
    return lines


def parse_cluster_yaml(body: str) -> dict[str, Any]:
    """The %%geneva_cluster body as ray_cluster() keyword arguments; mistakes are UsageErrors with line:column."""
    import yaml

    from geneva.runners.ray.params import PARAMETERS
    from geneva.runners.ray.raycluster import _HeadGroupSpec, _WorkerGroupSpec, close_matches

    if not body.strip():
        return {}
    body = _expand_env(body)
    try:
        node = yaml.compose(body, Loader=yaml.SafeLoader)
        data = yaml.safe_load(body)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}:{mark.column + 1}" if mark is not None else "YAML"
        key = _key_before(body, mark.line if mark is not None else 0)
        raise UsageError(
            f"%%geneva_cluster: {where}{f' (in {key!r})' if key else ''}: {exc.problem}"
            + (f" ({exc.context})" if exc.context else "")
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise UsageError(
            "%%geneva_cluster: the body must be a YAML mapping of ray_cluster() parameters, e.g. 'addr: host:10001'"
        )
    marks = {key.value: key.start_mark for key, _ in node.value if isinstance(key, yaml.ScalarNode)}

    def at(key: str) -> str:
        mark = marks.get(key)
        return f"line {mark.line + 1}:{mark.column + 1}" if mark is not None else "?"

    for key in data:
        if key not in PARAMETERS or key == "dry_run":
            known = tuple(p for p in PARAMETERS if p != "dry_run")
            raise UsageError(f"%%geneva_cluster: {at(str(key))}: unknown key {key!r}{close_matches(str(key), known)}")
    params = dict(data)
    try:
        if params.get("head_group") is not None:
            if not isinstance(params["head_group"], dict):
                raise UsageError(
                    f"%%geneva_cluster: {at('head_group')}: head_group must be a mapping, "
                    "e.g. {image: ..., num_cpus: 4}"
                )
            params["head_group"] = _HeadGroupSpec(**params["head_group"])
        if params.get("worker_groups") is not None:
            groups = params["worker_groups"]
            if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
                raise UsageError(f"%%geneva_cluster: {at('worker_groups')}: worker_groups must be a list of mappings")
            params["worker_groups"] = [_WorkerGroupSpec(**g) for g in groups]
    except (TypeError, ValueError) as exc:
        key = "head_group" if "HeadGroupSpec" in str(exc) else "worker_groups"
        raise UsageError(f"%%geneva_cluster: {at(key)} ({key}): {exc}") from None
    return params


def _key_before(body: str, line: int) -> str | None:
    """The top-level key whose value holds ``line`` (0-based), for YAML syntax errors."""
    import re

    for text in reversed(body.splitlines()[: line + 1]):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", text)
        if m:
            return m.group(1)
    return None


def _parse_posix(magic: Any, line: str) -> Any:
    """Like magic_arguments.parse_argstring, but with shell quoting: --where "x > 5" gives x > 5."""
    import shlex

    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{line!r}: {exc}") from None
    return magic.parser.parse_args(argv)


def _expand_env(body: str) -> str:
    """``${NAME}`` in the body is the environment variable NAME (shared notebooks, hosted images)."""
    import os
    import re

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise UsageError(f"%%geneva_cluster: ${{{name}}} is not set in the kernel's environment")
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, body)
