"""Scrapy settings for creditwatch. Per-source politeness comes from the registry
(``PortalSpider.update_settings``); run wiring comes as ``CW_*`` settings."""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("creditwatch")
except PackageNotFoundError:  # running from a checkout without installing
    VERSION = "0+unknown"

BOT_NAME = "creditwatch"
# One spider per registered source, built from its room (crawlers/sources/<id>/): its own
# spider.py, else the family spider its source.yml names. There are no spider modules to scan.
SPIDER_LOADER_CLASS = "crawlers.loader.SourceSpiderLoader"

# Identify ourselves and say why we are here. Operators put their own contact (a URL or an
# e-mail address) in CREDITWATCH_CONTACT so a portal's webmaster can reach them.
CONTACT = os.environ.get("CREDITWATCH_CONTACT", "https://github.com/creditwatch/creditwatch")
USER_AGENT = (
    f"creditwatch/{VERSION} (+{CONTACT}; public-interest monitoring of published credit lists)"
)
ROBOTSTXT_OBEY = True

# Politeness defaults; the registry sets each source's own values.
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 1
DOWNLOAD_DELAY = 2.0
DOWNLOAD_DELAY_JITTER = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 60
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
CW_RETRY_BACKOFF = 5.0

DOWNLOADER_MIDDLEWARES = {
    "crawlers.runmiddlewares.FetchLogMiddleware": 50,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawlers.runmiddlewares.BackoffRetryMiddleware": 550,
    "crawlers.runmiddlewares.ArchiveMiddleware": 580,
    "crawlers.middlewares.CassetteMiddleware": 950,
}
ITEM_PIPELINES = {
    "crawlers.pipelines.NormalisePipeline": 300,
    "crawlers.pipelines.StagePipeline": 800,
}
EXTENSIONS = {
    "crawlers.extensions.RunExtension": 0,
    "scrapy.extensions.telnet.TelnetConsole": None,
}

# Runs: CW_RUN_ID (set by `creditwatch crawl`), CW_DELIST_AFTER, and the cassette:
# CW_CASSETTE (path) with CW_CASSETTE_MODE "replay" (default) or "record".
CW_DELIST_AFTER = 2
CW_CASSETTE_MODE = "replay"

TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
COOKIES_ENABLED = True
LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"
