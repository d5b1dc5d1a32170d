#!/usr/bin/env python3
"""\
GLO-2000 Travail pratique 4 - Mesures de robustesse du serveur

Ce n'est pas un test unitaire : chaque sous-commande lance une charge
hostile et affiche des chiffres.

    python3 tests/stress.py stall   [--stalled 20] [--requests 2000]
    python3 tests/stress.py flood   [--connections 1100]
    python3 tests/stress.py cycles  [--cycles 10000]
    python3 tests/stress.py fuzz    [--cases 100000] [--seed N]

Chaque sous-commande démarre son propre serveur (`TP4_server.py` dans un
dossier temporaire, port libre) sauf si `--port` est donné ; `--pid` permet
alors de mesurer descripteurs et mémoire d'un serveur déjà lancé.

Les charges elles-mêmes (clients bloqués, rafale de connexions, cycles de
connexion) sont aussi utilisées par `tests/test_hostile.py`.
"""

import argparse
import collections
import contextlib
import json
import random
import socket
import statistics
import sys
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import fuzzing, support  # noqa: E402

H = support.gloutils.Headers
LOOPBACK = support.LOOPBACK
SERVER_FULL = support.SERVER_FULL
NOT_LOGGED_IN = support.NOT_LOGGED_IN


# ---------------------------------------------------------------------------
# Outils
# ---------------------------------------------------------------------------

def wait_until(predicate: typing.Callable[[], bool], timeout: float,
               interval: float = 0.02) -> bool:
    """Attend que `predicate()` soit vrai, au plus `timeout` secondes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def percentile(values: typing.Sequence[float], fraction: float) -> float:
    """Centile par rang le plus proche (0 < fraction <= 1)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


# ---------------------------------------------------------------------------
# Équité : clients bloqués au milieu d'une trame
# ---------------------------------------------------------------------------

def open_stalled(port: int, count: int) -> list:
    """
    Ouvre `count` connexions qui s'arrêtent au milieu d'une trame : la moitié
    après 2 octets de la longueur, l'autre après la longueur et la moitié du
    texte. Renvoie des paires (socket, octets restants de la trame).
    """
    whole = support.message_frame(H.AUTH_LOGIN, {"username": "personne",
                                                 "password": support.STRONG_PASSWORD})
    length = support.LENGTH.size
    stalled = []
    for index in range(count):
        cut = 2 if index % 2 == 0 else length + (len(whole) - length) // 2
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
        sock.sendall(whole[:cut])
        stalled.append((sock, whole[cut:]))
    return stalled


def measure_latency(port: int, requests: int, *, username: str) -> list:
    """
    Un client inscrit sous `username` enchaîne `requests` requêtes (liste et
    statistiques en alternance) ; renvoie la durée de chacune, en secondes.
    """
    latencies = []
    with support.RawClient(port) as client:
        reply = client.register(username)
        if reply["header"] != H.OK:
            raise RuntimeError(f"Inscription refusée : {reply!r}")
        for index in range(requests):
            header = H.INBOX_READING_REQUEST if index % 2 else H.STATS_REQUEST
            started = time.perf_counter()
            reply = client.request(header)
            latencies.append(time.perf_counter() - started)
            if reply["header"] != H.OK:
                raise RuntimeError(f"Requête refusée : {reply!r}")
    return latencies


# ---------------------------------------------------------------------------
# Rafale de connexions simultanées
# ---------------------------------------------------------------------------

def run_flood(port: int, connections: int) -> dict:
    """
    Ouvre `connections` connexions à la fois, envoie une requête sur chacune
    et classe la réponse : servie (la requête reçoit sa réponse normale),
    refusée avec le `ERROR` « serveur plein », ou refusée par une fermeture.
    """
    support.raise_fd_limit(connections + 256)
    counts = collections.Counter()
    sockets = []
    started = time.monotonic()
    try:
        for _ in range(connections):
            try:
                sockets.append(socket.create_connection((LOOPBACK, port), timeout=10))
            except OSError:
                counts["connexion_impossible"] += 1
        counts["connectees"] = len(sockets)
        probe = support.message_frame(H.INBOX_READING_REQUEST)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.sendall(probe)
        for sock in sockets:
            counts[_classify_flood_reply(sock)] += 1
    finally:
        for sock in sockets:
            sock.close()
    counts["duree_s"] = round(time.monotonic() - started, 2)
    return dict(counts)


def _classify_flood_reply(sock: socket.socket) -> str:
    try:
        message = json.loads(support.glossocket.recv_msg(sock))
    except (support.glossocket.GLOSocketError, ValueError):
        return "refusees_fermeture"
    text = (message.get("payload") or {}).get("error_message")
    if text == SERVER_FULL:
        return "refusees_error"
    if text == NOT_LOGGED_IN:
        return "servies"
    return "reponse_inattendue"


# ---------------------------------------------------------------------------
# Cycles de connexion et de déconnexion
# ---------------------------------------------------------------------------

