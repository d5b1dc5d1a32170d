"""
Outils communs aux tests : ports libres, trames du protocole, serveur lancé
comme un vrai processus dans un dossier temporaire, client brut du
protocole, vérification d'un `ERROR` et petit récepteur SMTP sur 127.0.0.1.
"""

import base64
import binascii
import contextlib
import email
import email.message
import email.policy
import hashlib
import json
import os
import resource
import signal
import socket
import socketserver
import ssl
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
# Autres textes d'erreur du serveur, recopiés ici pour que les outils de
# mesure n'aient pas à importer `TP4_server`.
NOT_LOGGED_IN = "Vous devez être connecté pour faire cette requête."
INVALID_REQUEST = "Requête invalide."
SERVER_FULL = "Le serveur est plein, réessayez plus tard."
INTERNAL_ERROR = "Erreur interne du serveur."
# Refus d'une création de compte, tel que l'énoncé l'affiche.
CREATION_FAILED = "La création a échouée:"
INVALID_USERNAME = "Le nom d'utilisateur est invalide."
WEAK_PASSWORD = "Le mot de passe n'est pas assez sûr."
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


def creation_failed(*problems: str) -> str:
    """Message d'un refus de création de compte listant `problems`."""
    return "\n- ".join([CREATION_FAILED, *problems])


# ---------------------------------------------------------------------------
# Trames : longueur sur 4 octets ("!I"), puis le texte UTF-8
# ---------------------------------------------------------------------------

LENGTH = struct.Struct("!I")


class _Absent:
    """Type de `ABSENT` : une charge utile omise, distincte de `null`."""

    def __repr__(self) -> str:
        return "ABSENT"


# `message_frame` distingue une charge utile omise d'une charge utile `null`.
ABSENT = _Absent()


def frame(body: "str | bytes") -> bytes:
    """
    Une trame du protocole. Un texte est encodé en UTF-8, demi-paires de
    substitution comprises (`surrogatepass`), pour qu'un cas hostile passe
    tel quel ; des octets sont envoyés tels quels.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return LENGTH.pack(len(data)) + data


def message_text(header, payload=ABSENT) -> str:
    """
    Texte JSON d'un `GloMessage`. `header` et `payload` peuvent être
    n'importe quelle valeur JSON, pour les cas malformés ; `payload` est omis
    s'il vaut `ABSENT`.
    """
    message = {"header": header}
    if payload is not ABSENT:
        message["payload"] = payload
    return json.dumps(message)


def message_frame(header, payload=ABSENT) -> bytes:
    """Trame d'un `GloMessage` (voir `message_text`)."""
    return frame(message_text(header, payload))


def split_frames(buffer: bytearray) -> list:
    """Retire du tampon chaque trame complète du protocole et renvoie leurs corps."""
    frames = []
    start = 0
    while len(buffer) - start >= LENGTH.size:
        (length,) = LENGTH.unpack_from(buffer, start)
        end = start + LENGTH.size + length
        if len(buffer) < end:
            break
        frames.append(bytes(buffer[start + LENGTH.size:end]))
        start = end
    del buffer[:start]
    return frames


