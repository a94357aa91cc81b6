"""ocrfleet's container images, built on this machine without a container registry.

Each image is built from its own Dockerfile (``operator/``, ``api-image/``, ``worker-image/``)
by podman. The Dockerfiles default to the public ``python:3.11-slim-bookworm`` (what a platform
team's CI builds on); here no registry answers, so the build passes two arguments instead:

- ``BASE``: a base image bootstrapped from Debian's own packages by mmdebstrap (Debian's
  Python 3.11 and its venv module), imported into podman once per package list;
- ``WHEELS``: a wheelhouse (``pip download`` of the core and every image's extra, once per
  requirement set), mounted read-only into the build and installed with ``--no-index``, so a
  rebuild never downloads torch again.

A build is skipped when its *input hash* is already tagged. The hash covers the base image,
the Dockerfile, every file its ``COPY`` lines bring in (git's view of the tree: tracked and
untracked, not ignored), the build arguments and the wheelhouse's contents; an unchanged tree
never rebuilds. Each image is tagged twice: ``localhost/ocrfleet/NAME:HASH`` (what was built from
what) and the name the chart and the CRDs default to (``ghcr.io/ocrfleet/NAME:VERSION``), so a
node that has the image loaded runs a default install without pulling.

    python -m e2e.images build [NAME ...]   # build what changed (all three by default)
    python -m e2e.images list               # name, tags, size, input hash
    python -m e2e.images archive NAME       # a docker-archive for a node's containerd

Beside ocrfleet's own three, the images of a pool's managed stores (Redis, PostgreSQL,
SeaweedFS) are bootstrapped from Debian's packages (and the ``weed`` binary built from its Go
module by ``e2e/tools/build.sh``) and tagged with the public names the CRD defaults to, so a
default pool runs on the real node without a registry. Their commands are the operator's
(:mod:`ocrfleet_operator.stores`), which the public images run unchanged.

podman runs with ``e2e/tools/containers.conf`` (``CONTAINERS_CONF``): runc, cgroupfs, no
ulimit changes (see that file).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("OCRFLEET_CACHE", Path.home() / ".cache" / "ocrfleet"))
CONTAINERS_CONF = ROOT / "e2e" / "tools" / "containers.conf"
RECIPE = 1  # bump when the build arguments or the way images are tagged change

#: The base: Debian's Python and what our programs need of the system (libpython for Triton's stub).
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libpython3.11", "ca-certificates")
#: Installed beside the extras, without dependencies: the wheel that carries the OCR weights.
WEIGHTS = ROOT / "worker-image" / "weights.txt"
BUILD_REQUIREMENTS = ("setuptools>=77", "wheel")


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str

    @property
    def public_tag(self) -> str:
        return f"ghcr.io/ocrfleet/{self.name}:{project_version()}"

    def local_tag(self, digest: str) -> str:
        return f"localhost/ocrfleet/{self.name}:{digest[:16]}"


IMAGES = {
    "operator": Image("operator", "operator/Dockerfile"),
    "api": Image("api", "api-image/Dockerfile"),
    "worker": Image("worker", "worker-image/Dockerfile"),
}


@dataclass(frozen=True)
class StoreImage:
    """A managed store's image: Debian packages (and files) under the public name the CRD defaults to."""

    name: str
    section: str
    """The OcrCluster spec section whose ``managed.image`` default names it."""
    packages: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    """mmdebstrap hook options, in order."""
    changes: tuple[str, ...] = ()
    """``podman import --change`` instructions."""

    @property
    def public_tag(self) -> str:
        return crd_default_image(self.section)

    def local_tag(self, digest: str) -> str:
        return f"localhost/ocrfleet/store-{self.name}:{digest[:16]}"


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STORE_IMAGES = {
    "redis": StoreImage("redis", "redis", packages=("redis-server",), changes=("USER 999", "CMD [\"redis-server\"]")),
    # the postgres user gets the public image's uid (999): initdb wants its uid in /etc/passwd
    "postgres": StoreImage(
        "postgres", "database", packages=("postgresql-15",),
        hooks=('--essential-hook=mkdir -p "$1/etc/postgresql-common" && '
               'echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.conf"',
               '--customize-hook=chroot "$1" sh -c "usermod -u 999 postgres && groupmod -g 999 postgres && '
               'chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql"'),
        changes=(f"ENV PATH=/usr/lib/postgresql/15/bin:{_PATH}", "USER 999", "CMD [\"postgres\"]")),
    "seaweedfs": StoreImage("seaweedfs", "storage", hooks=("--customize-hook=copy-in {bin}/weed /usr/bin",),
                            changes=("CMD [\"weed\"]",)),
}


