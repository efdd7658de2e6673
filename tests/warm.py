"""Warm interpreters for the slow tests: commands run in children forked from a process that has already
imported torch and fairseq.

Why: every ``fairseq-train`` or ``balkd-*`` process of the suite spends 4-9 s importing torch, fairseq
(and through it scikit-learn and scipy) before it reads its first flag, and the bad-input rows and the
README's blocks start more than a hundred of them. A child forked from a warm server starts in
milliseconds and then runs the same entry point, with the request's argv, working directory, environment
and standard streams, and exits as the interpreter would (exit code, ``sys.excepthook``, atexit handlers,
non-daemon threads joined, death by signal passed on).

What is not the same as a fresh ``python``: modules imported by the server (torch, fairseq, hydra and
their dependencies) were imported under the server's environment (``OMP_NUM_THREADS=1``), and the plugin
is NOT among them, so ``--user-dir`` still imports it as fairseq does. Tests of the process itself (exit
at --max-update under load, signals to a command and its children, hydra's entry point, importing the
plugin) keep real processes; ``BALKD_TESTS_COLD=1`` runs every command cold.

A client is a small script (no torch import) on PATH under the command's name, or in place of
``sys.executable`` in the children it starts (``balkd-train-teachers`` runs ``sys.executable -m ...``,
torchrun runs ``sys.executable -u SCRIPT``), so what a warm command starts is warm too. A client hands its
stdin/stdout/stderr to the server (SCM_RIGHTS), forwards SIGINT/SIGTERM/SIGHUP to the child and ends with
the child's status. Without a server (or with ``BALKD_TESTS_COLD=1``) it runs the command itself.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

SOCKET_VARIABLE = "BALKD_WARM_SOCKET"
COLD = os.environ.get("BALKD_TESTS_COLD", "") not in ("", "0")
SHIM_MARKER = "# balkd-fairseq test shim: "
PRELOAD = ("torch", "fairseq", "fairseq_cli.train", "fairseq_cli.hydra_train", "sentencepiece", "tqdm")

# ----------------------------------------------------------------------------- the client (shim) program
# Written as the text of a script: it runs in a fresh interpreter and must not import anything heavy.
CLIENT = r'''
import array, json, os, signal, socket, sys

def run_here():
    """No server: run as the command itself would (exec, so the process is the command)."""
    if TARGET["kind"] == "python":
        os.execv(REAL_PYTHON, [REAL_PYTHON, *sys.argv[1:]])
    os.execv(REAL_PYTHON, [REAL_PYTHON, TARGET["path"], *sys.argv[1:]])

def forwardable(argv):
    """python [-u] -m MODULE / -c CODE / SCRIPT ...: what the server runs; anything else runs here."""
    if TARGET["kind"] != "python":
        return True
    args = argv[1:]
    while args and args[0] == "-u":
        args = args[1:]
    return bool(args) and (args[0] in ("-m", "-c") and len(args) > 1 or not args[0].startswith("-"))

def main():
    path = os.environ.get("BALKD_WARM_SOCKET")
    if not path or os.environ.get("BALKD_TESTS_COLD", "") not in ("", "0") or not forwardable(sys.argv):
        run_here()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        run_here()
    request = {"target": TARGET, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    payload = json.dumps(request).encode()
    conn.sendmsg([len(payload).to_bytes(8, "big")], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    conn.sendall(payload)
    reader = conn.makefile("r")
    child = json.loads(reader.readline())["pid"]
    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    line = reader.readline()
    code = json.loads(line)["exit"] if line else 1
    if code < 0:  # the child died by a signal: so does this process, as the command would have
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)

main()
'''


def write_shim(path: Path, target: dict) -> Path:
    path.write_text(f"#!{sys.executable}\n{SHIM_MARKER}{json.dumps(target)}\n"
                    f"TARGET = {target!r}\nREAL_PYTHON = {sys.executable!r}\n{CLIENT}", encoding="utf-8")
    path.chmod(0o755)
    return path


def shim_target(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            f.readline()
            second = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    return json.loads(second[len(SHIM_MARKER):]) if second.startswith(SHIM_MARKER) else None


def shim_directory(directory: Path, commands: List[str]) -> Path:
    """``directory`` with a shim per console command of this venv (and ``python``/``python3``)."""
    directory.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    for name in commands:
        write_shim(directory / name, {"kind": "script", "path": str(bin_dir / name)})
    for name in ("python", "python3"):
        write_shim(directory / name, {"kind": "python"})
    return directory


# ----------------------------------------------------------------------------- the server
def serve(socket_path: str) -> None:
    """Import the heavy modules once, then fork a monitor per connection, which forks the command."""
    import logging

    for module in PRELOAD:
        __import__(module)
    # an import that logs through the root logger configures it (logging.basicConfig's default, on stderr);
    # a fresh interpreter's root logger is unconfigured until fairseq_cli.train sets it up on stdout
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    base_path = [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    parent = os.getppid()
    listener.settimeout(5)
    print("ready", flush=True)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process is gone (killed worker): do not outlive it
                os._exit(0)
            continue
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                monitor(conn, base_path)
            finally:
                os._exit(0)
        conn.close()


def receive(conn: socket.socket):
    head, fds, _, _ = socket.recv_fds(conn, 8, 3)
    size, payload = int.from_bytes(head, "big"), b""
    while len(payload) < size:
        payload += conn.recv(size - len(payload))
    return json.loads(payload), fds


def monitor(conn: socket.socket, base_path: List[str]) -> None:
    request, fds = receive(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        run_request(request, fds, base_path)
    for fd in fds:
        os.close(fd)
    conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall((json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n").encode())


def resolve(target: dict, argv: List[str]):
    """(kind, name, argv) to run: a console script's file, a module (-m) or a script path."""
    if target["kind"] == "script":
        return "path", target["path"], argv
    args = argv[1:]
    while args and args[0] == "-u":
        os.environ["PYTHONUNBUFFERED"] = "1"
        args = args[1:]
    if args[0] == "-m":
        return "module", args[1], [args[1], *args[2:]]
    if args[0] == "-c":
        return "code", args[1], ["-c", *args[2:]]
    inner = shim_target(args[0])
    if inner and inner["kind"] == "script":  # torchrun's `python -u $(which balkd-train)`: the shim's command
        return "path", inner["path"], args
    return "path", args[0], args


