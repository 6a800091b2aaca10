#!/usr/bin/env python3
"""Builds the real node's images without Docker or a registry, and imports them into its containerd.

Images (docker-archive layouts under $RUNYARD_CACHE/images, imported with `ctr images import`):

| image                              | layers                                                                 |
|------------------------------------|------------------------------------------------------------------------|
| registry.k8s.io/pause:3.10         | a static pause binary built from hack/images/pause.c                   |
| localhost/runyard/examples:dev     | Debian base (python3, OpenMPI, sshd) + examples-requirements.txt + examples-extra-requirements.txt + SDK and examples/ |
| localhost/runyard/runyard:dev      | Debian base + the operator's dependencies + SDK and operator (operator, artifact sync sidecar, GPU agent) |
| localhost/runyard/debian:dev       | the Debian base alone, running as root like most public images (security-context tests)      |

The Debian base comes from mmdebstrap (Debian's mirror); Python packages are installed with pip --target from the
dev venv's pip, so pip's cache serves the large wheels. Every layer is keyed by a hash of its inputs and rebuilt only
when they change. `examples/Dockerfile` and `operator/Dockerfile` are the production equivalents users build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "hack" / "images"
CACHE = Path(os.environ.get("RUNYARD_CACHE", Path.home() / ".cache" / "runyard"))
OUT = CACHE / "images"
PIP = ROOT / ".venv" / "bin" / "pip"
SUITE = "bookworm"
MIRROR = os.environ.get("RUNYARD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
UID = 1000
# What every pod image of the examples and of Runyard itself needs from Debian.
BASE_PACKAGES = (
    "python3",
    "python-is-python3",
    "ca-certificates",
    "netbase",
    "openssh-server",
    "openssh-client",
    "openmpi-bin",
    "libopenmpi3",
    "procps",
    "curl",
)
LIB = "opt/runyard/lib"
WORKSPACE = "opt/runyard/workspace"
PATH_ENV = f"/{LIB}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def tree_digest(paths: Iterable[Path]) -> str:
    """Hash of the files under `paths` that git would ship (names and contents), for app layers."""
    h = hashlib.sha256()
    for base in paths:
        files = sorted(
            p
            for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p) and p.suffix != ".pyc"
        )
        for p in files:
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# --- layers ------------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One uncompressed layer tar in the cache, with its diff id once built."""

    name: str
    key: str

    @property
    def path(self) -> Path:
        return OUT / "layers" / f"{self.name}-{self.key}.tar"

    @property
    def diff_id(self) -> str:
        sidecar = self.path.with_suffix(".sha256")
        if not sidecar.exists():
            sidecar.write_text(file_sha256(self.path))
        return "sha256:" + sidecar.read_text().strip()


def _tar_dir(stage: Path, out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    subprocess.run(
        ["tar", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", str(stage), "-cf", str(tmp), "."],
        check=True,
    )
    tmp.rename(out)


def base_layer() -> Layer:
    layer = Layer("debian-base", digest(SUITE, MIRROR, *BASE_PACKAGES, str(UID)))
    if layer.path.exists():
        return layer
    if not shutil.which("mmdebstrap"):
        raise SystemExit("mmdebstrap missing: run hack/install-system-deps.sh")
    log(f"building the Debian {SUITE} base with mmdebstrap ({len(BASE_PACKAGES)} packages)")
    layer.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = layer.path.with_suffix(".tmp.tar")
    excludes = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"]
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt=path-exclude={e}" for e in excludes),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            # The images' user: numeric, so runAsNonRoot can verify it, with a home for caches and ssh.
            f'--customize-hook=chroot "$1" useradd --create-home --uid {UID} --shell /bin/bash runyard',
            f'--customize-hook=mkdir -p "$1/{WORKSPACE}" && chown {UID}:{UID} "$1/{WORKSPACE}"',
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            SUITE,
            str(tmp),
            MIRROR,
        ],
        check=True,
    )
    tmp.rename(layer.path)
    return layer


def _fix_scripts(bin_dir: Path) -> None:
    """pip --target writes the dev venv's interpreter into console scripts; the image has /usr/bin/python3."""
    if not bin_dir.is_dir():
        return
    for script in bin_dir.iterdir():
        if not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            script.write_bytes(b"#!/usr/bin/python3\n" + data.split(b"\n", 1)[1])


