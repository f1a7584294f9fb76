"""The wire to a team's shared memory: a directory (`file:///shared/dir`, NFS-style) or an S3
bucket (`s3://bucket/prefix`, any S3-compatible service).

S3 goes through boto3: botocore is what defines the standard `AWS_*` variables, AWS_ENDPOINT_URL
and the credential chain, gives connect and read timeouts per call, and uploads big blobs in
parts (an upload killed halfway is never an object). A directory needs no library: a write goes
to a temporary name (host, pid and a random part, so two NFS writers never collide) and is
renamed into place, so a reader sees the whole object or none.

Both answer the same calls on paths relative to the store's root; a missing object is None,
any other failure raises (the team tier benches the remote on it). Each call is bounded by the
timeout: botocore's connect and read timeouts for S3; for a directory (a hung NFS mount blocks
in the kernel) the call runs in a daemon thread that is given up on.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from openmind.errors import BadInput

# Objects above this many bytes go up in parts of this size (boto3's managed transfer).
PART_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Listed:
    path: str  # relative to the store's root
    size: int
    mtime: float  # the store's own clock: the file's mtime, or S3's LastModified


def bounded(limit: float, fn: Any, *args: Any) -> Any:
    """fn(*args), or TimeoutError after `limit` seconds. A file system call cannot be cancelled
    (a hung NFS mount), so it runs in a daemon thread that is left to finish on its own."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="openmind-remote")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise TimeoutError(f"the shared directory gave no answer within {limit:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class DirRemote:
    """A shared directory. Every call is bounded by the timeout (blobs by BYTES_PER_S more)."""

    BYTES_PER_S = 8 * 2**20  # the slowest transfer rate a blob is given time for

    def __init__(self, root: Path, timeout: float = 5.0) -> None:
        self.root, self.timeout = root, timeout

    def _at(self, path: str) -> Path:
        return self.root / path

    def _limit(self, size: int = 0) -> float:
        return self.timeout + size / self.BYTES_PER_S

    def get(self, path: str) -> bytes | None:
        found = self.stat(path)
        if found is None:
            return None
        return bounded(self._limit(found.size), self._get, path)

    def _get(self, path: str) -> bytes | None:
        try:
            return self._at(path).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, path: str, data: bytes) -> None:
        bounded(self._limit(len(data)), self._put, path, data)

    def _put(self, path: str, data: bytes) -> None:
        target = self._at(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def touch(self, path: str) -> bool:
        """Refresh an object's time (so a team gc that began before sees it as new); False when absent."""
        return bool(bounded(self._limit(), self._touch, path))

    def _touch(self, path: str) -> bool:
        try:
            os.utime(self._at(path))
            return True
        except FileNotFoundError:
            return False

    def stat(self, path: str) -> Listed | None:
        return bounded(self._limit(), self._stat, path)

    def _stat(self, path: str) -> Listed | None:
        try:
            st = self._at(path).stat()
        except FileNotFoundError:
            return None
        return Listed(path, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> Iterator[Listed]:
        return iter(bounded(self._limit(), lambda: list(self._list(prefix))))

    def _list(self, prefix: str) -> Iterator[Listed]:
        base = self._at(prefix)
        if not base.is_dir():
            return
        for folder, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # a write in progress (or one that died): not an object
                full = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    st = full.stat()
                    yield Listed(full.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)

    def delete(self, path: str) -> None:
        bounded(self._limit(), self._delete, path)

    def _delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._at(path).unlink()


class S3Remote:
    """A bucket and a prefix on any S3-compatible service."""

    def __init__(self, bucket: str, prefix: str, timeout: float) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        config = Config(connect_timeout=timeout, read_timeout=timeout,
                        retries={"total_max_attempts": 1, "mode": "standard"})
        # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, ... are botocore's to read
        self.client = boto3.session.Session().client(
            "s3", config=config, region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        self.transfer = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _missing(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None)
        code = str(((response or {}).get("Error") or {}).get("Code", "")) if isinstance(
            response, dict) else ""
        return code in ("NoSuchKey", "404", "NotFound")

    def get(self, path: str) -> bytes | None:
        buf = io.BytesIO()
        try:
            self.client.download_fileobj(self.bucket, self._key(path), buf, Config=self.transfer)
        except Exception as exc:
            if self._missing(exc):
                return None
            raise
        return buf.getvalue()

    def put(self, path: str, data: bytes) -> None:
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(path),
                                   Config=self.transfer)

    def touch(self, path: str) -> bool:
        try:  # a copy onto itself, server-side: a new LastModified without moving the bytes
            self.client.copy_object(Bucket=self.bucket, Key=self._key(path),
                                    CopySource={"Bucket": self.bucket, "Key": self._key(path)},
                                    MetadataDirective="REPLACE", Metadata={"touched": "1"})
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def stat(self, path: str) -> Listed | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(path))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise
        return Listed(path, int(head["ContentLength"]), head["LastModified"].timestamp())

    def list(self, prefix: str) -> Iterator[Listed]:
        cut = len(self._key(""))
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix))
        for page in pages:
            for obj in page.get("Contents") or ():
                yield Listed(obj["Key"][cut:], int(obj["Size"]), obj["LastModified"].timestamp())

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(path))


Remote = DirRemote | S3Remote


def open_remote(url: str, timeout: float) -> Any:
    """The remote a URL names; BadInput for a scheme or form it cannot be."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadInput(f"OPENMIND_REMOTE {url!r}: a shared directory is file:///absolute/path "
                           f"(three slashes)")
        return DirRemote(Path(unquote(parts.path)), timeout)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise BadInput(f"OPENMIND_REMOTE {url!r}: an S3 store is s3://bucket/prefix")
        return S3Remote(parts.netloc, unquote(parts.path), timeout)
    raise BadInput(f"OPENMIND_REMOTE {url!r}: unknown scheme {parts.scheme!r}; use "
                   f"file:///shared/dir or s3://bucket/prefix")
