"""The request pattern analyzer service, and the example request that its OpenAPI page, the
docs (docs/services.md) and the tests share.

The example lives here rather than in `service.py` because importing the service reads the
pinned model, and the tests and the docs' command import the example without one.
"""

from __future__ import annotations

_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0"
_SHOP = "https://shop.example.com/products"

# Four ordinary requests of one visitor, then a SQL injection in the `page` parameter from
# another address, then a line that is not an access-log line (counted and named, not fatal).
EXAMPLE_LINES = [
    f'203.0.113.7 - - [11/Mar/2024:10:15:32 +0000] "GET /api/v1/products?category=books&page=2'
    f'&per_page=24 HTTP/1.1" 200 18234 "{_SHOP}" "{_AGENT}"',
    f'203.0.113.7 - - [11/Mar/2024:10:15:41 +0000] "GET /api/v1/search?q=red+running+shoes'
    f'&limit=20 HTTP/1.1" 200 5120 "{_SHOP}" "{_AGENT}"',
    f'203.0.113.7 - - [11/Mar/2024:10:15:55 +0000] "GET /api/v1/products/1042 HTTP/1.1" 200 3311'
    f' "{_SHOP}" "{_AGENT}"',
    f'203.0.113.7 - - [11/Mar/2024:10:16:03 +0000] "POST /api/v1/cart/items HTTP/1.1" 201 612'
    f' "{_SHOP}/1042" "{_AGENT}" "{{\\x22product_id\\x22:1042,\\x22quantity\\x22:1}}"',
    f'198.51.100.23 - - [11/Mar/2024:10:16:10 +0000] "GET /api/v1/products?category=books'
    f'&page=2%27+OR+%271%27%3D%271&per_page=24 HTTP/1.1" 200 18234 "-" "{_AGENT}"',
    "not an access-log line",
]
# The same requests, structured (the last line has no structured form).
EXAMPLE_REQUESTS = [
    {"client_ip": "203.0.113.7", "time": "2024-03-11T10:15:32Z", "path": "/api/v1/products",
     "query": "category=books&page=2&per_page=24", "bytes": 18234, "referrer": _SHOP,
     "user_agent": _AGENT},
    {"client_ip": "203.0.113.7", "time": "2024-03-11T10:15:41Z", "path": "/api/v1/search",
     "query": "q=red+running+shoes&limit=20", "bytes": 5120, "referrer": _SHOP,
     "user_agent": _AGENT},
    {"client_ip": "203.0.113.7", "time": "2024-03-11T10:15:55Z", "path": "/api/v1/products/1042",
     "bytes": 3311, "referrer": _SHOP, "user_agent": _AGENT},
    {"client_ip": "203.0.113.7", "time": 1710152163, "method": "POST",
     "path": "/api/v1/cart/items", "body": '{"product_id":1042,"quantity":1}', "status": 201,
     "bytes": 612, "referrer": f"{_SHOP}/1042", "user_agent": _AGENT},
    {"client_ip": "198.51.100.23", "time": "2024-03-11T10:16:10Z", "path": "/api/v1/products",
     "query": "category=books&page=2%27+OR+%271%27%3D%271&per_page=24", "bytes": 18234,
     "user_agent": _AGENT},
]  # fmt: skip
