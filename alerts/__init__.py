"""Alerts: turning change events into messages and delivering them.

For now this renders events for the terminal; channels, subscriptions and the outbox come
with the alerts issue and build on the same rendering.
"""
