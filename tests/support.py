"""
Outils communs aux tests : ports libres, serveur lancé comme un vrai
processus dans un dossier temporaire, client brut du protocole et petit
récepteur SMTP sur 127.0.0.1.
"""

import contextlib
import email
import email.message
import email.policy
import json
import os
import resource
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import glossocket  # noqa: E402
import gloutils  # noqa: E402

SERVER_SCRIPT = ROOT / "TP4_server.py"
CLIENT_SCRIPT = ROOT / "TP4_client.py"
LOOPBACK = "127.0.0.1"
STRONG_PASSWORD = "Motdepasse123"

# Le courriel de l'énoncé et son affichage par `EMAIL_DISPLAY`.
HANDOUT_EMAIL = {
    "sender": "Qing.Long@glo2000.ca",
    "destination": "kohryu@glo2000.ca",
    "subject": "Bonjour!",
    "date": "Tue, 12 Jul 2022 19:21:57 +0000",
    "content": "Exemple de contenu\nSur plusieurs lignes",
}
HANDOUT_EMAIL_TEXT = (
    "De : Qing.Long@glo2000.ca\n"
    "À : kohryu@glo2000.ca\n"
    "Sujet : Bonjour!\n"
    "Date : Tue, 12 Jul 2022 19:21:57 +0000\n"
    "----------------------------------------\n"
    "Exemple de contenu\n"
    "Sur plusieurs lignes\n"
)
# Réponse du serveur, identique pour un nom inconnu et un mauvais mot de passe.
LOGIN_FAILED = "Nom d'utilisateur ou mot de passe invalide."
# Autres textes d'erreur du serveur que les outils de mesure reconnaissent.
NOT_LOGGED_IN = "Vous devez être connecté pour faire cette requête."
SERVER_FULL = "Le serveur est plein, réessayez plus tard."
INTERNAL_ERROR = "Erreur interne du serveur."
# Taille du fichier `pass` : l'empreinte sha3-512 en hexadécimal.
DIGEST_SIZE = 128
# Une date de `gloutils.get_current_utc_time()`, p. ex. Tue, 12 Jul 2022 19:21:57 +0000.
DATE_PATTERN = (r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
                r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                r"\d{4} \d{2}:\d{2}:\d{2} \+0000")


def free_port() -> int:
    """Un port TCP libre sur 127.0.0.1 (le système le choisit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def raise_fd_limit(wanted: int) -> int:
    """Relève la limite souple de descripteurs de ce processus ; renvoie la nouvelle."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


_LENGTH = struct.Struct("!I")


def split_frames(buffer: bytearray) -> list:
    """Retire du tampon chaque trame complète du protocole et renvoie leurs corps."""
    frames = []
    start = 0
    while len(buffer) - start >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(buffer, start)
        end = start + _LENGTH.size + length
        if len(buffer) < end:
            break
        frames.append(bytes(buffer[start + _LENGTH.size:end]))
        start = end
    del buffer[:start]
    return frames


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Attend qu'un serveur accepte les connexions sur `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Rien n'écoute sur le port {port}.")
            time.sleep(0.02)


class ServerProcess:
    """
    `TP4_server.py` lancé comme un processus, dans `workdir` (un dossier
    temporaire neuf par défaut), sur un port libre. S'utilise avec `with` :
    le processus est toujours arrêté et le dossier effacé à la sortie. Sans
    `--smtp-host`, le relais pointe vers un port fermé de 127.0.0.1 : aucun
    test ne sort jamais de la boucle locale.
    """

    def __init__(self, *extra_args: str, workdir: "str | None" = None,
                 port: "int | None" = None, environment: "dict | None" = None,
                 preexec_fn=None) -> None:
        self._own_dir = None
        if workdir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="glo-test-")
            workdir = self._own_dir.name
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / gloutils.SERVER_DATA_DIR
        self.port = port or free_port()
        if "--smtp-host" not in extra_args:
            extra_args = ("--smtp-host", LOOPBACK,
                          "--smtp-port", str(free_port()), *extra_args)
        self.extra_args = extra_args
        self.environment = {**os.environ, **(environment or {})}
        self.preexec_fn = preexec_fn
        self.process: "subprocess.Popen | None" = None
        self.log_path = self.workdir / "server.log"

    def start(self) -> "ServerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--host", LOOPBACK,
             "--port", str(self.port), *self.extra_args],
            cwd=self.workdir, env=self.environment, preexec_fn=self.preexec_fn,
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Arrêt brutal (SIGKILL), comme une panne."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Arrêt propre (SIGINT, comme Ctrl-C), puis brutal au besoin."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None:
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()


