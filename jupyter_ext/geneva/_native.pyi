"""Type stubs for geneva's Rust extension module (src/py/)."""

__version__: str

class HostPlatform:
    """Facts about the machine and interpreter running this process."""

    @property
    def os(self) -> str:
        """``linux``, ``macos``, ``windows``, ..."""
    @property
    def os_version(self) -> str | None:
        """Kernel release on Linux, product version on macOS."""
    @property
    def arch(self) -> str:
        """CPU architecture as wheel tags spell it: ``x86_64``, ``aarch64``, ``arm64``."""
    @property
    def libc_family(self) -> str:
        """``glibc``, ``musl``, ``system`` (macOS, Windows) or ``unknown``."""
    @property
    def libc_version(self) -> str | None:
        """``"2.36"``; None where the C library has no version."""
    @property
    def python_implementation(self) -> str:
        """``sys.implementation.name``, e.g. ``cpython``."""
    @property
    def python_version(self) -> str:
        """``major.minor.micro``."""
    @property
    def python_abi(self) -> str:
        """Most specific ABI tag, e.g. ``cp311``."""
    @property
    def tags(self) -> list[str]:
        """Supported wheel tags, best first, as ``packaging.tags.sys_tags()``."""
    def to_json(self) -> str:
        """The facts as JSON: os, os_version, arch, libc {family, version}, python {...}, tags."""

def host_platform() -> HostPlatform:
    """Probe this machine (Rust) and interpreter (``sys``, ``sysconfig``)."""
