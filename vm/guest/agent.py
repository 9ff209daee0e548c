"""Guest agent: runs commands for the host over the virtio-serial port (stdlib only).

Protocol: frames of an 8-byte big-endian length followed by that many bytes of UTF-8 JSON, in both
directions.  Unambiguous framing (no newline escaping, any payload size) over a byte stream that
may be split arbitrarily.  The agent sends ``{"op": "ready", ...}`` once, then answers each request
with exactly one reply, in order:

* ``{"op": "ping"}`` -> ``{"ok": true, "uptime": float}``
* ``{"op": "exec", "argv": [...], "timeout": s, "env": {...}, "cwd": str, "stdin": str,
  "oom_score_adj": int}`` -> ``{"rc", "stdout", "stderr", "timed_out", "seconds"}``; with
  ``"module": name`` the child does not exec: it runs ``python3 -m name argv...`` in the agent's
  own interpreter, forked with every module ``preload`` imported (see :func:`_run_module`)
* ``{"op": "preload", "modules": [...]}`` -> ``{"ok": true, "seconds": float}``
* ``{"op": "write_file", "path", "data_b64", "mode"}`` -> ``{"ok": true}``
* ``{"op": "read_file", "path", "max_bytes"}`` -> ``{"data_b64"}``
* ``{"op": "poweroff"}`` -> ``{"ok": true}``, then the guest powers off.
Failures of a request give ``{"error": "..."}`` instead.

Why the agent protects itself (oom_score_adj -1000) but resets it for its children: the tests
provoke real OOM kills and the channel must survive them; the workloads must stay fair victims.
``subprocess`` is imported on first use so the ready frame goes out as early as possible.
"""

from __future__ import annotations

import _signal  # the C module: ``signal`` would pull in enum
import binascii
import os
import select
import sys
import time

try:  # the C half of json: encodes/decodes without importing re/enum (0.35 s+ under TCG)
    import _json
except ImportError:  # pragma: no cover - every Debian python3.11 has it
    _json = None  # type: ignore[assignment]  # a module or nothing

PROJECT = "/opt/oom-harness"
INIT_DONE = "/run/oomh-init-done"
MAX_FRAME = 1 << 30
SIGKILL = 9
BASE_ENV = {
    "PATH": "/bin:/sbin:/usr/bin:/usr/sbin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONPATH": PROJECT,
    "PYTHONDONTWRITEBYTECODE": "1",
}


# --- JSON without the json package ------------------------------------------------------------------
# Why: ``import json`` imports ``re`` and ``enum``, which cost ~0.35 s even warm under TCG, i.e. a
# large share of the boot.  ``_json``'s C scanner and encoder do the whole job for plain data.


class _ScanCtx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict = {}


def _parse_constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def _encode_default(o: object) -> object:
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


