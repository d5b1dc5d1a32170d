"""\
Fuzzing du serveur TP4, partagé par `tests/test_hostile.py` (quelques
milliers de cas) et `tests/stress.py fuzz` (autant qu'on veut).

- `FuzzCaseGenerator` tire, d'une graine, une suite reproductible de cas :
  requêtes plausibles aux valeurs aléatoires, JSON de la mauvaise forme,
  octets au hasard, trames mutées, tronquées, démesurées, champs d'un
  mégaoctet, rafales de plusieurs trames, et les cas écrits à la main de
  `tests/malformed.py` (textes vides, imbrications profondes, en-têtes
  absurdes...).
- `FuzzDriver` envoie ces cas sur plusieurs connexions à la fois (une seule
  boucle `select`), lit et vérifie chaque réponse, et se reconnecte quand le
  serveur ferme une connexion.
- `GoodClient` joue pendant ce temps un client honnête (inscription,
  connexion, envoi, liste, lecture, statistiques) et note tout écart.
"""

import datetime
import json
import random
import re
import select
import socket
import threading
import time
import typing

from tests import malformed, support

gloutils = support.gloutils
glossocket = support.glossocket
H = gloutils.Headers

DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024
INTERNAL_ERROR = support.INTERNAL_ERROR
SERVER_FULL_WORD = "plein"
DOMAIN = gloutils.SERVER_DOMAIN


class FuzzCase(typing.NamedTuple):
    """Un cas : des octets à envoyer tels quels sur une connexion."""

    kind: str
    data: bytes
    # Vrai si, après ces octets, la connexion ne peut plus servir : trame
    # incomplète, longueur refusée ou `BYE`. Le pilote la referme alors.
    terminal: bool


def ends_connection(data: bytes, max_message: int) -> bool:
    """
    Vrai si le serveur ne peut plus rien traiter après `data` : il reste une
    trame incomplète, une longueur dépasse `max_message`, ou un `BYE` passe.
    """
    rest = bytearray(data)
    bodies = support.split_frames(rest)
    return bool(rest) or any(len(body) > max_message or _is_bye(body) for body in bodies)


def _is_bye(body: bytes) -> bool:
    if b"3" not in body:
        return False
    try:
        message = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    header = message.get("header") if isinstance(message, dict) else None
    return type(header) is int and header == H.BYE


_ALPHABETS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    "_.-",
    " \t\r\n\x00\x07\x1b\x7f",
    "@/\\\"'{}[]:,<>%$#*?!;=",
    "éèàçÉÎïöü名前字漢😀🚀\u200b\u202e\ufeff",
    "\ud800\udfff",
)
_ALPHABET_WEIGHTS = (40, 15, 8, 6, 8, 8, 1)


