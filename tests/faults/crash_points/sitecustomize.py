"""Loaded by every Python process started with this folder on PYTHONPATH (crash tests only).

Kill points that are the same on every run, so a test can SIGKILL a crawl or ``alerts send``
at any database statement of any phase, not at a wall-clock guess:

- ``CW_CRASH_COUNT_DIR``: each process writes, at exit, its phase and the statements it ran
  (``<phase>-<pid>.json``), and the conductor the statement count when it started its fetch
  child; an undisturbed run so tells the test how many kill points each phase has.
- ``CW_CRASH_AT=<phase>:<n>``: the process of that phase SIGKILLs itself just before its
  n-th statement (the statements before it done, or rolled back if uncommitted). Reads
  are kill points only in ``send``; SQLite staging on the driver's cursor counts as one.
- ``CW_CRASH_BATCH``: the fetch child writes its rows in batches of at most this many.

Phases: ``fetch`` (the Scrapy child: archive, fetch log, staging), ``conduct`` (the
``creditwatch crawl`` process: the run's start, then health, detection and the outbox) and
``send`` (``creditwatch alerts send``).
"""

import os

if os.environ.get("CW_CRASH_COUNT_DIR") or os.environ.get("CW_CRASH_AT"):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import crash_hooks

    crash_hooks.install(
        os.environ.get("CW_CRASH_COUNT_DIR"),
        os.environ.get("CW_CRASH_AT"),
        int(os.environ.get("CW_CRASH_BATCH") or 0) or None,
    )
