"""Where a job's documents come from, read by the worker that processes them.

An OcrJob names its documents; the operator only turns those names into queue entries
(references, never bytes). A worker then lists (volume and S3 sources) and fetches each
document itself, under its pool's rules (:class:`SourceAccess`):

``https://host/path``  (or ``http://``)
    fetched only when the URL starts with one of the pool's allowed prefixes; every redirect
    is followed by hand and must stay on the list; the body is capped while it streams.
``volume:<path>``
    a file under the pool's documents volume: a relative path, no ``..``, and its real path
    (symlinks resolved) must stay below the mount.
``s3://bucket/key``
    an object in the pool's object store.

A missing or refused document is a :class:`~ocrfleet.errors.PermanentError` (retrying will
not help); an unreachable server, a 5xx or 429 is a :class:`~ocrfleet.errors.TemporaryError`
and the worker tries again.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlparse

import httpx

from ocrfleet.errors import DocumentTooLarge, InvalidDocument, SourceNotFound, SourceRefused, TemporaryError

MAX_REDIRECTS = 5
MAX_LISTED = 100_000
"""Most documents one volume or S3 source may list (a job is a batch, not a bucket dump)."""


@dataclass(frozen=True)
class SourceAccess:
    """What a worker may read, and how much: the pool's rules for job sources."""

    max_bytes: int
    url_allowlist: tuple[str, ...] = ()
    """URL prefixes documents may be fetched from (``https://docs.example.com/inbox/``); empty: none."""
    volume_root: Path | None = None
    """Where the pool's documents volume is mounted; None: no volume sources."""
    objects: object | None = None
    """The pool's object store (an :class:`ocrfleet.blobs.S3BlobStore`); None: no S3 sources."""
    timeout_s: float = 60.0


# -- naming ------------------------------------------------------------------------------------


def volume_ref(path: str) -> str:
    return f"volume:{path}"


def s3_ref(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


MAX_FILENAME = 255


def clean_filename(raw: str | None) -> str | None:
    """The name a document is kept under: the last path component of what the client sent
    (``C:\\scans\\..\\a.pdf`` or ``../../a.pdf`` keep ``a.pdf``), without control or
    bidirectional-override characters, at most 255 characters; None when nothing is left."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))
    name = name.strip()
    if set(name) <= {"."}:  # "", "." and ".." name no file
        return None
    return name[:MAX_FILENAME]


def filename_of(ref: str) -> str:
    return clean_filename(unquote(PurePosixPath(urlparse(ref).path if "://" in ref else ref.partition(":")[2]).name)) \
        or ""


# -- fetching ----------------------------------------------------------------------------------


def fetch(ref: str, access: SourceAccess) -> bytes:
    """The bytes of one document source, under the pool's rules."""
    if ref.startswith(("https://", "http://")):
        return _fetch_url(ref, access)
    if ref.startswith("volume:"):
        return _read_capped(confined(access, ref.removeprefix("volume:")), access.max_bytes, ref)
    if ref.startswith("s3://"):
        bucket, key = _bucket_key(ref)
        return _objects(access).read_object(bucket, key, max_bytes=access.max_bytes)
    raise SourceRefused(f"unsupported document source {ref!r}: use https://, volume:<path> or s3://bucket/key")


def allowed(url: str, allowlist) -> bool:
    """Whether ``url`` may be fetched: an http(s) URL without credentials under an allowed prefix.

    "Under" is structural, not a string prefix: scheme, host and port equal the prefix's
    exactly (``http://10.0.0.5:2808/`` does not allow port 28081, ``docs.example.com`` not
    ``docs.example.com.evil.net``), and the prefix's path segments begin the URL's path
    (``/inbox/`` does not allow ``/inbox-private/``). The URL is normalized first (dot segments
    removed, so ``/docs/../x`` cannot pass as ``/docs/``), and dot segments or backslashes that
    only appear once decoded (``%2e%2e``, which servers decode) are refused.
    """
    try:
        parsed = httpx.URL(url)
    except Exception:
        return False
    decoded = unquote(parsed.path)
    escapes = "\\" in decoded or any(seg in (".", "..") for seg in decoded.split("/"))
    if parsed.scheme not in ("http", "https") or parsed.userinfo or escapes:
        return False
    return any(_under(parsed, prefix) for prefix in allowlist)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _under(url: httpx.URL, prefix: str) -> bool:
    try:
        base = httpx.URL(prefix)
    except Exception:
        return False
    if (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme]) != (
            base.scheme, base.host, base.port or _DEFAULT_PORTS.get(base.scheme)):
        return False
    want = [s for s in base.raw_path.split(b"?")[0].split(b"/") if s]
    have = [s for s in url.raw_path.split(b"?")[0].split(b"/") if s]
    return have[:len(want)] == want