class FuzzCaseGenerator:
    """Suite reproductible de cas hostiles, entièrement fixée par `seed`."""

    KINDS = (
        ("requete", 32), ("forme", 18), ("mutation", 20), ("octets", 7),
        ("rafale", 7), ("tronquee", 7), ("enorme", 3), ("table", 4),
        ("gros", 1), ("bye", 1),
    )

    def __init__(self, seed: int, *, max_message: int = DEFAULT_MAX_MESSAGE,
                 account: str = "fuzzer", password: str = support.STRONG_PASSWORD,
                 peers: typing.Sequence[str] = ("good",)) -> None:
        self.seed = seed
        self.random = random.Random(seed)
        self.max_message = max_message
        self.account = account
        self.password = password
        self.peers = tuple(peers)
        self._kinds = [kind for kind, _ in self.KINDS]
        self._weights = [weight for _, weight in self.KINDS]

    def cases(self, count: int) -> typing.Iterator[FuzzCase]:
        for _ in range(count):
            yield self.next_case()

    def next_case(self) -> FuzzCase:
        kind = self.random.choices(self._kinds, self._weights)[0]
        data = getattr(self, f"_case_{kind}")()
        return FuzzCase(kind, data, ends_connection(data, self.max_message))

    # ---- valeurs élémentaires ------------------------------------------

    def text(self, limit: int = 24) -> str:
        """Texte aléatoire : surtout court, parfois long, de tous alphabets."""
        rng = self.random
        roll = rng.random()
        length = (rng.randint(0, limit) if roll < 0.85
                  else rng.randint(limit, 400) if roll < 0.98
                  else rng.randint(400, 6000))
        alphabet = rng.choices(_ALPHABETS, _ALPHABET_WEIGHTS)[0]
        if rng.random() < 0.5:
            return "".join(rng.choice(alphabet) for _ in range(min(length, 64))) * (
                1 + length // 64)
        pool = "".join(rng.choices(_ALPHABETS, _ALPHABET_WEIGHTS, k=3))
        return "".join(rng.choice(pool) for _ in range(length))

    def integer(self) -> int:
        rng = self.random
        return rng.choice((
            rng.randint(-3, 40), 0, -1, 2 ** 31, 2 ** 63, -(2 ** 63), 10 ** 30,
            rng.randint(-(2 ** 40), 2 ** 40)))

    def value(self, depth: int = 0) -> typing.Any:
        """Valeur JSON quelconque (imbrication limitée)."""
        rng = self.random
        choices = ["null", "bool", "int", "float", "str"]
        if depth < 3:
            choices += ["list", "dict"]
        kind = rng.choice(choices)
        if kind == "null":
            return None
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "int":
            return self.integer()
        if kind == "float":
            return rng.choice((0.5, -0.0, 1.0, 4.0, 1e308, -1e-308, float("nan"),
                               float("inf"), rng.uniform(-1e6, 1e6)))
        if kind == "str":
            return self.text()
        if kind == "list":
            return [self.value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self.text(8): self.value(depth + 1) for _ in range(rng.randint(0, 4))}

    def username(self) -> str:
        rng = self.random
        return rng.choice((
            self.account, self.account.upper(), *self.peers,
            "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789_.-",
                                k=rng.randint(1, 70))),
            ".", "..", "LOST", "lost", "../x", "a/b", "", "a" * 65,
            "Éloïse", "名前", "a\x00b", "a\nb", self.text(),
        ))

    def secret(self) -> str:
        rng = self.random
        return rng.choice((
            self.password, support.STRONG_PASSWORD, "court", "sanschiffreAAA",
            "Aa1" + self.text(12), self.text(), "Motdepasse1\ud800",
        ))

    def address(self) -> str:
        rng = self.random
        # Jamais un des `peers` : leur boîte ne change que par eux-mêmes, ce
        # qui garde stable la numérotation que lit le client honnête.
        user = rng.choice((self.account, "inconnu", "LOST",
                           "..", "../../etc", "a/b", self.text(10)))
        return rng.choice((
            f"{user}@{DOMAIN}", f"{user.upper()}@{DOMAIN.upper()}",
            f"{user}@example.com", f"{user}@{DOMAIN}\r\nBcc: x@example.com",
            f"@{DOMAIN}", "sans-arobase", f"a@b@{DOMAIN}", f"{user}@", self.text(),
            f"{user}@{DOMAIN}" + "x" * rng.choice((0, 300)),
        ))

    def date(self) -> str:
        rng = self.random
        return rng.choice((
            datetime.datetime.fromtimestamp(rng.randint(0, 2 ** 33), datetime.timezone.utc
                                            ).strftime("%a, %d %b %Y %H:%M:%S %z"),
            "Tue, 12 Jul 2022 19:21:57 +0000",
            "Mon, 01 Jan 1900 00:00:00 +0000", "Fri, 31 Dec 9999 23:59:59 -1200",
            "", "pas une date", self.text()))

    # ---- charges utiles plausibles -------------------------------------

    def payload(self, header: int) -> typing.Any:
        rng = self.random
        if header in (H.AUTH_REGISTER, H.AUTH_LOGIN):
            if header == H.AUTH_LOGIN and rng.random() < 0.6:
                return {"username": rng.choice((self.account, self.account.upper())),
                        "password": self.password}
            payload = {"username": self.username(), "password": self.secret()}
        elif header == H.INBOX_READING_CHOICE:
            payload = {"choice": rng.choice((rng.randint(-2, 12), self.integer()))}
        elif header == H.EMAIL_SENDING:
            sender = rng.choice((
                f"{self.account}@{DOMAIN}", f"{self.account.upper()}@{DOMAIN.upper()}",
                f"{self.account}@{DOMAIN}", *(f"{peer}@{DOMAIN}" for peer in self.peers),
                self.text()))
            payload = {"sender": sender, "destination": self.address(),
                       "subject": self.text(), "date": self.date(),
                       "content": self.text(80)}
        else:
            return support.ABSENT if rng.random() < 0.8 else self.value()
        roll = rng.random()
        if roll < 0.08:
            del payload[rng.choice(list(payload))]
        elif roll < 0.16:
            payload[rng.choice(list(payload))] = self.value()
        elif roll < 0.20:
            payload[self.text(6)] = self.value()
        return payload

    def request(self) -> bytes:
        """Trame d'une requête plausible, aux valeurs tirées au hasard."""
        rng = self.random
        header = rng.choices(
            (H.AUTH_REGISTER, H.AUTH_LOGIN, H.AUTH_LOGOUT, H.INBOX_READING_REQUEST,
             H.INBOX_READING_CHOICE, H.EMAIL_SENDING, H.STATS_REQUEST, H.OK, H.ERROR),
            (12, 20, 5, 12, 12, 25, 8, 2, 2))[0]
        return support.message_frame(int(header), self.payload(header))

    # ---- familles de cas -------------------------------------------------

    def _case_requete(self) -> bytes:
        return self.request()

    def _case_bye(self) -> bytes:
        return self.request() + support.message_frame(int(H.BYE))

    def _case_forme(self) -> bytes:
        """JSON valide de la mauvaise forme."""
        rng = self.random
        header = rng.choice((self.value(), self.integer(), rng.randint(0, 12),
                             str(rng.randint(1, 10)), float(rng.randint(1, 10)),
                             *malformed.BAD_HEADERS))
        roll = rng.random()
        if roll < 0.3:
            return support.frame(json.dumps(self.value()))
        if roll < 0.5:
            return support.frame(json.dumps({"payload": self.value()}))
        if roll < 0.75:
            return support.message_frame(header, self.value())
        real = rng.choice([int(h) for h in H if h != H.BYE])
        return support.message_frame(real, self.value())

    def _case_octets(self) -> bytes:
        rng = self.random
        return support.frame(rng.randbytes(rng.randint(0, 300)))

    def _case_table(self) -> bytes:
        """Un cas écrit à la main de `tests/malformed.py`, quel que soit son état."""
        return self.random.choice(malformed.CASES).data

    def _case_rafale(self) -> bytes:
        return b"".join(self.request() for _ in range(self.random.randint(2, 8)))

    def _case_tronquee(self) -> bytes:
        data = self.request()
        return data[:self.random.randint(1, len(data) - 1)]

    def _case_enorme(self) -> bytes:
        rng = self.random
        length = rng.choice((self.max_message + 1, 2 ** 31, 2 ** 32 - 1,
                             rng.randint(self.max_message + 1, 2 ** 32 - 1)))
        return support.LENGTH.pack(length) + rng.randbytes(rng.choice((0, 10, 1000)))

    def _case_gros(self) -> bytes:
        """Un champ d'un mégaoctet dans une requête par ailleurs plausible."""
        rng = self.random
        big = rng.choice("aZ9.-@") * (1 << 20)
        header = rng.choice((H.AUTH_REGISTER, H.AUTH_LOGIN, H.EMAIL_SENDING))
        payload = self.payload(header)
        if not isinstance(payload, dict) or not payload:
            payload = {"username": big, "password": big}
        payload[rng.choice(list(payload))] = big
        return support.message_frame(int(header), payload)

    def _case_mutation(self) -> bytes:
        """Une requête plausible abîmée de une à trois façons."""
        rng = self.random
        data = bytearray(self.request())
        body = data[support.LENGTH.size:]
        reframe = rng.random() < 0.8
        target = body if reframe else data
        for _ in range(rng.randint(1, 3)):
            if not target:
                target += rng.randbytes(rng.randint(1, 8))
            position = rng.randrange(len(target))
            operation = rng.randrange(7)
            if operation == 0:
                target[position] ^= 1 << rng.randrange(8)
            elif operation == 1:
                target[position] = rng.randrange(256)
            elif operation == 2:
                target[position:position] = rng.randbytes(rng.randint(1, 16))
            elif operation == 3:
                del target[position:position + rng.randint(1, 16)]
            elif operation == 4:
                end = min(len(target), position + rng.randint(1, 32))
                target[position:position] = target[position:end]
            elif operation == 5:
                target[position:position] = rng.choice(
                    (b'"', b"\\", b"{", b"]", b"\\ud800", b"\xff", b"\x00", b"1e999"))
            else:
                token = json.dumps(self.value()).encode("utf-8", "surrogatepass")
                target[position:position + rng.randint(0, 8)] = token
        if reframe:
            return support.frame(bytes(target))
        if rng.random() < 0.3:
            target[:support.LENGTH.size] = support.LENGTH.pack(rng.randint(0, len(target)))
        return bytes(target)