def pip_layer(name: str, key: str, pip_args: list[str], extra: dict[str, str] | None = None) -> Layer:
    """A layer holding `pip install --target /opt/runyard/lib <pip_args>` (plus the .pth that puts it on sys.path)."""
    layer = Layer(name, key)
    if layer.path.exists():
        return layer
    stage = OUT / "stage" / name
    shutil.rmtree(stage, ignore_errors=True)
    target = stage / LIB
    target.mkdir(parents=True)
    log(f"pip install --target for layer {name} (pip's cache serves what the dev venv already downloaded)")
    t0 = time.monotonic()
    subprocess.run(
        [str(PIP), "install", "--quiet", "--no-compile", "--no-warn-script-location", "--target", str(target),
         *pip_args],
        check=True,
    )  # fmt: skip
    _fix_scripts(target / "bin")
    pth = stage / "usr" / "lib" / "python3" / "dist-packages" / "runyard-image.pth"
    pth.parent.mkdir(parents=True, exist_ok=True)
    pth.write_text(f"/{LIB}\n")
    for rel, text in (extra or {}).items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(text)
    layer.path.parent.mkdir(parents=True, exist_ok=True)
    _tar_dir(stage, layer.path)
    shutil.rmtree(stage, ignore_errors=True)
    log(f"layer {name}: {layer.path.stat().st_size / 1e9:.2f} GB in {time.monotonic() - t0:.0f}s")
    return layer


def copy_layer(name: str, key: str, files: dict[str, Path]) -> Layer:
    """A layer of files and directories from this repository, copied to the given image paths."""
    layer = Layer(name, key)
    if layer.path.exists():
        return layer
    stage = OUT / "stage" / name
    shutil.rmtree(stage, ignore_errors=True)
    for dest, src in files.items():
        target = stage / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, target)
    layer.path.parent.mkdir(parents=True, exist_ok=True)
    _tar_dir(stage, layer.path)
    shutil.rmtree(stage, ignore_errors=True)
    return layer


def pause_layer() -> Layer:
    source = HERE / "pause.c"
    layer = Layer("pause", digest(source.read_bytes()))
    if layer.path.exists():
        return layer
    stage = OUT / "stage" / "pause"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(stage / "pause"), str(source)], check=True)
    layer.path.parent.mkdir(parents=True, exist_ok=True)
    _tar_dir(stage, layer.path)
    shutil.rmtree(stage, ignore_errors=True)
    return layer


# --- images ------------------------------------------------------------------------------------------


@dataclass
class Image:
    """An image: its reference, layers and runtime config."""

    ref: str
    layers: list[Layer]
    config: dict[str, object] = field(default_factory=dict)

    @property
    def archive_name(self) -> str:
        return self.ref.replace("/", "_").replace(":", "_")

    def write(self) -> Path:
        """A docker-archive directory (manifest.json, config, hard-linked layers), tarred on import."""
        out = OUT / "archives" / self.archive_name
        diff_ids = [layer.diff_id for layer in self.layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"hack/images.py layer {layer.name}"} for layer in self.layers],
        }
        raw = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(raw).hexdigest() + ".json"
        build_id = digest(raw, *diff_ids)
        if (out / "build-id").exists() and (out / "build-id").read_text().strip() == build_id:
            return out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        names = []
        for layer, diff in zip(self.layers, diff_ids, strict=True):
            name = f"{diff.split(':', 1)[1]}/layer.tar"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(layer.path, out / name)
            names.append(name)
        (out / config_name).write_bytes(raw)
        (out / "manifest.json").write_text(
            json.dumps([{"Config": config_name, "RepoTags": [self.ref], "Layers": names}])
        )
        (out / "build-id").write_text(build_id)
        return out


