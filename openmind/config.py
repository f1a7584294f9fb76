"""Configuration from the environment, the ASSUME mask, and secret redaction.

Everything reads the environment at call time, so a notebook that sets a variable mid-session
is honoured on the next probe.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from openmind.errors import BadInput

# The package version (the distribution openmind-cells); keys and servers carry it.
VERSION = "0.1.0"

# Resources that OPENMIND_ASSUME / openmind.assume() can mask.
MASKABLE = ("gpu", "api", "infer", "serial", "memory")
ASSUME_VALUES = ("off", "auto")

_lock = threading.Lock()
_assume_override: dict[str, str] | None = None  # set by openmind.assume(); wins over the env


def home() -> Path:
    """OPENMIND_HOME (default ~/.openmind), created on first use, owner-only (0700): the journal
    and the index say what a user ran, and other local users must not read them."""
    global _home_memo
    raw = os.environ.get("OPENMIND_HOME")
    key = (raw, None if raw else os.environ.get("HOME"))
    if _home_memo is not None and _home_memo[0] == key:  # every store call asks: parse once
        path = _home_memo[1]
    else:
        path = Path(raw or Path.home() / ".openmind").expanduser()
        _home_memo = (key, path)
    if path not in _made or not path.is_dir():  # a stat, not a mkdir, on every call
        private_dir(path)
        _made.add(path)
    return path


_made: set[Path] = set()
_home_memo: tuple[tuple[str | None, str | None], Path] | None = None


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) a directory only its owner can enter: 0700. An existing
    one this user owns is tightened; one owned by another user is left alone (not ours to change)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    private(path, 0o700)
    return path


def private(path: Path, mode: int = 0o600) -> None:
    """Tighten a file or directory this user owns to `mode` when group or others have access."""
    try:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, mode)
    except OSError:
        pass  # gone, or not ours: whoever reads it next reports what is wrong


def key_dir() -> Path:
    """OPENMIND_KEY_DIR (default ~/.config/openmind): this machine's signing key pair, kept
    outside OPENMIND_HOME so whoever can write the store cannot sign for it."""
    raw = os.environ.get("OPENMIND_KEY_DIR", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".config" / "openmind"


def trust_file() -> str | None:
    """OPENMIND_TRUST: a file of public keys (one a line, as `openmind key` prints them) whose
    signatures this machine accepts besides its own; default `trust` in the key directory, when
    there is one. A string: every restore asks, so no path objects are made on the way."""
    raw = os.environ.get("OPENMIND_TRUST", "").strip()
    if raw:
        return os.path.expanduser(raw)
    default = os.path.join(key_dir(), "trust")
    return default if os.path.exists(default) else None


def remote_url() -> str | None:
    """OPENMIND_REMOTE: the team's shared memory, `file:///dir` or `s3://bucket/prefix`."""
    return os.environ.get("OPENMIND_REMOTE", "").strip() or None


def remote_write() -> bool:
    """OPENMIND_REMOTE_WRITE=1: this machine publishes what it keeps (the CI box); others read."""
    return os.environ.get("OPENMIND_REMOTE_WRITE", "").strip().lower() in ("1", "true", "yes", "on")