# ---------------------------------------------------------------------------
# Vérification des réponses
# ---------------------------------------------------------------------------

def reply_problem(body: bytes) -> typing.Optional[str]:
    """
    Ce qui cloche dans une réponse du serveur, ou None si elle est un
    `GloMessage` correct : `OK` ou `ERROR` avec un message, jamais l'erreur
    interne d'une exception.
    """
    try:
        message = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as ex:
        return f"réponse illisible : {ex}"
    if not isinstance(message, dict) or message.get("header") not in (H.OK, H.ERROR):
        return f"réponse inattendue : {body[:200]!r}"
    payload = message.get("payload")
    if message["header"] == H.OK:
        if payload is not None and not isinstance(payload, dict):
            return f"charge utile inattendue : {body[:200]!r}"
        return None
    if not (isinstance(payload, dict) and isinstance(payload.get("error_message"), str)):
        return f"ERROR sans message : {body[:200]!r}"
    if payload["error_message"] == INTERNAL_ERROR:
        return "erreur interne du serveur (exception)"
    return None


# ---------------------------------------------------------------------------
# Pilote : plusieurs connexions hostiles dans une boucle select()
# ---------------------------------------------------------------------------

class _Slot:
    __slots__ = ("sock", "pending", "offset", "terminal", "closing", "inbox")

    def __init__(self) -> None:
        self.sock: typing.Optional[socket.socket] = None
        self.pending = b""
        self.offset = 0
        self.terminal = False
        # Demi-fermée (FIN envoyé) : on lit les dernières réponses jusqu'à
        # ce que le serveur ferme à son tour.
        self.closing = False
        self.inbox = bytearray()


