"""Spider code shared by sources: ``base.PortalSpider`` and the family spiders (a pattern several
portals share, e.g. ``announcements``). A source's own spider lives in its room,
``crawlers/sources/<id>/spider.py``; ``crawlers.loader`` finds either by source id."""
