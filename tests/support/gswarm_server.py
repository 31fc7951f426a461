"""Starting the real `gswarm data start` on an ephemeral port, for the pytest
suites (tests/cli, tests/python). GSWARM_BINARY names the binary under test."""

import os
import queue
import re
import signal
import subprocess
import threading

BINARY = os.environ.get("GSWARM_BINARY", "gswarm")
START_TIMEOUT = 30
LISTENING = re.compile(r"gswarm listening on (\S+):(\d+)")


class Server:
    """One `gswarm data start` process on an ephemeral port."""

    def __init__(self, disk_path, log_path, *extra, host="127.0.0.1", env=None):
        self.log = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [BINARY, "data", "start", "--host", host, "--port", "0",
             "--disk-path", str(disk_path), *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        lines = queue.Queue()
        # Reads stdout to its end so the server never blocks on a full pipe; the
        # first lines are handed over until the port is known.
        self.reader = threading.Thread(target=self._drain, args=(lines,), daemon=True)
        self.reader.start()
        self.address = None
        try:
            while self.address is None:
                line = lines.get(timeout=START_TIMEOUT)
                if line is None:
                    break
                match = LISTENING.search(line)
                if match:
                    self.port = int(match.group(2))
                    self.address = f"{match.group(1)}:{match.group(2)}"
        except queue.Empty:
            pass
        if self.address is None:
            self.stop()
            with open(log_path) as log:
                raise RuntimeError(f"gswarm did not start; its stderr:\n{log.read()}")

    def _drain(self, lines):
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)
        self.proc.stdout.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        self.log.close()
        return self.proc.returncode
