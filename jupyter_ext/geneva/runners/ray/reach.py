"""Reaching a Ray Client server: the address, a TCP connect, one gRPC ping.

Each fails in seconds with the real cause (a wrong host, a closed port, the GCS port, a head that
wants a token) instead of Ray's own ~30 s retry loop ending in "connection timeout".
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from geneva.exceptions import ClusterError, InvalidInputError

DEFAULT_CLIENT_PORT = 10001


def split_addr(addr: str) -> tuple[str, int]:
    text = addr.strip().removeprefix("ray://")
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise InvalidInputError(f"addr={addr!r}: expected HOST:PORT of the Ray Client server, e.g. 'ray-head:10001'")
    if not port:
        return host, DEFAULT_CLIENT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"addr={addr!r}: {port!r} is not a port number; e.g. 'ray-head:10001'")
    return host.strip("[]"), int(port)


def check_reachable(host: str, port: int, timeout: float) -> None:
    """A plain TCP connect first: a wrong host or a closed port fails in seconds with the OS's reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise ClusterError(f"cannot resolve {host!r} (from addr): {exc.strerror or exc}; check the host name") from None
    except TimeoutError:
        raise ClusterError(
            f"no answer from {host}:{port} within {timeout:.0f} s: is the head running and the port reachable "
            "from here "
            "(firewall, VPN, or use KubeRay's port-forwarding)?"
        ) from None
    except OSError as exc:
        raise ClusterError(
            f"cannot connect to {host}:{port}: {exc.strerror or exc}; is the Ray head running with its Ray Client "
            f"server on that port (ray start --head --ray-client-server-port {port})?"
        ) from None


def ping_client_server(host: str, port: int, timeout: float) -> None:
    """One gRPC ping of the Ray Client server, so a refusal is reported with its real cause at once
    (Ray's own connect retries for ~30 s, then says 'connection timeout').

    Ray 2.60 heads enable token auth when a token exists (``~/.ray/auth_token``, written by the
    first local Ray run) and ``RAY_AUTH_MODE`` is unset; Ray Client does not follow on its own. When
    the head asks for a token, this kernel has one and ``RAY_AUTH_MODE`` is unset, token auth is
    enabled here the same way (Ray's own helper) and the ping retried once.
    """
    import os

    first = _ping_once(host, port, timeout)
    if first is None:
        return
    code, details = first
    import grpc

    if code == grpc.StatusCode.UNAUTHENTICATED and "RAY_AUTH_MODE" not in os.environ:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

        if maybe_enable_token_auth_if_token_available(warn_if_disabled=False):
            print("geneva: the Ray head requires a token; using this machine's Ray auth token", file=sys.stderr)
            second = _ping_once(host, port, timeout)
            if second is None:
                return
            code, details = second
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise ClusterError(
            f"the Ray head at {host}:{port} requires an authentication token (RAY_AUTH_MODE=token) and refused "
            f"this kernel's: {details}. Fix: put the cluster's token in ~/.ray/auth_token here (or set RAY_AUTH_TOKEN "
            "or RAY_AUTH_TOKEN_PATH), set RAY_AUTH_MODE=token in the kernel's environment, restart the kernel and "
            "enter again"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        raise ClusterError(
            f"{host}:{port} is a gRPC server but not a Ray Client server (it may be the GCS port 6379); "
            f"the Ray Client port is set by `ray start --head --ray-client-server-port` (default {DEFAULT_CLIENT_PORT})"
        )
    if code is None:
        raise ClusterError(
            f"{host}:{port} accepts TCP connections but no gRPC server answered within {timeout:.0f} s: is this the "
            f"Ray Client port (default {DEFAULT_CLIENT_PORT}) and not the dashboard's (8265)?"
        )
    raise ClusterError(f"the Ray Client server at {host}:{port} refused the connection: {code.name}: {details}")


def _ping_once(host: str, port: int, timeout: float) -> tuple[Any, str] | None:
    """None when the server answered; else (gRPC status code or None on timeout, details)."""
    import grpc
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

    channel = init_grpc_channel(f"{host}:{port}", options=[], asynchronous=False)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        stub = ray_client_pb2_grpc.RayletDriverStub(channel)
        stub.ClusterInfo(ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), timeout=timeout)
        return None
    except grpc.FutureTimeoutError:
        return None, "timeout"
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    finally:
        channel.close()
