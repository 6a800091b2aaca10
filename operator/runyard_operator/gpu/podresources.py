"""Minimal kubelet PodResources v1 client (List only): messages built at import from a hand-written descriptor.

No protoc step and no generated files: the few messages of k8s.io/kubelet/pkg/apis/podresources/v1/api.proto that
List needs are declared below with their field numbers, and the gRPC method is called by its full name. Protobuf and
grpc objects are typed Any on purpose (neither ships complete type information).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Imported by name so the module is typed Any whether or not types-protobuf is installed.
descriptor_pb2: Any = importlib.import_module("google.protobuf.descriptor_pb2")
descriptor_pool: Any = importlib.import_module("google.protobuf.descriptor_pool")
json_format: Any = importlib.import_module("google.protobuf.json_format")
message_factory: Any = importlib.import_module("google.protobuf.message_factory")

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
SERVICE = "v1.PodResourcesLister"
LIST_METHOD = f"/{SERVICE}/List"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

_T = descriptor_pb2.FieldDescriptorProto
# message -> [(field, number, type, label, message type)]; numbers as in the v1 api.proto.
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "ListPodResourcesRequest": [],
    "ListPodResourcesResponse": [("pod_resources", 1, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "PodResources")],
    "PodResources": [
        ("name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("namespace", 2, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("containers", 3, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "ContainerResources"),
        ("cpu_ids", 4, _T.TYPE_INT64, _T.LABEL_REPEATED, ""),
    ],
    "ContainerResources": [
        ("name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("devices", 2, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "ContainerDevices"),
        ("cpu_ids", 3, _T.TYPE_INT64, _T.LABEL_REPEATED, ""),
        ("dynamic_resources", 5, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "DynamicResource"),
    ],
    "ContainerDevices": [
        ("resource_name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("device_ids", 2, _T.TYPE_STRING, _T.LABEL_REPEATED, ""),
        ("topology", 3, _T.TYPE_MESSAGE, _T.LABEL_OPTIONAL, "TopologyInfo"),
    ],
    "TopologyInfo": [("nodes", 1, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "NUMANode")],
    "NUMANode": [("ID", 1, _T.TYPE_INT64, _T.LABEL_OPTIONAL, "")],
    "DynamicResource": [
        ("class_name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("claim_name", 2, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("claim_namespace", 3, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("claim_resources", 4, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "ClaimResource"),
    ],
    "ClaimResource": [
        ("cdi_devices", 1, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "CDIDevice"),
        ("driver_name", 2, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("pool_name", 3, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("device_name", 4, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
    ],
    "CDIDevice": [("name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, "")],
}


def _build() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(name="runyard/podresources/v1/api.proto", package="v1", syntax="proto3")
    for msg_name, fields in _MESSAGES.items():
        msg = proto.message_type.add(name=msg_name)
        for name, number, ftype, label, type_name in fields:
            f = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".v1.{type_name}"
    # A private pool: the process may also load another copy of this proto (e.g. from a generated module).
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{name}")) for name in _MESSAGES}


MESSAGES: dict[str, Any] = _build()
ListPodResourcesRequest: Any = MESSAGES["ListPodResourcesRequest"]
ListPodResourcesResponse: Any = MESSAGES["ListPodResourcesResponse"]


def _grpc() -> Any:
    return importlib.import_module("grpc")


@dataclass(frozen=True, slots=True)
class DeviceOwner:
    """A device the kubelet assigned to a container."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


def normalize_device_id(device_id: str) -> str:
    """Time-slicing/MPS replicas are '<UUID>::<n>' (and EKS MIG 'MIG-...::n'): the physical id is before '::'."""
    return device_id.split("::", 1)[0]


def owners_from_response(response: Any) -> dict[str, DeviceOwner]:
    """Device id (GPU-... or MIG-...) -> owner, for NVIDIA GPU and MIG resources only."""
    out: dict[str, DeviceOwner] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            for dev in container.devices:
                resource = dev.resource_name
                if resource != GPU_RESOURCE and not resource.startswith(MIG_RESOURCE_PREFIX):
                    continue
                for device_id in dev.device_ids:
                    ident = normalize_device_id(device_id)
                    out[ident] = DeviceOwner(pod.namespace, pod.name, container.name, resource, ident)
    return out


def response_from_json(text: str) -> Any:
    """A ListPodResourcesResponse from protobuf-JSON (fixtures carry a `_comment` key, hence ignore_unknown_fields)."""
    return json_format.Parse(text, ListPodResourcesResponse(), ignore_unknown_fields=True)


class PodResourcesClient:
    """Blocking client (call it from a thread); a failed call drops the channel so a re-created socket is picked up."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 10.0) -> None:
        self._target = f"unix://{socket_path}"
        self._timeout = timeout
        self._channel: Any = None
        self._lock = threading.Lock()

    def _call(self) -> Any:
        grpc = _grpc()
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(self._target)
            channel = self._channel
        method = channel.unary_unary(
            LIST_METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=ListPodResourcesResponse.FromString,
        )
        return method(ListPodResourcesRequest(), timeout=self._timeout)

    def list(self) -> Any:
        grpc = _grpc()
        try:
            return self._call()
        except grpc.RpcError:
            self.close()  # the kubelet restarted or the socket moved: reconnect from scratch next time
            raise

    def owners(self) -> dict[str, DeviceOwner]:
        return owners_from_response(self.list())

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


def add_lister(server: Any, list_fn: Callable[[Any, Any], Any]) -> None:
    """Register a PodResourcesLister.List implementation on a grpc server (fake kubelets in tests and demos)."""
    grpc = _grpc()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "List": grpc.unary_unary_rpc_method_handler(
                list_fn,
                request_deserializer=ListPodResourcesRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
