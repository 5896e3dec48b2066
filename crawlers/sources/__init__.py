"""The shipped registry: one room per source, ``<id>/source.yml`` and maybe ``<id>/spider.py``.

Rooms hold no ``__init__.py``; this package makes a room's spider importable by name,
``crawlers.sources.<id>.spider`` (see ``crawlers.loader``)."""