class RawClient:
    """Client brut : envoie et reçoit des `GloMessage` avec glossocket."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)

    def send(self, header, payload=None) -> None:
        message = {"header": int(header)}
        if payload is not None:
            message["payload"] = payload
        glossocket.send_msg(self.sock, json.dumps(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        glossocket.send_msg(self.sock, text)

    def recv(self) -> dict:
        return json.loads(glossocket.recv_msg(self.sock))

    def request(self, header, payload=None) -> dict:
        self.send(header, payload)
        return self.recv()

    def register(self, username: str, password: str = STRONG_PASSWORD) -> dict:
        return self.request(gloutils.Headers.AUTH_REGISTER,
                            {"username": username, "password": password})

    def login(self, username: str, password: str = STRONG_PASSWORD) -> dict:
        return self.request(gloutils.Headers.AUTH_LOGIN,
                            {"username": username, "password": password})

    def send_email(self, sender: str, destination: str, subject: str = "Sujet",
                   content: str = "Contenu", date: "str | None" = None) -> dict:
        return self.request(gloutils.Headers.EMAIL_SENDING, {
            "sender": sender, "destination": destination, "subject": subject,
            "date": date or gloutils.get_current_utc_time(), "content": content})

    def nothing_received(self, wait: float = 0.3) -> bool:
        """Vrai si rien n'arrive pendant `wait` secondes, connexion ouverte."""
        self.sock.settimeout(wait)
        try:
            self.sock.recv(1)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10.0)
        return False

    def closed_by_server(self, wait: float = 5.0) -> bool:
        """Vrai si le serveur ferme la connexion dans les `wait` secondes."""
        return self.received_until_closed(wait) is not None

    def received_until_closed(self, wait: float = 5.0) -> "bytes | None":
        """
        Octets reçus jusqu'à ce que le serveur ferme la connexion, ou None
        s'il la garde ouverte plus de `wait` secondes.
        """
        self.sock.settimeout(wait)
        data = bytearray()
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except socket.timeout:
            return None
        except OSError:
            pass
        finally:
            self.sock.settimeout(10.0)
        return bytes(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Dialogue SMTP minimal : juste ce que smtplib envoie pour un courriel."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        receiver: SMTPReceiver = self.server.receiver
        if receiver.mode == "silent":
            receiver.silent_event.wait(30)
            return
        self.reply("220 localhost ESMTP test")
        envelope = {"mail_from": None, "rcpt_to": [], "data": b""}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode("ascii", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                envelope["mail_from"] = command[10:]
                self.reply("250 OK")
            elif verb == "RCPT":
                if receiver.mode == "refuse":
                    self.reply("550 Destinataire refuse")
                    continue
                envelope["rcpt_to"].append(command[8:])
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 Fin par <CRLF>.<CRLF>")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b""):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                envelope["data"] = bytes(data)
                receiver.messages.append(dict(envelope))
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Au revoir")
                return
            elif verb == "RSET":
                self.reply("250 OK")
            else:
                self.reply("502 Commande inconnue")


class _ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SMTPReceiver:
    """
    Récepteur SMTP sur 127.0.0.1, dans un fil. `mode` : "accept" (garde
    chaque courriel dans `messages`), "refuse" (550 à RCPT) ou "silent"
    (accepte la connexion puis ne dit jamais rien).
    """

    def __init__(self, mode: str = "accept") -> None:
        self.mode = mode
        self.messages: list[dict] = []
        self.silent_event = threading.Event()
        self._server = _ThreadingTCPServer((LOOPBACK, 0), _SMTPHandler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "SMTPReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.silent_event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def relayed_message(envelope: dict) -> email.message.EmailMessage:
    """Courriel reçu par `SMTPReceiver`, décodé par le module `email`."""
    return email.message_from_bytes(envelope["data"], policy=email.policy.default)


def assert_relayed(test, envelope: dict, payload: dict) -> None:
    """Vérifie l'enveloppe, les en-têtes et le corps d'un courriel relayé."""
    test.assertIn(payload["sender"], envelope["mail_from"])
    test.assertEqual(len(envelope["rcpt_to"]), 1)
    test.assertIn(payload["destination"], envelope["rcpt_to"][0])
    message = relayed_message(envelope)
    test.assertEqual(message["From"], payload["sender"])
    test.assertEqual(message["To"], payload["destination"])
    test.assertEqual(message["Subject"], payload["subject"])
    test.assertEqual(message["Date"], payload["date"])
    # `set_content` termine le corps par un saut de ligne ; SMTP le code en CRLF.
    test.assertEqual(message.get_content().replace("\r\n", "\n"),
                     payload["content"] + "\n")


def process_fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _process_state(pid: int) -> "tuple | None":
    """(état, parent) d'un processus, lus dans /proc ; None s'il n'existe pas."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state, parent = stat.read().rpartition(")")[2].split()[:2]
    except (OSError, ValueError):
        return None
    return state, int(parent)


def child_pids(pid: int) -> list:
    """Processus vivants (ni disparus ni zombies) dont `pid` est le parent."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        state = _process_state(int(entry))
        if state is not None and state[1] == pid and state[0] != "Z":
            children.append(int(entry))
    return children


def process_running(pid: int) -> bool:
    """Vrai tant que le processus existe et n'est pas un zombie."""
    state = _process_state(pid)
    return state is not None and state[0] != "Z"
