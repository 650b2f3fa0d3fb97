"""Write a checkpoint directory atomically: readers see the old directory or the new one, never half."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` by rename.

    An existing target is first renamed aside and deleted only after the new directory is in place,
    so a crash leaves either the old checkpoint or the new one (plus a `.old-*` sibling to clean up).
    On error the temporary directory is removed and the target is untouched.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"checkpoint target {target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{tag}"
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old.exists():
            os.rename(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old.exists():
        shutil.rmtree(old)
    log.debug("wrote %s atomically", target)
