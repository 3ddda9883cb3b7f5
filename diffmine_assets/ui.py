"""`diffmine ui`: the Dagster UI (`dagster dev`) on 127.0.0.1, stopped
cleanly by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster_shared.ipc import get_ipc_shutdown_pipe, send_ipc_shutdown_message


def serve(config_path: Path, home: Path, port: int, grace: float) -> int:
    """`dagster dev` on 127.0.0.1, stopped cleanly by Ctrl-C or SIGTERM.

    A service manager, a container runtime or a test stops a process with
    SIGTERM, which dagster dev does not act on (and a SIGINT is lost when it
    was started in the background, where SIGINT is ignored). So the server
    runs in its own session and either signal becomes dagster dev's own
    shutdown message on its --shutdown-pipe (the way `dg dev` stops it): it
    stops its webserver and daemon, and is killed after a grace period if
    it does not."""
    env = dict(os.environ, DAGSTER_HOME=str(home), DIFFMINE_CONFIG=str(config_path))
    read_fd, write_fd = get_ipc_shutdown_pipe()
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "diffmine_assets.definitions"]
    print(" ".join(cmd), flush=True)
    # dagster dev turns the message into a KeyboardInterrupt, which Python
    # only raises where SIGINT is not ignored (as it is under `cmd &`)
    server = subprocess.Popen([*cmd, "--shutdown-pipe", str(read_fd)], env=env, pass_fds=[read_fd], start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(read_fd)
    stopping = {"since": None}

    def stop(signum, _frame):
        if stopping["since"] is None:
            stopping["since"] = time.monotonic()
            print(f"diffmine ui: {signal.Signals(signum).name}: stopping the server", file=sys.stderr, flush=True)
            try:
                send_ipc_shutdown_message(write_fd)
            except OSError:  # it is gone already
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            rc = server.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            if stopping["since"] is not None and time.monotonic() - stopping["since"] > grace:
                print("diffmine ui: the server did not stop in time: killed", file=sys.stderr, flush=True)
                os.killpg(server.pid, signal.SIGKILL)
    try:  # whatever the server left behind in its session
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0 if stopping["since"] is not None else rc