class FuzzDriver:
    """
    Envoie les cas d'un générateur sur `connections` connexions à la fois.
    Les réponses sont lues au fil de l'eau et vérifiées par `reply_problem` ;
    une connexion fermée par le serveur est rouverte au cas suivant.
    """

    def __init__(self, port: int, generator: FuzzCaseGenerator, *,
                 connections: int = 4, stall_limit: float = 30.0) -> None:
        self.port = port
        self.generator = generator
        self.random = random.Random(generator.seed ^ 0x5EED)
        self.slots = [_Slot() for _ in range(connections)]
        self.stall_limit = stall_limit
        self.counts: dict[str, int] = {
            "cas": 0, "octets": 0, "reponses_ok": 0, "reponses_error": 0,
            "fermetures_serveur": 0, "fermetures_client": 0, "connexions": 0,
            "serveur_plein": 0}
        self.kinds: dict[str, int] = {}
        self.problems: list[str] = []

    # ---- connexions ---------------------------------------------------

    def _connect(self, slot: _Slot) -> None:
        slot.sock = socket.create_connection((support.LOOPBACK, self.port), timeout=10)
        slot.sock.setblocking(False)
        slot.inbox.clear()
        self.counts["connexions"] += 1

    def _close(self, slot: _Slot, by_server: bool) -> None:
        if slot.sock is not None:
            slot.sock.close()
        slot.sock = None
        slot.pending, slot.offset, slot.terminal = b"", 0, False
        if slot.closing:
            slot.closing = False
        else:
            self.counts["fermetures_serveur" if by_server else "fermetures_client"] += 1

    def _end(self, slot: _Slot) -> None:
        """
        Fin d'une connexion après un cas terminal : une fois sur deux
        brutale (RST, les réponses en route sont perdues), sinon polie (FIN,
        puis lecture des dernières réponses jusqu'à la fermeture du serveur).
        """
        if self.random.random() < 0.5:
            support.reset_close(slot.sock)
            self._close(slot, by_server=False)
            return
        try:
            slot.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(slot, by_server=True)
            return
        slot.pending, slot.offset, slot.terminal = b"", 0, False
        slot.closing = True
        self.counts["fermetures_client"] += 1

    # ---- réponses -----------------------------------------------------

    def _read(self, slot: _Slot) -> None:
        try:
            data = slot.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(slot, by_server=True)
            return
        slot.inbox += data
        for body in support.split_frames(slot.inbox):
            self._check_reply(body)

    def _check_reply(self, body: bytes) -> None:
        problem = reply_problem(body)
        if problem is None:
            message = json.loads(body)
            ok = message["header"] == H.OK
            self.counts["reponses_ok" if ok else "reponses_error"] += 1
            if not ok and SERVER_FULL_WORD in message["payload"]["error_message"]:
                self.counts["serveur_plein"] += 1
        elif len(self.problems) < 50:
            self.problems.append(problem)
        else:
            self.problems[-1] = f"{problem} (et d'autres)"

    # ---- boucle ---------------------------------------------------------

    def run(self, cases: int, *, time_limit: typing.Optional[float] = None,
            progress: typing.Optional[typing.Callable[[dict], None]] = None) -> dict:
        """
        Envoie `cases` cas (ou s'arrête à `time_limit` secondes), puis lit
        les dernières réponses. Renvoie les compteurs.
        """
        source = self.generator.cases(cases)
        exhausted = False
        started = time.monotonic()
        last_progress = time.monotonic()
        last_report = started
        try:
            while True:
                now = time.monotonic()
                if time_limit is not None and now - started > time_limit:
                    exhausted = True
                for slot in self.slots:
                    if slot.pending or slot.closing or exhausted:
                        continue
                    case = next(source, None)
                    if case is None:
                        exhausted = True
                        break
                    if slot.sock is None:
                        self._connect(slot)
                    slot.pending, slot.offset, slot.terminal = case.data, 0, case.terminal
                    self.counts["cas"] += 1
                    self.counts["octets"] += len(case.data)
                    self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
                busy = [slot for slot in self.slots if slot.pending]
                if exhausted and not busy and not any(s.closing for s in self.slots):
                    break
                readers = [slot.sock for slot in self.slots if slot.sock is not None]
                writers = [slot.sock for slot in busy]
                readable, writable, _ = select.select(readers, writers, [], 1.0)
                if readable or writable:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self.stall_limit:
                    raise TimeoutError("Le serveur ne lit plus ni ne répond.")
                for slot in self.slots:
                    if slot.sock is not None and slot.sock in readable:
                        self._read(slot)
                    if slot.sock is not None and slot.sock in writable:
                        self._write(slot)
                if progress is not None and time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    progress(dict(self.counts))
            self._drain(1.0)
        finally:
            for slot in self.slots:
                if slot.sock is not None:
                    slot.sock.close()
                    slot.sock = None
        self.counts["duree_s"] = round(time.monotonic() - started, 2)
        return dict(self.counts)

    def _write(self, slot: _Slot) -> None:
        try:
            sent = slot.sock.send(memoryview(slot.pending)[slot.offset:slot.offset + (1 << 20)])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(slot, by_server=True)
            return
        slot.offset += sent
        if slot.offset >= len(slot.pending):
            if slot.terminal:
                self._end(slot)
            else:
                slot.pending, slot.offset = b"", 0

    def _drain(self, quiet: float) -> None:
        """Lit les réponses restantes jusqu'à `quiet` secondes de silence."""
        while True:
            readers = [slot.sock for slot in self.slots if slot.sock is not None]
            if not readers:
                return
            readable, _, _ = select.select(readers, [], [], quiet)
            if not readable:
                return
            for slot in self.slots:
                if slot.sock is not None and slot.sock in readable:
                    self._read(slot)