def crd_default_image(section: str) -> str:
    """The image an OcrCluster's ``spec.<section>.managed`` defaults to (the CRD is the truth)."""
    import yaml

    crd = yaml.safe_load((ROOT / "crds" / "ocrfleet.io_ocrclusters.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"][section]["properties"]["managed"]["properties"]["image"]["default"]


class ImageBuildError(RuntimeError):
    """A step of an image build failed; the message carries the tool's own output."""


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None
           ) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    proc = subprocess.run(["podman", *args], env=env, text=True, timeout=timeout,
                          capture_output=capture)
    if check and proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise ImageBuildError(f"podman {' '.join(args[:3])} failed ({proc.returncode}):\n{out[-4000:]}")
    return proc


def image_id(tag: str) -> str | None:
    proc = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


@contextlib.contextmanager
def heartbeat(what: str, log, build_log: Path | None = None, every_s: float = 30.0):
    """Say every ``every_s`` that ``what`` is still going (elapsed time, the build log's last
    line), so that a first build is not minutes of silence; stops with the block."""
    done, t0 = threading.Event(), time.monotonic()

    def beat() -> None:
        while not done.wait(every_s):
            lines = build_log.read_text(errors="replace").splitlines() if build_log and build_log.exists() else []
            last = f"; {lines[-1].strip()[:100]}" if lines else ""
            log(f"  ... still {what}: {time.monotonic() - t0:.0f} s{last}")

    thread = threading.Thread(target=beat, daemon=True, name="build-heartbeat")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# -- the base ----------------------------------------------------------------------------------