def run_request(request: dict, fds: List[int], base_path: List[str]) -> None:
    import runpy

    import torch

    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    kind, name, argv = resolve(request["target"], request["argv"])
    if os.environ.get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    first = "" if kind in ("module", "code") else os.path.dirname(os.path.abspath(name))
    extra = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [first, *extra, *base_path]
    sys.argv = list(argv)
    if "BALKD_WARM_BIN" in os.environ:  # what the command starts with sys.executable forks from the server too
        sys.executable = str(Path(os.environ["BALKD_WARM_BIN"]) / "python")
    if kind == "module":
        code = exit_code_of(lambda: runpy.run_module(name, run_name="__main__", alter_sys=True))
    elif kind == "code":
        code = exit_code_of(lambda: exec(compile(name, "<string>", "exec"), {"__name__": "__main__"}))  # noqa: S102
    else:
        code = exit_code_of(lambda: runpy.run_path(name, run_name="__main__"))
    finish(code)


def exit_code_of(run) -> int:
    """The exit status the interpreter would give for ``run()`` as ``__main__``."""
    try:
        run()
        return 0
    except SystemExit as exit_:
        return system_exit_code(exit_)
    except BaseException as error:  # noqa: BLE001  (an uncaught exception: sys.excepthook, then status 1)
        try:
            sys.excepthook(type(error), error, error.__traceback__)
        except SystemExit as exit_:  # the plugin's hook ends a BalkdError with exit 2 this way
            return system_exit_code(exit_)
        return -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1


def system_exit_code(exit_: SystemExit) -> int:
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code & 0xFF
    print(exit_.code, file=sys.stderr)
    return 1


def finish(code: int) -> None:
    import threading

    threading._shutdown()  # noqa: SLF001  (the interpreter joins non-daemon threads at exit the same way)
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


# ----------------------------------------------------------------------------- in the test process
class Server:
    """One warm server per test process (xdist worker), started on first use, stopped at exit."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="warm"))  # short: AF_UNIX paths are limited to 108 bytes
        self.socket = str(self.directory / "s")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop(SOCKET_VARIABLE, None)
        self.proc = subprocess.Popen([sys.executable, __file__, self.socket], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the warm test server did not start (exit {self.proc.poll()})")
        self.bin = shim_directory(self.directory / "bin", console_commands())
        atexit.register(self.stop)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """``base`` (os.environ) with this server's shims first on PATH: commands started from it are warm."""
        env = dict(os.environ if base is None else base)
        return dict(env, **{SOCKET_VARIABLE: self.socket, "BALKD_WARM_BIN": str(self.bin),
                            "PATH": os.pathsep.join([str(self.bin), env.get("PATH", "")])})


def console_commands() -> List[str]:
    bin_dir = Path(sys.executable).parent
    return sorted(p.name for p in bin_dir.iterdir() if p.name.startswith(("balkd-", "fairseq-")) or p.name == "torchrun")


_SERVER: Optional[Server] = None


def server() -> Optional[Server]:
    """The warm server of this process, or None under ``BALKD_TESTS_COLD=1``."""
    global _SERVER
    if COLD:
        return None
    if _SERVER is None:
        _SERVER = Server()
    return _SERVER


def warm_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """An environment whose ``balkd-*``/``fairseq-*``/``torchrun``/``python`` commands run warm."""
    found = server()
    return dict(os.environ if base is None else base) if found is None else found.env(base)


def python_command() -> List[str]:
    """What to run instead of ``[sys.executable]`` for a warm ``python -m MODULE ...``."""
    found = server()
    return [sys.executable] if found is None else [str(found.bin / "python")]


if __name__ == "__main__":
    serve(sys.argv[1])
