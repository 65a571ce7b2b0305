"""The CSIC 2010 HTTP data set's format: a reader, a writer and a simulator of look-alike files.

A file is one raw HTTP/1.1 request after another: the request line (with an absolute URL), the
headers, a blank line, then for POST and PUT the form-encoded body on one line; lines end in CRLF
and a blank line follows each request. Values are percent-encoded in Latin-1 (`%F1` is ñ).

`simulate_csic` writes the three files of the data set's layout from a shop under `/tienda1/`
shaped like the published samples, so that the tests and a smoke run of `make
evaluate-requests` need not have the real data set (which is a held-out check).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import pandas as pd

from projects.traffic.logformat import COLUMNS, BadLine, split_request
from projects.traffic.simulator import PAYLOAD_KINDS, Payloads

log = logging.getLogger(__name__)

HOST = "localhost:8080"
USER_AGENT = "Mozilla/5.0 (compatible; Konqueror/3.5; Linux) KHTML/3.5.8 (like Gecko)"
ACCEPT = (
    "text/xml,application/xml,application/xhtml+xml,text/html;q=0.9,text/plain;q=0.8,"
    "image/png,*/*;q=0.5"
)
FILES = ("normalTrafficTraining.txt", "normalTrafficTest.txt", "anomalousTrafficTest.txt")
# the target may hold a raw space (a client that did not encode it)
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S.*?) (HTTP/\d\.\d)")


@dataclass
class CsicRequest:
    """One request of a CSIC file; `line` is the 1-based line of its request line."""

    method: str
    path: str
    query: str
    body: str
    user_agent: str
    line: int
    protocol: str = "HTTP/1.1"
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- reading


def _lines(path: Path) -> list[str]:
    with path.open("rb") as f:
        data = f.read().decode("latin-1")  # every byte is a character: never fails
    return data.replace("\r\n", "\n").split("\n")


def read_csic(path: Path | str, bad: list[BadLine] | None = None) -> list[CsicRequest]:
    """Read a CSIC 2010 file; a malformed request is logged (and added to `bad`), not fatal.

    Args:
        path: the file.
        bad: if given, each malformed request is appended to it (source, line, reason, text).

    Returns:
        The well-formed requests, in file order.
    """
    path = Path(path)
    lines = _lines(path)
    requests: list[CsicRequest] = []
    problems: list[BadLine] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        request, i, problem = _one(lines, i)
        if problem is not None:
            problems.append(BadLine(path.name, problem[0], problem[1], problem[2][:300]))
        elif request is not None:
            requests.append(request)
    for p in problems[:20]:
        log.warning("%s:%d: %s", p.source, p.line, p.reason)
    if len(problems) > 20:
        log.warning("%s: %d more malformed requests", path.name, len(problems) - 20)
    if bad is not None:
        bad.extend(problems)
    return requests


def _skip_request(lines: list[str], i: int) -> int:
    """The index after the malformed request that starts at `i` (at the next blank line)."""
    while i < len(lines) and lines[i].strip():
        i += 1
    return i


def _one(
    lines: list[str], start: int
) -> tuple[CsicRequest | None, int, tuple[int, str, str] | None]:
    """Parse the request at `start`; returns it, the index after it, and a problem if any."""
    first = lines[start]
    m = _REQUEST_LINE.fullmatch(first.strip())
    if m is None:
        return None, _skip_request(lines, start), (start + 1, "not a request line", first)
    headers: dict[str, str] = {}
    i = start + 1
    while i < len(lines) and lines[i].strip():
        name, sep, value = lines[i].partition(":")
        if not sep or not name.strip():
            problem = (i + 1, f"malformed header in the request at line {start + 1}", lines[i])
            return None, _skip_request(lines, i), problem
        headers[name.strip()] = value.strip()
        i += 1
    if i >= len(lines):
        problem = (start + 1, "request cut off before the blank line after its headers", first)
        return None, i, problem
    i += 1  # the blank line after the headers
    body = ""
    length = _content_length(headers)
    if length is None:
        problem = (
            start + 1,
            f"Content-Length is not a number: {headers['Content-Length']!r}",
            first,
        )
        return None, _skip_request(lines, i), problem
    if length > 0:
        if i >= len(lines) or not lines[i]:
            return None, i, (start + 1, "Content-Length but no body line", first)
        body = lines[i]
        i += 1
    method, path, query, _ = split_request(f"{m.group(1)} {m.group(2)}")
    request = CsicRequest(
        method=method,
        path=path,
        query=query,
        body=body,
        user_agent=headers.get("User-Agent", "-"),
        line=start + 1,
        protocol=m.group(3),
        headers=headers,
    )
    return request, i, None


def _content_length(headers: dict[str, str]) -> int | None:
    value = headers.get("Content-Length", "0")
    return int(value) if value.isdigit() else None


def to_frame(requests: list[CsicRequest], client_ip: str = "-") -> pd.DataFrame:
    """The requests in the parsed-request frame of `logformat` (time 0, status 0, bytes 0)."""
    frame = pd.DataFrame(
        {
            "line": [r.line for r in requests],
            "client_ip": client_ip,
            "user": "-",
            "time": 0.0,
            "method": [r.method for r in requests],
            "path": [r.path for r in requests],
            "query": [r.query for r in requests],
            "protocol": [r.protocol for r in requests],
            "status": 0,
            "bytes": 0,
            "referrer": "-",
            "user_agent": [r.user_agent for r in requests],
            "body": [r.body for r in requests],
        },
        columns=COLUMNS,
    )
    return frame.astype({"line": "int64", "time": "float64", "status": "int64", "bytes": "int64"})


# ---------------------------------------------------------------------------- writing


def _headers(r: random.Random, body: str) -> dict[str, str]:
    headers = {
        "User-Agent": USER_AGENT,
        "Pragma": "no-cache",
        "Cache-control": "no-cache",
        "Accept": ACCEPT,
        "Accept-Encoding": "x-gzip, x-deflate, gzip, deflate",
        "Accept-Charset": "utf-8, utf-8;q=0.5, *;q=0.5",
        "Accept-Language": "en",
        "Host": HOST,
        "Cookie": f"JSESSIONID={r.getrandbits(128):032X}",
    }
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["Connection"] = "close"
    if body:
        headers["Content-Length"] = str(len(body.encode("latin-1", "replace")))
    return headers


def write_csic(path: Path | str, requests: list[CsicRequest]) -> None:
    """Write requests in the CSIC format (CRLF, Latin-1, absolute URLs, Content-Length)."""
    with Path(path).open("wb") as f:
        for req in requests:
            target = f"http://{HOST}{req.path}" + (f"?{req.query}" if req.query else "")
            headers = dict(req.headers)
            if req.body:
                headers["Content-Length"] = str(len(req.body.encode("latin-1", "replace")))
            lines = [f"{req.method} {target} {req.protocol}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            # a blank line ends the headers; a body takes one line; a blank line ends the request
            lines += ["", req.body, "", ""] if req.body else ["", "", ""]
            f.write("\r\n".join(lines).encode("latin-1", "replace"))


# ---------------------------------------------------------------------------- the shop

PRODUCTS = [
    (1, "Queso Manchego", 39),
    (2, "Jamón Ibérico", 85),
    (3, "Vino Rioja", 100),
    (4, "Aceite de oliva", 24),
    (5, "Turrón de Jijona", 12),
    (6, "Chorizo de León", 18),
    (7, "Azafrán de La Mancha", 60),
    (8, "Cava Brut Nature", 15),
    (9, "Sobrasada de Mallorca", 22),
    (10, "Pimentón de la Vera", 9),
]
# fmt: off
NAMES = ["Nurit", "Franklin", "Samia", "Begoña", "Íñigo", "Ainhoa", "Jesús", "Zoë", "Ángel",
         "Mónica", "Raúl", "Nuria", "Xabier"]
SURNAMES = ["Ferrandez Cabañas", "Catalayud Mirabet", "Canella", "Núñez Peña", "O'Donnell Ruiz",
            "Ibáñez", "García-Lorca", "Muñoz de la Torre", "Abad Ortuño", "Llorente i Vila"]
CITIES = ["Tronchón", "Tirapu", "Mutxamel", "Alcañiz", "Cáceres", "Begíjar", "Ourense", "Xàtiva",
          "Zestoa", "Almuñécar"]
PROVINCES = ["Cáceres", "Madrid", "Zaragoza", "Teruel", "Valencia", "Navarra", "Málaga",
             "Ourense", "Guipúzcoa"]
# fmt: on
STREETS = ["Calle Clavel 30 11?B", "C/ Cala, 9, ", "Calle Palencia S/N ", "Av. Peñíscola 4, 2º"]
DOMAINS = ["bwds.ne", "lecriture.md", "enlanzarote.com.vc", "correo.es", "telefonica.net"]
STATIC = [
    "/tienda1/global/estilos.css",
    "/tienda1/imagenes/logo.jpg",
    "/tienda1/imagenes/1.gif",
    "/tienda1/imagenes/2.gif",
    "/tienda1/imagenes/3.gif",
    "/tienda1/miembros/imagenes/castro.jpg",
    "/tienda1/miembros/imagenes/ogono.jpg",
    "/tienda1/miembros/imagenes/zarauz.jpg",
]
PAGES = [
    "/tienda1/index.jsp",
    "/tienda1/publico/carrito.jsp",
    "/tienda1/publico/miembros.jsp",
    "/tienda1/publico/productos.jsp",
    "/tienda1/global/creditos.jsp",
    "/tienda1/global/menum.jsp",
    "/tienda1/global/titulo.jsp",
    "/tienda1/miembros/index.jsp",
    "/tienda1/miembros/fotos.jsp",
    "/tienda1/miembros/salir.jsp",
]
PROBES = [
    "/asf-logo-wide.gif~",
    "/IISSamples/sdk/asp/applications/Application_VBScript.asp",
    "/tienda1/publico/anadir.jsp.old",
    "/tienda1/publico/pagar.jsp.BAK",
    "/tienda1/global/menum.jsp~",
    "/tienda1/admin/",
    "/tienda1/WEB-INF/web.xml",
    "/tienda1/miembros/editar.jsp.bak",
    "/manager/html",
    "/examples/jsp/snp/snoop.jsp",
    "/tienda1/imagenes/.DS_Store",
    "/scripts/..%c1%1c../winnt/system32/cmd.exe",
    "/tienda1/publico/autenticar.jsp.swp",
    "/cgi-bin/test-cgi",
]


def _enc(value: str) -> str:
    """Percent-encode as the CSIC data set does: Latin-1, `+` for spaces."""
    return quote_plus(value, safe="*", encoding="latin-1", errors="replace")


class _CsicShop:
    """The forms of the shop under /tienda1/, with varied valid values."""

    def __init__(self, r: random.Random) -> None:
        self.r = r

    def _login(self) -> str:
        r = self.r
        name = r.choice(NAMES).lower().encode("ascii", "ignore").decode()
        return r.choice([name, f"{name[:3]}{r.choice(SURNAMES)[:4].lower()}", f"de_{name}"])

    def _password(self) -> str:
        r = self.r
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFñó"
        return "".join(r.choice(alphabet) for _ in range(r.randint(5, 10)))

    def form(self) -> tuple[str, list[tuple[str, str]]]:
        """A form page and its parameters."""
        r = self.r
        kinds = [
            "anadir",
            "autenticar",
            "caract",
            "entrar",
            "pagar",
            "registro",
            "vaciar",
            "editar",
        ]
        kind = r.choices(kinds, [5, 3, 3, 1, 2, 2, 1, 1])[0]
        if kind == "anadir":
            pid, name, price = r.choice(PRODUCTS)
            return "/tienda1/publico/anadir.jsp", [
                ("id", str(pid)),
                ("nombre", name),
                ("precio", str(price)),
                ("cantidad", str(r.choice([1, 1, 2, 3, 5, 10, 12, 24, 55, 99]))),
                ("B1", "Añadir al carrito"),
            ]
        if kind == "autenticar":
            return "/tienda1/publico/autenticar.jsp", [
                ("modo", "entrar"),
                ("login", self._login()),
                ("pwd", self._password()),
                ("remember", r.choice(["on", "off"])),
                ("B1", "Entrar"),
            ]
        if kind == "caract":
            return "/tienda1/publico/caracteristicas.jsp", [("id", str(r.randint(1, 10)))]
        if kind == "entrar":
            return "/tienda1/publico/entrar.jsp", [("errorMsg", "Credenciales incorrectas")]
        if kind == "pagar":
            return "/tienda1/publico/pagar.jsp", [
                ("modo", "insertar"),
                ("precio", str(r.randint(10, 9999))),
                ("B1", "Pasar por caja"),
            ]
        if kind == "vaciar":
            return "/tienda1/publico/vaciar.jsp", [("B2", "Vaciar carrito")]
        path = (
            "/tienda1/publico/registro.jsp"
            if kind == "registro"
            else "/tienda1/miembros/editar.jsp"
        )
        return path, self._registration()

    def _registration(self) -> list[tuple[str, str]]:
        r = self.r
        name = r.choice(NAMES)
        login = self._login()
        return [
            ("modo", "registro"),
            ("login", login),
            ("password", self._password()),
            ("nombre", name),
            ("apellidos", r.choice(SURNAMES)),
            ("email", f"{login}{r.choice(['', '.', '-'])}{r.randint(1, 99)}@{r.choice(DOMAINS)}"),
            ("dni", f"{r.randint(10**7, 10**8 - 1)}{r.choice('TRWAGMYFPDXBNJZSQVHLCKE')}"),
            ("direccion", r.choice(STREETS)),
            ("ciudad", r.choice(CITIES)),
            ("cp", f"{r.randint(1000, 52999):05d}"),
            ("provincia", r.choice(PROVINCES)),
            ("ntc", str(r.randint(10**15, 10**16 - 1))),
            ("B1", "Registrar"),
        ]

    def normal(self) -> list[tuple[str, str, str]]:
        """One user action: (method, path, query-or-body) requests, GET then maybe POST."""
        r = self.r
        x = r.random()
        if x < 0.25:
            return [("GET", r.choice(PAGES), "")]
        if x < 0.35:
            return [("GET", r.choice(STATIC), "")]
        path, pairs = self.form()
        encoded = "&".join(f"{n}={_enc(v)}" for n, v in pairs)
        return [("GET", path, encoded), ("POST", path, encoded)]

    def anomalous(self, payloads: Payloads) -> tuple[list[tuple[str, str, str]], str]:
        """An attack: the same malicious form sent as GET and as POST, or a probe."""
        r = self.r
        if r.random() < 0.12:
            return [("GET", r.choice(PROBES), "")], "probe"
        kind = r.choice(PAYLOAD_KINDS)
        path, pairs = self.form()
        i = r.randrange(len(pairs))
        name, value = pairs[i]
        if kind == "tampering" and r.random() < 0.4:
            # the data set's favourite: a renamed parameter or a stray character
            pairs[i] = (name + "A", value) if r.random() < 0.5 else (name, value + "/")
            encoded = "&".join(f"{n}={_enc(v)}" for n, v in pairs)
        else:
            payload, raw = payloads.make(kind, name, value, encode=_enc)
            text = payload if isinstance(payload, str) else str(payload)
            encoded = "&".join(
                f"{n}={(text if raw else _enc(text)) if j == i else _enc(v)}"
                for j, (n, v) in enumerate(pairs)
            )
        return [("GET", path, encoded), ("POST", path, encoded)], kind


def _request(r: random.Random, method: str, path: str, data: str, line: int) -> CsicRequest:
    query, body = (data, "") if method == "GET" else ("", data)
    return CsicRequest(method, path, query, body, USER_AGENT, line, headers=_headers(r, body))


def simulate_csic(
    out_dir: Path | str,
    n_normal_train: int,
    n_normal_test: int,
    n_anomalous: int,
    seed: int,
) -> dict[str, list[str]]:
    """Write CSIC-format look-alikes of the data set's three files into `out_dir`.

    Returns:
        Per file name, the kind of each request (`normal`, a payload kind or `probe`).
    """
    r = random.Random(seed)
    shop, payloads = _CsicShop(r), Payloads(r)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, list[str]] = {}
    for name, n, anomalous in zip(
        FILES, (n_normal_train, n_normal_test, n_anomalous), (False, False, True), strict=True
    ):
        requests: list[CsicRequest] = []
        labels: list[str] = []
        while len(requests) < n:
            if anomalous:
                group, kind = shop.anomalous(payloads)
            else:
                group, kind = shop.normal(), "normal"
            for method, path, data in group[: n - len(requests)]:
                requests.append(_request(r, method, path, data, 0))
                labels.append(kind)
        write_csic(out / name, requests)
        kinds[name] = labels
    return kinds
