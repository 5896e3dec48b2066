"""Captcha solvers: who answers when a portal asks for the characters in an image.

A solver gets the image bytes and returns the answer, or None when it cannot answer (the run
then records ``captcha_required`` and stops asking the portal). Built in:

* ``manual``: shows the image (a file path, opened with the desktop viewer when there is one)
  and asks on the terminal. Only when the crawl was started from an interactive terminal
  (``CW_INTERACTIVE``); in the daemon or tests it answers None at once, never blocks.
* ``command``: runs an external program with the image bytes on stdin; its first output line
  is the answer. Put an OCR script or a paid service's client there if you choose one.
* ``none``: never answers.

Anything else in ``CW_CAPTCHA`` of the form ``package.module:factory`` is loaded and called
with the crawler settings, so a third-party solver is a plug-in, never a default.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scrapy.utils.misc import load_object

logger = logging.getLogger(__name__)

MODES = ("manual", "command", "none")
COMMAND_TIMEOUT = 120.0


class CaptchaSolver(Protocol):
    name: str

    def solve(self, image: bytes, content_type: str | None = None) -> str | None:
        """The characters in ``image``, or None when this solver cannot answer."""
        ...


@dataclass
class NoSolver:
    name: str = "none"

    def solve(self, image: bytes, content_type: str | None = None) -> str | None:
        return None


@dataclass
class ManualSolver:
    """Ask the person at the terminal; without one (daemon, CI) answer None immediately."""

    interactive: bool
    image_dir: Path | None = None
    ask: Callable[[str], str] | None = None
    name: str = "manual"

    def solve(self, image: bytes, content_type: str | None = None) -> str | None:
        if not self.interactive:
            return None
        suffix = ".png" if "png" in (content_type or "") else ".jpg"
        directory = self.image_dir or Path(tempfile.gettempdir())
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="creditwatch-captcha-", suffix=suffix, dir=directory)
        with os.fdopen(handle, "wb") as out:
            out.write(image)
        viewer = shutil.which("xdg-open") if os.environ.get("DISPLAY") else None
        if viewer:
            subprocess.Popen([viewer, name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prompt = f"\ncaptcha image: {name}\ncharacters shown (empty to give up): "
        try:
            answer = (self.ask or _ask_terminal)(prompt).strip()
        except (EOFError, OSError):
            return None
        return answer or None


def _ask_terminal(prompt: str) -> str:
    """Read from the controlling terminal, not stdin (the crawl may run in a child)."""
    with open("/dev/tty", "r+", encoding="utf-8") as tty:
        tty.write(prompt)
        tty.flush()
        return tty.readline()


@dataclass
class CommandSolver:
    """``argv`` gets the image on stdin and prints the answer; failures answer None."""

    argv: list[str]
    timeout: float = COMMAND_TIMEOUT
    name: str = "command"

    def solve(self, image: bytes, content_type: str | None = None) -> str | None:
        env = {**os.environ, "CW_CAPTCHA_CONTENT_TYPE": content_type or ""}
        try:
            done = subprocess.run(
                self.argv, input=image, capture_output=True, timeout=self.timeout, env=env
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("captcha command %s failed: %s", self.argv, exc)
            return None
        if done.returncode != 0:
            logger.warning(
                "captcha command %s exited %s: %s",
                self.argv,
                done.returncode,
                done.stderr.decode("utf-8", "replace")[:200],
            )
            return None
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        return (lines[0].strip() or None) if lines else None


class CaptchaConfigError(ValueError):
    pass


def solver_from_settings(settings: Any) -> CaptchaSolver:
    """The solver ``CW_CAPTCHA`` names (default ``manual``), configured from the settings."""
    mode = (settings.get("CW_CAPTCHA") or "manual").strip()
    if mode == "none":
        return NoSolver()
    if mode == "manual":
        data_dir = os.environ.get("CREDITWATCH_DATA_DIR", "data")
        return ManualSolver(
            interactive=bool(settings.getbool("CW_INTERACTIVE", False)),
            image_dir=Path(data_dir) / "captcha",
        )
    if mode == "command":
        command = settings.get("CW_CAPTCHA_COMMAND")
        if not command:
            raise CaptchaConfigError("--captcha command needs --captcha-command PROGRAM")
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        return CommandSolver(argv)
    if ":" in mode:
        factory = load_object(_dotted(mode))
        return factory(settings)
    raise CaptchaConfigError(
        f"unknown captcha mode {mode!r} (use {', '.join(MODES)} or module:factory)"
    )


def _dotted(spec: str) -> str:
    module, _, attr = spec.partition(":")
    return f"{module}.{attr}"
