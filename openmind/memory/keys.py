"""This machine's signing key and the keys it trusts: what makes a restore safe.

Every entry muscle memory keeps is signed with this machine's Ed25519 key (`cryptography`), and
the signature covers the whole entry (kind, name, key, blob hash, size, metadata, time), so a
payload cannot be changed, swapped for another blob or moved to another entry. The key pair lives
in OPENMIND_KEY_DIR (default ~/.config/openmind), outside OPENMIND_HOME: whoever can write the
store cannot sign for it. It is made owner-only on first use, refused with the fix when its mode
or owner is wrong, and read once per process. A restore accepts the signatures of this machine's
own key and of the keys listed in OPENMIND_TRUST (a file, one key a line, as `openmind key`
prints them).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
import stat
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openmind.config import key_dir, private_dir, trust_file
from openmind.errors import BadInput

KEY_FILE = "openmind-ed25519.key"
SCHEME = "ed25519"
_DOMAIN = "openmind-entry-v1"  # what a signature is over: never valid for another purpose


class KeyProblem(BadInput):
    """The signing key cannot be used as it is (its mode or owner is wrong, or it is damaged)."""


class Refused(Exception):
    """A signed entry that must not be restored: tampered, moved, unsigned or signed by a key
    this machine does not trust. The message says which, and what to do."""


@dataclass(frozen=True)
class Signer:
    """This machine's key: the private key object and its public key's raw bytes."""

    private: Any
    public: bytes

    @property
    def id(self) -> str:
        return key_id(self.public)


def key_id(public: bytes) -> str:
    """A short, stable name for a public key (16 hex digits of its SHA-256)."""
    return hashlib.sha256(public).hexdigest()[:16]


def _check_owner_only(path: Path, what: str, mode: int) -> None:
    st = path.stat()
    fix = f"chmod {mode:o} {path}"
    if st.st_uid != os.geteuid():
        raise KeyProblem(f"the {what} {path} belongs to user id {st.st_uid}, not to you "
                         f"({os.geteuid()}): someone else could sign as this machine. Point "
                         f"OPENMIND_KEY_DIR at a directory of your own (a new key is made there)")
    if st.st_mode & 0o077:
        raise KeyProblem(f"the {what} {path} is open to other users (mode "
                         f"{stat.S_IMODE(st.st_mode):o}); run `{fix}` (or `openmind key` after it)")


_memo: dict[tuple[str | None, str | None], Signer] = {}
_lock = threading.Lock()


def own() -> Signer:
    """This machine's signing key: made on first use (owner-only), checked, read once per process
    (per key directory). Raises KeyProblem, saying how to fix it, when it cannot be used."""
    stamp = (os.environ.get("OPENMIND_KEY_DIR"), os.environ.get("HOME"))
    cached = _memo.get(stamp)  # every restore asks: no path work on a hit
    if cached is not None:
        return cached
    with _lock:
        cached = _memo.get(stamp)
        if cached is None:
            folder = key_dir()
            try:
                cached = _memo[stamp] = _load_or_make(folder)
            except OSError as exc:
                raise KeyProblem(f"the key directory {folder} cannot be used ({exc.strerror}); "
                                 f"point OPENMIND_KEY_DIR at a directory you can write") from None
    return cached


def _load_or_make(folder: Path) -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    store = Path(os.environ.get("OPENMIND_HOME") or Path.home() / ".openmind").expanduser()
    if folder.resolve().is_relative_to(store.resolve()):
        raise KeyProblem(f"the key directory {folder} is inside OPENMIND_HOME ({store}): whoever "
                         f"can write the store could replace the key. Point OPENMIND_KEY_DIR "
                         f"elsewhere (default ~/.config/openmind)")
    if not folder.exists():
        private_dir(folder)
    _check_owner_only(folder, "key directory", 0o700)
    path = folder / KEY_FILE
    if not path.exists():
        _make(path)
    _check_owner_only(path, "signing key", 0o600)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(f"the signing key {path} is unreadable ({exc}); move it away and run "
                         f"again to make a new one (entries it signed become misses here, and "
                         f"teammates must trust the new key)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"the signing key {path} is not an Ed25519 key; move it away and run again")
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return Signer(key, public)


def _make(path: Path) -> None:
    """Write a new key owner-only; two processes making one at once agree on the first (a hard
    link is atomic and fails when the name exists, so nobody reads a half-written key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won: use its key
    finally:
        os.unlink(tmp)


def public_line(signer: Signer | None = None) -> str:
    """This machine's public key as one line of a trust file: `ed25519 <base64> <id> <user@host>`."""
    signer = signer or own()
    try:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # noqa: BLE001 - no user name in a container: the comment is optional
        who = socket.gethostname()
    return f"{SCHEME} {base64.b64encode(signer.public).decode()} {signer.id} {who}"


def parse_trust(text: str, source: str = "the trust file") -> tuple[set[bytes], list[str]]:
    """(public keys, problems) from a trust file's text: one key a line (`ed25519 <base64> ...`
    or the bare base64), blank lines and `#` comments skipped; a bad line is named, not fatal."""
    keys: set[bytes] = set()
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        token = words[1] if words[0] == SCHEME and len(words) > 1 else words[0]
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            problems.append(f"{source} line {number} is not an Ed25519 public key "
                            f"(expected `{SCHEME} <base64 of 32 bytes>`, as `openmind key` prints)")
            continue
        keys.add(raw)
    return keys, problems


_trust_memo: tuple[tuple[Any, ...], frozenset[bytes]] | None = None


def trusted() -> frozenset[bytes]:
    """The public keys whose signatures this machine accepts: its own and OPENMIND_TRUST's. A
    trust file others may write is ignored with a warning (adding a key grants code execution).
    The file is read again when it changes (one stat a call)."""
    global _trust_memo
    mine = own().public
    path = trust_file()
    if path is None:
        return frozenset({mine})
    try:
        st = os.stat(path)
    except OSError as exc:
        warnings.warn(f"openmind: the trust file {path} cannot be read ({exc.strerror}); only this "
                      f"machine's own key is trusted", UserWarning, stacklevel=3)
        return frozenset({mine})
    stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid, mine)
    if _trust_memo is not None and _trust_memo[0] == stamp:
        return _trust_memo[1]
    if st.st_mode & 0o022 or st.st_uid not in (os.geteuid(), 0):
        warnings.warn(f"openmind: the trust file {path} can be changed by other users (mode "
                      f"{stat.S_IMODE(st.st_mode):o}); it is ignored until you run `chmod 644 "
                      f"{path}`", UserWarning, stacklevel=3)
        return frozenset({mine})
    keys, problems = parse_trust(Path(path).read_text(errors="replace"), path)
    for problem in problems:
        warnings.warn(f"openmind: {problem}; that line is ignored", UserWarning, stacklevel=3)
    _trust_memo = (stamp, frozenset(keys) | {mine})
    return _trust_memo[1]


