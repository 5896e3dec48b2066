"""The read-only web app (``creditwatch serve``): lists, search, entities, snapshots, archived
responses and a JSON API, server-rendered in Chinese and English."""