# ---------------------------------------------------------------------------
# Client honnête, qui travaille pendant le fuzzing
# ---------------------------------------------------------------------------

class GoodClient(threading.Thread):
    """
    Client honnête qui enchaîne inscription/connexion, envoi à lui-même,
    liste, lecture et statistiques jusqu'à `stop`. Le premier écart (réponse
    inattendue, délai dépassé, connexion perdue) est noté dans `failure` et
    arrête le fil.
    """

    def __init__(self, port: int, username: str = "good", *, seed: int = 0,
                 timeout: float = 10.0) -> None:
        super().__init__(name=f"client-honnete-{username}", daemon=True)
        self.port = port
        self.username = username
        self.address = f"{username}@{DOMAIN}"
        self.timeout = timeout
        self.tag = f"{seed:x}"
        self.stop_event = threading.Event()
        self.cycles = 0
        self.failure: typing.Optional[str] = None
        self.latencies: list[float] = []

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)

    def _expect(self, client: support.RawClient, header, payload=None) -> dict:
        started = time.monotonic()
        reply = client.request(header, payload)
        self.latencies.append(time.monotonic() - started)
        return reply

    def run(self) -> None:
        client = None
        registered = False
        try:
            while not self.stop_event.is_set():
                if client is None:
                    client = support.RawClient(self.port, timeout=self.timeout)
                credentials = {"username": self.username,
                               "password": support.STRONG_PASSWORD}
                header = H.AUTH_LOGIN if registered else H.AUTH_REGISTER
                self._check(self._expect(client, header, credentials), "connexion")
                registered = True
                self._cycle(client)
                if self.cycles % 5 == 0:
                    client.send(H.BYE)
                    client.close()
                    client = None
                else:
                    client.send(H.AUTH_LOGOUT)
        except AssertionError as ex:
            self.failure = str(ex)
        except (OSError, glossocket.GLOSocketError, ValueError) as ex:
            self.failure = f"cycle {self.cycles} : {type(ex).__name__} : {ex}"
        finally:
            if client is not None:
                client.close()

    def _check(self, reply: dict, step: str, header=H.OK) -> dict:
        if reply.get("header") != header:
            raise AssertionError(f"cycle {self.cycles}, {step} : {reply!r:.300}")
        return reply

    def _cycle(self, client: support.RawClient) -> None:
        subject = f"bon-{self.tag}-{self.cycles}"
        email_ = {"sender": self.address.upper() if self.cycles % 3 == 0 else self.address,
                  "destination": self.address, "subject": subject,
                  "date": gloutils.get_current_utc_time(),
                  "content": f"Contenu {self.cycles}\nligne 2 é"}
        self._check(self._expect(client, H.EMAIL_SENDING, email_), "envoi")
        listing = self._check(self._expect(client, H.INBOX_READING_REQUEST), "liste")
        lines = listing["payload"]["email_list"]
        pattern = re.compile(rf"#(\d+) {re.escape(email_['sender'])} - "
                             rf"{re.escape(subject)} ")
        numbers = [int(match.group(1)) for line in lines
                   if (match := pattern.match(line))]
        if len(numbers) != 1:
            raise AssertionError(f"cycle {self.cycles} : {subject} listé {len(numbers)} fois")
        read = self._check(self._expect(client, H.INBOX_READING_CHOICE,
                                        {"choice": numbers[0]}), "lecture")
        if read["payload"] != email_:
            raise AssertionError(f"cycle {self.cycles} : courriel lu {read['payload']!r:.300}")
        stats = self._check(self._expect(client, H.STATS_REQUEST), "statistiques")
        if not (isinstance(stats["payload"]["count"], int)
                and stats["payload"]["count"] >= self.cycles + 1):
            raise AssertionError(f"cycle {self.cycles} : statistiques {stats!r}")
        self.cycles += 1


def register_account(port: int, generator: FuzzCaseGenerator) -> None:
    """
    Crée le compte du fuzzeur avant la rafale : ses connexions plausibles
    réussissent alors souvent, et les envois vont jusqu'au disque.
    """
    with support.RawClient(port) as client:
        reply = client.register(generator.account, generator.password)
    if reply.get("header") != H.OK:
        raise RuntimeError(f"Compte du fuzzeur refusé : {reply!r}")
