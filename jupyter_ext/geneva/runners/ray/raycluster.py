"""KubeRay group specs and exit modes, as the docs write them::

    from geneva.runners.ray.raycluster import _HeadGroupSpec, _WorkerGroupSpec, ExitMode

    head_group=_HeadGroupSpec(image="rayproject/ray:2.60.0-py311", num_cpus=8, service_account="ray")
    worker_groups=[_WorkerGroupSpec(name="cpu", num_cpus=60, memory="120G", replicas=2)]

Values are checked when the spec is built: a bad ``memory`` or an unknown
keyword fails at once, not minutes later in Kubernetes.
"""

from __future__ import annotations

import enum
import re
from typing import Any, ClassVar

from geneva.exceptions import InvalidInputError

# Kubernetes resource quantities: 120G, 32Gi, 512Mi, 1.5, 500m, 2e9.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ExitMode(enum.Enum):
    """What happens to a KubeRay cluster geneva created when its session exits."""

    DELETE = "delete"  # always delete it (the default)
    RETAIN = "retain"  # keep it; `python -m geneva clusters delete NAME` removes it later
    RETAIN_ON_FAILURE = "retain_on_failure"  # keep it only when the session ended with an error, for debugging

    @classmethod
    def of(cls, value: ExitMode | str) -> ExitMode:
        if isinstance(value, ExitMode):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(f"ExitMode.{m.name}" for m in cls)
            raise InvalidInputError(f"exit_mode {value!r}: use one of {names}") from None


def close_matches(word: str, choices: list[str] | tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f"; known: {', '.join(choices)}"


def check_keywords(owner: str, given: dict[str, Any], known: tuple[str, ...]) -> None:
    """An unknown keyword is a TypeError naming the close matches (as Python's own, plus the hint)."""
    for key in given:
        if key not in known:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}{close_matches(key, known)}")


def _quantity(owner: str, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInputError(f"{owner}({key}={value!r}): expected a number or a Kubernetes quantity like '32Gi'")
    text = str(value).strip()
    if not _QUANTITY.match(text) or (isinstance(value, (int, float)) and value <= 0):
        raise InvalidInputError(
            f"{owner}({key}={value!r}) is not a Kubernetes quantity: write e.g. "
            + ("'32Gi', '120G', '512Mi' or a number of bytes" if key == "memory" else "8, 0.5 or '500m'")
        )
    return text


class _GroupSpec:
    """Shared by head and worker groups: what one kind of Ray pod runs on."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "image",
        "num_cpus",
        "memory",
        "num_gpus",
        "service_account",
        "node_selector",
        "tolerations",
        "labels",
        "env",
    )

    def __init__(self, **kwargs: Any) -> None:
        owner = type(self).__name__
        check_keywords(owner, kwargs, self.FIELDS)
        self.image: str | None = kwargs.get("image")
        if self.image is not None and (not isinstance(self.image, str) or not self.image.strip() or " " in self.image):
            raise InvalidInputError(
                f"{owner}(image={self.image!r}): expected an image reference like rayproject/ray:2.60.0-py311"
            )
        self.num_cpus = _quantity(owner, "num_cpus", kwargs.get("num_cpus"))
        self.memory = _quantity(owner, "memory", kwargs.get("memory"))
        gpus = kwargs.get("num_gpus")
        if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
            raise InvalidInputError(f"{owner}(num_gpus={gpus!r}): expected a whole number of GPUs (0, 1, 2, ...)")
        self.num_gpus: int | None = gpus
        self.service_account: str | None = kwargs.get("service_account")
        self.node_selector = self._mapping(owner, "node_selector", kwargs.get("node_selector"), label_keys=True)
        self.labels = self._mapping(owner, "labels", kwargs.get("labels"), label_keys=True)
        self.env = self._mapping(owner, "env", kwargs.get("env"), label_keys=False)
        tolerations = kwargs.get("tolerations") or []
        if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
            raise InvalidInputError(
                f"{owner}(tolerations=...): expected a list of dicts like "
                "[{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}]"
            )
        self.tolerations: list[dict[str, Any]] = tolerations

    @staticmethod
    def _mapping(owner: str, key: str, value: Any, label_keys: bool) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInputError(f"{owner}({key}={value!r}): expected a dict of strings")
        for k, v in value.items():
            if not isinstance(k, str) or (label_keys and not _LABEL_KEY.match(k)):
                raise InvalidInputError(f"{owner}({key}=...): {k!r} is not a valid Kubernetes label key")
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise InvalidInputError(f"{owner}({key}=...): the value of {k!r} must be a string, not {v!r}")
        return {k: str(v) for k, v in value.items()}

    def to_dict(self) -> dict[str, Any]:
        """The spec as the Rust manifest builder reads it."""
        return {k: getattr(self, k) for k in self.FIELDS}

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v not in (None, {}, []))
        return f"{type(self).__name__}({given})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class _HeadGroupSpec(_GroupSpec):
    """The Ray head pod."""


class _WorkerGroupSpec(_GroupSpec):
    """One group of Ray worker pods."""

    FIELDS: ClassVar[tuple[str, ...]] = (*_GroupSpec.FIELDS, "name", "replicas", "min_replicas", "max_replicas")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.name: str = kwargs.get("name") or "workers"
        if not isinstance(self.name, str) or not DNS_LABEL.match(self.name):
            raise InvalidInputError(
                f"{owner}(name={self.name!r}): use lower-case letters, digits and '-' (a DNS label), e.g. 'cpu'"
            )
        counts = {k: kwargs.get(k) for k in ("replicas", "min_replicas", "max_replicas")}
        for key, value in counts.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidInputError(f"{owner}({key}={value!r}): expected a whole number >= 0")
        given = {k: v for k, v in counts.items() if v is not None}
        replicas = given.get("replicas", given.get("min_replicas", 1))
        lo = given.get("min_replicas", replicas)
        hi = given.get("max_replicas", max(replicas, lo))
        if not lo <= replicas <= hi:
            raise InvalidInputError(
                f"{owner}(name={self.name!r}): need min_replicas <= replicas <= max_replicas, "
                f"got {lo} <= {replicas} <= {hi}"
            )
        self.replicas, self.min_replicas, self.max_replicas = replicas, lo, hi


_IMAGE_TAG = re.compile(r"^(?P<ray>\d+\.\d+\.\d+|latest|nightly)?(?:-py(?P<py>\d)(?P<minor>\d+))?(?:-(?P<rest>.*))?$")


def image_versions(image: str) -> tuple[str | None, str | None]:
    """(Ray version, Python minor) that a rayproject/ray style tag names, e.g.
    ``rayproject/ray:2.60.0-py311-gpu`` -> ('2.60.0', '3.11'); None for what it does not say."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2].partition("@")[0]
    m = _IMAGE_TAG.match(tag)
    if not m:
        return None, None
    ray = m["ray"] if m["ray"] and m["ray"][0].isdigit() else None
    python = f"{m['py']}.{m['minor']}" if m["py"] else None
    return ray, python
