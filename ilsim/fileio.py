"""Writing files and folders so that a reader never sees half of one.

- Temporaries live beside their target, named ``.<target>.tmp-<pid>-<random>``: a later run
  recognises those of dead processes and removes them (``clean_stale``).
- A file is written to a temporary and renamed over its target (``os.replace``: atomic).
- A folder is replaced by exchanging it with the finished temporary in one step where the kernel
  can (Linux ``renameat2(RENAME_EXCHANGE)``), so the target is at every instant the old or the new
  complete tree; elsewhere by two renames, with the old tree kept as ``.<target>.old-<pid>-*`` until
  the new one is in place, and restored by the next run if the process died in between.
- What is created gets the permissions the umask allows (0666 / 0777 masked), as open() and
  mkdir() would give -- not the 0600 / 0700 of tempfile.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's live process
        return True
    return True


def _temp_name(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-"


def clean_stale(target: Path) -> None:
    """Remove the temporaries of ``target`` left by processes that no longer run; if ``target`` is
    missing while a dead process's ``.old-`` copy of it exists, put that copy back first."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)-")
    for entry in sorted(parent.iterdir()):
        match = pattern.match(entry.name)
        if not match or _pid_alive(int(match.group(2))):
            continue
        kept = entry / target.name
        if match.group(1) == "old" and kept.exists() and not target.exists():
            os.rename(kept, target)          # the process died between its two renames
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def temp_file(target: Path) -> Path:
    """A new empty temporary file beside ``target`` (umask permissions)."""
    target = Path(target)
    clean_stale(target)
    fd, name = tempfile.mkstemp(prefix=_temp_name(target, "tmp"), dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~current_umask())
    return Path(name)


def temp_dir(target: Path) -> Path:
    """A new empty temporary folder beside ``target`` (umask permissions)."""
    target = Path(target)
    clean_stale(target)
    path = Path(tempfile.mkdtemp(prefix=_temp_name(target, "tmp"), dir=target.parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def replace_file(tmp: Path, target: Path) -> None:
    """fsync ``tmp`` and rename it over ``target``."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``target`` (which may not exist)."""
    tmp, target = Path(tmp), Path(target)
    if not target.exists():
        os.rename(tmp, target)
        return
    if _exchange(tmp, target):          # target is now the new tree, tmp the old one
        shutil.rmtree(tmp)
        return
    old = Path(tempfile.mkdtemp(prefix=_temp_name(target, "old"), dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(tmp, target)
    shutil.rmtree(old)