def images(only: set[str] | None = None) -> list[Image]:
    """The images, built as needed (each layer cached by a hash of its inputs)."""
    want = only or {"pause", "examples", "runyard", "debian"}
    result: list[Image] = []
    if "pause" in want:
        result.append(Image("registry.k8s.io/pause:3.10", [pause_layer()], {"Entrypoint": ["/pause"], "User": "65535"}))
    if want & {"examples", "runyard", "debian"}:
        base = base_layer()
        env = [f"PATH={PATH_ENV}", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/home/runyard"]
        sdk_key = tree_digest([ROOT / "sdk"])
    if "debian" in want:
        result.append(Image("localhost/runyard/debian:dev", [base], {"Env": env[:1], "Cmd": ["bash"]}))
    if "examples" in want:
        reqs = HERE / "examples-requirements.txt"
        deps = pip_layer("examples-deps", digest(reqs.read_bytes()), ["-r", str(reqs)])
        extra_reqs = HERE / "examples-extra-requirements.txt"
        extra = pip_layer(
            "examples-extra",
            digest(extra_reqs.read_bytes()),
            ["--no-deps", "--no-build-isolation", "-r", str(extra_reqs)],
        )
        app = pip_layer(
            "examples-app",
            digest(sdk_key, tree_digest([ROOT / "examples"])),
            ["--no-deps", str(ROOT / "sdk")],
        )
        examples = copy_layer(
            "examples-files", tree_digest([ROOT / "examples"]), {f"{WORKSPACE}/examples": ROOT / "examples"}
        )
        result.append(
            Image(
                "localhost/runyard/examples:dev",
                [base, deps, extra, app, examples],
                {"Env": env, "WorkingDir": f"/{WORKSPACE}", "User": f"{UID}:{UID}", "Cmd": ["python"]},
            )
        )
    if "runyard" in want:
        pyproject = (ROOT / "operator" / "pyproject.toml").read_bytes() + (ROOT / "sdk" / "pyproject.toml").read_bytes()
        deps = pip_layer("runyard-deps", digest(pyproject), _operator_requirements())
        app = pip_layer(
            "runyard-app",
            digest(sdk_key, tree_digest([ROOT / "operator"])),
            ["--no-deps", str(ROOT / "sdk"), str(ROOT / "operator")],
        )
        result.append(
            Image(
                "localhost/runyard/runyard:dev",
                [base, deps, app],
                {
                    "Env": env,
                    "WorkingDir": "/",
                    "User": "65532:65532",
                    "Entrypoint": ["runyard-operator", "run"],
                    "ExposedPorts": {"8080/tcp": {}},
                },
            )
        )
    return result


def _operator_requirements() -> list[str]:
    """The operator's and SDK's runtime dependencies, pinned to the dev venv's versions (pip's cache has them)."""
    import tomllib

    wanted: list[str] = []
    for project in (ROOT / "sdk" / "pyproject.toml", ROOT / "operator" / "pyproject.toml"):
        meta = tomllib.loads(project.read_text())["project"]
        # The image runs the operator, the artifact sidecar and the GPU agent (the `agent` extra).
        deps = [*meta["dependencies"], *meta.get("optional-dependencies", {}).get("agent", [])]
        wanted += [d for d in deps if not d.startswith("runyard")]
    names = [_req_name(d) for d in wanted]
    frozen = subprocess.run([str(PIP), "freeze"], capture_output=True, text=True, check=True).stdout.splitlines()
    pins = {line.split("==")[0].lower().replace("_", "-"): line for line in frozen if "==" in line}
    return [pins.get(n.lower().replace("_", "-"), d) for n, d in zip(names, wanted, strict=True)]


def _req_name(req: str) -> str:
    for sep in "<>=!~[; ":
        req = req.split(sep, 1)[0]
    return req


# --- import ------------------------------------------------------------------------------------------


def build(only: set[str] | None = None) -> list[Path]:
    t0 = time.monotonic()
    dirs = [image.write() for image in images(only)]
    log(f"{len(dirs)} images ready in {time.monotonic() - t0:.0f}s under {OUT / 'archives'}")
    return dirs


def built_archives() -> list[Path]:
    """Archives already built (for the node to import at start), without building anything."""
    return sorted(p.parent for p in (OUT / "archives").glob("*/build-id")) if (OUT / "archives").exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "list"])
    parser.add_argument("--only", action="append", choices=["pause", "examples", "runyard", "debian"])
    args = parser.parse_args()
    if args.command == "build":
        for directory in build(set(args.only) if args.only else None):
            print(directory)
    else:
        for directory in built_archives():
            print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