def _fetch_url(url: str, access: SourceAccess) -> bytes:
    with httpx.Client(timeout=access.timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed(url, access.url_allowlist):  # the first URL and every redirect
                raise SourceRefused(f"{url} is not under the pool's allowed URL prefixes "
                                    f"({', '.join(access.url_allowlist) or 'none are allowed'})")
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    _check_status(response, url)
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > access.max_bytes:
                        raise DocumentTooLarge(f"{url} is {declared:,} bytes, over the {access.max_bytes:,}-byte limit")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > access.max_bytes:
                            raise DocumentTooLarge(f"{url} is over the {access.max_bytes:,}-byte limit")
                    return bytes(body)
            except httpx.TransportError as exc:
                raise TemporaryError(f"cannot fetch {url}: {exc}") from exc
        raise SourceRefused(f"{url}: more than {MAX_REDIRECTS} redirects")


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status in (404, 410):
        raise SourceNotFound(f"{url} answered {status}: no such document")
    if status in (401, 403):
        raise SourceRefused(f"{url} answered {status}: the pool may not read it")
    if status == 429 or status >= 500:
        raise TemporaryError(f"{url} answered {status}; trying again later")
    if status != 200:
        raise SourceRefused(f"{url} answered {status}, not 200")


def confined(access: SourceAccess, path: str) -> Path:
    """``path`` below the volume root, refusing absolute paths, ``..`` and symlinks that leave it."""
    if access.volume_root is None:
        raise SourceRefused("this pool has no documents volume (spec.storage.pvc); volume sources are not readable")
    if not path or path.startswith("/") or "\\" in path or ".." in PurePosixPath(path).parts:
        raise SourceRefused(f"volume path {path!r} must be relative to the volume, without '..'")
    root = access.volume_root.resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise SourceRefused(f"volume path {path!r} leads outside the volume (a symlink?)")
    return target


def _read_capped(path: Path, max_bytes: int, ref: str) -> bytes:
    """A regular file's bytes, at most ``max_bytes``; a device, FIFO or socket is refused
    (opened without blocking, so a FIFO cannot hang the reader; ``/dev/zero`` never streams)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise SourceNotFound(f"{ref}: no such file on the volume") from None
    with open(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SourceRefused(f"{ref} is not a regular file (a device, FIFO or socket); it is not read")
        if info.st_size > max_bytes:
            raise DocumentTooLarge(f"{ref} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise DocumentTooLarge(f"{ref} is over the {max_bytes:,}-byte limit")
    return data


# -- listing -----------------------------------------------------------------------------------


def list_volume(access: SourceAccess, path: str, glob: str = "*") -> list[str]:
    """Every file below ``path`` on the volume whose name matches ``glob``, sorted, as refs."""
    root = confined(access, path)
    if not root.is_dir():
        raise SourceNotFound(f"source.volume.path {path!r} is not a directory on the pool's volume")
    volume = access.volume_root.resolve()
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and fnmatch.fnmatch(p.name, glob) and volume in p.resolve().parents:
            found.append(volume_ref(str(p.relative_to(volume))))
            if len(found) > MAX_LISTED:
                raise InvalidDocument(f"source.volume.path {path!r} holds over {MAX_LISTED:,} documents; split the job")
    return found


def list_s3(access: SourceAccess, bucket: str, prefix: str) -> list[str]:
    keys = _objects(access).list_objects(bucket, prefix, limit=MAX_LISTED + 1)
    if len(keys) > MAX_LISTED:
        raise InvalidDocument(f"s3://{bucket}/{prefix} holds over {MAX_LISTED:,} documents; split the job")
    return [s3_ref(bucket, k) for k in keys]


def list_source(source: dict, access: SourceAccess) -> list[str]:
    """The document refs of an OcrJob's ``spec.source.volume`` or ``spec.source.s3``."""
    if "volume" in source:
        return list_volume(access, source["volume"]["path"], source["volume"].get("glob", "*"))
    if "s3" in source:
        s3 = source["s3"]
        return list_s3(access, s3.get("bucket") or _objects(access).bucket, s3.get("prefix", ""))
    raise SourceRefused(f"a listing needs source.volume or source.s3, not {sorted(source)}")


def _objects(access: SourceAccess):
    if access.objects is None:
        raise SourceRefused("this pool has no object store; s3:// sources are not readable")
    return access.objects


def _bucket_key(ref: str) -> tuple[str, str]:
    parsed = urlparse(ref)
    key = parsed.path.lstrip("/")
    if not parsed.netloc or not key:
        raise SourceRefused(f"{ref!r} is not s3://bucket/key")
    return parsed.netloc, key
