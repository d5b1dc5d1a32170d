"""\
GLO-2000 Travail pratique 4 - Banc d'essai du serveur

Mesure le débit et les latences de TP4_server.py sous charge, avec la seule
bibliothèque standard. Ce n'est pas un test unitaire : le nom du fichier ne
correspond pas à test*.py, `unittest discover` ne le lance donc jamais.

Exemples :
    python3 tests/benchmark.py load --mix read --clients 100 --duration 10
    python3 tests/benchmark.py load --mix mixed --compare-baseline
    python3 tests/benchmark.py load --mix mixed --port 5321   (serveur déjà lancé)
    python3 tests/benchmark.py baseline --mix read
    python3 tests/benchmark.py inbox --emails 10000
    python3 tests/benchmark.py disk
    python3 tests/benchmark.py all --json
    python3 tests/benchmark.py compare --rev HEAD~1 --mix read write --rounds 3
    python3 tests/benchmark.py compare --rev HEAD --mix list-only read-only stats-only
    python3 tests/benchmark.py compare --rev HEAD --what inbox --emails 2000

Chaque client simulé a son propre compte et une seule requête en cours à la
fois. Les clients sont répartis sur plusieurs processus ; dans chacun, une
boucle `selectors` mène tous les sockets non bloquants. Le « plafond » est
une boucle select() minimale qui répond OK à chaque trame sans rien décoder :
chaque débit se lit aussi comme une fraction de ce plafond.

`compare` lance tour à tour, à chaque tour, le serveur de l'arbre de travail
(A) et celui d'une révision git (B), A puis B aux tours impairs, B puis A aux
tours pairs, chacun dans un dossier neuf, sous la même charge (celle de
l'arbre de travail), et donne les rapports A/B.
"""

import argparse
import concurrent.futures
import contextlib
import dataclasses
import errno
import functools
import itertools
import json
import multiprocessing
import os
import random
import select
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import NamedTuple, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # noqa: E402
    LOOPBACK, NOT_LOGGED_IN, ROOT, SERVER_SCRIPT, STRONG_PASSWORD, ServerProcess,
    decode_message, free_port, message_frame, process_rss_kib, raise_fd_limit, split_frames,
    wait_for_port)
import glossocket  # noqa: E402
import gloutils  # noqa: E402

H = gloutils.Headers
_RECV_SIZE = 256 * 1024

MIXES = {
    "mixed": {"list": 30, "read": 20, "stats": 20, "send": 30},
    "read": {"list": 30, "read": 20, "stats": 20},
    "write": {"send": 100},
    # Une seule sorte de requête : ce que chacune coûte au serveur (µs CPU/req).
    "list-only": {"list": 100},
    "read-only": {"read": 100},
    "stats-only": {"stats": 100},
}
COMPARED_MIXES = ("mixed", "read", "write")
TIMED_KINDS = ("list", "read", "stats", "send")
DEFAULT_PREFILL = 20
SETUP_TIMEOUT = 600.0
FINISH_TIMEOUT = 120.0
REPLY_TIMEOUT = 30.0
DISK_THREADS = 16  # Comme les fils du processus d'écriture du serveur.
_EMAIL_KEYS = frozenset(gloutils.EmailContentPayload.__annotations__)
_BODY = "Bonjour,\nceci est un courriel du banc d'essai.\n" * 3


# ----------------------------------------------------------------------
# Trames
# ----------------------------------------------------------------------

_LIST_FRAME = message_frame(H.INBOX_READING_REQUEST)
_STATS_FRAME = message_frame(H.STATS_REQUEST)
_LOGOUT_FRAME = message_frame(H.AUTH_LOGOUT)
_BYE_FRAME = message_frame(H.BYE)
_OK_FRAME = message_frame(H.OK)


def _auth_frame(header: H, username: str) -> bytes:
    """Trame de création de compte ou de connexion, au mot de passe commun."""
    return message_frame(header, {"username": username, "password": STRONG_PASSWORD})


def _choice_frame(number: int) -> bytes:
    """Trame `INBOX_READING_CHOICE` du courriel #`number`."""
    return message_frame(H.INBOX_READING_CHOICE, {"choice": number})


# ----------------------------------------------------------------------
# Clients simulés et leurs scénarios
# ----------------------------------------------------------------------

class _Request(NamedTuple):
    """Requête d'un scénario ; `expect_close` : le serveur doit fermer sans rien dire."""

    kind: str
    data: bytes
    expect_close: bool = False


class _Client:
    """Un client simulé : son compte, son socket et sa requête en cours."""

    def __init__(self, index: int, username: str) -> None:
        self.index = index
        self.username = username
        self.address = f"{username}@{gloutils.SERVER_DOMAIN}"
        self.rng = random.Random(username)
        # Borne inférieure du nombre de courriels de sa boîte (jamais vidée).
        self.known = 0
        self.sock: Optional[socket.socket] = None
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.writing = False
        self.script = None
        self.pending: Optional[_Request] = None
        self.sent_at = 0.0

    def email(self, destination: str, body: str = _BODY) -> bytes:
        """Trame `EMAIL_SENDING` d'un courriel vers `destination` (un petit, par défaut)."""
        return message_frame(H.EMAIL_SENDING, {
            "sender": self.address, "destination": destination,
            "subject": f"Banc d'essai {self.index}",
            "date": gloutils.get_current_utc_time(), "content": body})


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """Paramètres d'une charge, transmis tels quels aux processus générateurs."""

    host: str
    port: int
    mix: str
    clients: int
    processes: int
    duration: float
    prefill: int
    strict: bool
    prefix: str = dataclasses.field(default_factory=lambda: f"b{os.urandom(3).hex()}-")

    def username(self, index: int) -> str:
        """Nom du compte du client n° `index`."""
        return f"{self.prefix}{index}"


def _setup_script(client: _Client, prefill: int):
    """Crée le compte, puis remplit la boîte en s'écrivant `prefill` courriels."""
    yield _Request("register", _auth_frame(H.AUTH_REGISTER, client.username))
    for _ in range(prefill):
        reply = yield _Request("prefill", client.email(client.address))
        if reply is not None and reply.get("header") == H.OK:
            client.known += 1


def _timed_script(client: _Client, plan: LoadPlan, deadline: float):
    """Requêtes tirées selon le mélange, l'une après l'autre, jusqu'à l'échéance."""
    kinds = list(MIXES[plan.mix])
    cumulative = list(itertools.accumulate(MIXES[plan.mix].values()))
    while time.monotonic() < deadline:
        kind = client.rng.choices(kinds, cum_weights=cumulative)[0]
        yield _Request(kind, _request_data(kind, client, plan))


def _request_data(kind: str, client: _Client, plan: LoadPlan) -> bytes:
    """Trame d'une requête du mélange ; un envoi va à un autre client au hasard."""
    if kind == "list":
        return _LIST_FRAME
    if kind == "stats":
        return _STATS_FRAME
    if kind == "read":
        return _choice_frame(client.rng.randint(1, max(1, client.known)))
    other = client.rng.randrange(plan.clients - 1) if plan.clients > 1 else 0
    if plan.clients > 1 and other >= client.index:
        other += 1
    return client.email(f"{plan.username(other)}@{gloutils.SERVER_DOMAIN}")


def _finish_script(client: _Client, strict: bool):
    """
    Fin de session vérifiée : AUTH_LOGOUT et STATS_REQUEST partent ensemble,
    la trame suivante doit être l'ERROR « non connecté » ; puis BYE, après
    quoi le serveur doit fermer sans rien envoyer.
    """
    if strict:
        yield _Request("logout", _LOGOUT_FRAME + _STATS_FRAME)
        yield _Request("bye", _BYE_FRAME, expect_close=True)


