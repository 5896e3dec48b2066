"""Loaded by every Python process started with this folder on PYTHONPATH (tests only).

When ``CW_NETGUARD_LOG`` is set, any attempt to resolve or connect to a host other than
loopback or a Unix socket is written to that file and refused, so a test can prove that
a replayed crawl, in its own process, never reached for the network.
"""

import os

if os.environ.get("CW_NETGUARD_LOG"):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import guard

    guard.install(os.environ["CW_NETGUARD_LOG"])