def base_tag() -> str:
    key = hashlib.sha256(f"{BASE_SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
    return f"localhost/ocrfleet/base:{BASE_SUITE}-{key}"


def ensure_base(log=print) -> str:
    """The Debian base image (mmdebstrap minbase + Python), bootstrapped once per package list."""
    tag = base_tag()
    if image_id(tag):
        return tag
    t0 = time.monotonic()
    tarball = CACHE / "images" / f"{tag.rsplit(':', 1)[1]}.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    log(f"bootstrapping the base image {tag} from Debian ...")
    with heartbeat("bootstrapping the base image", log):
        proc = subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                               BASE_SUITE, str(tarball)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    podman("import", str(tarball), tag)
    tarball.unlink()
    log(f"base {tag}: bootstrapped from Debian in {time.monotonic() - t0:.0f} s")
    return tag


# -- the wheelhouse ----------------------------------------------------------------------------


def requirements() -> list[str]:
    """The core's dependencies and every image extra (what the three Dockerfiles install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["operator"], *extras["api"], *extras["worker"]]


def ensure_wheelhouse(base: str, log=print) -> Path:
    """Binary wheels for every image, downloaded once per requirement set and base.

    pip runs inside the base image, so that environment markers are judged by the Python the
    images run (Debian's 3.11.2 needs wheels a newer 3.11 does not, e.g. async-timeout).
    """
    wanted = [*requirements(), *BUILD_REQUIREMENTS]
    weights = [line for line in WEIGHTS.read_text().splitlines() if line and not line.startswith("#")]
    key = hashlib.sha256("\n".join([base, *wanted, *weights]).encode()).hexdigest()[:16]
    house = CACHE / "wheels" / key
    if (house / ".complete").exists():
        return house
    t0 = time.monotonic()
    house.mkdir(parents=True, exist_ok=True)
    quoted = " ".join(shlex.quote(r) for r in wanted)
    script = ("python3 -m venv /tmp/pip && /tmp/pip/bin/pip download --quiet --disable-pip-version-check "
              f"--only-binary=:all: --dest /wheels {quoted} && /tmp/pip/bin/pip download --quiet "
              f"--disable-pip-version-check --no-deps --dest /wheels {' '.join(map(shlex.quote, weights))}")
    trust = []  # the CA bundle this machine's pip trusts (a TLS-inspecting proxy's, here), if any
    cert = os.environ.get("PIP_CERT") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True).stdout.strip()
    if cert and Path(cert).is_file():
        trust = ["--volume", f"{cert}:/etc/ssl/host-ca.pem:ro", "--env", "PIP_CERT=/etc/ssl/host-ca.pem"]
    log(f"downloading the images' wheels into {house} ...")
    with heartbeat("downloading wheels", log):
        podman("run", "--rm", "--network", "host", "--volume", f"{house}:/wheels", *trust, base, "sh", "-c", script)
    (house / ".complete").write_text("\n".join(wanted))
    log(f"wheelhouse {house}: {len(list(house.glob('*.whl')))} wheels in {time.monotonic() - t0:.0f} s")
    return house


# -- input hashes ------------------------------------------------------------------------------

_COPY = re.compile(r"^\s*COPY\s+(?!--from)(.+)$", re.MULTILINE)


def copied_paths(dockerfile: Path) -> list[str]:
    """The sources of a Dockerfile's ``COPY`` lines (relative to the build context)."""
    sources: list[str] = []
    for line in _COPY.findall(dockerfile.read_text().replace("\\\n", " ")):
        words = [w for w in line.split() if not w.startswith("--")]
        sources += words[:-1]
    return sources


def context_files(paths: list[str]) -> list[str]:
    """git's view of the files under ``paths``: tracked and untracked, never ignored."""
    proc = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *paths],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted({f for f in proc.stdout.split("\0") if f and (ROOT / f).is_file()})


def input_hash(image: Image, base: str, wheels: Path) -> str:
    digest = hashlib.sha256(f"recipe {RECIPE}\nbase {image_id(base)}\n".encode())
    dockerfile = ROOT / image.dockerfile
    digest.update(dockerfile.read_bytes())
    for name in context_files(copied_paths(dockerfile)):
        digest.update(f"\0{name}\0".encode())
        digest.update((ROOT / name).read_bytes())
    digest.update("\0".join(sorted(p.name for p in wheels.glob("*.whl"))).encode())
    return digest.hexdigest()


# -- builds ------------------------------------------------------------------------------------


@dataclass
class Built:
    image: Image | StoreImage
    tag: str
    digest: str
    seconds: float
    rebuilt: bool

    def size_bytes(self) -> int:
        return int(podman("image", "inspect", "--format", "{{.Size}}", self.tag).stdout.strip())


def build(image: Image, *, base: str, wheels: Path, log=print) -> Built:
    t0 = time.monotonic()
    digest = input_hash(image, base, wheels)
    tag = image.local_tag(digest)
    if image_id(tag):
        podman("tag", tag, image.public_tag)  # the public name may point at another build
        return Built(image, tag, digest, time.monotonic() - t0, rebuilt=False)
    log(f"building {image.name} ({tag}) ...")
    build_log = CACHE / "images" / f"{image.name}.build.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    with open(build_log, "w") as out, heartbeat(f"building {image.name}", log, build_log):
        proc = subprocess.run(
            ["podman", "build", "--network", "host", "--file", image.dockerfile, "--tag", tag,
             "--build-arg", f"BASE={base}", "--build-arg", "WHEELS=/wheels",
             "--volume", f"{wheels}:/wheels:ro", "--layers", "."],
            cwd=ROOT, env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            stdout=out, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"building {image.name} failed; last lines of {build_log}:\n"
                              + "\n".join(build_log.read_text(errors="replace").splitlines()[-40:]))
    podman("tag", tag, image.public_tag)
    _forget_older_builds(image, tag)
    seconds = time.monotonic() - t0
    log(f"built {image.name} in {seconds:.0f} s")
    return Built(image, tag, digest, seconds, rebuilt=True)


def _forget_older_builds(image: Image, keep: str) -> None:
    """Untag earlier builds of ``image``; their layers stay, as podman's build cache."""
    repository = keep.rsplit(":", 1)[0]
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}")
    for old in (t for t in listed.stdout.split() if t.startswith(f"{repository}:") and t != keep):
        podman("untag", old, old, check=False)