if _json is not None:
    _ScanCtx.parse_constant = staticmethod(_parse_constant)  # type: ignore[assignment]  # the scanner reads it
    _SCAN = _json.make_scanner(_ScanCtx())  # type: ignore[arg-type]  # duck-typed context, as json.scanner's
    _ENCODE = _json.make_encoder(
        None, _encode_default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def json_loads(data: bytes) -> object:
        text = data.decode()
        i = 0
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        obj, _end = _SCAN(text, i)
        return obj

    def json_dumps(obj: object) -> str:
        return "".join(_ENCODE(obj, 0))
else:  # pragma: no cover
    import json as _jsonmod

    def json_loads(data: bytes) -> object:
        return _jsonmod.loads(data)

    def json_dumps(obj: object) -> str:
        return _jsonmod.dumps(obj)


def uptime() -> float:
    """Guest uptime in seconds (for boot timing on the host)."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def set_oom_score_adj(value: int, pid: str = "self") -> None:
    """Write /proc/<pid>/oom_score_adj; errors are ignored (the value is advisory for the tests)."""
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def wait_for(pred, timeout: float, step: float = 0.005):
    """Poll ``pred`` until it returns a truthy value or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


class Channel:
    """Frame reader/writer on the port's file descriptor (opened once: a second open is EBUSY)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(self.fd, n - len(buf))
            if not chunk:  # host not connected: wait for it instead of spinning
                time.sleep(0.05)
                continue
            buf += chunk
        return bytes(buf)

    def recv(self) -> bytes:
        """One frame's payload (the JSON text, still undecoded)."""
        n = int.from_bytes(self._read_exact(8), "big")
        if n > MAX_FRAME:
            raise ValueError(f"frame too large: {n}")
        return self._read_exact(n)

    def send(self, obj: dict) -> None:
        data = json_dumps(obj).encode()
        view = memoryview(len(data).to_bytes(8, "big") + data)
        while view:
            view = view[os.write(self.fd, view) :]


def preload(modules: list[str]) -> None:
    """Import ``modules`` into the agent (with ``site``, as ``python3`` without ``-S`` has it), so
    that children forked to run them start with the work done.

    Why: importing the harness's guest side costs ~0.9 s under TCG *every* time a fresh
    interpreter does it (module bodies: enum, dataclasses, compiling the parser's regexes), i.e.
    most of a VM scenario's time.  Done once here, and before a boot snapshot is saved, it is
    done once per VM shape.
    """
    import importlib

    if "site" not in sys.modules:
        import site

        site.main()  # /usr/lib/python3/dist-packages etc., which -S left out
    for name in modules:
        importlib.import_module(name)


def _run_module(module: str, args: list[str], env: dict) -> int:
    """In a forked child: what ``python3 -m module args...`` would do, in this warm interpreter.

    The module is found on the agent's ``sys.path`` (the project's packages and the stdlib; an
    ``env`` PYTHONPATH is passed on to the module's own children, not used here).  Only modules
    the agent was asked to ``preload`` are imported in the agent itself: importing runs a module's
    top level, which must never happen in the agent for an arbitrary module.
    """
    import atexit
    import runpy
    import warnings

    if "site" not in sys.modules:
        import site

        site.main()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *args]
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()  # python3 -m puts the working directory first, not the agent's folder
    try:
        with warnings.catch_warnings():
            # "found in sys.modules ... prior to execution": exactly the point of preloading it
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - what the interpreter would print before exiting 1
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def _child(argv: list[str], env: dict, cwd: str, adj: int, fds: tuple[int, int, int], module: str | None) -> None:
    """In the forked child: new session (so a timeout kills the whole group), fair OOM score,
    stdio on the pipes, no inherited agent port, then exec ``argv`` with default SIGPIPE (python
    ignores it, and exec would keep that) or run ``module`` with ``argv`` as its arguments."""
    code = 127
    try:
        os.setsid()
        set_oom_score_adj(adj)
        if module is None:  # a module keeps them ignored, as a fresh interpreter has them
            for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
                _signal.signal(sig, _signal.SIG_DFL)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        os.closerange(3, 65536)
        os.chdir(cwd)
        if module is not None:
            code = _run_module(module, argv, env)
        else:
            os.execvpe(argv[0], argv, env)
    except BaseException as e:  # noqa: BLE001 - report anything, then leave without cleanup
        os.write(2, f"agent: cannot run {module or argv[:1]}: {e}\n".encode())
    finally:
        os._exit(code)


