"""`make lab` writes the learner's copies to student/ and starts JupyterLab there (here without
a browser, on a free port)."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_student_copies(tmp_path):
    port, token = free_port(), "course-test-token"
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            f"--IdentityProvider.token={token}")
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}",
                             f"STUDENT={tmp_path / 'student'}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        request = api(port, token, "")
        deadline, last_error = time.time() + 90, None
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"make lab exited: {proc.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status, body = response.status, json.load(response)
                break
            except OSError as err:
                last_error = err
                time.sleep(0.5)
        else:
            raise AssertionError(f"JupyterLab did not answer within 90 s: {last_error}")
        assert status == 200
        names = {item["name"] for item in body["content"]}
        assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= names
        with urllib.request.urlopen(api(port, token, "00_tour.ipynb"), timeout=30) as response:
            served = json.load(response)["content"]
        assert not any("BEGIN SOLUTION" in "".join(c["source"]) for c in served["cells"])
    finally:
        stop(proc)


def api(port, token, path):
    """A request for JupyterLab's contents API: the listing of its root, or one notebook."""
    return urllib.request.Request(f"http://127.0.0.1:{port}/api/contents/{path}",
                                  headers={"Authorization": f"token {token}"})


def stop(proc):
    """End make and the JupyterLab it started (they share a process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
