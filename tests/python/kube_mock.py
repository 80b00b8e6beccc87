"""A stand-in Kubernetes API server (the one component that cannot run here).

It implements the calls geneva's kube-rs client makes, with Kubernetes' own paths,
verbs and JSON shapes: RayCluster get / create / merge-patch / delete / list
(ray.io/v1), Pod list, and Pod port-forward over WebSocket (v4.channel.k8s.io
framing: per port a data and an error channel, each opened with the port number).
It plays KubeRay and the kubelet too: a created RayCluster gets a head pod that turns
Running and ready after ``start_delay`` seconds; an image containing ``crashloop``
gives a CrashLoopBackOff pod, ``no-such-image`` an ImagePullBackOff. Port-forwards
to the head's ports are relayed to real local TCP ports (``ports``), e.g. a real
Ray head's client port, so a session goes through the whole path.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import json
import socket
import threading
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class KubeMock:
    def __init__(self, ports: dict[int, int] | None = None, start_delay: float = 0.3) -> None:
        self.ports = dict(ports or {})  # pod port -> local port the forward relays to
        self.start_delay = start_delay
        self.clusters: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.forwards: list[str] = []  # pod names port-forwarded to, in order
        self.fail_deletes = False  # answer DELETE with a server error (a failing API server)
        self._sockets: dict[str, list[web.WebSocketResponse]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="kube-mock")
        self._thread.start()
        self._ready.wait(10)

    # -- lifecycle -------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        rc = "/apis/ray.io/v1/namespaces/{ns}/rayclusters"
        app.router.add_get(rc, self.list_clusters)
        app.router.add_get("/apis/ray.io/v1/rayclusters", self.list_clusters)
        app.router.add_post(rc, self.create_cluster)
        app.router.add_get(rc + "/{name}", self.get_cluster)
        app.router.add_patch(rc + "/{name}", self.patch_cluster)
        app.router.add_delete(rc + "/{name}", self.delete_cluster)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/portforward", self.portforward)
        app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/portforward", self.portforward)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            # Port-forward streams a client left open (a Ray Client channel that outlives its
            # session's exit by a moment) would hold the server's shutdown past its timeout.
            for sockets in list(self._sockets.values()):
                for ws in sockets:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 2)
            self._sockets.clear()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "mock", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
                    "users": [{"name": "mock", "user": {}}],
                    "contexts": [
                        {"name": "mock", "context": {"cluster": "mock", "user": "mock", "namespace": "default"}}
                    ],
                    "current-context": "mock",
                }
            )
        )
        return path

    # -- KubeRay and kubelet, played ----------------------------------------------------
    def _head_pod(self, ns: str, cluster: dict[str, Any]) -> dict[str, Any]:
        name = cluster["metadata"]["name"]
        template = cluster["spec"]["headGroupSpec"]["template"]
        pod_name = f"{name}-head-{next(self._ids):05d}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": ns,
                "uid": f"uid-{pod_name}",
                "creationTimestamp": _now(),
                "labels": {
                    **template["metadata"].get("labels", {}),
                    "ray.io/cluster": name,
                    "ray.io/node-type": "head",
                },
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
            },
        }
        self.pods[(ns, pod_name)] = pod
        self._loop.call_later(self.start_delay, self._start_pod, ns, pod_name)
        return pod

    def _start_pod(self, ns: str, pod_name: str) -> None:
        pod = self.pods.get((ns, pod_name))
        if pod is None:
            return
        container = pod["spec"]["containers"][0]
        image = container["image"]
        if "crashloop" in image:
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}
            pod["status"] = {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": False,
                        "restartCount": 3,
                        "image": image,
                        "imageID": "",
                        "state": state,
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                ],
            }
        elif "no-such-image" in image:
            pod["status"] = {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": False,
                        "restartCount": 0,
                        "image": image,
                        "imageID": "",
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
                        },
                    }
                ],
            }
        else:
            pod["status"] = {
                "phase": "Running",
                "podIP": "10.0.0.2",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": True,
                        "restartCount": 0,
                        "image": image,
                        "imageID": "",
                        "state": {"running": {"startedAt": _now()}},
                    }
                ],
            }
            cluster = self.clusters.get((ns, pod["metadata"]["labels"]["ray.io/cluster"]))
            if cluster is not None:
                cluster["status"] = {"state": "ready", "head": {"podName": pod_name, "podIP": "10.0.0.2"}}

    def add_foreign_cluster(self, ns: str, name: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        """A RayCluster someone else created (a colleague's, in a shared namespace)."""
        body = {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "uid": f"uid-{name}"},
            "spec": copy.deepcopy(spec),
        }
        body["metadata"].update(resourceVersion="1", creationTimestamp=_now(), generation=1)
        self.clusters[(ns, name)] = body
        self._head_pod(ns, body)

    def restart_head(self, ns: str, name: str) -> str:
        """The head pod is replaced (new name); open port-forwards to the old one are cut."""

        async def restart() -> str:
            old = [
                k for k, p in self.pods.items() if k[0] == ns and p["metadata"]["labels"].get("ray.io/cluster") == name
            ]
            for key in old:
                self.pods.pop(key)
                for ws in self._sockets.pop(key[1], []):
                    await ws.close()
            pod = self._head_pod(ns, self.clusters[(ns, name)])
            return pod["metadata"]["name"]

        return asyncio.run_coroutine_threadsafe(restart(), self._loop).result(10)

    # -- the API ----------------------------------------------------------------------------
    async def list_clusters(self, request: web.Request) -> web.Response:
        self.calls.append(("list", "rayclusters"))
        ns = request.match_info.get("ns")
        items = [
            c
            for (cns, _), c in self.clusters.items()
            if (ns is None or cns == ns)
            and _matches(c["metadata"].get("labels", {}), request.query.get("labelSelector"))
        ]
        return web.json_response({"apiVersion": "ray.io/v1", "kind": "RayClusterList", "metadata": {}, "items": items})

    async def create_cluster(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        body = await request.json()
        name = body["metadata"]["name"]
        self.calls.append(("create", name))
        if (ns, name) in self.clusters:
            return _status(409, "AlreadyExists", f'rayclusters.ray.io "{name}" already exists')
        body["metadata"].update(
            namespace=ns, uid=f"uid-{name}", resourceVersion="1", creationTimestamp=_now(), generation=1
        )
        self.clusters[(ns, name)] = body
        self._head_pod(ns, body)
        return web.json_response(body, status=201)

    def _lookup(self, request: web.Request, verb: str) -> tuple[str, str, dict[str, Any] | None]:
        """(namespace, name, the RayCluster or None) of a request, recorded as a call."""
        ns, name = request.match_info["ns"], request.match_info["name"]
        self.calls.append((verb, name))
        return ns, name, self.clusters.get((ns, name))

    async def get_cluster(self, request: web.Request) -> web.Response:
        _, name, cluster = self._lookup(request, "get")
        if cluster is None:
            return _status(404, "NotFound", f'rayclusters.ray.io "{name}" not found')
        return web.json_response(cluster)

    async def patch_cluster(self, request: web.Request) -> web.Response:
        ns, name, cluster = self._lookup(request, "patch")
        if cluster is None:
            return _status(404, "NotFound", f'rayclusters.ray.io "{name}" not found')
        if request.content_type != "application/merge-patch+json":
            return _status(415, "UnsupportedMediaType", f"unsupported patch type {request.content_type}")
        _merge(cluster, await request.json())
        cluster["metadata"]["generation"] = cluster["metadata"].get("generation", 1) + 1
        if not any(
            p["metadata"]["labels"].get("ray.io/cluster") == name for (pns, _), p in self.pods.items() if pns == ns
        ):
            self._head_pod(ns, cluster)
        return web.json_response(cluster)

    async def delete_cluster(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self.calls.append(("delete", name))
        if self.fail_deletes:
            return _status(500, "InternalError", "etcdserver: request timed out")
        cluster = self.clusters.pop((ns, name), None)
        if cluster is None:
            return _status(404, "NotFound", f'rayclusters.ray.io "{name}" not found')
        for key in [
            k for k, p in self.pods.items() if k[0] == ns and p["metadata"]["labels"].get("ray.io/cluster") == name
        ]:
            self.pods.pop(key)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}})

    async def list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        items = [
            p
            for (pns, _), p in self.pods.items()
            if pns == ns and _matches(p["metadata"]["labels"], request.query.get("labelSelector"))
        ]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if (ns, name) not in self.pods:
            return _status(404, "NotFound", f'pods "{name}" not found')
        ports = [int(p) for p in request.query.getall("ports")[0].split(",")]
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        self.forwards.append(name)
        self._sockets.setdefault(name, []).append(ws)
        writers = {}
        pumps = []
        for i, port in enumerate(ports):
            for channel in (2 * i, 2 * i + 1):
                await ws.send_bytes(bytes([channel]) + port.to_bytes(2, "little"))
            reader, writer = await asyncio.open_connection("127.0.0.1", self.ports[port])
            writers[2 * i] = writer

            async def pump(reader: asyncio.StreamReader = reader, channel: int = 2 * i) -> None:
                while data := await reader.read(65536):
                    await ws.send_bytes(bytes([channel]) + data)
                await ws.close()

            pumps.append(asyncio.ensure_future(pump()))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY and len(msg.data) > 1 and msg.data[0] in writers:
                    writers[msg.data[0]].write(msg.data[1:])
                    await writers[msg.data[0]].drain()
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers.values():
                writer.close()
        return ws


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