CYCLE_KINDS = ("bye", "abrupte", "mi_trame", "rst", "requete_rst")


def one_cycle(port: int, kind: str) -> None:
    """
    Une connexion qui se termine de la façon `kind` : `BYE` poli, fermeture
    sans rien dire, fermeture au milieu d'une trame, RST (SO_LINGER 0), ou
    requête suivie d'un RST sans lire la réponse.
    """
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    try:
        if kind == "bye":
            sock.sendall(support.message_frame(H.BYE))
        elif kind == "mi_trame":
            sock.sendall(support.message_frame(H.STATS_REQUEST)[:7])
        elif kind == "requete_rst":
            sock.sendall(support.message_frame(H.INBOX_READING_REQUEST))
        if kind in ("rst", "requete_rst"):
            support.reset_close(sock)
    finally:
        sock.close()


def run_cycles(port: int, count: int, seed: int = 0) -> dict:
    """`count` cycles de connexion, de sortes tirées au hasard (graine `seed`)."""
    rng = random.Random(seed)
    counts = collections.Counter()
    for _ in range(count):
        kind = rng.choice(CYCLE_KINDS)
        one_cycle(port, kind)
        counts[kind] += 1
    return dict(counts)


def quiet_fd_count(pid: int, timeout: float = 5.0) -> int:
    """
    Descripteurs du serveur une fois au repos : le compte ne bouge plus
    pendant 0,2 s (la sonde de démarrage, par exemple, a été fermée).
    """
    deadline = time.monotonic() + timeout
    count = support.process_fd_count(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        latest = support.process_fd_count(pid)
        if latest == count:
            break
        count = latest
    return count


def server_settled(pid: int, fd_target: int, timeout: float = 15.0) -> bool:
    """Attend que le serveur revienne à `fd_target` descripteurs ouverts."""
    return wait_until(lambda: support.process_fd_count(pid) <= fd_target, timeout)


# ---------------------------------------------------------------------------
# Sous-commandes
# ---------------------------------------------------------------------------

def _server(stack: contextlib.ExitStack, args, *extra: str) -> tuple:
    """
    (port, pid, serveur) à mesurer : celui de `--port` (serveur None) ou un
    `ServerProcess` neuf, arrêté à la sortie de `stack`.
    """
    if args.port is not None:
        return args.port, args.pid, None
    server = stack.enter_context(support.ServerProcess(*extra))
    return server.port, server.process.pid, server


def _alive(pid: typing.Optional[int], server) -> bool:
    if server is not None:
        return server.alive()
    return pid is None or Path(f"/proc/{pid}").exists()


def _show(title: str, figures: dict) -> None:
    print(f"== {title}")
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"  {key:<{width}} : {value}")
    sys.stdout.flush()


def command_stall(args) -> int:
    with contextlib.ExitStack() as stack:
        port, _, _ = _server(stack, args)
        tag = random.Random(args.seed).randrange(1 << 30)
        measure_latency(port, 200, username=f"chauffe{tag}")
        base = measure_latency(port, args.requests, username=f"seul{tag}")
        stalled = open_stalled(port, args.stalled)
        try:
            loaded = measure_latency(port, args.requests, username=f"entoure{tag}")
            still_open = sum(1 for sock, _ in stalled if _is_open(sock))
        finally:
            for sock, _ in stalled:
                sock.close()
    rise = percentile(loaded, 0.99) - percentile(base, 0.99)
    figures = {}
    for label, values in (("sans", base), (f"avec {args.stalled} bloques", loaded)):
        figures[f"p50 {label} (ms)"] = round(statistics.median(values) * 1000, 3)
        figures[f"p99 {label} (ms)"] = round(percentile(values, 0.99) * 1000, 3)
        figures[f"max {label} (ms)"] = round(max(values) * 1000, 3)
    figures["hausse du p99 (ms)"] = round(rise * 1000, 3)
    figures["bloques encore ouverts"] = f"{still_open}/{args.stalled}"
    figures["objectif (< 50 ms)"] = "atteint" if rise < 0.050 else "MANQUÉ"
    _show(f"stall : {args.requests} requêtes, {args.stalled} clients bloqués", figures)
    return 0 if rise < 0.050 else 1


def _is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def command_flood(args) -> int:
    with contextlib.ExitStack() as stack:
        extra = () if args.max_clients is None else ("--max-clients", str(args.max_clients))
        port, pid, server = _server(stack, args, *extra)
        figures = run_flood(port, args.connections)
        alive = _alive(pid, server)
        try:
            with support.RawClient(port) as client:
                served = client.register(f"apres{random.randrange(1 << 30)}")["header"] == H.OK
        except (OSError, support.glossocket.GLOSocketError):
            served = False
    figures["serveur vivant"] = alive
    figures["client servi après la rafale"] = served
    _show(f"flood : {args.connections} connexions simultanées", figures)
    return 0 if alive and served else 1