def _sending_script(client: _Client, destination: str, count: int, body: str):
    """Envoie `count` courriels de corps `body` à `destination`, l'un après l'autre."""
    for _ in range(count):
        yield _Request("send", client.email(destination, body))


# ----------------------------------------------------------------------
# Vérification des réponses
# ----------------------------------------------------------------------

def _error_text(message: Optional[dict]) -> Optional[str]:
    """Texte d'une réponse `ERROR`, ou None si la charge utile est mal formée."""
    payload = message.get("payload") if message else None
    text = payload.get("error_message") if isinstance(payload, dict) else None
    return text if isinstance(text, str) else None


def _check_no_payload(payload, _client: _Client) -> Optional[str]:
    """Une confirmation `OK` ne porte aucune charge utile."""
    return None if payload is None else "charge utile inattendue"


def _check_list(payload, client: _Client) -> Optional[str]:
    """Liste de chaînes, jamais plus courte que ce que le client sait déjà."""
    lines = payload.get("email_list") if isinstance(payload, dict) else None
    if not (isinstance(lines, list) and all(isinstance(line, str) for line in lines)):
        return "email_list absente ou mal formée"
    if len(lines) < client.known:
        return f"{len(lines)} courriels listés, au moins {client.known} attendus"
    if lines and not lines[0].startswith("#1 "):
        return "la liste ne commence pas par #1"
    client.known = len(lines)
    return None


def _check_email(payload, _client: _Client) -> Optional[str]:
    """Exactement les cinq champs d'un `EmailContentPayload`, tous des chaînes."""
    if not (isinstance(payload, dict) and payload.keys() == _EMAIL_KEYS
            and all(isinstance(value, str) for value in payload.values())):
        return "courriel mal formé"
    return None


def _check_stats(payload, client: _Client) -> Optional[str]:
    """Deux entiers, un nombre de courriels jamais en baisse."""
    if not isinstance(payload, dict):
        return "statistiques absentes"
    count, size = payload.get("count"), payload.get("size")
    if type(count) is not int or type(size) is not int or size < 0:
        return "statistiques mal formées"
    if count < client.known:
        return f"{count} courriels comptés, au moins {client.known} attendus"
    client.known = count
    return None


_PAYLOAD_CHECKS = {
    "register": _check_no_payload,
    "prefill": _check_no_payload,
    "send": _check_no_payload,
    "list": _check_list,
    "read": _check_email,
    "stats": _check_stats,
}


def _classify(kind: str, message: Optional[dict], client: _Client,
              strict: bool) -> tuple:
    """
    Juge une réponse : ("ok", ""), ("error", texte de l'ERROR) ou
    ("violation", description). Le plafond n'est jugé que sur l'en-tête.
    """
    if message is None:
        return "violation", f"{kind} : trame qui n'est pas un objet JSON"
    header = message.get("header")
    if type(header) is not int:
        return "violation", f"{kind} : en-tête {header!r}"
    if kind == "logout":
        return _classify_logout(message, header)
    if header == H.ERROR:
        text = _error_text(message)
        if text is None:
            return "violation", f"{kind} : ERROR sans error_message"
        return "error", f"{kind} : {text}"
    if header != H.OK:
        return "violation", f"{kind} : en-tête {header!r} au lieu de OK"
    problem = _PAYLOAD_CHECKS[kind](message.get("payload"), client) if strict else None
    return ("violation", f"{kind} : {problem}") if problem else ("ok", "")


def _classify_logout(message: Optional[dict], header) -> tuple:
    """Après AUTH_LOGOUT + STATS_REQUEST, seule l'ERROR « non connecté » convient."""
    if header == H.ERROR and _error_text(message) == NOT_LOGGED_IN:
        return "ok", ""
    if header == H.OK:
        return "violation", ("logout : OK reçu (réponse à AUTH_LOGOUT, ou statistiques "
                             "servies à un client déconnecté)")
    return "violation", f"logout : {str(message)[:80]} au lieu de l'ERROR « non connecté »"


class _Tally:
    """Latences par type de requête, erreurs, violations et clients en échec."""

    def __init__(self) -> None:
        self.latencies: dict = {}
        self.errors: Counter = Counter()
        self.violations: Counter = Counter()
        self.failures: Counter = Counter()

    def record(self, kind: str, seconds: float, outcome: str, detail: str) -> None:
        """Compte une réponse : sa latence et, au besoin, l'erreur ou la violation."""
        self.latencies.setdefault(kind, []).append(seconds)
        if outcome == "error":
            self.errors[detail] += 1
        elif outcome == "violation":
            self.violations[detail] += 1

    def as_dict(self) -> dict:
        """Décomptes sous une forme que `multiprocessing` sait transmettre."""
        return {"latencies": self.latencies, "errors": self.errors,
                "violations": self.violations, "failures": self.failures}

    @classmethod
    def merged(cls, parts: list) -> "_Tally":
        """Réunit les décomptes de plusieurs processus."""
        tally = cls()
        for part in parts:
            for kind, values in part["latencies"].items():
                tally.latencies.setdefault(kind, []).extend(values)
            tally.errors.update(part["errors"])
            tally.violations.update(part["violations"])
            tally.failures.update(part["failures"])
        return tally


# ----------------------------------------------------------------------
# Boucle d'un processus générateur
# ----------------------------------------------------------------------

