"""Progress of long loops: ``bar`` (tqdm).

- Interactive (a notebook or a terminal): tqdm's bars.
- A batch run (``make reproduce`` sets ``POISONREPRO_BATCH=1`` and, per notebook,
  ``POISONREPRO_PROGRESS_LOG``): the bars go to that log file, plain text, at most one update
  every ``LOG_INTERVAL_S`` seconds per bar, never into the notebook's committed outputs;
  ``reproduce`` prints the log's newest line as it grows (trials done, out of how many, and
  tqdm's estimate of the time left).
- ``POISONREPRO_PROGRESS=0`` (the tests): no bars at all.

This module reports and computes nothing, so the cache's code hashes leave it out
(``cache.STORAGE_MODULES``).
"""
from __future__ import annotations

import os
import re

#: tqdm moves the cursor between nested bars with escape sequences; a log line shows none
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

LOG_ENV = "POISONREPRO_PROGRESS_LOG"
LOG_INTERVAL_S = 20.0

_LOGS: dict[str, object] = {}


def _log_file(path: str):
    """One line-buffered handle per log file and process (tqdm never closes the file it is given)."""
    if path not in _LOGS:
        _LOGS[path] = open(path, "a", buffering=1, encoding="utf-8")
    return _LOGS[path]


def bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, placed as the module's docstring says."""
    log = os.environ.get(LOG_ENV)
    if os.environ.get("POISONREPRO_PROGRESS", "1") == "0":
        kwargs["disable"] = True
    elif log:
        from tqdm.std import tqdm  # plain text: no widget in a log file
        kwargs.update(file=_log_file(log), ascii=True, mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S * 3,
                      dynamic_ncols=False, ncols=100)
        return tqdm(iterable, **kwargs)
    elif os.environ.get("POISONREPRO_BATCH"):
        kwargs["disable"] = True
    from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def newest_line(text: str) -> str | None:
    """The last complete update in a tqdm log (updates end in a carriage return or a newline),
    or None where there is none yet."""
    complete = _ESCAPES.sub("", text).replace("\r", "\n").split("\n")[:-1]
    lines = [line.strip() for line in complete if line.strip()]
    return lines[-1] if lines else None
