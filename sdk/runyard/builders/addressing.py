"""Where replicas find each other: in-cluster DNS names, or distinct ports on one machine for local runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runyard import constants as c
from runyard.builders.names import job_name, service_name
from runyard.frameworks.registry import all_roles


class Addressing(Protocol):
    """Maps a replica (role, index) to the host and port other replicas use to reach it."""

    def host(self, role: str, index: int) -> str:
        """Host name or address of the replica."""
        ...

    def port(self, role: str, index: int, default: int) -> int:
        """Port of the replica's rendezvous/SSH endpoint; `default` is the spec's port."""
        ...


@dataclass(frozen=True)
class KubernetesAddressing:
    """Stable DNS names from the Indexed Job hostnames plus the run's headless Service (the pod subdomain)."""

    run_name: str
    namespace: str
    cluster_domain: str | None = None

    def host_for(self, role: str, index_text: str) -> str:
        """Host name with the index given as text, so shell loops can pass `$i`."""
        suffix = f".{self.cluster_domain}" if self.cluster_domain else ""
        pod = f"{job_name(self.run_name, role)}-{index_text}"
        return f"{pod}.{service_name(self.run_name)}.{self.namespace}.svc{suffix}"

    def host(self, role: str, index: int) -> str:
        """`<run>-<role>-<index>.<run>.<namespace>.svc[.<cluster domain>]`."""
        return self.host_for(role, str(index))

    def port(self, role: str, index: int, default: int) -> int:
        """Every pod has its own IP, so all replicas use the spec's port."""
        return default


@dataclass(frozen=True)
class LocalAddressing:
    """All replicas on one host; each (role, index) gets `base_port + role slot * 100 + index`."""

    base_port: int
    hostname: str = "127.0.0.1"

    def host(self, role: str, index: int) -> str:
        """Always the local host."""
        return self.hostname

    def port(self, role: str, index: int, default: int) -> int:
        """A port no other replica of the run uses; `default` is ignored because processes share one IP."""
        if not 0 <= index < c.LOCAL_PORTS_PER_ROLE:
            raise ValueError(
                f"local runs support at most {c.LOCAL_PORTS_PER_ROLE} replicas per role, got index {index}"
            )
        port = self.base_port + all_roles().index(role) * c.LOCAL_PORTS_PER_ROLE + index
        if port > 65535:
            raise ValueError(f"base_port {self.base_port} is too high: {role} {index} would get port {port}")
        return port