class _Driver:
    """
    Boucle `selectors` qui mène tous les clients d'un processus. Chaque
    client suit un scénario (un générateur de `_Request`) : la requête
    suivante ne part qu'à la réception de la réponse à la précédente.
    """

    def __init__(self, host: str, port: int, clients: list, tally: _Tally,
                 strict: bool) -> None:
        self._address = (host, port)
        self._clients = clients
        self._tally = tally
        self._strict = strict
        self._selector = selectors.DefaultSelector()
        self._active: set = set()

    def connect(self) -> None:
        """Ouvre toutes les connexions en parallèle (connexions non bloquantes)."""
        connecting = set()
        for client in self._clients:
            client.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.sock.setblocking(False)
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = client.sock.connect_ex(self._address)
            if code in (0, errno.EINPROGRESS):
                self._selector.register(client.sock, selectors.EVENT_WRITE, client)
                connecting.add(client)
            else:
                self._fail(client, f"connexion impossible : {os.strerror(code)}")
        deadline = time.monotonic() + REPLY_TIMEOUT
        while connecting and time.monotonic() < deadline:
            for key, _ in self._selector.select(timeout=1.0):
                connecting.discard(key.data)
                self._connected(key.data)
        for client in connecting:
            self._fail(client, "connexion trop lente")

    def _connected(self, client: _Client) -> None:
        """Fin d'une connexion non bloquante : réussie ou en échec."""
        code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(client, f"connexion impossible : {os.strerror(code)}")
        else:
            self._selector.modify(client.sock, selectors.EVENT_READ, client)

    def run(self, script) -> None:
        """Mène le scénario `script(client)` de chaque client connecté à son terme."""
        for client in self._clients:
            if client.sock is not None:
                client.script = script(client)
                self._active.add(client)
                self._advance(client, None)
        next_check = time.monotonic() + 1.0
        while self._active:
            for key, mask in self._selector.select(timeout=1.0):
                if mask & selectors.EVENT_WRITE:
                    self._write(key.data)
                if mask & selectors.EVENT_READ and key.data.sock is not None:
                    self._read(key.data)
            if time.monotonic() >= next_check:
                self._expire()
                next_check = time.monotonic() + 1.0

    def close(self) -> None:
        """Ferme tous les sockets et le sélecteur."""
        for client in self._clients:
            self._forget(client)
        self._selector.close()

    def _advance(self, client: _Client, reply: Optional[dict]) -> None:
        """Passe à la requête suivante du scénario, ou le termine."""
        try:
            request = client.script.send(reply)
        except StopIteration:
            self._active.discard(client)
            return
        client.pending = request
        client.sent_at = time.perf_counter()
        client.outbuf += request.data
        self._write(client)

    def _write(self, client: _Client) -> None:
        """Envoie ce que le socket accepte ; surveille l'écriture s'il reste des octets."""
        if client.sock is None:
            return
        try:
            sent = client.sock.send(client.outbuf) if client.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as ex:
            self._fail(client, f"envoi impossible : {ex.strerror or ex}")
            return
        del client.outbuf[:sent]
        wanted = bool(client.outbuf)
        if wanted != client.writing:
            client.writing = wanted
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
            self._selector.modify(client.sock, events, client)

    def _read(self, client: _Client) -> None:
        """Lit ce qui est arrivé et traite chaque trame complète."""
        try:
            data = client.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._on_close(client)
            return
        client.inbuf += data
        for frame in split_frames(client.inbuf):
            self._on_frame(client, frame)
            if client.sock is None:
                return

    def _on_frame(self, client: _Client, frame: bytes) -> None:
        """Juge la réponse à la requête en cours, puis enchaîne."""
        elapsed = time.perf_counter() - client.sent_at
        request = client.pending
        if request is None or request.expect_close:
            where = "après BYE" if request else "sans requête en cours"
            self._tally.violations[f"trame reçue {where}"] += 1
            return
        client.pending = None
        message = decode_message(frame)
        outcome, detail = _classify(request.kind, message, client, self._strict)
        self._tally.record(request.kind, elapsed, outcome, detail)
        self._advance(client, message)

    def _on_close(self, client: _Client) -> None:
        """Fermeture par le serveur : attendue après BYE, un échec sinon."""
        request = client.pending
        if request is None or not request.expect_close:
            self._fail(client, "connexion fermée par le serveur")
            return
        if client.inbuf:
            self._tally.violations["octets reçus après BYE"] += 1
        self._tally.record(request.kind, time.perf_counter() - client.sent_at, "ok", "")
        client.pending = None
        self._forget(client)
        self._advance(client, None)

    def _expire(self) -> None:
        """Abandonne les clients qui attendent une réponse depuis trop longtemps."""
        limit = time.perf_counter() - REPLY_TIMEOUT
        for client in list(self._active):
            if client.pending is not None and client.sent_at < limit:
                self._fail(client, f"aucune réponse ({client.pending.kind}) en "
                                   f"{REPLY_TIMEOUT:.0f} s")

    def _fail(self, client: _Client, reason: str) -> None:
        """Abandonne un client : compté en échec, socket fermé."""
        self._tally.failures[reason] += 1
        self._active.discard(client)
        self._forget(client)

    def _forget(self, client: _Client) -> None:
        """Ferme le socket du client et le retire du sélecteur."""
        if client.sock is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()
        client.sock = None


def _worker_main(pipe, plan: LoadPlan, indices: list) -> None:
    """Processus générateur : rapporte ("ready", …), puis ("done", …) ou ("crash", …)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pipe.send(("done", _drive_clients(pipe, plan, indices)))
    except Exception:
        pipe.send(("crash", traceback.format_exc()))
    finally:
        pipe.close()


def _drive_clients(pipe, plan: LoadPlan, indices: list) -> dict:
    """
    Les trois phases d'un processus générateur : préparation (comptes,
    boîtes préremplies), charge chronométrée au signal du chef, fin de
    session vérifiée.
    """
    raise_fd_limit(len(indices) + 64)
    tally = _Tally()
    clients = [_Client(index, plan.username(index)) for index in indices]
    driver = _Driver(plan.host, plan.port, clients, tally, plan.strict)
    try:
        began = time.monotonic()
        driver.connect()
        driver.run(functools.partial(_setup_script, prefill=plan.prefill))
        pipe.send(("ready", time.monotonic() - began))
        start, deadline = pipe.recv()
        time.sleep(max(0.0, start - time.monotonic()))
        driver.run(functools.partial(_timed_script, plan=plan, deadline=deadline))
        timed_end = time.monotonic()
        driver.run(functools.partial(_finish_script, strict=plan.strict))
    finally:
        driver.close()
    return {"tally": tally.as_dict(), "timed_end": timed_end}


# ----------------------------------------------------------------------
# Orchestration d'une charge
# ----------------------------------------------------------------------

class _Worker(NamedTuple):
    """Un processus générateur et le bout de tube qui le relie au chef."""

    process: multiprocessing.Process
    pipe: object


def _start_worker(plan: LoadPlan, indices: list) -> _Worker:
    """Lance un processus générateur pour les clients `indices`."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_worker_main, args=(child, plan, indices),
                                      daemon=True)
    process.start()
    child.close()
    return _Worker(process, parent)


def _expect(worker: _Worker, timeout: float):
    """Message suivant d'un générateur ; lève RuntimeError s'il meurt ou se tait."""
    if not worker.pipe.poll(timeout):
        raise RuntimeError(f"Générateur muet depuis {timeout:.0f} s.")
    try:
        tag, value = worker.pipe.recv()
    except EOFError:
        raise RuntimeError("Un processus générateur est mort.") from None
    if tag == "crash":
        raise RuntimeError(f"Un processus générateur a échoué :\n{value}")
    return value


def _stop_process(process: multiprocessing.Process) -> None:
    """Arrête un processus lancé ici (SIGTERM, puis SIGKILL au besoin)."""
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
    process.join()


def run_load(plan: LoadPlan, server_pid: Optional[int] = None) -> dict:
    """
    Lance la charge décrite par `plan` et renvoie son résumé ; avec `server_pid`, il
    compte aussi le temps processeur du serveur pendant la charge chronométrée.
    """
    workers = []
    try:
        for number in range(plan.processes):
            indices = list(range(number, plan.clients, plan.processes))
            workers.append(_start_worker(plan, indices))
        setup_seconds = max(_expect(worker, SETUP_TIMEOUT) for worker in workers)
        start = time.monotonic() + 0.2
        for worker in workers:
            worker.pipe.send((start, start + plan.duration))
        time.sleep(max(0.0, start - time.monotonic()))
        cpu_before = _tree_cpu_seconds(server_pid)
        reports = [_expect(worker, plan.duration + FINISH_TIMEOUT) for worker in workers]
        cpu_after = _tree_cpu_seconds(server_pid)
    finally:
        for worker in workers:
            _stop_process(worker.process)
    summary = _summarize(plan, setup_seconds, start, reports)
    summary["server_cpu_us"] = (
        (cpu_after - cpu_before) * 1e6 / summary["requests"]
        if None not in (cpu_before, cpu_after) and summary["requests"] else None)
    return summary


