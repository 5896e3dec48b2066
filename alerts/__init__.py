"""Alerts: turning change events into messages and delivering them, once.

``subscriptions`` (who follows what) → ``matching`` (which events concern them) → ``outbox``
(rows written with the events) → ``sender`` (delivery with retries) through ``channels``
(email, signed webhooks, apprise, Atom), in words from ``messages``; ``render`` is the
one-line form the terminal prints.
"""