def command_cycles(args) -> int:
    with contextlib.ExitStack() as stack:
        port, pid, _ = _server(stack, args)
        if pid is None:
            print("--pid est nécessaire pour mesurer un serveur déjà lancé.")
            return 2
        fd_before = quiet_fd_count(pid)
        run_cycles(port, 300, seed=args.seed + 1)  # Chauffe de l'allocateur.
        server_settled(pid, fd_before)
        rss_before = support.process_rss_kib(pid)
        started = time.monotonic()
        counts = run_cycles(port, args.cycles, seed=args.seed)
        elapsed = time.monotonic() - started
        settled = server_settled(pid, fd_before)
        figures = {
            "cycles": args.cycles,
            "par sorte": counts,
            "duree (s)": round(elapsed, 2),
            "cycles/s": round(args.cycles / elapsed),
            "descripteurs avant": fd_before,
            "descripteurs apres": support.process_fd_count(pid),
            "retour au niveau de depart": settled,
            "RSS avant (Kio)": rss_before,
            "RSS apres (Kio)": support.process_rss_kib(pid),
        }
        figures["RSS hausse (Kio)"] = figures["RSS apres (Kio)"] - rss_before
    _show(f"cycles : {args.cycles} connexions/déconnexions", figures)
    return 0 if settled else 1


def command_fuzz(args) -> int:
    with contextlib.ExitStack() as stack:
        extra = ()
        if args.port is None:
            receiver = stack.enter_context(support.SMTPReceiver("accept"))
            extra = ("--smtp-host", LOOPBACK, "--smtp-port", str(receiver.port),
                     "--smtp-timeout", "2")
        port, pid, server = _server(stack, args, *extra)
        generator = fuzzing.FuzzCaseGenerator(args.seed, peers=("honnete",))
        fuzzing.register_account(port, generator)
        good = fuzzing.GoodClient(port, "honnete", seed=args.seed)
        good.start()
        driver = fuzzing.FuzzDriver(port, generator, connections=args.connections)
        try:
            counts = driver.run(
                args.cases, time_limit=args.time_limit,
                progress=lambda c: print(f"  ... {c['cas']} cas", flush=True))
        finally:
            good.stop()
        alive = _alive(pid, server)
        tracebacks = server.log().count("Traceback") if server is not None else "?"
    figures = dict(counts)
    figures["cas par seconde"] = round(counts["cas"] / max(counts["duree_s"], 1e-9))
    figures["par famille"] = dict(sorted(driver.kinds.items()))
    figures["anomalies"] = len(driver.problems)
    figures["exemples d'anomalies"] = driver.problems[:5]
    figures["exceptions au journal"] = tracebacks
    figures["cycles du client honnete"] = good.cycles
    if good.latencies:
        figures["client honnete p50/p99/max (ms)"] = "/".join(
            f"{value * 1000:.2f}" for value in (statistics.median(good.latencies),
                                                percentile(good.latencies, 0.99),
                                                max(good.latencies)))
    figures["echec du client honnete"] = good.failure
    figures["serveur vivant"] = alive
    _show(f"fuzz : graine {args.seed}", figures)
    return 0 if alive and not driver.problems and good.failure is None else 1


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Mesures de robustesse du serveur TP4.")
    parser.add_argument("--port", type=int, help="Serveur déjà lancé sur 127.0.0.1.")
    parser.add_argument("--pid", type=int, help="PID de ce serveur (mesures fd/RSS).")
    parser.add_argument("--seed", type=int, default=2000)
    commands = parser.add_subparsers(dest="command", required=True)
    stall = commands.add_parser("stall", help="Latence avec et sans clients bloqués.")
    stall.add_argument("--stalled", type=int, default=20)
    stall.add_argument("--requests", type=int, default=2000)
    flood = commands.add_parser("flood", help="Connexions simultanées au-delà du plafond.")
    flood.add_argument("--connections", type=int, default=1100)
    flood.add_argument("--max-clients", type=int, default=None)
    cycles = commands.add_parser("cycles", help="Connexions/déconnexions en série.")
    cycles.add_argument("--cycles", type=int, default=10_000)
    fuzz = commands.add_parser("fuzz", help="Trames hostiles pendant qu'un client travaille.")
    fuzz.add_argument("--cases", type=int, default=100_000)
    fuzz.add_argument("--connections", type=int, default=4)
    fuzz.add_argument("--time-limit", type=float, default=None,
                      help="Arrête l'envoi après ce nombre de secondes.")
    for sub in (stall, flood, cycles, fuzz):
        sub.add_argument("--port", type=int, default=argparse.SUPPRESS)
        sub.add_argument("--pid", type=int, default=argparse.SUPPRESS)
        sub.add_argument("--seed", type=int, default=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse_args(argv)
    command = {"stall": command_stall, "flood": command_flood,
               "cycles": command_cycles, "fuzz": command_fuzz}[args.command]
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