def decode_message(body: bytes) -> "dict | None":
    """Objet JSON du corps d'une trame, ou None s'il n'en est pas un."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def assert_error(test, reply: dict, message: "str | None" = None, *, msg=None) -> str:
    """
    Vérifie que `reply` est un `ERROR` dont la charge utile porte la seule
    clé `error_message`, un texte non vide (égal à `message` s'il est donné),
    et renvoie ce texte. `msg` précise le contexte d'un échec.
    """
    context = f"{msg} : {reply!r:.300}" if msg else f"{reply!r:.300}"
    test.assertEqual(reply.get("header"), gloutils.Headers.ERROR, context)
    payload = reply.get("payload")
    test.assertIsInstance(payload, dict, context)
    test.assertEqual(list(payload), ["error_message"], context)
    error = payload["error_message"]
    test.assertIsInstance(error, str, context)
    test.assertTrue(error, context)
    if message is not None:
        test.assertEqual(error, message, context)
    return error


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

    def command(self) -> list:
        """La ligne de commande du serveur."""
        return [sys.executable, str(SERVER_SCRIPT), "--host", LOOPBACK,
                "--port", str(self.port), *self.extra_args]

    def start(self) -> "ServerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=self.environment,
            preexec_fn=self.preexec_fn, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def run_until_exit(self, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """
        Lance le serveur et attend qu'il se termine de lui-même, sorties
        capturées à part : pour un démarrage qui doit échouer.
        """
        return subprocess.run(
            self.command(), cwd=self.workdir, env=self.environment,
            preexec_fn=self.preexec_fn, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout)

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


def start_server(test, *extra_args: str, **options) -> ServerProcess:
    """
    Lance un `ServerProcess` (mêmes arguments) pour le test `test`, qui
    l'arrête et efface son dossier à la fin, quelle qu'en soit l'issue.
    """
    server = ServerProcess(*extra_args, **options)
    test.addCleanup(server.__exit__, None, None, None)
    return server.start()


def reset_close(sock: socket.socket) -> None:
    """Ferme en envoyant un RST (SO_LINGER à 0) plutôt qu'un FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class RawClient:
    """Client brut : envoie et reçoit des `GloMessage` avec glossocket."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)

    def send(self, header, payload=None) -> None:
        """Envoie un `GloMessage` ; sans `payload`, la clé est omise."""
        self.send_text(message_text(int(header), ABSENT if payload is None else payload))

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

    def messages_until_closed(self, wait: float = 5.0) -> "list | None":
        """
        Messages reçus jusqu'à ce que le serveur ferme la connexion, ou None
        s'il la garde ouverte plus de `wait` secondes.
        """
        data = self.received_until_closed(wait)
        if data is None:
            return None
        return [json.loads(body) for body in split_frames(bytearray(data))]

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

    def abort(self) -> None:
        """Fermeture brutale (RST) au lieu d'une fin de connexion normale."""
        reset_close(self.sock)

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Certificats de test (voir certs/README.txt) : l'AC que le serveur reçoit par
# --smtp-cafile, et les certificats que le récepteur peut présenter.
CERTS_DIR = Path(__file__).resolve().parent / "certs"
TEST_CA_FILE = CERTS_DIR / "ca.pem"
# Signé par l'AC, pour localhost et 127.0.0.1.
GOOD_CERTIFICATE = "localhost"
# Signé par l'AC, mais pour un autre nom que 127.0.0.1.
WRONG_NAME_CERTIFICATE = "autre-nom"
# Autosigné, étranger à l'AC.
UNKNOWN_CERTIFICATE = "inconnu"


class _SMTPHandler(socketserver.StreamRequestHandler):
    """
    Dialogue SMTP minimal : juste ce que smtplib envoie pour un courriel,
    plus STARTTLS et AUTH (PLAIN, LOGIN) quand le récepteur les offre.
    """

    # Un client qui se tait (poignée de main TLS abandonnée, par exemple) ne
    # retient pas un fil du récepteur plus longtemps que ce délai.
    timeout = 30

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        # Après STARTTLS, `wfile` est un tampon : la réponse doit partir.
        self.wfile.flush()

    def read_line(self) -> "str | None":
        """Une ligne du client sans sa fin, ou None s'il a fermé la connexion."""
        line = self.rfile.readline()
        return line.decode("ascii", "replace").strip() if line else None

    def start_tls(self) -> None:
        """
        Chiffre la connexion côté serveur avec le certificat du récepteur.
        Les fichiers du dialogue en clair sont fermés d'abord : rien de ce
        que le client aurait envoyé d'avance en clair ne doit passer pour
        une commande chiffrée.
        """
        self.rfile.close()
        self.wfile.close()
        self.connection = self.server.receiver.tls_context.wrap_socket(
            self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")

    @property
    def encrypted(self) -> bool:
        """Vrai une fois la connexion chiffrée : `start_tls` la remplace."""
        return self.connection is not self.request

    def finish(self) -> None:
        super().finish()
        # socketserver ne ferme que la connexion d'origine, vidée par
        # `wrap_socket` : la connexion chiffrée est à fermer ici.
        if self.encrypted:
            self.connection.close()

    def handle(self) -> None:
        receiver: SMTPReceiver = self.server.receiver
        if receiver.mode == "silent":
            receiver.silent_event.wait(30)
            return
        if receiver.tls == "ssl":
            self.start_tls()
        self.reply("220 localhost ESMTP test")
        envelope = self.new_envelope()
        user = None
        while True:
            command = self.read_line()
            if command is None:
                return
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.greet(verb, receiver, user)
            elif command.upper() == "STARTTLS" and self.offers_starttls(receiver):
                self.reply("220 Pret pour TLS")
                self.start_tls()
                # RFC 3207 : après STARTTLS, le client repart de zéro.
                envelope, user = self.new_envelope(), None
            elif verb == "AUTH" and self.offers_auth(receiver):
                if user is not None:
                    self.reply("503 Deja identifie")
                    continue
                user = self.authenticate(receiver, command[5:].split())
            elif verb == "MAIL":
                if receiver.credentials is not None and user is None:
                    self.reply("530 5.7.0 Identification requise")
                    continue
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
                envelope["user"] = user
                receiver.messages.append(dict(envelope))
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Au revoir")
                return
            elif verb == "RSET":
                self.reply("250 OK")
            else:
                self.reply("502 Commande inconnue")

    def new_envelope(self) -> dict:
        """Enveloppe vide ; `tls` dit si elle arrive par une connexion chiffrée."""
        return {"mail_from": None, "rcpt_to": [], "data": b"", "tls": self.encrypted,
                "user": None}

    def offers_starttls(self, receiver: "SMTPReceiver") -> bool:
        return receiver.tls == "starttls" and not self.encrypted

    def offers_auth(self, receiver: "SMTPReceiver") -> bool:
        """
        AUTH n'est offert qu'avec des identifiants et, en mode STARTTLS,
        qu'une fois la connexion chiffrée, comme les fournisseurs le font :
        un client qui oublierait STARTTLS ne trouve pas à qui donner son mot
        de passe en clair.
        """
        return receiver.credentials is not None and not self.offers_starttls(receiver)

    def greet(self, verb: str, receiver: "SMTPReceiver", user: "str | None") -> None:
        """Réponse à EHLO (extensions annoncées) ou à HELO (aucune)."""
        extensions = []
        if verb == "EHLO" and self.offers_starttls(receiver):
            extensions.append("STARTTLS")
        if verb == "EHLO" and self.offers_auth(receiver) and user is None:
            extensions.append("AUTH " + " ".join(receiver.mechanisms))
        lines = ["localhost", *extensions]
        for line in lines[:-1]:
            self.reply(f"250-{line}")
        self.reply(f"250 {lines[-1]}")

    def authenticate(self, receiver: "SMTPReceiver", words: list) -> "str | None":
        """
        Mène l'échange AUTH PLAIN ou AUTH LOGIN (réponse initiale ou non) et
        le note dans `receiver.logins` ; renvoie le nom accepté, ou None.
        """
        mechanism = words[0].upper() if words else ""
        if mechanism not in receiver.mechanisms:
            self.reply("504 5.5.4 Mecanisme inconnu")
            return None
        initial = words[1] if len(words) > 1 else None
        try:
            if mechanism == "PLAIN":
                blob = self.challenge("", initial)
                if blob is None:
                    return None
                _, name, password = blob.split("\0", 2)
            else:
                name = self.challenge("Username:", initial)
                password = None if name is None else self.challenge("Password:", None)
                if password is None:
                    return None
        except ValueError:
            self.reply("501 5.5.2 Reponse illisible")
            return None
        accepted = (name, password) == receiver.credentials
        receiver.logins.append({"mechanism": mechanism, "user": name,
                                "accepted": accepted, "tls": self.encrypted})
        if not accepted:
            self.reply("535 5.7.8 Identifiants refuses")
            return None
        self.reply("235 2.7.0 Identification reussie")
        return name

    def challenge(self, prompt: str, initial: "str | None") -> "str | None":
        """
        Une réponse du client en base64, décodée en UTF-8 : `initial` s'il
        l'a donnée avec AUTH, sinon lue après un 334 qui porte `prompt`.
        None si le client abandonne (« * ») ou ferme la connexion.
        """
        if initial is None:
            self.reply("334 " + base64.b64encode(prompt.encode("ascii")).decode("ascii"))
            initial = self.read_line()
            if initial is None:
                return None
        if initial == "*":
            self.reply("501 5.7.0 Identification abandonnee")
            return None
        if initial == "=":
            return ""
        try:
            return base64.b64decode(initial, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as ex:
            raise ValueError(initial) from ex


class _ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # Un client qui coupe ou refuse la poignée de main TLS est un cas que
        # les tests provoquent : pas de trace sur la sortie des tests.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class SMTPReceiver:
    """
    Récepteur SMTP sur 127.0.0.1, dans un fil. `mode` : "accept" (garde
    chaque courriel dans `messages`), "refuse" (550 à RCPT) ou "silent"
    (accepte la connexion puis ne dit jamais rien, pas même TLS).

    `tls` : None (en clair, STARTTLS n'est pas offert), "starttls" (offert
    après EHLO) ou "ssl" (TLS dès la connexion) ; le récepteur présente
    alors le certificat `certificate` de certs/ (voir `GOOD_CERTIFICATE`).
    `credentials` : (nom, mot de passe) ; le récepteur offre alors AUTH
    avec les mécanismes `mechanisms`, n'accepte que ce couple exact (535
    sinon), note chaque essai dans `logins` et refuse MAIL avant (530).

    Chaque courriel de `messages` est une enveloppe : `mail_from`,
    `rcpt_to`, `data`, plus `tls` (reçu chiffré) et `user` (nom identifié,
    ou None).
    """

    def __init__(self, mode: str = "accept", *, tls: "str | None" = None,
                 credentials: "tuple[str, str] | None" = None,
                 mechanisms: tuple = ("PLAIN", "LOGIN"),
                 certificate: str = GOOD_CERTIFICATE) -> None:
        if tls not in (None, "starttls", "ssl"):
            raise ValueError(f"Mode TLS inconnu : {tls!r}")
        if not set(mechanisms) <= {"PLAIN", "LOGIN"}:
            raise ValueError(f"Mécanismes AUTH inconnus : {mechanisms!r}")
        self.mode = mode
        self.tls = tls
        self.credentials = credentials
        self.mechanisms = tuple(mechanisms)
        self.tls_context = None
        if tls is not None:
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_context.load_cert_chain(CERTS_DIR / f"{certificate}.pem",
                                             CERTS_DIR / f"{certificate}.key")
        self.messages: list[dict] = []
        self.logins: list[dict] = []
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


def tree(root: Path, ignore: tuple = ("server.log",)) -> dict:
    """
    Instantané d'une arborescence : chemin relatif → empreinte du contenu
    (ou "dossier"). Le journal du serveur, qui grandit, est ignoré.
    """
    snapshot = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames:
            snapshot[os.path.relpath(os.path.join(folder, name), root)] = "dossier"
        for name in filenames:
            path = os.path.join(folder, name)
            if name in ignore:
                continue
            relative = os.path.relpath(path, root)
            with open(path, "rb") as file:
                snapshot[relative] = hashlib.sha256(file.read()).hexdigest()
    return snapshot


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