def do_exec(req: dict) -> dict:
    """Run ``argv`` in its own session; on timeout kill the whole process group.

    Hand-rolled fork/exec/poll rather than ``subprocess``: that module imports ``signal`` (and so
    ``enum``) and ``threading``, costing the first command ~0.3 s under TCG.
    A command that cannot be started gives rc 127 and a message on stderr, like a shell.
    """
    argv = [str(a) for a in req["argv"]]
    module = req.get("module")
    if module is None and not argv:
        raise ValueError("empty argv")
    sys.stdout.flush()  # nothing of the agent's may be written twice by a child
    env = dict(BASE_ENV)
    env.update(req.get("env") or {})
    timeout = req.get("timeout")
    stdin = req.get("stdin")
    t0 = time.monotonic()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin is not None else (os.open("/dev/null", os.O_RDONLY), -1)
    pid = os.fork()
    if pid == 0:
        _child(argv, env, req.get("cwd") or "/", int(req.get("oom_score_adj", 0)), (in_r, out_w, err_w), module)
    for fd in (out_w, err_w, in_r):
        os.close(fd)
    pending = stdin.encode() if stdin is not None else b""
    if in_w >= 0:
        os.set_blocking(in_w, False)
        if not pending:
            os.close(in_w)
            in_w = -1
    bufs = {out_r: bytearray(), err_r: bytearray()}
    poller = select.poll()
    for fd in bufs:
        poller.register(fd, select.POLLIN)
    if in_w >= 0:
        poller.register(in_w, select.POLLOUT)
    open_fds = set(bufs)
    deadline = None if timeout is None else t0 + float(timeout)
    timed_out = False
    while open_fds:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            if timed_out:  # killed 5 s ago and a grandchild outside the group still holds the pipes
                break
            timed_out = True
            try:
                os.killpg(pid, SIGKILL)
            except OSError:
                pass
            deadline = now + 5
        wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000)) + 1
        for fd, ev in poller.poll(wait_ms):
            if fd == in_w:
                try:
                    n = os.write(in_w, pending[:65536])
                    pending = pending[n:]
                except BrokenPipeError:
                    pending = b""
                if not pending:
                    poller.unregister(in_w)
                    os.close(in_w)
                    in_w = -1
                continue
            chunk = os.read(fd, 65536) if ev & (select.POLLIN | select.POLLHUP | select.POLLERR) else b""
            if chunk:
                bufs[fd] += chunk
            else:
                poller.unregister(fd)
                open_fds.discard(fd)
    for fd in (out_r, err_r, in_w):
        if fd >= 0:
            os.close(fd)
    if timed_out:
        try:
            os.killpg(pid, SIGKILL)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": bufs[out_r].decode(errors="replace"),
        "stderr": bufs[err_r].decode(errors="replace"),
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - t0, 4),
    }


def do_write_file(req: dict) -> dict:
    path = req["path"]
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    with open(path, "wb") as f:
        f.write(binascii.a2b_base64(req.get("data_b64", "")))
    if "mode" in req:
        os.chmod(path, int(req["mode"]))
    return {"ok": True}


def do_read_file(req: dict) -> dict:
    with open(req["path"], "rb") as f:
        data = f.read(int(req.get("max_bytes", -1)))
    return {"data_b64": binascii.b2a_base64(data, newline=False).decode()}


def handle(req: dict) -> dict:
    op = req.get("op")
    if op == "ping":
        return {"ok": True, "uptime": uptime()}
    if op == "exec":
        return do_exec(req)
    if op == "preload":
        t0 = time.monotonic()
        preload([str(m) for m in req.get("modules") or []])
        return {"ok": True, "seconds": round(time.monotonic() - t0, 4)}
    if op == "write_file":
        return do_write_file(req)
    if op == "read_file":
        return do_read_file(req)
    return {"error": f"unknown op {op!r}"}


def find_port() -> str | None:
    """The first virtio-serial port (``/dev/vport<N>p1``; no udev, so no by-name symlink)."""
    try:
        ports = sorted(n for n in os.listdir("/dev") if n.startswith("vport") and n.endswith("p1"))
    except OSError:
        return None
    return "/dev/" + ports[0] if ports else None


def _read_float(path: str) -> float | None:
    try:
        with open(path) as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main() -> int:
    t_main = uptime()
    set_oom_score_adj(-1000)
    port = wait_for(find_port, 60)
    if not port:
        print("@@OOMH-AGENT@@ no virtio-serial port", flush=True)
        return 1
    fd = os.open(port, os.O_RDWR)
    wait_for(lambda: os.path.exists(INIT_DONE), 120)
    ch = Channel(fd)
    # Boot-phase timestamps (guest uptime) so the host can see where boot time goes.
    ch.send(
        {
            "op": "ready",
            "uptime": uptime(),
            "release": os.uname().release,
            "pid": os.getpid(),
            "t_init": _read_float("/run/oomh-t-init"),
            "t_agent_main": t_main,
            "t_init_done": _read_float(INIT_DONE),
        }
    )
    while True:
        raw = ch.recv()
        req: dict = {}
        try:
            req = json_loads(raw)  # type: ignore[assignment]
            if not isinstance(req, dict):
                raise ValueError("request is not a JSON object")
            if req.get("op") == "poweroff":
                ch.send({"ok": True})
                os.sync()
                os.execv("/bin/busybox", ["poweroff", "-f"])
            reply = handle(req)
        except Exception as e:  # noqa: BLE001 - every failure must become a reply, never kill the agent
            reply = {"error": f"{type(e).__name__}: {e}"}
        if "id" in req:
            reply["id"] = req["id"]
        ch.send(reply)


if __name__ == "__main__":
    sys.exit(main())
