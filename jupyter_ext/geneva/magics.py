"""IPython magics: ``%geneva``.

Magics only orchestrate: parse the line, call the library, display the result.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring


@magics_class
class GenevaMagics(Magics):
    """geneva's magics, registered by ``%load_ext geneva``."""

    @magic_arguments()
    @argument("--tags", type=int, default=10, metavar="N", help="how many wheel tags to list (default 10)")
    @line_magic
    def geneva(self, line: str) -> None:
        """Show the geneva version and this host's platform report.

        The report is HTML in notebooks and text in terminal IPython.
        """
        args = parse_argstring(self.geneva, line)
        if args.tags < 0:
            raise UsageError(f"--tags must be 0 or more, got {args.tags}")
        from IPython.display import display

        from geneva import host_platform
        from geneva.widgets.host import HostReport

        display(HostReport(host_platform(), max_tags=args.tags))
