"""Errors raised by the AuthFace library. Each message names the problem and the fix."""

from __future__ import annotations


class AuthFaceError(Exception):
    """Base class of every error the library raises on bad input or set-up."""


class MissingDependencyError(AuthFaceError, ImportError):
    """An optional dependency is not installed; the message says what to ``pip install``."""

    def __init__(self, package: str, needed_for: str, pip_name: str | None = None) -> None:
        self.package = package
        self.pip_name = pip_name or package
        super().__init__(
            f"{needed_for} needs the Python package '{package}', which is not installed. "
            f"Install it into ComfyUI's Python with: pip install {self.pip_name}"
        )


class ModelFileError(AuthFaceError):
    """A model file or folder is missing, corrupt or of the wrong kind."""