def remote_timeout() -> float:
    """OPENMIND_REMOTE_TIMEOUT: seconds one call to the team's memory may take (default 5)."""
    raw = os.environ.get("OPENMIND_REMOTE_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        raise BadInput(f"OPENMIND_REMOTE_TIMEOUT must be seconds (a number), got {raw!r}") from None
    return value if value > 0 else 5.0


def api_base() -> str | None:
    base = os.environ.get("OPENMIND_API_BASE", "").strip()
    return base.rstrip("/") or None


def api_key() -> str | None:
    key = os.environ.get("OPENMIND_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return key.strip() if key and key.strip() else None


def infer_url() -> str | None:
    url = os.environ.get("OPENMIND_INFER_URL", "").strip()
    return url.rstrip("/") or None


def infer_token() -> str | None:
    tok = os.environ.get("OPENMIND_INFER_TOKEN", "").strip()
    return tok or None


def serial_port() -> str | None:
    return os.environ.get("OPENMIND_SERIAL_PORT", "").strip() or None


# Environment variables whose whole value is a secret, and those holding URLs whose userinfo is.
SECRET_VARS = ("OPENMIND_API_KEY", "OPENAI_API_KEY", "OPENMIND_INFER_TOKEN", "OPENMIND_SERVE_TOKEN",
               "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
URL_VARS = ("OPENMIND_API_BASE", "OPENMIND_INFER_URL", "OPENMIND_REMOTE", "AWS_ENDPOINT_URL")


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL's userinfo: 'user:pass', the password, percent-decoded forms."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    info = parts.netloc.rpartition("@")[0]
    user, _, password = info.partition(":")
    found = [info, password, unquote(info), unquote(password)]
    if not password:
        found.append(user)  # a token given as the user part alone (https://TOKEN@host)
    return [f for f in found if f]


def secrets() -> list[str]:
    """Every secret value currently configured, longest first (so redaction never leaves a tail):
    keys, tokens, URL userinfo, and their base64 forms (an `Authorization: Basic` header a peer
    echoes back carries base64('user:pass')). Recomputed only when one of the variables changed:
    every journal record and route reason is redacted, so this runs on every call."""
    global _secrets_memo
    raw = tuple(os.environ.get(v, "") for v in SECRET_VARS + URL_VARS) + (str(len(_REGISTERED)),)
    if _secrets_memo is not None and _secrets_memo[0] == raw:
        return list(_secrets_memo[1])
    found: list[str] = [v.strip() for v in raw[:len(SECRET_VARS)]]
    for value in raw[len(SECRET_VARS):-1]:
        found += url_secrets(value)
    found += sorted(_REGISTERED)
    found = [f for f in found if len(f) >= 4]
    encoded = []
    for f in found:
        b64 = base64.b64encode(f.encode()).decode()
        encoded += [b64, b64.rstrip("=")]
    keys = sorted({s for s in found + encoded if len(s) >= 4}, key=len, reverse=True)
    _secrets_memo = (raw, tuple(keys))
    return keys


_secrets_memo: tuple[tuple[str, ...], tuple[str, ...]] | None = None
# Secrets met at run time rather than in the environment: the password of a database URL or a
# token in a URL's query that a call was given (`register_source`). Only ever added to.
_REGISTERED: set[str] = set()
# Words that make a query parameter a credential (token=, api_key=, apiKey=, X-Amz-Signature=).
_CREDENTIAL_WORDS = frozenset({"token", "key", "apikey", "secret", "password", "passwd", "pwd",
                               "pass", "auth", "authorization", "sig", "signature", "credential",
                               "credentials", "session", "sessionid", "jwt", "bearer"})


def secret_param(name: str) -> bool:
    """Does a query parameter's name say it carries a credential? Its words (split at '_', '-',
    '.' and camelCase) hold one of the credential words, or one ends in token/key/secret."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in _CREDENTIAL_WORDS or w.endswith(("token", "key", "secret", "password"))
               for w in words if w)


def source_secrets(url: str) -> list[str]:
    """The secret parts of a source URL or database DSN: its userinfo (as `url_secrets`) and the
    values of query parameters named like credentials (token=, api_key=, password=...)."""
    found = url_secrets(url)
    try:
        query = urlsplit(url.strip()).query
    except ValueError:
        return found
    for name, value in parse_qsl(query, keep_blank_values=False):
        if secret_param(name):
            found += [value, quote(value, safe="")]
    return [f for f in found if f]


def register_source(url: str) -> str:
    """Make `redact` hide the secrets of a URL or DSN a call was given (journal, cards, logs,
    errors) from now on, and return the URL as it may be shown: no userinfo, credential-named
    query values as '***'."""
    found = [f for f in source_secrets(url) if len(f) >= 4]
    if found and not _REGISTERED.issuperset(found):
        with _lock:
            _REGISTERED.update(found)
    return shown_url(url)


def forget_sources() -> None:
    """Forget the secrets `register_source` collected (a test's, so the next test starts clean)."""
    global _secrets_memo
    with _lock:
        _REGISTERED.clear()
        _secrets_memo = None  # keyed on how many there are: a cleared set may refill to that size


def shown_url(url: str) -> str:
    """A URL or DSN without its userinfo and with credential-named query values as '***'."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<a malformed URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{k}={'***' if secret_param(k) else quote(v, safe='/:,')}"
                     for k, v in parse_qsl(parts.query, keep_blank_values=True))
    # joined by hand: urlunsplit folds sqlite:////abs/path.db into sqlite://abs/path.db
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class RedactingFilter(logging.Filter):
    """A logging filter that redacts configured secrets from a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if secrets():
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is logging's business, not ours
                return True
            record.msg, record.args = redact(message), ()
        return True


# Loggers openmind's own code or its HTTP stack write to; httpx logs every request's URL at INFO.
GUARDED_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
                   "httpcore.proxy", "openmind", "openmind.llm", "openmind.serve", "tornado.access",
                   "tornado.application", "tornado.general", "uvicorn", "uvicorn.error", "uvicorn.access")
_FILTER = RedactingFilter()


def guard_logs() -> None:
    """Attach the redacting filter to every logger in GUARDED_LOGGERS (idempotent)."""
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


guard_logs()


def redact(value: Any) -> Any:
    """Replace every configured secret in strings inside `value` (dicts/lists walked) by '***'."""
    keys = secrets()
    if not keys:
        return value
    return _redact(value, keys)


def _redact(value: Any, keys: list[str]) -> Any:
    if isinstance(value, str):
        for k in keys:
            value = value.replace(k, "***")
        return value
    if isinstance(value, dict):
        return {_redact(k, keys): _redact(v, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, keys) for v in value)
    return value


def parse_assume(text: str | None) -> dict[str, str]:
    """Parse 'gpu=off,api=off' (commas or spaces). A malformed item raises naming it and the valid ones."""
    result: dict[str, str] = {}
    if not text or not text.strip():
        return result
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        if "=" not in item:
            raise BadInput(
                f"malformed OPENMIND_ASSUME item {item!r}: expected resource=value, "
                f"e.g. gpu=off (resources: {', '.join(MASKABLE)}; values: {', '.join(ASSUME_VALUES)})"
            )
        key, _, val = item.partition("=")
        key, val = key.strip().lower(), val.strip().lower()
        if key not in MASKABLE:
            raise BadInput(
                f"unknown resource {key!r} in OPENMIND_ASSUME; valid: {', '.join(MASKABLE)}"
            )
        if val not in ASSUME_VALUES:
            raise BadInput(
                f"unknown value {val!r} for {key} in OPENMIND_ASSUME; valid: {', '.join(ASSUME_VALUES)}"
            )
        result[key] = val
    return result


def assumed() -> dict[str, str]:
    """The active mask: openmind.assume() if it was called, else OPENMIND_ASSUME."""
    with _lock:
        if _assume_override is not None:
            return dict(_assume_override)
    return parse_assume(os.environ.get("OPENMIND_ASSUME"))


def assume(spec: str | dict[str, str] | None = None, **resources: str) -> dict[str, str]:
    """Pretend resources are absent for this process: assume(gpu="off") or assume("gpu=off,api=off").

    `assume(None)` / `assume("reset")` drops the override and goes back to OPENMIND_ASSUME.
    Returns the mask now in force.
    """
    global _assume_override
    if spec == "reset" or (spec is None and not resources):
        with _lock:
            _assume_override = None
        return assumed()
    mask = parse_assume(spec) if isinstance(spec, str) else parse_assume(
        ",".join(f"{k}={v}" for k, v in (spec or {}).items())
    )
    mask.update(parse_assume(",".join(f"{k}={v}" for k, v in resources.items())))
    with _lock:
        base = dict(_assume_override) if _assume_override is not None else parse_assume(
            os.environ.get("OPENMIND_ASSUME")
        )
        base.update(mask)
        _assume_override = base
    return dict(base)


@functools.lru_cache(maxsize=256)
def public_url(url: str) -> str:
    """The URL without user:password, safe to show (parsed once per URL: every request asks)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def api_url(base: str, path: str) -> str:
    """Join an OpenAI-compatible base with a path; accepts bases with or without /v1."""
    base = base.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path.lstrip('/')}"


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches ('localhost', 127.0.0.0/8, ::1).
    '', '0.0.0.0' and '::' mean every interface; any other name may resolve anywhere."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
