"""Files others may read: what tempfile.mkstemp creates is private (0600); the atomic writers of
checkpoints and exported models give their files the mode open() would (0666 less the umask)."""
from __future__ import annotations

import os


def open_file_mode() -> int:
    """The mode open() gives a new file under the process's umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def share_like_open(descriptor_or_path) -> None:
    """Gives a file made by mkstemp the mode of a file made by open()."""
    if isinstance(descriptor_or_path, int):
        os.fchmod(descriptor_or_path, open_file_mode())
    else:
        os.chmod(descriptor_or_path, open_file_mode())