def _tree_cpu_seconds(pid: Optional[int]) -> Optional[float]:
    """
    Temps processeur (utilisateur et système) du processus `pid` et de ses descendants,
    lu dans /proc : le processus d'écriture à part d'une autre révision compte aussi.
    None sans /proc.
    """
    if pid is None:
        return None
    total, pending = 0, [pid]
    try:
        while pending:
            current = pending.pop()
            with open(f"/proc/{current}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    pending += map(int, children.read().split())
    except (OSError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def _percentile(ordered: list, percent: float) -> float:
    """Percentile au rang le plus proche d'une liste triée."""
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def _latency_stats(values: list, elapsed: float) -> dict:
    """Nombre, débit et percentiles (en ms) d'une série de latences."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "per_second": 0.0}
    return {
        "count": len(ordered),
        "per_second": len(ordered) / elapsed,
        "p50_ms": _percentile(ordered, 50) * 1e3,
        "p90_ms": _percentile(ordered, 90) * 1e3,
        "p99_ms": _percentile(ordered, 99) * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


def _summarize(plan: LoadPlan, setup_seconds: float, start: float, reports: list) -> dict:
    """Résumé d'une charge : débit, latences, erreurs, violations, échecs."""
    tally = _Tally.merged([report["tally"] for report in reports])
    elapsed = max(report["timed_end"] for report in reports) - start
    timed = {kind: tally.latencies.get(kind, []) for kind in TIMED_KINDS
             if kind in MIXES[plan.mix]}
    latency = {kind: _latency_stats(values, elapsed) for kind, values in timed.items()}
    latency["all"] = _latency_stats([x for values in timed.values() for x in values], elapsed)
    return {
        "server": "TP4_server" if plan.strict else "plafond",
        "mix": plan.mix, "clients": plan.clients, "processes": plan.processes,
        "duration": plan.duration, "prefill": plan.prefill,
        "setup_seconds": setup_seconds, "elapsed_seconds": elapsed,
        "requests": latency["all"]["count"],
        "throughput": latency["all"]["per_second"],
        "latency_ms": latency,
        "errors": sum(tally.errors.values()),
        "error_samples": dict(tally.errors.most_common(5)),
        "violations": sum(tally.violations.values()),
        "violation_samples": dict(tally.violations.most_common(5)),
        "failed_clients": sum(tally.failures.values()),
        "failure_reasons": dict(tally.failures.most_common(5)),
        "sessions_checked": len(tally.latencies.get("bye", [])) if plan.strict else None,
    }


# ----------------------------------------------------------------------
# Serveurs visés : TP4_server.py ou le plafond
# ----------------------------------------------------------------------

class _Server(ServerProcess):
    """
    `ServerProcess` lancé depuis le TP4_server.py `script` (par défaut celui
    de l'arbre de travail), qui prend gloutils et glossocket à côté de lui.
    """

    def __init__(self, script: Optional[Path] = None, **options) -> None:
        super().__init__(**options)
        self.script = script or SERVER_SCRIPT

    def command(self) -> list:
        return [sys.executable, str(self.script), *super().command()[2:]]


@contextlib.contextmanager
def _target(strict: bool, port: Optional[int] = None, script: Optional[Path] = None):
    """
    (port, pid) du serveur visé : `port` s'il est donné (pid inconnu), sinon un serveur
    lancé ici.
    """
    if port:
        yield port, None
    elif strict:
        with _Server(script) as server:
            yield server.port, server.process.pid
    else:
        with _baseline_server() as (baseline_port, baseline_pid):
            yield baseline_port, baseline_pid


@contextlib.contextmanager
def _baseline_server():
    """Le plafond, dans son propre processus, sur un port libre."""
    port = free_port()
    process = multiprocessing.Process(target=_baseline_main, args=(port,), daemon=True)
    process.start()
    try:
        wait_for_port(port)
        yield port, process.pid
    finally:
        _stop_process(process)


def _baseline_main(port: int) -> None:
    """
    Plafond : une boucle select() qui répond la même trame OK à chaque
    trame reçue, sans décoder le JSON ni rien vérifier.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    inboxes: dict = {}
    outboxes: dict = {}
    while True:
        readable, writable, _ = select.select(
            [listener, *inboxes], [sock for sock, out in outboxes.items() if out], [])
        for sock in writable:
            _baseline_send(sock, inboxes, outboxes)
        for sock in readable:
            if sock is listener:
                _baseline_accept(listener, inboxes, outboxes)
            elif sock in inboxes:
                _baseline_receive(sock, inboxes, outboxes)


def _baseline_accept(listener: socket.socket, inboxes: dict, outboxes: dict) -> None:
    """Accepte toutes les connexions en attente."""
    with contextlib.suppress(BlockingIOError):
        while True:
            sock, _ = listener.accept()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            inboxes[sock] = bytearray()
            outboxes[sock] = bytearray()


def _baseline_receive(sock: socket.socket, inboxes: dict, outboxes: dict) -> None:
    """Lit, compte les trames complètes et met autant de OK en file."""
    try:
        data = sock.recv(_RECV_SIZE)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        _baseline_forget(sock, inboxes, outboxes)
        return
    inboxes[sock] += data
    outboxes[sock] += _OK_FRAME * len(split_frames(inboxes[sock]))
    _baseline_send(sock, inboxes, outboxes)


def _baseline_send(sock: socket.socket, inboxes: dict, outboxes: dict) -> None:
    """Envoie ce que le socket accepte sans bloquer."""
    outbox = outboxes.get(sock)
    if not outbox:
        return
    try:
        del outbox[:sock.send(outbox)]
    except BlockingIOError:
        pass
    except OSError:
        _baseline_forget(sock, inboxes, outboxes)


def _baseline_forget(sock: socket.socket, inboxes: dict, outboxes: dict) -> None:
    """Oublie et ferme une connexion."""
    inboxes.pop(sock, None)
    outboxes.pop(sock, None)
    sock.close()


def run_against(strict: bool, mix: str, clients: int, duration: float, processes: int,
                prefill: int, host: str = LOOPBACK, port: Optional[int] = None,
                script: Optional[Path] = None) -> dict:
    """
    Une charge contre TP4_server.py (`strict`, celui de `script` s'il est
    donné) ou contre le plafond.
    """
    with _target(strict, port, script) as (target_port, server_pid):
        plan = LoadPlan(host=host, port=target_port, mix=mix, clients=clients,
                        processes=processes, duration=duration, prefill=prefill,
                        strict=strict)
        return run_load(plan, server_pid)


def compare_with_baseline(mix: str, clients: int, duration: float, processes: int,
                          prefill: int) -> dict:
    """La même charge contre le plafond puis contre TP4_server.py, et leur rapport."""
    baseline = run_against(False, mix, clients, duration, processes, prefill)
    ours = run_against(True, mix, clients, duration, processes, prefill)
    ratio = ours["throughput"] / baseline["throughput"] if baseline["throughput"] else 0.0
    return {"baseline": baseline, "tp4": ours, "ratio": ratio}


# ----------------------------------------------------------------------
# Boîte de 10 000 courriels
# ----------------------------------------------------------------------

def _connect(port: int) -> socket.socket:
    """Connexion bloquante (délai de 120 s), sans l'algorithme de Nagle."""
    sock = socket.create_connection((LOOPBACK, port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _timed_exchange(sock: socket.socket, frame: bytes) -> tuple:
    """
    Durée d'un aller-retour (jusqu'au dernier octet de la réponse, sans
    son décodage JSON) et message reçu.
    """
    began = time.perf_counter()
    sock.sendall(frame)
    text = glossocket.recv_msg(sock)
    seconds = time.perf_counter() - began
    return seconds, json.loads(text)


def _email_body(size: int) -> str:
    """Corps de courriel de `size` octets : le petit corps habituel, répété et coupé."""
    return (_BODY * (size // len(_BODY) + 1))[:size]


def _fill_inbox(port: int, destination: str, emails: int, senders: int, body: str) -> dict:
    """
    Remplit une boîte de courriels de corps `body`, par `senders` connexions
    en parallèle (une requête en cours chacune, le protocole n'autorise pas
    mieux).
    """
    tally = _Tally()
    clients = [_Client(index, f"expediteur{index}") for index in range(senders)]
    shares = [emails // senders + (index < emails % senders) for index in range(senders)]
    driver = _Driver(LOOPBACK, port, clients, tally, strict=True)
    try:
        driver.connect()
        driver.run(functools.partial(_setup_script, prefill=0))
        began = time.perf_counter()
        driver.run(lambda client: _sending_script(client, destination, shares[client.index],
                                                  body))
        seconds = time.perf_counter() - began
    finally:
        driver.close()
    return {"seconds": seconds, "emails_per_second": emails / seconds,
            "errors": sum(tally.errors.values()), "violations": sum(tally.violations.values()),
            "failed_connections": sum(tally.failures.values())}


def _time_operations(sock: socket.socket, emails: int, repetitions: int) -> dict:
    """
    Médiane et p90 de list, stats, lecture #1 et lecture #N. Chaque opération
    est répétée d'affilée : la requête qui suit une longue liste paie en
    plus, côté client, le contrecoup de ce gros transfert.
    """
    operations = {"list": _LIST_FRAME, "stats": _STATS_FRAME,
                  "read_first": _choice_frame(1), "read_last": _choice_frame(emails)}
    samples = {name: [] for name in operations}
    wrong = Counter()
    for name, frame in operations.items():
        for _ in range(repetitions):
            seconds, message = _timed_exchange(sock, frame)
            samples[name].append(seconds)
            if message.get("header") != H.OK:
                wrong[name] += 1
    listing = _timed_exchange(sock, _LIST_FRAME)[1]
    counted = _timed_exchange(sock, _STATS_FRAME)[1]["payload"]["count"]
    results = {name: {"median_ms": statistics.median(values) * 1e3,
                      "p90_ms": _percentile(sorted(values), 90) * 1e3}
               for name, values in samples.items()}
    return {"operations": results, "listed": len(listing["payload"]["email_list"]),
            "counted": counted, "list_reply_bytes": len(json.dumps(listing).encode()),
            "non_ok_replies": dict(wrong)}


def _read_every_email(sock: socket.socket, emails: int) -> dict:
    """Lit chaque courriel de la boîte une fois, du #1 au dernier."""
    samples = []
    wrong = 0
    for number in range(1, emails + 1):
        seconds, message = _timed_exchange(sock, _choice_frame(number))
        samples.append(seconds)
        wrong += message.get("header") != H.OK
    return {"seconds": sum(samples), "median_ms": statistics.median(samples) * 1e3,
            "non_ok_replies": wrong}


def _time_after_restart(port: int, owner: str, witness: str) -> dict:
    """
    Après un redémarrage : connexion, puis deux listes (la première
    reconstruit l'index). Pendant la première, un autre compte, `witness`,
    enchaîne des statistiques : la plus lente dit ce que les autres clients
    attendent pendant le chargement d'une grosse boîte.
    """
    with _connect(port) as sock, _connect(port) as other:
        _timed_exchange(other, _auth_frame(H.AUTH_LOGIN, witness))
        _timed_exchange(other, _STATS_FRAME)
        login, _ = _timed_exchange(sock, _auth_frame(H.AUTH_LOGIN, owner))
        loading = threading.Event()
        loading.set()
        witness_times = []

        def keep_asking() -> None:
            while loading.is_set():
                witness_times.append(_timed_exchange(other, _STATS_FRAME)[0])

        asker = threading.Thread(target=keep_asking, name="temoin")
        asker.start()
        first, message = _timed_exchange(sock, _LIST_FRAME)
        loading.clear()
        asker.join()
        second, _ = _timed_exchange(sock, _LIST_FRAME)
    return {"login_ms": login * 1e3, "first_list_ms": first * 1e3,
            "second_list_ms": second * 1e3,
            "listed": len(message.get("payload", {}).get("email_list", [])),
            "witness_requests": len(witness_times),
            "witness_max_ms": max(witness_times) * 1e3}


def run_inbox(emails: int, senders: int, repetitions: int, body_size: int,
              script: Optional[Path] = None) -> dict:
    """
    Remplit une boîte de `emails` courriels de `body_size` octets de corps,
    mesure ses opérations, lit chaque courriel une fois, redémarre, mesure
    encore. La mémoire résidente du serveur est relevée juste après son
    démarrage à vide, puis une fois la boîte remplie, listée et lue. Le
    serveur est celui de `script` s'il est donné.
    """
    owner = "boite"
    with tempfile.TemporaryDirectory(prefix="glo-bench-") as workdir:
        with _Server(script, workdir=workdir) as server:
            rss_empty = process_rss_kib(server.process.pid)
            with _connect(server.port) as sock:
                _timed_exchange(sock, _auth_frame(H.AUTH_REGISTER, owner))
                fill = _fill_inbox(server.port, f"{owner}@{gloutils.SERVER_DOMAIN}",
                                   emails, senders, _email_body(body_size))
                measures = _time_operations(sock, emails, repetitions)
                read_all = _read_every_email(sock, emails)
            rss_filled = process_rss_kib(server.process.pid)
        with _Server(script, workdir=workdir) as server:
            restart = _time_after_restart(server.port, owner, witness="expediteur0")
    return {"emails": emails, "senders": senders, "repetitions": repetitions,
            "body_bytes": body_size, "fill": fill, **measures, "read_all": read_all,
            "server_rss_kib": {"empty": rss_empty, "filled": rss_filled},
            "after_restart": restart}


# ----------------------------------------------------------------------
# Référence disque
# ----------------------------------------------------------------------

def _write_email_file(folder: str, number: int, data: bytes) -> None:
    """
    Ce que le serveur fait de chaque courriel, et rien d'autre : création
    exclusive d'un petit fichier, écriture, fsync.
    """
    path = os.path.join(folder, f"{number:020d}.json")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _timed(action, *args) -> float:
    """Durée d'un appel, en secondes."""
    began = time.perf_counter()
    action(*args)
    return time.perf_counter() - began


def _sequential_costs(files: int, data: bytes) -> list:
    """Coût de chaque fichier écrit l'un après l'autre, en secondes."""
    with tempfile.TemporaryDirectory(prefix="glo-disk-") as folder:
        return [_timed(_write_email_file, folder, number, data) for number in range(files)]


def _parallel_rate(files: int, data: bytes, threads: int) -> float:
    """
    Fichiers/s quand `threads` fils écrivent chacun les leurs, comme le
    processus d'écriture du serveur : le journal du système de fichiers
    regroupe alors les fsync simultanés.
    """
    with tempfile.TemporaryDirectory(prefix="glo-disk-") as folder:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            seconds = _timed(lambda: list(pool.map(
                functools.partial(_write_email_file, folder, data=data), range(files))))
    return files / seconds


def run_disk(files: int) -> dict:
    """
    Coût brut, sur le disque des dossiers temporaires (celui des serveurs
    lancés ici), d'un fichier de courriel écrit et synchronisé, l'un après
    l'autre ; puis le débit qu'atteignent `DISK_THREADS` fils en parallèle.
    """
    data = json.dumps({"sender": "a@glo2000.ca", "destination": "b@glo2000.ca",
                       "subject": "Banc d'essai", "date": gloutils.get_current_utc_time(),
                       "content": _BODY}).encode("utf-8")
    costs = _sequential_costs(files, data)
    return {
        "folder": tempfile.gettempdir(), "files": files, "bytes_per_file": len(data),
        "file_ms": {"median": statistics.median(costs) * 1e3,
                    "mean": statistics.fmean(costs) * 1e3},
        "emails_per_second": 1 / statistics.fmean(costs),
        "threads": DISK_THREADS,
        "emails_per_second_parallel": _parallel_rate(files, data, DISK_THREADS),
    }


# ----------------------------------------------------------------------
# Objectifs
# ----------------------------------------------------------------------

def _problems(result: dict) -> int:
    """Erreurs, violations et clients en échec d'une charge, additionnés."""
    return result["errors"] + result["violations"] + result["failed_clients"]


def evaluate_targets(results: dict) -> list:
    """Confronte les mesures de `all` aux objectifs fixés."""
    read, mixed = results["read_100"], results["mixed_100"]
    inbox = results["inbox"]
    operations = inbox["operations"]
    rows = [
        ("read 100 : débit / plafond", read["ratio"], ">=", 0.60),
        ("read 100 : p99 (ms)", read["tp4"]["latency_ms"]["all"]["p99_ms"], "<=", 25),
        ("read 100 : erreurs + violations + échecs", _problems(read["tp4"]), "<=", 0),
        ("mixed 100 : débit / plafond", mixed["ratio"], ">=", 0.15),
        ("mixed 100 : p99 (ms)", mixed["tp4"]["latency_ms"]["all"]["p99_ms"], "<=", 50),
        ("mixed 100 : erreurs + violations + échecs", _problems(mixed["tp4"]), "<=", 0),
        ("mixed 1000 : erreurs + violations + échecs", _problems(results["mixed_1000"]),
         "<=", 0),
        ("boîte : list médiane (ms)", operations["list"]["median_ms"], "<=", 10),
        ("boîte : stats médiane (ms)", operations["stats"]["median_ms"], "<=", 1),
        ("boîte : lecture #1 médiane (ms)", operations["read_first"]["median_ms"], "<=", 1),
        ("boîte : lecture #N médiane (ms)", operations["read_last"]["median_ms"], "<=", 1),
        ("boîte : RSS du serveur (Mo)", inbox["server_rss_kib"]["filled"] / 1024, "<=", 50),
    ]
    return [{"target": label, "value": value, "limit": f"{sign} {limit}",
             "met": value >= limit if sign == ">=" else value <= limit}
            for label, value, sign, limit in rows]


def run_all(args: argparse.Namespace, show) -> dict:
    """
    La série complète ; `show(nom, résultat)` reçoit chaque résultat aussitôt.
    La référence disque est mesurée juste avant le mélange write, pour que
    les deux chiffres comparés voient le même état du disque.
    """
    results = {}
    for mix in ("read", "mixed"):
        results[f"{mix}_100"] = compare_with_baseline(
            mix, 100, args.duration, args.processes, DEFAULT_PREFILL)
        show(f"{mix}_100", results[f"{mix}_100"])
    results["disk"] = run_disk(args.files)
    show("disk", results["disk"])
    results["write_100"] = run_against(True, "write", 100, args.duration, args.processes, 0)
    show("write_100", results["write_100"])
    results["write_vs_disk"] = _write_vs_disk(results["write_100"], results["disk"])
    show("write_vs_disk", results["write_vs_disk"])
    results["mixed_1000"] = run_against(True, "mixed", 1000, args.duration, args.processes,
                                        args.prefill_1000)
    show("mixed_1000", results["mixed_1000"])
    results["inbox"] = run_inbox(args.emails, args.senders, args.repetitions,
                                 args.body_size)
    show("inbox", results["inbox"])
    results["targets"] = evaluate_targets(results)
    show("targets", results["targets"])
    return results


def _write_vs_disk(write: dict, disk: dict) -> dict:
    """Débit du mélange write rapporté à ce que permet le disque nu."""
    return {"write_emails_per_second": write["throughput"],
            "disk_emails_per_second": disk["emails_per_second"],
            "share": write["throughput"] / disk["emails_per_second"],
            "share_parallel": write["throughput"] / disk["emails_per_second_parallel"]}


# ----------------------------------------------------------------------
# Comparaison avec une révision git
# ----------------------------------------------------------------------

# Décomptes montrés à chaque tour, sans rapport A/B.
_COUNTS = ("errors", "violations", "failed_clients")


def _git(*args: str) -> bytes:
    """Sortie d'une commande git du dépôt ; quitte avec le message de git si elle échoue."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], check=True,
                              capture_output=True).stdout
    except subprocess.CalledProcessError as ex:
        raise SystemExit(f"git {args[0]} : {ex.stderr.decode(errors='replace').strip()}")


@contextlib.contextmanager
def _revision_script(rev: str):
    """
    Arbre de la révision `rev` extrait une fois (git archive, le dépôt n'en
    est pas modifié) dans un dossier temporaire ; rend (commit, TP4_server.py).
    """
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    with tempfile.TemporaryDirectory(prefix="glo-rev-") as folder:
        subprocess.run(["tar", "-x", "-C", folder], input=_git("archive", commit), check=True)
        script = Path(folder) / SERVER_SCRIPT.name
        if not script.is_file():
            raise SystemExit(f"La révision {rev} n'a pas de {SERVER_SCRIPT.name}.")
        yield commit[:10], script


def _load_figures(result: dict) -> dict:
    """Chiffres comparés d'une charge."""
    latency = result["latency_ms"]["all"]
    return {"throughput": result["throughput"], "p50_ms": latency.get("p50_ms"),
            "p99_ms": latency.get("p99_ms"), "server_cpu_us": result["server_cpu_us"],
            **{count: result[count] for count in _COUNTS}}


def _inbox_figures(result: dict) -> dict:
    """Chiffres comparés de la grande boîte : médianes, RSS, réponses en défaut."""
    fill = result["fill"]
    figures = {f"{name}_ms": stats["median_ms"] for name, stats in result["operations"].items()}
    figures["rss_mib"] = result["server_rss_kib"]["filled"] / 1024
    figures["errors"] = (fill["errors"] + fill["violations"] + fill["failed_connections"]
                         + sum(result["non_ok_replies"].values())
                         + result["read_all"]["non_ok_replies"])
    return figures


def _with_ratios(runs: list) -> dict:
    """Ajoute à chaque tour ses rapports A/B ; donne aussi leur médiane."""
    keys = [key for key in runs[0]["A"] if key not in _COUNTS]
    for run in runs:
        run["ratio"] = {key: run["A"][key] / run["B"][key]
                        if run["A"][key] is not None and run["B"][key] else None
                        for key in keys}
    medians = {}
    for key in keys:
        ratios = [run["ratio"][key] for run in runs if run["ratio"][key] is not None]
        medians[key] = statistics.median(ratios) if ratios else None
    return {"rounds": runs, "median_ratio": medians}


def run_compare(args: argparse.Namespace) -> dict:
    """
    L'arbre de travail (A) face à la révision `args.rev` (B) : à chaque
    tour, chaque mesure (une charge par mélange, ou la grande boîte) est
    faite contre A puis contre B, avec chaque fois un serveur neuf, lancé
    depuis son propre arbre, dans un dossier neuf. La charge est toujours
    celle de l'arbre de travail.
    """
    if args.what == "inbox":
        settings = {"emails": args.emails, "body_size": args.body_size,
                    "senders": args.senders, "repetitions": args.repetitions}
        measures = {"inbox": (_inbox_figures, functools.partial(
            run_inbox, args.emails, args.senders, args.repetitions, args.body_size))}
    else:
        settings = {"clients": args.clients, "duration": args.duration,
                    "processes": args.processes}
        measures = {mix: (_load_figures, functools.partial(
            run_against, True, mix, args.clients, args.duration, args.processes,
            _prefill(mix, args.prefill))) for mix in dict.fromkeys(args.mix)}
    runs = {name: [] for name in measures}
    with _revision_script(args.rev) as (commit, rev_script):
        for number in range(1, args.rounds + 1):
            for name, (figures, measure) in measures.items():
                runs[name].append({})
                sides = (("A", SERVER_SCRIPT), ("B", rev_script))
                # A, B puis B, A : aucun côté ne suit toujours la charge de l'autre, dont le
                # dossier effacé occupe encore le disque.
                for side, script in sides if number % 2 else sides[::-1]:
                    print(f"tour {number}/{args.rounds}, {name}, {side}…", file=sys.stderr,
                          flush=True)
                    runs[name][-1][side] = figures(measure(script=script))
    return {"rev": args.rev, "commit": commit, "what": args.what, "rounds": args.rounds,
            "settings": settings,
            "comparisons": {name: _with_ratios(rounds) for name, rounds in runs.items()}}


# ----------------------------------------------------------------------
# Affichage
# ----------------------------------------------------------------------

def _print_load(result: dict) -> None:
    """Tableau des latences et bilan d'une charge."""
    print(f"\n== {result['server']} : mélange {result['mix']}, {result['clients']} clients, "
          f"{result['processes']} processus, {result['duration']:g} s "
          f"(préremplissage {result['prefill']}, préparation {result['setup_seconds']:.1f} s)")
    print(f"{'type':<7}{'requêtes':>10}{'req/s':>10}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
          "  (ms)")
    for kind, stats in result["latency_ms"].items():
        if stats["count"]:
            print(f"{kind:<7}{stats['count']:>10}{stats['per_second']:>10.0f}"
                  f"{stats['p50_ms']:>9.2f}{stats['p90_ms']:>9.2f}{stats['p99_ms']:>9.2f}"
                  f"{stats['max_ms']:>9.2f}")
    checked = result["sessions_checked"]
    sessions = "" if checked is None else f", fins de session vérifiées : {checked}"
    print(f"erreurs : {result['errors']}, violations : {result['violations']}, "
          f"clients en échec : {result['failed_clients']}{sessions}")
    if result.get("server_cpu_us") is not None:
        print(f"processeur du serveur : {result['server_cpu_us']:.1f} µs par requête")
    for label in ("error_samples", "violation_samples", "failure_reasons"):
        for detail, count in result[label].items():
            print(f"  {count} × {detail}")


def _print_comparison(result: dict) -> None:
    """Les deux charges, puis le rapport des débits."""
    _print_load(result["baseline"])
    _print_load(result["tp4"])
    print(f"débit TP4_server / plafond : {result['ratio']:.1%}")


def _print_inbox(result: dict) -> None:
    """Remplissage, temps des opérations, mémoire et redémarrage de la grande boîte."""
    fill = result["fill"]
    print(f"\n== Boîte de {result['emails']} courriels de {result['body_bytes']} octets de "
          f"corps : remplie en {fill['seconds']:.1f} s "
          f"({fill['emails_per_second']:.0f} courriels/s, {result['senders']} connexions ; "
          f"erreurs {fill['errors']}, violations {fill['violations']}, "
          f"échecs {fill['failed_connections']})")
    print(f"listés : {result['listed']}, comptés : {result['counted']}, "
          f"liste de {result['list_reply_bytes']} octets, "
          f"réponses non OK : {result['non_ok_replies'] or 0}")
    print(f"{'opération':<12}{'médiane':>10}{'p90':>10}  (ms, {result['repetitions']} fois)")
    for name, stats in result["operations"].items():
        print(f"{name:<12}{stats['median_ms']:>10.3f}{stats['p90_ms']:>10.3f}")
    read_all = result["read_all"]
    print(f"chaque courriel lu une fois : {read_all['seconds']:.1f} s, médiane "
          f"{read_all['median_ms']:.3f} ms, réponses non OK : {read_all['non_ok_replies']}")
    rss = result["server_rss_kib"]
    print(f"RSS du serveur : {rss['empty'] / 1024:.1f} Mo au démarrage à vide, "
          f"{rss['filled'] / 1024:.1f} Mo boîte remplie, listée et lue")
    restart = result["after_restart"]
    print(f"après redémarrage : connexion {restart['login_ms']:.1f} ms, première liste "
          f"{restart['first_list_ms']:.0f} ms (index reconstruit, {restart['listed']} "
          f"courriels), liste suivante {restart['second_list_ms']:.1f} ms")
    print(f"pendant la première liste, un autre client a été servi "
          f"{restart['witness_requests']} fois, en {restart['witness_max_ms']:.1f} ms au plus")


def _print_disk(result: dict) -> None:
    """Coûts disque bruts et le débit de courriels qu'ils permettent."""
    print(f"\n== Disque ({result['files']} fichiers de {result['bytes_per_file']} octets "
          f"dans {result['folder']})")
    print(f"création + écriture + fsync : médiane {result['file_ms']['median']:.3f} ms, "
          f"moyenne {result['file_ms']['mean']:.3f} ms")
    print(f"=> {result['emails_per_second']:.0f} courriels/s l'un après l'autre, "
          f"{result['emails_per_second_parallel']:.0f}/s par {result['threads']} fils "
          f"en parallèle")


def _print_write_vs_disk(result: dict) -> None:
    """Débit du mélange write face au disque nu."""
    print(f"mélange write : {result['write_emails_per_second']:.0f} courriels/s, soit "
          f"{result['share']:.0%} des {result['disk_emails_per_second']:.0f}/s du disque nu "
          f"l'un après l'autre, {result['share_parallel']:.0%} de son débit en parallèle")


# Titres de colonne des chiffres comparés.
_FIGURE_LABELS = {
    "throughput": "req/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms",
    "server_cpu_us": "µs CPU/req", "list_ms": "list ms",
    "stats_ms": "stats ms", "read_first_ms": "lecture #1", "read_last_ms": "lecture #N",
    "rss_mib": "RSS Mo", "errors": "erreurs", "violations": "violations",
    "failed_clients": "échecs",
}


def _cell(value) -> str:
    """Un chiffre d'un tableau de comparaison (« — » s'il manque)."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _print_revision_comparison(result: dict) -> None:
    """Chiffres de chaque tour, A puis B, puis les rapports A/B : médiane et par tour."""
    settings = ", ".join(f"{key} {value:g}" for key, value in result["settings"].items())
    print(f"\n== Arbre de travail (A) contre {result['rev']} = {result['commit']} (B), "
          f"{result['rounds']} tours alternés ; {settings}")
    for name, comparison in result["comparisons"].items():
        rounds = comparison["rounds"]
        keys = list(rounds[0]["A"])
        print(f"-- {name}")
        print(f"{'tour':<5}{'côté':<5}"
              + "".join(f"{_FIGURE_LABELS[key]:>12}" for key in keys))
        for number, run in enumerate(rounds, 1):
            for side in ("A", "B"):
                print(f"{number:<5}{side:<5}"
                      + "".join(f"{_cell(run[side][key]):>12}" for key in keys))
        print("A/B > 1 : A plus rapide (req/s), plus lent ou plus lourd (ms, µs, Mo)")
        print(f"{'A/B':<12}{'médiane':>10}"
              + "".join(f"{f'tour {number}':>10}" for number in range(1, len(rounds) + 1)))
        for key, median in comparison["median_ratio"].items():
            print(f"{_FIGURE_LABELS[key]:<12}{_cell(median):>10}"
                  + "".join(f"{_cell(run['ratio'][key]):>10}" for run in rounds))


def _print_targets(rows: list) -> None:
    """Un objectif par ligne : valeur mesurée, limite, verdict."""
    print("\n== Objectifs")
    for row in rows:
        verdict = "atteint" if row["met"] else "MANQUÉ"
        print(f"{row['target']:<45}{row['value']:>10.3f}  {row['limit']:<8}{verdict}")


_PRINTERS = {
    "load": _print_load, "baseline": _print_load, "compare": _print_comparison,
    "read_100": _print_comparison, "mixed_100": _print_comparison,
    "write_100": _print_load, "mixed_1000": _print_load,
    "inbox": _print_inbox, "disk": _print_disk, "write_vs_disk": _print_write_vs_disk,
    "targets": _print_targets, "compare_rev": _print_revision_comparison,
}


def _shower(as_json: bool):
    """Affiche chaque résultat en texte, sauf en mode JSON (tout à la fin)."""
    def show(name: str, result) -> None:
        """Affiche un résultat nommé."""
        if not as_json:
            _PRINTERS[name](result)
            sys.stdout.flush()
    return show


# ----------------------------------------------------------------------
# Ligne de commande
# ----------------------------------------------------------------------

def _positive(kind):
    """Type argparse : un nombre strictement positif."""
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} n'est pas strictement positif")
        return value
    return convert


def _option_groups() -> dict:
    """Options partagées entre sous-commandes (analyseurs « parents » d'argparse)."""
    groups = {name: argparse.ArgumentParser(add_help=False)
              for name in ("output", "timing", "clients", "inbox", "disk")}
    groups["output"].add_argument(
        "--json", action="store_true",
        help="Affiche tous les résultats en JSON (à la fin) plutôt qu'en texte.")
    groups["timing"].add_argument("--processes", type=_positive(int), default=2,
                                  help="Processus générateurs (défaut : %(default)s).")
    groups["timing"].add_argument("--duration", type=_positive(float), default=10.0,
                                  help="Durée chronométrée d'une charge, en secondes "
                                       "(défaut : %(default)s).")
    groups["clients"].add_argument("--clients", type=_positive(int), default=100,
                                   help="Clients simultanés, un compte chacun "
                                        "(défaut : %(default)s).")
    groups["clients"].add_argument("--prefill", type=int, default=None,
                                   help=f"Courriels déposés dans chaque boîte avant la "
                                        f"mesure (défaut : {DEFAULT_PREFILL}, 0 pour write).")
    groups["load"] = argparse.ArgumentParser(add_help=False, parents=[groups["clients"]])
    groups["load"].add_argument("--mix", choices=sorted(MIXES), default="mixed",
                                help="mixed : 30 %% list, 20 %% lecture, 20 %% stats, "
                                     "30 %% envoi ; read : list, lecture et stats ; write : "
                                     "envoi seulement ; list-only, read-only, stats-only : "
                                     "une seule sorte (défaut : %(default)s).")
    groups["inbox"].add_argument("--emails", type=_positive(int), default=10_000,
                                 help="Taille de la boîte mesurée (défaut : %(default)s).")
    groups["inbox"].add_argument("--senders", type=_positive(int), default=8,
                                 help="Connexions qui remplissent la boîte en parallèle "
                                      "(défaut : %(default)s).")
    groups["inbox"].add_argument("--repetitions", type=_positive(int), default=50,
                                 help="Répétitions de chaque opération mesurée "
                                      "(défaut : %(default)s).")
    groups["inbox"].add_argument("--body-size", type=_positive(int), default=8192,
                                 help="Taille du corps de chaque courriel de la boîte, "
                                      "en octets (défaut : %(default)s).")
    groups["disk"].add_argument("--files", type=_positive(int), default=500,
                                help="Fichiers écrits pour la référence disque "
                                     "(défaut : %(default)s).")
    return groups


def _parse_args(argv: Optional[list]) -> argparse.Namespace:
    """Sous-commandes load, baseline, inbox, disk, all et compare, et leurs options."""
    groups = _option_groups()
    output, timing, load = groups["output"], groups["timing"], groups["load"]
    parser = argparse.ArgumentParser(description="Banc d'essai de TP4_server.py.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("load", parents=[output, timing, load],
                                  help="Charge contre TP4_server.py.")
    command.add_argument("--host", default=LOOPBACK,
                         help="Adresse du serveur visé avec --port (défaut : %(default)s).")
    command.add_argument("--port", type=int, default=None,
                         help="Vise un serveur déjà lancé plutôt que d'en lancer un.")
    command.add_argument("--compare-baseline", action="store_true",
                         help="Mesure aussi le plafond et donne le rapport des débits.")
    commands.add_parser("baseline", parents=[output, timing, load],
                        help="Charge contre le plafond (boucle select() qui répond OK).")
    commands.add_parser("inbox", parents=[output, groups["inbox"]],
                        help="Opérations sur une très grande boîte, puis après redémarrage.")
    commands.add_parser("disk", parents=[output, groups["disk"]],
                        help="Coût brut d'une écriture sûre de fichier sur ce disque.")
    command = commands.add_parser("all", parents=[output, timing, groups["inbox"],
                                                  groups["disk"]],
                                  help="read et mixed (100 clients, avec plafond), write "
                                       "100, mixed 1000, boîte, disque et objectifs.")
    command.add_argument("--prefill-1000", type=int, default=DEFAULT_PREFILL,
                         help="Préremplissage des 1000 boîtes (défaut : %(default)s).")
    command = commands.add_parser("compare", parents=[output, timing, groups["clients"],
                                                      groups["inbox"]],
                                  help="Arbre de travail contre une révision git, mesures "
                                       "alternées, et rapports des chiffres.")
    command.add_argument("--rev", required=True,
                         help="Révision git comparée (B), p. ex. HEAD ou HEAD~1.")
    command.add_argument("--what", choices=("load", "inbox"), default="load",
                         help="load : une charge par mélange ; inbox : la grande boîte "
                              "(options --emails etc.) (défaut : %(default)s).")
    command.add_argument("--mix", choices=list(MIXES), nargs="+",
                         default=list(COMPARED_MIXES),
                         help="Mélanges mesurés avec --what load, voir load "
                              "(défaut : %(default)s).")
    command.add_argument("--rounds", type=_positive(int), default=3,
                         help="Tours ; chacun mesure A puis B (défaut : %(default)s).")
    args = parser.parse_args(argv)
    _resolve_prefill(parser, args)
    return args


def _prefill(mix: str, prefill: Optional[int]) -> int:
    """Le préremplissage demandé, ou celui par défaut du mélange."""
    if prefill is not None:
        return prefill
    return 0 if mix == "write" else DEFAULT_PREFILL


def _resolve_prefill(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """
    Fixe le préremplissage par défaut (compare le laisse à chaque mélange) ;
    un mélange qui lit en exige au moins 1.
    """
    if args.command not in ("load", "baseline", "all", "compare"):
        return
    if args.command == "all":
        if args.prefill_1000 < 1:
            parser.error("--prefill-1000 doit valoir au moins 1 (mixed lit des courriels).")
        return
    for mix in args.mix if args.command == "compare" else [args.mix]:
        prefill = _prefill(mix, args.prefill)
        if prefill < 0 or ("read" in MIXES[mix] and prefill < 1):
            parser.error(f"--prefill doit valoir au moins 1 avec --mix {mix}.")
    if args.command != "compare":
        args.prefill = _prefill(args.mix, args.prefill)


def _run_command(args: argparse.Namespace, show) -> dict:
    """Exécute la sous-commande et renvoie ses résultats."""
    if args.command == "all":
        return run_all(args, show)
    if args.command == "compare":
        result, name = run_compare(args), "compare_rev"
    elif args.command == "inbox":
        result, name = run_inbox(args.emails, args.senders, args.repetitions,
                                 args.body_size), "inbox"
    elif args.command == "disk":
        result, name = run_disk(args.files), "disk"
    elif args.command == "baseline":
        result, name = run_against(False, args.mix, args.clients, args.duration,
                                   args.processes, args.prefill), "baseline"
    elif args.compare_baseline:
        result, name = compare_with_baseline(args.mix, args.clients, args.duration,
                                             args.processes, args.prefill), "compare"
    else:
        result, name = run_against(True, args.mix, args.clients, args.duration,
                                   args.processes, args.prefill, args.host,
                                   args.port), "load"
    show(name, result)
    return {name: result}


def main(argv: Optional[list] = None) -> int:
    """Point d'entrée : exécute la sous-commande et affiche ses résultats."""
    args = _parse_args(argv)
    results = _run_command(args, _shower(args.json))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