def build_store(image: StoreImage, log=print) -> Built:
    """Bootstrap a store's image from Debian (once per package list, hooks and binaries)."""
    from e2e.cluster import build_tools

    t0 = time.monotonic()
    bin_dir = build_tools()
    hooks = [h.format(bin=bin_dir) for h in image.hooks]
    digest = hashlib.sha256(f"recipe {RECIPE}\n{BASE_SUITE}\n{image.packages}\n{hooks}\n{image.changes}".encode())
    for hook in image.hooks:  # the files copied in
        if "{bin}/" in hook:
            digest.update((bin_dir / hook.split("{bin}/", 1)[1].split()[0]).read_bytes())
    digest = digest.hexdigest()
    tag = image.local_tag(digest)
    rebuilt = not image_id(tag)
    if rebuilt:
        log(f"bootstrapping {image.name} ({tag}) from Debian ...")
        tarball = CACHE / "images" / f"store-{image.name}-{digest[:16]}.tar"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        include = [f"--include={','.join(image.packages)}"] if image.packages else []
        with heartbeat(f"bootstrapping {image.name}", log):
            proc = subprocess.run(["mmdebstrap", "--variant=minbase", *include, *hooks, BASE_SUITE, str(tarball)],
                                  capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"mmdebstrap ({image.name}) failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        changes = [arg for change in image.changes for arg in ("--change", change)]
        podman("import", *changes, str(tarball), tag)
        tarball.unlink()
        _forget_older_builds(image, tag)
        log(f"built {image.name} in {time.monotonic() - t0:.0f} s")
    podman("tag", tag, image.public_tag)
    return Built(image, tag, digest, time.monotonic() - t0, rebuilt=rebuilt)


def build_all(names: list[str] | None = None, log=print) -> dict[str, Built]:
    """Build (or find) each named image (default: all); one base and one wheelhouse for ocrfleet's."""
    names = names or [*IMAGES, *STORE_IMAGES]
    built: dict[str, Built] = {}
    if any(n in IMAGES for n in names):
        base = ensure_base(log)
        wheels = ensure_wheelhouse(base, log)
        built |= {n: build(IMAGES[n], base=base, wheels=wheels, log=log) for n in names if n in IMAGES}
    built |= {n: build_store(STORE_IMAGES[n], log=log) for n in names if n in STORE_IMAGES}
    return built


def archive(name: str, built: Built | None = None) -> Path:
    """A docker-archive of an image (both tags), cached by its input hash, for ``ctr images import``."""
    built = built or build_all([name])[name]
    path = CACHE / "images" / f"{name}-{built.digest[:16]}.tar"
    if not path.exists():
        for old in path.parent.glob(f"{name}-*.tar"):
            old.unlink()
        tmp = path.with_suffix(".tmp")
        podman("save", "--format", "docker-archive", "--output", str(tmp), "-m", built.tag, built.image.public_tag)
        tmp.rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "list", "archive"])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"of {', '.join([*IMAGES, *STORE_IMAGES])} (default: all)")
    parser.add_argument("--json", type=Path, help="also write what was built (times, sizes) here")
    args = parser.parse_args(argv)
    known = [*IMAGES, *STORE_IMAGES]
    unknown = set(args.names) - set(known)
    if unknown:
        parser.error(f"no image named {', '.join(sorted(unknown))}; the images are {', '.join(known)}")
    if args.command == "archive":
        for name in args.names or known:
            print(archive(name))
        return 0
    t0 = time.monotonic()
    built = build_all(args.names or None, log=lambda m: print(m, file=sys.stderr))
    rows = {name: {"tag": b.tag, "public": b.image.public_tag, "rebuilt": b.rebuilt,
                   "seconds": round(b.seconds, 1), "size_mb": round(b.size_bytes() / 1e6)}
            for name, b in built.items()}
    for name, row in rows.items():
        state = f"built in {row['seconds']} s" if row["rebuilt"] else "unchanged"
        print(f"{name:9} {row['public']:34} {row['tag']:44} {row['size_mb']:>6} MB  {state}")
    print(f"images ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
