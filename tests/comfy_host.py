"""Start a real ComfyUI host with this checkout linked as a custom node, and drive it over HTTP.

The host runs ``main.py --cpu`` from a release unpacked by ``make setup`` (tools/setup_hosts.py)
with its own ``--base-directory`` under a temporary folder, so every test session gets a clean
``custom_nodes``/``models``/``input``/``output``/``user`` and the repository under test (not the
one the cached host was linked to) is what gets loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOSTS_DIR = REPO / ".cache" / "hosts"
HOST_VERSIONS = ("0.30.0", "0.3.75")
PACK_NAME = "ComfyUI-AuthFace"
BASE_FOLDERS = ("custom_nodes", "models", "input", "output", "temp", "user")


def host_dir(version: str) -> Path:
    """Folder of the cached host release ``version`` (built by ``make setup``)."""
    path = HOSTS_DIR / f"comfyui-{version}"
    if not (path / "main.py").is_file():
        raise RuntimeError(f"ComfyUI {version} is not set up in {path}: run `make setup` first")
    return path


def host_env(version: str) -> dict[str, str]:
    """The environment a process of ComfyUI ``version`` runs with: ours, with the host's overlay
    of its own requirements (when it has one) first on PYTHONPATH."""
    env = dict(os.environ)
    overlay = host_dir(version) / "overlay"
    if overlay.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(overlay), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HostError(RuntimeError):
    """The host failed to start or a prompt failed; the message carries the host's log tail."""


@dataclass
class ComfyHost:
    """One running ComfyUI process on a free loopback port."""

    version: str
    base_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "comfyui.log"

    def start(self, timeout: float = 240.0) -> "ComfyHost":
        for name in BASE_FOLDERS:
            (self.base_dir / name).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        home = host_dir(self.version)
        env = host_env(self.version)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(self.base_dir), "--disable-auto-launch"],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HostError(f"ComfyUI {self.version} exited during start-up:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.stop()
        raise HostError(f"ComfyUI {self.version} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rss_bytes(self) -> int:
        """Resident memory of the host process (Linux ``/proc``); 0 when it is not running."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except (AttributeError, OSError):
            return 0
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields.get("VmRSS", "0 kB").split()[0]) * 1024

    def free_memory(self, timeout: float = 120.0) -> int:
        """Unload the host's models and drop its node cache (``POST /free``), then wait until its
        resident memory stops shrinking. A CPU host keeps every model it has loaded in RAM; a test
        that needs the RAM itself (a training run) calls this first. Returns the bytes released."""
        before = self.rss_bytes()
        self.post("/free", {"unload_models": True, "free_memory": True})
        deadline = time.monotonic() + timeout
        previous = before
        time.sleep(2.0)
        while time.monotonic() < deadline:
            current = self.rss_bytes()
            if current > previous - 16 * 1024**2:
                break
            previous = current
            time.sleep(2.0)
        return before - self.rss_bytes()

    def get(self, path: str, timeout: float = 120.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: object, timeout: float = 300.0):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                return json.loads(body) if body.strip() else None
        except urllib.error.HTTPError as exc:
            raise HostError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def object_info(self) -> dict:
        return self.get("/object_info", timeout=60)

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        """Queue an API-format workflow; returns its prompt id."""
        answer = self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        return answer["prompt_id"]

    def watch(self) -> "Watcher":
        """A websocket listener for the messages of prompts queued with its ``client_id``."""
        return Watcher(self)

    def run_watching(self, prompt: dict, timeout: float = 600.0) -> tuple[dict, set[str]]:
        """Run a prompt while listening; returns its /history entry and the ids of the nodes that
        actually executed (not taken from cache, not skipped)."""
        watcher = self.watch()
        try:
            prompt_id = self.queue(prompt, client_id=watcher.client_id)
            executed: set[str] = set()

            def finished(message: dict) -> bool:
                data = message.get("data", {})
                if message["type"] == "executing" and data.get("prompt_id") == prompt_id and data.get("node"):
                    executed.add(str(data["node"]))
                return message["type"] in ("execution_success", "execution_error", "execution_interrupted") \
                    and data.get("prompt_id") == prompt_id

            watcher.wait_for(finished, timeout)
        finally:
            watcher.close()
        return self.wait(prompt_id, timeout=60), executed

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        """Wait for a queued prompt; returns its /history entry, raising HostError on failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                history = self.get(f"/history/{prompt_id}")
            except (urllib.error.URLError, TimeoutError):
                # A host busy loading or sampling on a loaded CPU can answer slowly: ask again.
                continue
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error" or not status.get("completed", True):
                    raise HostError(f"prompt failed: {json.dumps(status, indent=1)[:4000]}\n{self.log_tail()}")
                return entry
            time.sleep(0.5)
        raise HostError(f"prompt {prompt_id} did not finish within {timeout:.0f} s\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def add_input(self, source: Path, name: str | None = None) -> str:
        """Copy a file into the host's input folder; returns the name LoadImage takes."""
        name = name or source.name
        shutil.copyfile(source, self.base_dir / "input" / name)
        return name

    def add_model(self, folder: str, name: str, source: Path) -> str:
        """Link ``source`` (file or folder) as ``models/<folder>/<name>``; returns ``name``."""
        target = self.base_dir / "models" / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
        return name

    def output_files(self, entry: dict) -> list[Path]:
        """Files the prompt's output nodes saved (SaveImage/PreviewImage), as paths."""
        files = []
        for node_output in entry.get("outputs", {}).values():
            for image in node_output.get("images", []):
                folder = self.base_dir / image["type"]
                files.append(folder / image.get("subfolder", "") / image["filename"])
        return files


class Watcher:
    """Reads a host's websocket messages (JSON ones; binary previews are skipped)."""

    def __init__(self, host: ComfyHost) -> None:
        import websocket

        self.client_id = uuid.uuid4().hex
        self.host = host
        self.socket = websocket.create_connection(
            f"ws://127.0.0.1:{host.port}/ws?clientId={self.client_id}", timeout=5)

    def wait_for(self, predicate, timeout: float) -> dict:
        """The first message for which ``predicate(message)`` is true; HostError after ``timeout``."""
        import websocket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = self.socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(raw, bytes):
                continue
            message = json.loads(raw)
            if predicate(message):
                return message
        raise HostError(f"no matching websocket message within {timeout:.0f} s\n{self.host.log_tail()}")

    def close(self) -> None:
        self.socket.close()
