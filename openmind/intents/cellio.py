"""Running a cell's code and keeping what it shows: the parts of the cell pathway that need no
memory. `run_tree` runs a parsed cell as a shell would (last expression's value, top-level
`await`); `recording` keeps what a block prints and displays while it still shows live; `replay`
shows it again on a hit.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

from openmind.errors import BadInput

Compile = Callable[[ast.AST, str, str], Any]


# --------------------------------------------------------------------------- running code


def drive(coro: Any) -> Any:
    """Run a coroutine to its end: on this thread's loop-free stack, or, when this thread is
    already inside a running event loop (a Jupyter kernel), on a fresh loop in a helper thread
    (with this context: policy, cell, device)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openmind-await") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


def _compile(tree: ast.AST, filename: str, mode: str) -> Any:
    return compile(tree, filename, mode, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def run_tree(tree: ast.Module, namespace: dict[str, Any], filename: str = "<cell>",
             compiler: Compile | None = None, *, silent: bool = False) -> Any:
    """Run a parsed cell in `namespace`; return its last expression's value (as a cell shows it:
    none after a trailing `;` when `silent`). Top-level `await` works."""
    comp = compiler or _compile
    body = list(tree.body)
    last = None
    if body and isinstance(body[-1], ast.Expr) and not silent:
        last = ast.Expression(body.pop().value)
    code = comp(ast.Module(body=body, type_ignores=[]), filename, "exec")
    done = eval(code, namespace)  # noqa: S307 - the user's own cell
    if code.co_flags & inspect.CO_COROUTINE:  # top-level await: eval gave the coroutine to run
        drive(done)
    if last is None:
        return None
    code = comp(last, filename, "eval")
    value = eval(code, namespace)  # noqa: S307
    return drive(value) if code.co_flags & inspect.CO_COROUTINE else value


def parse(source: str) -> ast.Module:
    if not isinstance(source, str):
        raise BadInput(f"source must be the cell's code as a string, got {type(source).__name__}")
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise BadInput(f"the cell is not valid Python: {exc.msg} (line {exc.lineno}): "
                       f"{(exc.text or '').strip()}") from None


# --------------------------------------------------------------------------- outputs


class _Tee:
    """A stream that writes through and keeps a copy of what passed."""

    def __init__(self, inner: Any, name: str, outputs: list[dict[str, Any]]) -> None:
        self._inner, self._name, self._outputs = inner, name, outputs

    def write(self, text: str) -> int:
        if text:
            last = self._outputs[-1] if self._outputs else None
            if last is not None and last.get("stream") == self._name:
                last["text"] += text
            else:
                self._outputs.append({"stream": self._name, "text": text})
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


@contextlib.contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Keep what a block prints (stdout, stderr) and displays, while it still shows live."""
    outputs: list[dict[str, Any]] = []
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, "stdout", outputs), _Tee(sys.stderr, "stderr", outputs)
    pub = getattr(_shell(), "display_pub", None)
    shadowed = vars(pub).get("publish") if pub is not None else None  # an enclosing recording's
    if pub is not None:
        inner = pub.publish

        def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            outputs.append({"display": data, "metadata": metadata or {}})
            return inner(data, metadata, *args, **kwargs)

        pub.publish = publish
    try:
        yield outputs
    finally:
        sys.stdout, sys.stderr = saved
        if pub is not None:
            if shadowed is not None:
                pub.publish = shadowed
            else:
                del pub.publish


def replay(outputs: list[dict[str, Any]], mark: dict[str, Any] | None = None) -> None:
    """Show recorded outputs again, after a mark saying they are restored (`mark`: when they
    were made, the error that brought them back; drawn by the face registered as "restored")."""
    pub = getattr(_shell(), "display_pub", None)
    if mark is not None and outputs:
        from openmind.intents.present import html_of

        text = restored_text(mark)
        html = html_of("restored", mark)
        if pub is not None and html is not None and _rich(pub):
            sys.stdout.flush()
            pub.publish(data={"text/html": html, "text/plain": text}, metadata={})
        else:  # a terminal: the mark beside the output, not in it (stdout stays the cell's own)
            sys.stdout.flush()
            print(text, file=sys.stderr, flush=True)
    for out in outputs:
        if "stream" in out:
            stream = sys.stderr if out["stream"] == "stderr" else sys.stdout
            stream.write(out["text"])
        elif "display" in out:
            if pub is not None:
                sys.stdout.flush()
                pub.publish(data=out["display"], metadata=out.get("metadata") or {})
            else:
                print(out["display"].get("text/plain", ""))


def _rich(pub: Any) -> bool:
    """A display that draws HTML apart from the output (a kernel's front end), not a terminal
    shell whose displays are printed into stdout."""
    return type(pub).__module__.split(".")[0] == "ipykernel"


def restored_text(mark: dict[str, Any]) -> str:
    """The restored mark in words: what comes back, from when, and why."""
    from openmind.units import human_time

    made = mark.get("made")
    when = human_time(made) if made else "in an earlier run"
    why = f" because the cell raised {mark['error']}" if mark.get("error") else ""
    return f"restored outputs, made {when}{why}:"


__all__ = ["Compile", "drive", "parse", "recording", "replay", "restored_text", "run_tree"]
