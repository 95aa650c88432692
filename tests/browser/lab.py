"""Drive JupyterLab 4 and ipywidgets 8 in Debian's Chromium with Playwright, offline.

Shared by ``tests/test_browser.py`` and ``scripts/screenshots.py``:

- :class:`JupyterLab` starts ``jupyter lab`` on a free localhost port with all its state (config,
  runtime, data, workspaces, settings, IPython) in one temporary folder, and stops it again;
- :func:`chromium` launches Debian's Chromium and closes it again without hanging on its crash
  handler;
- :func:`offline_context` opens a browser context that may only talk to localhost (every other
  request is aborted and recorded), so a widget that needs a CDN shows up as a failure;
- :func:`open_and_run_all` opens a notebook, waits until its kernel is really idle and runs all
  cells through the menu, as a learner would.

Facts this relies on (see STACK.md): the kernel indicator reads "idle" before the kernel can take
requests, so we wait for the status bar text "... | Idle"; Playwright cannot download browsers here,
so we launch ``/usr/bin/chromium`` (Debian's package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ptlearn-browser-test"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(interval)


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1, its state kept under ``state``.

    Use as a context manager; ``url(path)`` gives a page's address with the token.
    """

    def __init__(self, root: Path, state: Path, startup_timeout: float = 180.0):
        self.root, self.state, self.startup_timeout = Path(root), Path(state), startup_timeout
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.state / "jupyter.log"

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={TOKEN}"

    def environment(self) -> dict:
        env = dict(os.environ)
        for var, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("IPYTHONDIR", "ipython"),
        ]:
            env[var] = str(self.state / sub)
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        # the kernel imports ptlearn from this checkout, whatever is installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("MPLBACKEND", None)  # let the kernel pick its inline backend, as for a learner
        return env

    def quiet_settings(self) -> None:
        """No "get notified about Jupyter news?" toast, no update check: nothing to click away."""
        folder = self.state / "settings" / "@jupyterlab" / "apputils-extension"
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"fetchNews": "false", "checkForUpdates": False}
        (folder / "notification.jupyterlab-settings").write_text(json.dumps(settings))

    def start(self) -> JupyterLab:
        self.state.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self.quiet_settings()
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            "--no-browser",
            "--allow-root",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        log = open(self.log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stop() reaches it all
        )
        self._log = log
        wait_for(
            self.ready, self.startup_timeout, f"JupyterLab to answer (log: {self.log_path})", 0.5
        )
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {self.process.returncode}:\n{self.log_tail()}"
            )
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server: on SIGTERM it shuts its kernels down, then exits (SIGKILL if it hangs)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server leads its own process group
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass
        finally:
            self.process = None
            self._log.close()

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "file", "about"):
        return True
    return parsed.hostname in LOCAL_HOSTS


def crash_handlers(home: Path) -> list[int]:
    """The ``chrome_crashpad_handler`` processes of the browser whose config folder is ``home``."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"chrome_crashpad_handler") and os.fsencode(home) in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def kill_crash_handlers(home: Path) -> None:
    for pid in crash_handlers(home):
        try:
            os.kill(pid, signal.SIGKILL)  # works on a stopped process too
        except ProcessLookupError:
            pass


@contextmanager
def chromium(playwright, grace: float = 10.0):
    """Debian's Chromium, launched for Playwright; closed on exit without ever hanging.

    Chromium starts ``chrome_crashpad_handler`` detached (its parent is init) and the handler keeps
    the browser's stdout and stderr open; Playwright's ``browser.close()`` waits until they close,
    so a handler that is stopped or stuck makes it hang for good (a test teardown error). Each
    browser gets its own config folder, which names its handlers' crash database, so we can tell
    our handlers from anyone else's: if ``close()`` takes longer than ``grace`` seconds they are
    killed, and any left after it are killed too. The flags that should turn the handler off do
    not here: ``--disable-crash-reporter``/``--disable-breakpad`` still start it, and
    ``--disable-crashpad-for-testing`` makes Debian's build crash its child processes.
    """
    home = Path(tempfile.mkdtemp(prefix="ptlearn-chromium-"))
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, env=env)
    browser.ptlearn_home = home  # the folder that tells its crash handlers apart
    try:
        yield browser
    finally:
        watchdog = threading.Timer(grace, kill_crash_handlers, [home])
        watchdog.start()
        try:
            browser.close()
        finally:
            watchdog.cancel()
            kill_crash_handlers(home)
            shutil.rmtree(home, ignore_errors=True)


def offline_context(browser, **kwargs):
    """A browser context that can reach only localhost; returns ``(context, blocked_urls)``.

    Every other request (a CDN script, a web font, an analytics ping) is aborted and its URL
    appended to ``blocked_urls``: a page that needs one of them shows up broken.
    """
    context = browser.new_context(**kwargs)
    blocked: list[str] = []

    def handle(route):
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", handle)
    return context, blocked


def open_and_run_all(page, lab: JupyterLab, notebook: str, timeout: float = 180.0) -> None:
    """Open ``notebook`` in JupyterLab, wait for an idle kernel, then Run -> Run All Cells."""
    page.goto(lab.url(f"lab/tree/{notebook}"), timeout=timeout * 1000)
    status = page.locator(".jp-StatusBar-TextItem", has_text="| Idle")
    status.first.wait_for(timeout=timeout * 1000)
    dismiss_toasts(page)
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


def dismiss_toasts(page) -> None:
    """Answer "No" to the Jupyter news toast if it shows anyway."""
    no = page.get_by_role("button", name="No")
    if no.count():
        no.first.click()


def wait_for_cells(page, timeout: float = 300.0) -> None:
    """Wait until every code cell has run (its prompt shows a number, not ``[*]`` or ``[ ]``)."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=timeout * 1000,
        polling=500,
    )