def canonical_meta(meta: dict[str, Any]) -> str:
    """The one text of a metadata dict that signatures cover (sorted keys, no spaces)."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str)


def message(kind: str, name: str, key: str, blob: str | None, size: int,
            meta: dict[str, Any], at: float) -> bytes:
    """What an entry's signature is over: everything that says what the payload is and where it
    belongs, so neither the payload nor the signature can be moved to another entry."""
    return json.dumps([_DOMAIN, kind, name, key, blob, int(size), canonical_meta(meta), at],
                      separators=(",", ":")).encode()


def sign(kind: str, name: str, key: str, blob: str | None, size: int,
         meta: dict[str, Any]) -> dict[str, Any]:
    """The signature record of an entry, made with this machine's key: {by, at, sig}."""
    signer = own()
    at = round(time.time(), 3)
    sig = signer.private.sign(message(kind, name, key, blob, size, meta, at))
    return {"by": base64.b64encode(signer.public).decode(), "at": at,
            "sig": base64.b64encode(sig).decode()}


def verify(record: Any, kind: str, name: str, key: str, blob: str | None, size: int,
           meta: dict[str, Any]) -> str:
    """The signer's key id when `record` is a valid signature of this entry by a trusted key;
    else Refused saying why (unsigned, untrusted signer, or not this entry's signature)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(record, dict) or not {"by", "at", "sig"} <= set(record):
        raise Refused("it is not signed (kept before entries were signed, or its signature was "
                      "removed); run the cell again to keep a signed entry")
    try:
        public = base64.b64decode(str(record["by"]), validate=True)
        sig = base64.b64decode(str(record["sig"]), validate=True)
        at = float(record["at"])
    except (ValueError, TypeError):
        raise Refused("its signature record is malformed") from None
    if public not in trusted():
        raise Refused(f"it is signed by key {key_id(public)}, which this machine does not trust "
                      f"(add that machine's `openmind key` line to OPENMIND_TRUST to accept it)")
    signed = message(kind, name, key, blob, size, meta, at)
    seen = (public, sig, hashlib.sha256(signed).digest())
    if seen not in _verified:  # a check is pure: one per entry and process (hits stay fast)
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(sig, signed)
        except (InvalidSignature, ValueError):
            raise Refused(f"its signature does not verify: the payload, its metadata or its place "
                          f"(kind, name, key) changed after key {key_id(public)} signed it") from None
        if len(_verified) >= 4096:
            _verified.clear()
        _verified.add(seen)
    return key_id(public)


_verified: set[tuple[bytes, bytes, bytes]] = set()


def forget() -> None:
    """Drop the keys read in this process (tests switch key directories)."""
    global _trust_memo
    with _lock:
        _memo.clear()
    _trust_memo = None
