"""The language-model API (key checked with GET /models) and the Open Inference Protocol endpoint."""

from __future__ import annotations

from openmind import config
from openmind.config import api_url, public_url
from openmind.flow.resources.base import Resource, probe_timeout


def probe_api() -> Resource:
    base, key = config.api_base(), config.api_key()
    if base is None and key is None:
        return Resource.absent("api", "no language-model API configured (set OPENMIND_API_BASE and OPENMIND_API_KEY)")
    if base is None:
        base = "https://api.openai.com/v1"
    import httpx

    shown = public_url(base)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(api_url(base, "models"), headers=headers, timeout=probe_timeout())
    except httpx.TimeoutException:
        return Resource.absent("api", f"{shown} unreachable (no answer within {probe_timeout():g}s)",
                               "unreachable", base=shown, key_set=key is not None)
    except httpx.HTTPError as exc:
        return Resource.absent("api", f"{shown} unreachable ({type(exc).__name__})",
                               "unreachable", base=shown, key_set=key is not None)
    info = {"base": shown, "key_set": key is not None, "http_status": resp.status_code}
    if resp.status_code in (401, 403):
        return Resource.absent("api", f"{shown} refused the key (HTTP {resp.status_code})", "invalid", **info)
    if resp.status_code == 404:
        return Resource.present("api", f"{shown} has no /models (HTTP 404); key not checked", "unknown", **info)
    if resp.status_code == 429:
        return Resource.present("api", f"{shown} accepted the key but is rate limiting (HTTP 429)", "valid", **info)
    if resp.status_code >= 400:
        return Resource.absent("api", f"{shown} answered HTTP {resp.status_code}", "unreachable", **info)
    models: list[str] = []
    try:
        models = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)][:50]
    except Exception:
        pass
    return Resource.present("api", f"{shown} accepted the key ({len(models)} models)", "valid",
                            models=models, **info)


def probe_infer() -> Resource:
    url = config.infer_url()
    if url is None:
        return Resource.absent("infer", "no inference endpoint configured (set OPENMIND_INFER_URL)")
    import httpx

    shown = public_url(url)
    token = config.infer_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(f"{url}/v2/health/ready", headers=headers, timeout=probe_timeout())
    except httpx.HTTPError as exc:
        return Resource.absent("infer", f"{shown} unreachable ({type(exc).__name__})", "unreachable", url=shown)
    if resp.status_code in (401, 403):
        return Resource.absent("infer", f"{shown} refused the token (HTTP {resp.status_code})", "invalid", url=shown)
    if resp.status_code != 200:
        return Resource.absent("infer", f"{shown} not ready (HTTP {resp.status_code})", "unreachable", url=shown)
    return Resource.present("infer", f"{shown} ready (Open Inference Protocol v2)", "ready", url=shown)


