"""\
GLO-2000 Travail pratique 4 - Serveur

Serveur de courriels @glo2000.ca. Une seule boucle `select.select()` sert tous les clients,
et chaque requête suit le même chemin :

    octets reçus -> trame complète -> JSON -> entrée de la table des en-têtes
    -> vérification de la charge utile -> LA méthode du gabarit de l'en-tête,
       appelée une seule fois -> sa valeur de retour, envoyée au client.

Le fichier se lit de haut en bas : petites fonctions, stockage (index des boîtes, fil
d'écriture, verrou du dossier), `Server` et sa table des en-têtes, ligne de commande.
Hors de la boucle, deux mécanismes : un exécuteur pour ce qui attendrait le disque ou le
relais (comptes, premier chargement d'une boîte, gros courriel, relais SMTP), et un fil
d'écriture qui publie les fichiers par groupes. Un envoi s'exécute dans la boucle, qui
retient sa réponse jusqu'à ce que son courriel soit durable. Le même fichier tourne sous
Linux, macOS et Windows.
"""

import argparse
import bisect
import collections
import concurrent.futures
import contextlib
import datetime
import email.message
import email.utils
import errno
import functools
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import os
import re
import select
import signal
import smtplib
import socket
import ssl
import string
import struct
import sys
import threading
import time
import typing

try:  # Absents sous Windows.
    import fcntl
    import resource
except ImportError:
    fcntl = resource = None
try:  # Présent sous Windows seulement.
    import msvcrt
except ImportError:
    msvcrt = None

try:
    import glossocket
except ImportError:  # Le module distribué par le cours s'appelle glosocket.py.
    import glosocket as glossocket
import gloutils

logger = logging.getLogger("TP4_server")

_SMTP_PORTS = {None: 25, "starttls": 587, "ssl": 465}  # Simple, soumission, TLS.
_DEFAULT_SMTP_SERVER = "smtp.ulaval.ca"  # Pour les éditions sans gloutils.SMTP_SERVER.
SMTP_PASSWORD_VARIABLE = "GLO_SMTP_PASSWORD"
DEFAULT_SMTP_TIMEOUT = 10.0
DEFAULT_FRAME_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024
MIN_MAX_MESSAGE = 1024  # De quoi tenir une requête ordinaire.
SELECT_FD_LIMIT = 1024  # select() ne surveille que les descripteurs < 1024 sous Unix...
_WINDOWS_SELECT_LIMIT = 512  # ... et au plus 512 sockets sous Windows.
DEFAULT_MAX_CLIENTS = 1000
_RESERVED_DESCRIPTORS = 48  # Écoute, réveil, verrou, relais, fichiers des fils...

_LENGTH = struct.Struct("!I")
_RECV_SIZE = 64 * 1024
_OUTPUT_HIGH_WATER = 256 * 1024  # Au-delà, en réponses non lues, on cesse de lire le client.
_ACCEPT_BACKOFF = 0.1  # Après un échec d'accept() (ENFILE...), sans quoi la boucle tourne à vide.
_MAX_WAIT = 0.5  # Attente maximale dans select() : Windows n'y remet pas Ctrl-C.
_WORKERS = 32
_RELAY_WORKERS = 8  # Au plus autant de relais SMTP à la fois ; les autres attendent leur tour.
_INLINE_MAX = 64 * 1024  # Un courriel plus gros est relu, ou encodé et confié, par un fil.
# Essais de mot de passe : `pass` (sha3-512 sans sel) est fixé par l'énoncé, on limite donc
# leur rythme. Après `_FREE_FAILURES` échecs d'un compte depuis une adresse, ses connexions à
# ce compte passent une par `_GUESS_INTERVAL` secondes, jusqu'à une minute de calme.
_FREE_FAILURES = 5
_GUESS_INTERVAL = 0.2
_FAILURES_FORGOTTEN = 60.0
_GUESS_RECORDS_MAX = 10_000

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Noms de périphériques Windows : inutilisables comme dossier, même suivis d'une extension.
_RESERVED_NAMES = {"con", "prn", "aux", "nul",
                   *(kind + digit for kind in ("com", "lpt") for digit in "123456789")}
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"([^@\s\x00-\x1f\x7f]+)@({_DOMAIN}(?:\.{_DOMAIN})*)")
_ADDRESS_MAX = 254
_EMAIL_SUFFIX = ".json"
_TEMP_PREFIX = ".tmp-"  # Fichier en cours d'écriture, caché jusqu'à son renommage.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # Sans écraser.
_LOCK_FILENAME = ".verrou"  # Sous Windows, qui ne verrouille que des fichiers.
_DIGITS = re.compile(r"[0-9]{1,18}")  # Des chiffres ASCII valent un entier.

LOGIN_FAILED = "Nom d'utilisateur ou mot de passe invalide."
NOT_LOGGED_IN = "Vous devez être connecté pour faire cette requête."
INVALID_REQUEST = "Requête invalide."
INTERNAL_ERROR = "Erreur interne du serveur."
SERVER_FULL = "Le serveur est plein, réessayez plus tard."

_DISK_ERRORS = {errno.ENOSPC: "plus d'espace disque", errno.EDQUOT: "quota disque dépassé",
                errno.EACCES: "permission refusée", errno.EPERM: "permission refusée",
                errno.EROFS: "disque en lecture seule", errno.ENOTDIR: "dossier inaccessible",
                errno.EISDIR: "c'est un dossier", errno.ENOENT: "dossier introuvable",
                errno.EAGAIN: "ressources du système épuisées",
                errno.ENOMEM: "mémoire insuffisante", errno.EMFILE: "trop de fichiers ouverts",
                errno.ENFILE: "trop de fichiers ouverts", errno.ESHUTDOWN: "le serveur s'arrête"}
_LISTEN_ERRORS = {errno.EADDRINUSE: "le port est déjà utilisé",
                  errno.EACCES: "permission refusée", errno.EPERM: "permission refusée",
                  errno.EADDRNOTAVAIL: "adresse non disponible sur cette machine"}


# -- Petites fonctions : réponses, charges utiles, noms, adresses, dates ------------------
def _ok(payload=None) -> gloutils.GloMessage:
    if payload is None:
        return gloutils.GloMessage(header=gloutils.Headers.OK)
    return gloutils.GloMessage(header=gloutils.Headers.OK, payload=payload)


def _error(message: str) -> gloutils.GloMessage:
    return gloutils.GloMessage(header=gloutils.Headers.ERROR,
                               payload=gloutils.ErrorPayload(error_message=message))


def _send_function() -> typing.Callable:
    """La fonction d'envoi du module, lue à chaque appel, sous le nom de son édition."""
    for name in ("send_msg", "send_mesg", "snd_mesg"):
        if getattr(glossocket, name, None) is not None:
            return getattr(glossocket, name)
    raise AttributeError(f"{glossocket.__name__} n'a pas de fonction d'envoi connue.")


def _conform(payload, fields: tuple) -> dict | None:
    """La charge utile si chaque clé a le type attendu (des chiffres valent un entier), ou None."""
    if not isinstance(payload, dict):
        return None
    converted = payload
    for key, expected in fields:
        value = payload.get(key)
        if expected is int and type(value) is str and _DIGITS.fullmatch(value):
            converted = dict(payload) if converted is payload else converted
            converted[key] = int(value)
        elif type(value) is not expected:
            return None
    return converted


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loggable(text: str) -> str:
    text = _shorten(text, 64)
    return text if text.isprintable() else "".join(
        char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _password_digest(password: str) -> str:
    """L'empreinte sha3-512 du mot de passe en UTF-8 (un substitut isolé ne lève pas)."""
    return hashlib.sha3_512(password.encode("utf-8", "surrogatepass")).hexdigest()


def _is_strong(password: str) -> bool:
    characters = set(password)  # Un seul parcours, même pour des mégaoctets.
    return (len(password) >= 10 and not any("\ud800" <= char <= "\udfff" for char in characters)
            and all(any(test(char) for char in characters)
                    for test in (str.isdecimal, str.islower, str.isupper)))


def _is_valid_username(username: str) -> bool:
    """Lettres, chiffres, `_.-`, et un nom de dossier que tout système garde tel quel."""
    return (_USERNAME.fullmatch(username) is not None and not username.endswith(".")
            and username.split(".")[0].lower() not in _RESERVED_NAMES
            and username.lower() != gloutils.SERVER_LOST_DIR.lower())


def _disk_error(ex: OSError) -> str:
    return _DISK_ERRORS.get(ex.errno, "erreur d'entrée-sortie sur le disque")


def _disk_access_error(ex: OSError) -> gloutils.GloMessage:
    logger.error("Accès au disque impossible : %s", ex)
    return _error(f"Accès au disque impossible : {_disk_error(ex)}.")


def _is_valid_address(destination: str) -> bool:
    return len(destination) <= _ADDRESS_MAX and _ADDRESS.fullmatch(destination) is not None


def _is_external(destination: str) -> bool:
    return destination.rpartition("@")[2].lower() != gloutils.SERVER_DOMAIN.lower()


# Les paires (clé, type) qu'exigent les `TypedDict` de gloutils, dans leur ordre.
_EMAIL_FIELDS = tuple(typing.get_type_hints(gloutils.EmailContentPayload).items())
_AUTH = tuple(typing.get_type_hints(gloutils.AuthPayload).items())
_CHOICE = tuple(typing.get_type_hints(gloutils.EmailChoicePayload).items())


@functools.lru_cache(maxsize=4096)  # Les courriels d'une même seconde ont la même date.
def _timestamp(date: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(date)
        return (moment.replace(tzinfo=datetime.timezone.utc) if moment.tzinfo is None
                else moment).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None


# -- Index des boîtes : ce que la liste, la lecture et les statistiques lisent ------------
# Une entrée d'index est un simple tuple (instant, arrivée, fichier, taille, expéditeur,
# sujet, date) : le ramasse-miettes cesse de suivre un tuple de chaînes et de nombres, pas un
# NamedTuple (mesuré, 100 000 courriels indexés : collecte complète en 7 ms au lieu de 52).
# L'ordre naturel des tuples est celui de la liste : par date, puis par arrivée.
_FILENAME, _SIZE, _SENDER, _SUBJECT, _DATE = range(2, 7)


def _index_entry(filename: str, size: int, content: dict) -> tuple:
    """L'entrée d'un courriel ; l'arrivée (le nom) départage et place les dates illisibles."""
    stem = filename[: -len(_EMAIL_SUFFIX)]
    arrival = int(stem) if stem.isdigit() else 0
    timestamp = _timestamp(content["date"])
    # Expéditeurs et dates se répètent : un seul objet chacun, moins de mémoire, et une liste
    # de 10 000 lignes mise en forme en 5,5 ms au lieu de 7,2 (mesuré).
    return (arrival / 1e9 if timestamp is None else timestamp, arrival, filename, size,
            sys.intern(content["sender"]), content["subject"], sys.intern(content["date"]))


class _Mailbox:
    """L'index d'un dossier : ses courriels, du plus ancien au plus récent, et sa taille."""

    def __init__(self, entries: list, size: int) -> None:
        self._lock = threading.Lock()
        self._entries = sorted(entries)
        self._size = size

    def add(self, entry: tuple) -> None:
        with self._lock:
            bisect.insort(self._entries, entry)
            self._size += entry[_SIZE]

    def stats(self) -> tuple[int, int]:
        with self._lock:
            return len(self._entries), self._size

    def newest_first(self) -> list:
        with self._lock:
            return self._entries[::-1]

    def by_number(self, number: int) -> tuple | None:
        with self._lock:  # #1 : la plus récente.
            return self._entries[-number] if 1 <= number <= len(self._entries) else None


_LINE_FIELDS = ("number", "sender", "subject", "date")


@functools.lru_cache(maxsize=16)
def _percent_template(template: str) -> str | None:
    """
    Le gabarit `str.format` traduit en gabarit `%` au texte identique, ou None s'il a plus
    que les quatre champs simples, dans leur ordre. Pour 10 000 lignes, `str.format` prend
    22 ms et `%` 4 ms (mesuré).
    """
    text, names = [], []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        text.append(literal.replace("%", "%%"))
        if name is not None:
            text.append("%d" if name == "number" else "%s")  # %d : 0,8 ms de moins.
            names.append(name if not (spec or conversion) else None)
    return "".join(text) if tuple(names) == _LINE_FIELDS else None


def _subject_lines(entries: list) -> list[str]:
    """Les lignes `SUBJECT_DISPLAY` des entrées, numérotées depuis 1, au gabarit en vigueur."""
    template = gloutils.SUBJECT_DISPLAY
    translated = _percent_template(template)
    if translated is None:  # Un autre gabarit, d'un correcteur : `str.format`, plus lent.
        return [template.format(number=number, sender=entry[_SENDER], subject=entry[_SUBJECT],
                                date=entry[_DATE]) for number, entry in enumerate(entries, 1)]
    return [translated % (number, entry[_SENDER], entry[_SUBJECT], entry[_DATE])
            for number, entry in enumerate(entries, 1)]


# -- Fichiers : publication des courriels, verrou du dossier ------------------------------
_arrival_lock = threading.Lock()
_last_arrival = 0


def _new_email_name() -> str:
    global _last_arrival
    with _arrival_lock:
        _last_arrival = max(time.time_ns(), _last_arrival + 1)
        return f"{_last_arrival:020d}{_EMAIL_SUFFIX}"


def _full_fsync(descriptor: int) -> None:
    """Rend un fichier durable ; sous macOS, `F_FULLFSYNC` va au-delà du cache du disque."""
    if hasattr(fcntl, "F_FULLFSYNC"):
        with contextlib.suppress(OSError):  # Refusé : fsync.
            fcntl.fcntl(descriptor, fcntl.F_FULLFSYNC)
            return
    os.fsync(descriptor)


def _sync_folder(folder: str) -> None:
    """Rend durables les entrées d'un dossier ; Windows n'ouvre pas de dossier, NTFS journalise."""
    if os.name != "nt":
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            _full_fsync(descriptor)
        finally:
            os.close(descriptor)


def _discard_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_email_file(path: str) -> dict | None:
    try:  # Sans objet fichier, et décodé avant json.loads : 8 µs au lieu de 24 (mesuré).
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            chunks = list(iter(functools.partial(os.read, descriptor, 1 << 16), b""))
        finally:
            os.close(descriptor)
        content = json.loads(b"".join(chunks).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return content if _conform(content, _EMAIL_FIELDS) is content else None


class _Write:
    """Un fichier confié au fil d'écriture ; `done` donnera son nom, ou l'`OSError` du refus."""

    __slots__ = ("folder", "final", "hidden", "renamable", "data", "descriptor", "error",
                 "on_published", "done")

    def __init__(self, folder: str, filename: str | None, data: bytes,
                 on_published: typing.Callable[[str], None] | None) -> None:
        self.folder, self.renamable, self.data = folder, filename is None, data  # None : courriel.
        self.name(filename or _new_email_name())
        self.descriptor: int | None = None
        self.error: OSError | None = None
        self.on_published, self.done = on_published, concurrent.futures.Future()

    def name(self, filename: str) -> None:
        self.final = os.path.join(self.folder, filename)
        self.hidden = os.path.join(self.folder, _TEMP_PREFIX + filename)


def _publish_group(writes: list) -> None:
    """
    Publie des fichiers, chacun complet ou pas du tout : écrit sous son nom caché, rendu
    durable, renommé, puis chaque dossier touché synchronisé une fois. Rien n'est écrasé : un
    seul fil écrit dans le dossier (son verrou), et un nom pris (horloge reculée depuis un
    redémarrage) fait prendre le suivant à un courriel, échouer un autre fichier. Une erreur,
    dans son `error`, n'échoue que le fichier qu'elle touche, et n'en laisse rien.
    """
    for write in writes:
        try:
            while os.path.lexists(write.final):
                if not write.renamable:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), write.final)
                write.name(_new_email_name())
            write.descriptor = os.open(write.hidden, _CREATE_FLAGS, 0o600)
            remaining = memoryview(write.data)
            while remaining:
                remaining = remaining[os.write(write.descriptor, remaining):]
        except OSError as ex:
            write.error = ex
    created = [write for write in writes if write.descriptor is not None]
    if len(created) > 1 and sys.platform == "linux":
        # Une seule écriture de tout le groupe : les fsync qui suivent n'ont plus de données
        # à écrire, et rapportent l'erreur de leur fichier (64 courriels : 13 ms au lieu de 22).
        os.sync()
    for write in created:
        try:
            if write.error is None:
                _full_fsync(write.descriptor)
        except OSError as ex:
            write.error = ex
        finally:
            os.close(write.descriptor)
            write.descriptor = None
    for write in writes:  # Renommés après : chaque renommage ouvre une transaction du journal.
        try:
            if write.error is None:
                os.rename(write.hidden, write.final)
        except OSError as ex:
            write.error = ex
        if write.error is not None:
            _discard_quietly(write.hidden)
    folders = {write.folder for write in writes if write.error is None}
    if len(folders) > 1 and sys.platform == "linux":
        os.sync()  # De même, une seule validation du journal pour tous les renommages.
    for folder in folders:
        try:
            _sync_folder(folder)
        except OSError as ex:  # Son renommage n'est pas sûr : refusé, il ne reste pas visible.
            for write in writes:
                if write.folder == folder and write.error is None:
                    write.error = ex
                    _discard_quietly(write.final)


class _DurabilityWriter:
    """Le fil d'écriture : il publie d'un coup tout ce qui attend, puis complète chacun."""

    def __init__(self) -> None:
        self._pending: list[_Write] = []
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="écriture", daemon=True)
        self._thread.start()

    def publish(self, folder: str, filename: str | None, data: bytes,
                on_published: typing.Callable[[str], None] | None = None
                ) -> concurrent.futures.Future:
        """Confie un fichier au fil, sans l'attendre ; `on_published` y sera appelé avec son nom."""
        write = _Write(folder, filename, data, on_published)
        with self._condition:
            if self._closing:
                raise OSError(errno.ESHUTDOWN, "le serveur s'arrête")
            self._pending.append(write)
            self._condition.notify()
        return write.done

    def close(self) -> None:
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not (self._pending or self._closing):
                    self._condition.wait()
                group, self._pending = self._pending, []
            if not group:
                return
            try:
                _publish_group(group)
            except Exception as ex:  # Un défaut imprévu : rien du groupe ne reste, rien n'attend.
                logger.exception("Échec imprévu du fil d'écriture")
                for write in group:
                    if write.descriptor is not None:
                        with contextlib.suppress(OSError):
                            os.close(write.descriptor)
                    if write.error is None:  # Son nom définitif était libre : c'est le sien.
                        write.error = OSError(errno.EIO, str(ex))
                        _discard_quietly(write.final)
                    _discard_quietly(write.hidden)
            for write in group:
                if write.error is not None:
                    write.done.set_exception(write.error)
                    continue
                try:  # Le fichier est durable : un défaut ici ne l'efface pas.
                    if write.on_published is not None:
                        write.on_published(os.path.basename(write.final))
                except Exception:
                    logger.exception("Échec imprévu après la publication de %s", write.final)
                write.done.set_result(os.path.basename(write.final))


# Verrous de dossier tenus par ce processus : chemin -> [descripteur, serveurs qui s'en
# servent]. Un correcteur construit parfois plusieurs `Server()` de suite dans un même
# processus et un même dossier.
_data_locks: dict[str, list] = {}
_data_locks_guard = threading.Lock()


def _lock_data_folder(folder: str) -> str | None:
    """
    Réserve `folder` à ce processus : `flock` du dossier sous Unix, `msvcrt` sur un fichier
    du dossier sous Windows ; le système rend le verrou à la mort du processus. Renvoie la
    clé de `_unlock_data_folder`, ou None si un autre processus vivant le tient.
    """
    key = os.path.normcase(os.path.realpath(folder))
    with _data_locks_guard:
        if key in _data_locks:
            _data_locks[key][1] += 1
            return key
        descriptor = (os.open(folder, os.O_RDONLY) if fcntl is not None else
                      os.open(os.path.join(folder, _LOCK_FILENAME), os.O_RDWR | os.O_CREAT))
        try:
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(descriptor)
            return None
        _data_locks[key] = [descriptor, 1]
        return key


def _unlock_data_folder(key: str) -> None:
    with _data_locks_guard:  # Rendu quand plus aucun serveur de ce processus ne s'en sert.
        held = _data_locks[key]
        held[1] -= 1
        if held[1] == 0:
            del _data_locks[key]
            os.close(held[0])


class Server:
    """Serveur de courriels @glo2000.ca."""

    def __init__(self, host: str = "", port: int | None = None, *,
                 smtp_host: str | None = None, smtp_port: int | None = None,
                 smtp_timeout: float = DEFAULT_SMTP_TIMEOUT, smtp_security: str | None = None,
                 smtp_user: str | None = None, smtp_password: str | None = None,
                 smtp_cafile: str | None = None, frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
                 max_message: int = DEFAULT_MAX_MESSAGE,
                 max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        """
        Réserve le port (`gloutils.APP_PORT` par défaut), prépare le dossier des données, puis
        écoute ; sinon quitte avec un code non nul, sans laisser de dossier. Le relais SMTP est
        simple ou en TLS (`smtp_security` : "starttls" ou "ssl"), son certificat vérifié.
        """
        port = gloutils.APP_PORT if port is None else port
        self._smtp_host = (getattr(gloutils, "SMTP_SERVER", _DEFAULT_SMTP_SERVER)
                           if smtp_host is None else smtp_host)
        self._smtp_port = _SMTP_PORTS[smtp_security] if smtp_port is None else smtp_port
        self._smtp_timeout, self._smtp_security = smtp_timeout, smtp_security
        self._smtp_login = None if smtp_user is None else (smtp_user, smtp_password or "")
        if self._smtp_login is not None and not "".join(self._smtp_login).isascii():
            sys.exit("Le nom et le mot de passe du relais doivent être en ASCII : smtplib "
                     "n'en transmet pas d'autres.")
        try:
            self._smtp_context = ssl.create_default_context() if smtp_security else None
            if smtp_cafile is not None and self._smtp_context is not None:
                self._smtp_context.load_verify_locations(cafile=smtp_cafile)  # En plus du système.
        except (OSError, ValueError) as ex:  # SSLError (pas de PEM lisible) est une OSError.
            reason = ("aucun certificat lisible au format PEM" if isinstance(ex, ssl.SSLError)
                      else "fichier introuvable" if isinstance(ex, FileNotFoundError)
                      else _disk_error(ex))
            sys.exit(f"Impossible de lire les autorités de certification {smtp_cafile} : "
                     f"{reason}.")
        self._frame_timeout, self._max_message = frame_timeout, max_message
        self._client_socs: list[socket.socket] = []
        self._logged_users: dict[socket.socket, str] = {}
        self._connections: dict[socket.socket, _Connection] = {}
        # Sockets à vider, et à trame incomplète : à part, pour qu'un tour ne parcoure pas
        # toutes les connexions.
        self._unsent, self._partial = set(), set()
        self._accept_resumes_at = 0.0
        # Essais de mot de passe retenus, (heure, n°, travail), et échecs par compte et adresse.
        self._held, self._held_order, self._guesses = [], itertools.count(), {}
        # Comptes (nom en minuscules -> nom), index des boîtes chargées, relais en cours.
        self._accounts, self._accounts_lock = {}, threading.Lock()
        self._mailboxes, self._loading_locks = {}, collections.defaultdict(threading.Lock)
        self._relays, self._stopping = set(), False
        self._loop_call = threading.local()  # Pendant qu'une méthode s'exécute dans la boucle.
        try:
            self._server_socket = self._bind(host, port)
        except OSError as ex:
            reason = (f"{host} n'est pas une adresse IPv4 connue" if isinstance(ex, socket.gaierror)
                      else _LISTEN_ERRORS.get(ex.errno, ex.strerror or str(ex)))
            sys.exit(f"Impossible d'écouter sur le port {port} : {reason}.")
        try:
            self._data_lock = self._prepare_storage()
            self._server_socket.listen(socket.SOMAXCONN)
        except OSError as ex:
            self._server_socket.close()
            _unlock_data_folder(self._data_lock)
            sys.exit(f"Impossible d'écouter sur le port {port} : {ex.strerror or ex}.")
        except SystemExit:
            self._server_socket.close()
            raise
        self._max_clients = self._fit_max_clients(max_clients)
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        self._wakeup_sent, self._running_relays = False, 0
        self._finished, self._waiting_relays = collections.deque(), collections.deque()
        self._executor = concurrent.futures.ThreadPoolExecutor(_WORKERS, "travail")
        self._writer = _DurabilityWriter()
        logger.info("En écoute sur %s:%d, %d compte(s) chargé(s).",
                    *self._server_socket.getsockname()[:2], len(self._accounts))
        if self._max_clients < max_clients:
            logger.warning("Limite de descripteurs trop basse : %d client(s) au plus "
                           "au lieu de %d.", self._max_clients, max_clients)

    def cleanup(self) -> None:
        """Ferme tout, coupe les relais, laisse finir les écritures commencées ; une fois."""
        if self._stopping:
            return
        self._stopping = True
        for client_soc in list(self._client_socs):
            self._remove_client(client_soc)
        for relay in list(self._relays):
            with contextlib.suppress(AttributeError, OSError):  # Pas connecté, ou déjà fermé.
                relay.sock.shutdown(socket.SHUT_RDWR)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._writer.close()
        for opened in (self._server_socket, self._wakeup_reader, self._wakeup_writer):
            opened.close()
        _unlock_data_folder(self._data_lock)
        logger.info("Serveur arrêté.")

    # -- Méthodes du gabarit : une par requête, chacune seule à la traiter ----------------
    def _create_account(self, client_soc: socket.socket,
                        payload: gloutils.AuthPayload) -> gloutils.GloMessage:
        """Crée le compte et connecte le socket, ou un `ERROR` énumérant tous les problèmes."""
        username, password = payload["username"], payload["password"]
        taken = "Le nom d'utilisateur est déjà utilisé."
        with self._accounts_lock:  # Deux créations du même nom : une seule réussit.
            problems = []
            if not _is_valid_username(username):
                problems.append("Le nom d'utilisateur est invalide.")
            elif username.lower() in self._accounts:
                problems.append(taken)
            if not _is_strong(password):
                problems.append("Le mot de passe n'est pas assez sûr.")
            if not problems:
                try:
                    self._store_account(username, _password_digest(password))
                except FileExistsError:
                    problems.append(taken)
                except OSError as ex:
                    logger.error("Création du compte %s impossible : %s", username, ex)
                    return _error(f"La création a échouée:\n- {_disk_error(ex).capitalize()}.")
            if problems:
                logger.info("Création refusée pour %s depuis %s : %s", _loggable(username),
                            self._peer(client_soc), " ".join(problems))
                return _error("\n- ".join(["La création a échouée:", *problems]))
            self._accounts[username.lower()] = username
        self._logged_users[client_soc] = username
        logger.info("Compte créé : %s, depuis %s", username, self._peer(client_soc))
        return _ok()

    def _login(self, client_soc: socket.socket,
               payload: gloutils.AuthPayload) -> gloutils.GloMessage:
        """Connecte le socket si le mot de passe est bon ; même réponse pour un nom inconnu."""
        username = self._accounts.get(payload["username"].lower())
        expected = None
        if username:
            path = os.path.join(self._user_dir(username), gloutils.PASSWORD_FILENAME)
            try:
                with open(path, encoding="ascii") as password_file:
                    expected = password_file.read().strip()
            except (OSError, ValueError) as ex:
                logger.error("Empreinte de %s illisible : %s", username, ex)
        given = _password_digest(payload["password"])
        if expected is None or not hmac.compare_digest(given, expected):
            logger.info("Connexion refusée pour %s depuis %s",
                        _loggable(payload["username"]), self._peer(client_soc))
            return _error(LOGIN_FAILED)
        self._logged_users[client_soc] = username
        logger.info("Connexion de l'utilisateur %s depuis %s", username, self._peer(client_soc))
        return _ok()

    def _logout(self, client_soc: socket.socket) -> None:
        """Déconnecte l'utilisateur ; le socket reste ouvert. Pas de réponse."""
        username = self._logged_users.pop(client_soc, None)
        if username is not None:
            logger.info("Déconnexion de l'utilisateur %s depuis %s",
                        username, self._peer(client_soc))

    def _get_email_list(self, client_soc: socket.socket) -> gloutils.GloMessage:
        """Les sujets de l'utilisateur, du plus récent au plus ancien."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        try:
            entries = self._mailbox(username).newest_first()
        except OSError as ex:
            return _disk_access_error(ex)
        return _ok(gloutils.EmailListPayload(email_list=_subject_lines(entries)))

    def _get_email(self, client_soc: socket.socket,
                   payload: gloutils.EmailChoicePayload) -> gloutils.GloMessage:
        """Le courriel choisi (#1 = le plus récent), relu sur le disque."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        choice = payload["choice"]
        try:
            entry = self._mailbox(username).by_number(choice)
        except OSError as ex:
            return _disk_access_error(ex)
        if entry is None:
            return _error(f"Le courriel #{choice} n'existe pas.")
        content = _read_email_file(os.path.join(self._user_dir(username), entry[_FILENAME]))
        if content is None:
            logger.error("Courriel %s de %s illisible.", entry[_FILENAME], username)
            return _error(f"Le courriel #{choice} est illisible.")
        return _ok(gloutils.EmailContentPayload(**{key: content[key] for key, _ in _EMAIL_FIELDS}))

    def _get_stats(self, client_soc: socket.socket) -> gloutils.GloMessage:
        """Le nombre de courriels et la taille du dossier de l'utilisateur."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        try:
            count, size = self._mailbox(username).stats()
        except OSError as ex:
            return _disk_access_error(ex)
        return _ok(gloutils.StatsPayload(count=count, size=size))

    def _send_email(self, payload: gloutils.EmailContentPayload) -> gloutils.GloMessage:
        """
        Livre un courriel : dans le dossier du destinataire s'il est du domaine (dans `LOST`,
        avec un `ERROR`, s'il n'existe pas), sinon par le relais SMTP. Ne répond `OK` qu'une
        fois le courriel durable ou accepté par le relais ; la liste ne le montre qu'alors.
        """
        destination = payload["destination"]
        if not _is_valid_address(destination):
            return _error(f"L'adresse {_shorten(destination)} n'est pas valide.")
        if _is_external(destination):
            return self._relay_external(payload)
        recipient = self._accounts.get(destination.rpartition("@")[0].lower())
        content = {key: payload[key] for key, _ in _EMAIL_FIELDS}
        data = json.dumps(content).encode("utf-8")
        folder = self._user_dir(recipient or gloutils.SERVER_LOST_DIR)
        sender = _loggable(payload["sender"])

        def published(filename: str) -> None:  # Dans le fil d'écriture, une fois durable.
            if mailbox is not None:
                mailbox.add(_index_entry(filename, len(data), content))
            logger.info("Courriel de %s livré à %s", sender, recipient or gloutils.SERVER_LOST_DIR)

        try:
            # Chargé après l'écriture, l'index compterait deux fois le courriel.
            mailbox = self._mailbox(recipient) if recipient else None
            written = self._writer.publish(folder, None, data, published)
        except OSError as ex:
            return self._not_stored(destination, ex)
        if recipient:
            return self._once_durable(written, _ok(), destination)
        logger.info("Destinataire inconnu %s : courriel placé dans %s",
                    _loggable(destination), gloutils.SERVER_LOST_DIR)
        return self._once_durable(written, _error(
            f"Le destinataire {_shorten(destination)} n'existe pas."), destination)

    def _once_durable(self, written: concurrent.futures.Future, reply: gloutils.GloMessage,
                      destination: str) -> gloutils.GloMessage:
        """
        La réponse d'un envoi, qui ne doit partir qu'une fois son courriel durable : appelée
        par la boucle, la méthode la rend tout de suite, et la boucle la retient jusque-là en
        servant les autres clients ; ailleurs (exécuteur, appel direct), on attend ici. Si
        l'écriture échoue, son refus part à la place.
        """
        refusal = functools.partial(self._not_stored, destination)
        awaited = getattr(self._loop_call, "awaited", None)  # Une liste : la boucle appelle.
        if awaited == []:
            awaited.append((written, refusal))
            return reply
        failure = written.exception()
        return reply if failure is None else refusal(failure)

    @staticmethod
    def _not_stored(destination: str, ex: OSError) -> gloutils.GloMessage:
        logger.error("Livraison à %s impossible : %s", _loggable(destination), ex)
        return _error(f"Le courriel n'a pas pu être enregistré : {_disk_error(ex)}.")

    # -- Relais SMTP ----------------------------------------------------------------------
    def _relay_external(self, payload: gloutils.EmailContentPayload) -> gloutils.GloMessage:
        relay = f"{self._smtp_host}:{self._smtp_port}"
        destination = _shorten(payload["destination"])
        try:
            message = email.message.EmailMessage()
            message["From"] = payload["sender"]
            message["To"] = payload["destination"]
            message["Subject"] = payload["subject"]
            # Une date illisible devient l'heure courante (sinon, un en-tête vide).
            message["Date"] = (payload["date"] if _timestamp(payload["date"]) is not None
                               else email.utils.formatdate())
            message.set_content(payload["content"])
            with self._open_relay() as smtp:
                smtp.send_message(message)
        except (OSError, ValueError) as ex:  # SMTPException et SSLError sont des OSError.
            if self._stopping:
                logger.warning("Relais SMTP vers %s abandonné : arrêt du serveur.", destination)
                return _error("Le serveur s'arrête : le courriel n'a pas été relayé.")
            reason = self._relay_failure(ex, destination, relay)
            logger.warning("Échec du relais vers %s : %s (%s)", destination, reason, ex)
            return _error(reason)
        logger.info("Courriel de %s relayé à %s par %s", payload["sender"], destination, relay)
        return _ok()

    def _open_relay(self) -> smtplib.SMTP:
        """La connexion au relais (TLS, STARTTLS, identification) ; `smtplib` est lu à l'appel."""
        name = "SMTP_SSL" if self._smtp_security == "ssl" else "SMTP"
        standard, abortable = _RELAY_CLASSES[name]
        relay_class = getattr(smtplib, name)
        if relay_class is standard:  # Une classe remplacée (par un correcteur) sert telle quelle.
            relay_class = functools.partial(abortable, self)
        tls = {"context": self._smtp_context} if name == "SMTP_SSL" else {}
        smtp = relay_class(self._smtp_host, self._smtp_port, timeout=self._smtp_timeout, **tls)
        try:
            if self._smtp_security == "starttls":
                smtp.starttls(context=self._smtp_context)
            if self._smtp_login is not None:
                smtp.login(*self._smtp_login)
        except BaseException:
            smtp.close()
            raise
        return smtp

    @staticmethod
    def _relay_failure(ex: Exception, destination: str, relay: str) -> str:
        cause = ex  # smtplib enveloppe un délai dépassé : on le cherche dans la chaîne.
        while cause is not None and not isinstance(cause, TimeoutError):
            cause = cause.__cause__ or cause.__context__
        smtp = f"Le serveur SMTP {relay}"
        # Deux refus de la même classe, que seul le texte distingue.
        offered = "STARTTLS" if "STARTTLS" in str(ex) else "l'identification"
        failures = (
            (smtplib.SMTPAuthenticationError, f"{smtp} a refusé l'identification."),
            (smtplib.SMTPNotSupportedError, f"{smtp} n'offre pas {offered}."),
            (smtplib.SMTPRecipientsRefused,
             f"Le serveur SMTP a refusé le destinataire {destination}."),
            (smtplib.SMTPResponseException,
             f"Le serveur SMTP a refusé le courriel ({getattr(ex, 'smtp_code', None)})."),
            (ssl.SSLCertVerificationError,
             f"Le certificat du serveur SMTP {relay} n'a pas pu être vérifié."),
            (ssl.SSLError, f"La connexion chiffrée au serveur SMTP {relay} a échoué."),
            ((TimeoutError, smtplib.SMTPServerDisconnected), f"{smtp} a coupé la connexion."
             if cause is None else f"{smtp} n'a pas répondu à temps."),
            (ValueError, "Le courriel contient un champ invalide."))
        return next((text for kinds, text in failures if isinstance(ex, kinds)),
                    f"{smtp} est injoignable.")

    # -- Boucle : connexions, découpage des messages, table des en-têtes ------------------
    def run(self) -> None:
        """Sert les clients jusqu'à l'interruption ; un défaut de la boucle elle-même en sort."""
        while True:
            self._serve_once()

    def _serve_once(self) -> None:
        readers = [self._wakeup_reader]
        if self._is_accepting():
            readers.append(self._server_socket)
        readers += [client_soc for client_soc, connection in self._connections.items()
                    if connection.reading]
        next_deadline = min((self._connections[client_soc].frame_started + self._frame_timeout
                             for client_soc in self._partial), default=None)
        wake_at = min(filter(None, (next_deadline, self._accept_resumes_at,
                                    self._held and self._held[0][0])), default=None)
        wait = _MAX_WAIT if wake_at is None else wake_at - time.monotonic()
        readable, writable, _ = select.select(readers, list(self._unsent), [],
                                              min(_MAX_WAIT, max(0.0, wait)))
        for client_soc in writable:
            self._flush(client_soc)
            connection = self._connections.get(client_soc)
            if connection and connection.held and len(connection.outbox) <= _OUTPUT_HIGH_WATER:
                connection.held = False  # Il a lu assez de réponses : ses requêtes reprennent.
                self._process_frames(client_soc)
        for ready in readable:
            if ready is self._server_socket:
                self._accept_client()
            elif ready is self._wakeup_reader:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    while self._wakeup_reader.recv(4096):
                        pass
                self._wakeup_sent = False  # Avant le recueil des travaux : rien n'est oublié.
            elif ready in self._connections:
                self._receive(ready)
        self._collect_finished()
        while self._held and self._held[0][0] <= time.monotonic():
            self._submit(heapq.heappop(self._held)[2])
        if next_deadline is not None and time.monotonic() >= next_deadline:
            stalled = time.monotonic() - self._frame_timeout
            for client_soc in [client_soc for client_soc in self._partial
                               if self._connections[client_soc].frame_started <= stalled]:
                logger.warning("Trame incomplète depuis %.0f s : connexion de %s fermée.",
                               self._frame_timeout, self._peer(client_soc))
                self._remove_client(client_soc)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """Le socket d'écoute ; sous Windows, `SO_EXCLUSIVEADDRUSE` y refuse un second serveur."""
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            option = getattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_REUSEADDR)
            server_socket.setsockopt(socket.SOL_SOCKET, option, 1)
            server_socket.bind((host, port))
            server_socket.setblocking(False)
        except (OSError, OverflowError) as ex:
            server_socket.close()
            if isinstance(ex, OverflowError):
                raise OSError(errno.EINVAL, "port hors des bornes (0 à 65535)") from ex
            raise
        return server_socket

    @staticmethod
    def _fit_max_clients(wanted: int) -> int:
        if resource is None:
            return min(wanted, _WINDOWS_SELECT_LIMIT - _RESERVED_DESCRIPTORS)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = 4 * SELECT_FD_LIMIT
        if soft != resource.RLIM_INFINITY and soft < target:
            soft = max(soft, target if hard == resource.RLIM_INFINITY else min(target, hard))
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return (wanted if soft == resource.RLIM_INFINITY
                else min(wanted, max(1, soft - _RESERVED_DESCRIPTORS)))

    def _is_accepting(self) -> bool:
        if self._accept_resumes_at and time.monotonic() < self._accept_resumes_at:
            return False  # La courte pause qui suit un échec d'accept().
        self._accept_resumes_at = 0.0
        return True

    def _accept_client(self) -> None:
        """Accepte une connexion ; au-delà de la limite, elle reçoit un `ERROR` et est fermée."""
        try:
            client_soc, address = self._server_socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as ex:
            logger.warning("Connexions suspendues %.1f s : %s", _ACCEPT_BACKOFF, ex)
            self._accept_resumes_at = time.monotonic() + _ACCEPT_BACKOFF
            return
        client_soc.setblocking(False)
        # Sous Windows, un numéro de socket est une poignée : seul leur nombre compte.
        if (len(self._client_socs) >= self._max_clients
                or (os.name != "nt" and client_soc.fileno() >= SELECT_FD_LIMIT)):
            with contextlib.suppress(glossocket.GLOSocketError):
                _send_function()(client_soc, json.dumps(_error(SERVER_FULL)))
            client_soc.close()
            logger.warning("Serveur plein : connexion refusée.")
            return
        with contextlib.suppress(OSError):  # Déjà fermé par le client : la lecture le verra.
            client_soc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client_socs.append(client_soc)
        self._connections[client_soc] = _Connection(*address[:2])
        logger.info("Connexion de %s", self._peer(client_soc))

    def _remove_client(self, client_soc: socket.socket) -> None:
        """Oublie tout ce qui concerne le client et ferme son socket."""
        if client_soc in self._client_socs:
            self._client_socs.remove(client_soc)
            logger.info("Fin de la connexion de %s", self._peer(client_soc))
        self._logged_users.pop(client_soc, None)
        self._connections.pop(client_soc, None)
        self._unsent.discard(client_soc)
        self._partial.discard(client_soc)
        client_soc.close()

    def _peer(self, client_soc: socket.socket) -> str:
        connection = self._connections.get(client_soc)
        return f"{connection.host}:{connection.port}" if connection is not None else "?"

    def _receive(self, client_soc: socket.socket) -> None:
        try:
            data = client_soc.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._remove_client(client_soc)
            return
        self._connections[client_soc].inbox += data
        self._process_frames(client_soc)

    def _process_frames(self, client_soc: socket.socket) -> None:
        """
        Traite dans l'ordre chaque trame complète reçue (longueur "!I", puis le texte UTF-8) :
        la fonction de réception du module attendrait une trame incomplète, et tous avec elle.
        """
        connection = self._connections[client_soc]
        inbox = connection.inbox
        start = 0
        while connection.reading and len(inbox) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(inbox, start)
            if length > self._max_message:
                logger.warning("Trame de %d octets refusée : connexion de %s fermée.",
                               length, self._peer(client_soc))
                self._remove_client(client_soc)
                return
            end = start + _LENGTH.size + length
            if len(inbox) < end:
                break
            frame = bytes(inbox[start + _LENGTH.size:end])
            start = end
            self._handle_frame(client_soc, frame)
            if client_soc not in self._connections:
                return
        del inbox[:start]
        if not inbox or not connection.reading:
            connection.frame_started = None
            self._partial.discard(client_soc)
        elif start or connection.frame_started is None:
            connection.frame_started = time.monotonic()  # Une nouvelle trame commence.
            self._partial.add(client_soc)

    def _answer(self, client_soc: socket.socket, reply) -> None:
        connection = self._connections.get(client_soc)
        if reply is None or connection is None:
            return
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError):
            logger.exception("Réponse impossible à encoder : %r", reply)
            text = json.dumps(_error(INTERNAL_ERROR))
        _send_function()(connection, text)
        self._flush(client_soc)
        if len(connection.outbox) > _OUTPUT_HIGH_WATER:
            connection.held = True

    def _flush(self, client_soc: socket.socket) -> None:
        connection = self._connections.get(client_soc)
        if connection is None:
            return
        outbox = connection.outbox
        try:
            sent = client_soc.send(outbox) if outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._remove_client(client_soc)
            return
        del outbox[:sent]
        (self._unsent.add if outbox else self._unsent.discard)(client_soc)

    def _handle_frame(self, client_soc: socket.socket, frame: bytes) -> None:
        """
        Confie une requête à la méthode du gabarit que `_ROUTES` prévoit pour son en-tête, dans
        la boucle ou dans l'exécuteur, après les vérifications communes ; sinon, un `ERROR`.
        """
        try:
            message = json.loads(frame.decode("utf-8"))
        except (ValueError, RecursionError):
            message = None
        header = message.get("header") if isinstance(message, dict) else None
        route = _ROUTES.get(header) if type(header) is int else None
        payload = message.get("payload") if route is not None else None
        if route is None:
            refusal = _error(INVALID_REQUEST)
        elif route.login_required and client_soc not in self._logged_users:
            refusal = _error(NOT_LOGGED_IN)
        elif route.payload is not None and (payload := _conform(payload, route.payload)) is None:
            refusal = _error(INVALID_REQUEST)
        else:
            refusal = route.check(self, client_soc, payload) if route.check else None
        if refusal is not None:
            self._answer(client_soc, refusal)
            return
        method = getattr(self, route.method)  # Lu à chaque requête : un remplacement sert.
        arguments = ((client_soc,) if route.takes_socket else ()) + (
            () if route.payload is None else (payload,))
        place = (route.place if isinstance(route.place, str)
                 else route.place(self, client_soc, payload))
        if place == "loop":
            self._loop_call.awaited = awaited = []  # Ce que la méthode laisse à attendre.
            try:
                reply = self._call(method, arguments)
            finally:
                self._loop_call.awaited = None
            if awaited:
                self._hold_reply(client_soc, reply, *awaited[0])
            else:
                self._answer(client_soc, reply)
            return
        connection = self._connections[client_soc]
        connection.busy = True
        guess = (payload["username"].lower(), connection.host) if route.throttled else None
        job = _Job(client_soc, method, arguments, place == "relay", guess)
        start = self._guess_slot(guess)
        if start is None:
            self._submit(job)
        else:
            heapq.heappush(self._held, (start, next(self._held_order), job))

    @staticmethod
    def _call(method: typing.Callable, arguments: tuple):
        try:  # Une exception ne coûte qu'un `ERROR` à son client.
            return method(*arguments)
        except Exception:
            logger.exception("Échec imprévu de %s", getattr(method, "__name__", method))
            return _error(INTERNAL_ERROR)

    # La place d'une requête qui dépend d'elle : "loop", "executor", ou "relay" (l'exécuteur,
    # dans la limite des relais simultanés).
    def _mailbox_place(self, client_soc: socket.socket, _payload) -> str:
        return "loop" if self._logged_users[client_soc].lower() in self._mailboxes else "executor"

    def _reading_place(self, client_soc: socket.socket, payload) -> str:
        mailbox = self._mailboxes.get(self._logged_users[client_soc].lower())
        if mailbox is None:
            return "executor"
        entry = mailbox.by_number(payload["choice"])
        return "executor" if entry and entry[_SIZE] > _INLINE_MAX else "loop"

    def _sending_place(self, _client_soc, payload) -> str:
        destination = payload["destination"]
        if not _is_valid_address(destination):
            return "loop"
        if _is_external(destination):
            return "relay"
        if len(payload["content"]) > _INLINE_MAX:
            return "executor"
        recipient = self._accounts.get(destination.rpartition("@")[0].lower())
        return "executor" if recipient and recipient.lower() not in self._mailboxes else "loop"

    def _check_sender(self, client_soc: socket.socket, payload) -> gloutils.GloMessage | None:
        """L'expéditeur est l'utilisateur connecté ; son nom seul (autres éditions) suffit."""
        username = self._logged_users[client_soc]
        own_address = f"{username}@{gloutils.SERVER_DOMAIN}"
        if payload["sender"].lower() == username.lower():
            payload["sender"] = own_address
        if payload["sender"].lower() != own_address.lower():
            return _error(f"L'expéditeur doit être votre adresse, {own_address}.")
        return None

    # -- Hors de la boucle : l'exécuteur, les essais retenus, les réponses ----------------
    def _submit(self, job: "_Job") -> None:
        if job.client_soc not in self._connections:
            return  # Parti pendant qu'il était retenu.
        if job.relay and self._running_relays >= _RELAY_WORKERS:
            self._waiting_relays.append(job)  # Il attend ici son tour, sans prendre de fil.
            return
        self._running_relays += job.relay
        future = self._executor.submit(self._call, job.method, job.arguments)
        future.add_done_callback(functools.partial(self._work_finished, job))

    def _guess_slot(self, key: tuple | None) -> float | None:
        record = self._guesses.get(key) if key else None
        if record is None or record[0] < _FREE_FAILURES:
            return None
        now = time.monotonic()
        if now - record[1] > _FAILURES_FORGOTTEN:
            del self._guesses[key]
            return None
        start = max(now, record[2])
        record[2] = start + _GUESS_INTERVAL
        return start if start > now else None

    def _count_guess(self, key: tuple, reply) -> None:
        if isinstance(reply, dict) and reply.get("header") == gloutils.Headers.OK:
            self._guesses.pop(key, None)
            return
        if len(self._guesses) >= _GUESS_RECORDS_MAX:
            oldest = time.monotonic() - _FAILURES_FORGOTTEN
            self._guesses = {other: record for other, record in self._guesses.items()
                             if record[1] > oldest}
        record = self._guesses.setdefault(key, [0, 0.0, 0.0])  # Échecs, dernier, prochain tour.
        record[0] += 1
        record[1] = time.monotonic()
        if record[0] == _FREE_FAILURES:
            logger.warning("Trop d'échecs pour le compte %s depuis %s : essais ralentis à %d "
                           "par seconde.", _loggable(key[0]), key[1], round(1 / _GUESS_INTERVAL))

    def _hold_reply(self, client_soc: socket.socket, reply: gloutils.GloMessage,
                    written: concurrent.futures.Future, refusal: typing.Callable) -> None:
        """Retient la réponse d'un envoi jusqu'à son courriel durable, ou la change en refus."""
        self._connections[client_soc].busy = True
        job = _Job(client_soc, None, (), False, None)
        written.add_done_callback(lambda done: self._hand_back(
            job, reply if done.exception() is None else refusal(done.exception())))

    def _work_finished(self, job: "_Job", future: concurrent.futures.Future) -> None:
        if not future.cancelled():  # Annulé : le serveur s'arrête.
            self._hand_back(job, future.result())

    def _hand_back(self, job: "_Job", reply) -> None:
        """Dans le fil qui a fini : remet la réponse à la boucle et la réveille."""
        self._finished.append((job, reply))
        if not self._wakeup_sent:  # Un octet en attente suffit : la boucle recueille tout.
            self._wakeup_sent = True
            with contextlib.suppress(OSError):  # Tampon plein (un réveil attend) ou arrêt.
                self._wakeup_writer.send(b"\0")

    def _collect_finished(self) -> None:
        while self._finished:
            job, reply = self._finished.popleft()
            if job.relay:
                self._running_relays -= 1
                if self._waiting_relays:
                    self._submit(self._waiting_relays.popleft())
            if job.guess is not None:
                self._count_guess(job.guess, reply)
            connection = self._connections.get(job.client_soc)
            if connection is None:  # Parti : un compte créé entre-temps ne reste pas connecté.
                self._logged_users.pop(job.client_soc, None)
                continue
            connection.busy = False
            self._answer(job.client_soc, reply)
            if job.client_soc in self._connections and connection.reading:
                self._process_frames(job.client_soc)

    # -- Stockage sur disque --------------------------------------------------------------
    def _prepare_storage(self) -> str:
        """
        Crée et réserve le dossier des données, charge les comptes (chaque dossier valide qui
        a un fichier `pass`) et efface les fichiers cachés qu'un arrêt brutal a laissés :
        aucun n'a été confirmé (un envoi ne l'est qu'une fois son courriel renommé).
        """
        data_dir = gloutils.SERVER_DATA_DIR
        try:
            os.makedirs(self._user_dir(gloutils.SERVER_LOST_DIR), exist_ok=True)
            data_lock = _lock_data_folder(data_dir)
        except OSError as ex:
            sys.exit(f"Impossible de préparer le dossier {data_dir} : {_disk_error(ex)}.")
        if data_lock is None:
            sys.exit(f"Le dossier {data_dir} est déjà utilisé par un autre serveur.")
        try:
            for entry in sorted(os.scandir(data_dir), key=lambda entry: entry.name):
                if not (entry.is_dir() and _is_valid_username(entry.name) and os.path.isfile(
                        os.path.join(entry.path, gloutils.PASSWORD_FILENAME))):
                    continue
                account = self._accounts.setdefault(entry.name.lower(), entry.name)
                if account != entry.name:
                    logger.warning("Dossier %s ignoré : le compte %s existe déjà.",
                                   entry.name, account)
            for name in [gloutils.SERVER_LOST_DIR, *self._accounts.values()]:
                for entry in os.scandir(self._user_dir(name)):
                    if entry.name.startswith(_TEMP_PREFIX):
                        logger.info("Écriture interrompue effacée : %s", entry.path)
                        os.unlink(entry.path)
        except OSError as ex:
            _unlock_data_folder(data_lock)
            sys.exit(f"Impossible de lire le dossier {data_dir} : {_disk_error(ex)}.")
        return data_lock

    @staticmethod
    def _user_dir(username: str) -> str:
        return os.path.join(gloutils.SERVER_DATA_DIR, username)

    def _store_account(self, username: str, digest: str) -> None:
        """
        Crée le dossier du compte et y publie l'empreinte du mot de passe comme un courriel. Un
        dossier qui a déjà un `pass` n'est jamais repris (`FileExistsError`) : ce serait prendre
        le compte d'un autre. Un échec retire le dossier créé ici : un refus ne laisse rien.
        """
        folder = self._user_dir(username)
        try:
            os.mkdir(folder)
            created = True
        except FileExistsError:
            created = False  # Reste d'une création interrompue, ou compte d'un autre.
        try:
            self._writer.publish(folder, gloutils.PASSWORD_FILENAME, digest.encode("ascii")
                                 ).result()
        except OSError:
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            raise
        _sync_folder(gloutils.SERVER_DATA_DIR)

    def _mailbox(self, username: str) -> _Mailbox:
        key = username.lower()
        mailbox = self._mailboxes.get(key)
        if mailbox is not None:
            return mailbox
        with self._loading_locks[key]:
            if key in self._mailboxes:
                return self._mailboxes[key]
            entries, size = [], 0
            for entry in os.scandir(self._user_dir(username)):
                if entry.name.startswith(_TEMP_PREFIX):
                    continue
                file_size = entry.stat().st_size
                size += file_size
                if not entry.name.endswith(_EMAIL_SUFFIX):
                    continue
                content = _read_email_file(entry.path)
                if content is None:
                    logger.warning("Courriel illisible ignoré : %s", entry.path)
                else:
                    entries.append(_index_entry(entry.name, file_size, content))
            logger.info("Boîte de %s chargée : %d courriel(s).", username, len(entries))
            mailbox = self._mailboxes[key] = _Mailbox(entries, size)
        return mailbox


class _Connection:
    """Ce que la boucle sait d'une connexion ; la fonction d'envoi écrit dans `outbox`."""

    __slots__ = ("host", "port", "inbox", "outbox", "frame_started", "busy", "held")

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.inbox, self.outbox = bytearray(), bytearray()
        self.frame_started: float | None = None  # Trame incomplète en tête d'`inbox`.
        self.busy = False  # Une requête s'exécute hors de la boucle : les suivantes attendent.
        self.held = False  # Trop de réponses non lues : on cesse de lire ses requêtes.

    def sendall(self, data: bytes) -> None:
        self.outbox += data

    @property
    def reading(self) -> bool:
        return not (self.busy or self.held)


# Une requête confiée à l'exécuteur ; `guess` : (compte, adresse) d'une connexion, dont on
# compte les échecs.
_Job = collections.namedtuple("_Job", "client_soc method arguments relay guess")


class _Route(typing.NamedTuple):
    """Ce que la boucle fait d'un en-tête de requête."""

    method: str  # Méthode du gabarit, cherchée sur le serveur à chaque requête.
    payload: tuple | None  # Paires (clé, type) de la charge utile, passée à la méthode.
    login_required: bool
    takes_socket: bool
    place: str | typing.Callable  # "loop", "executor", ou choisie selon la requête.
    check: typing.Callable | None = None  # Un `ERROR`, ou None pour continuer.
    throttled: bool = False  # Un essai de mot de passe.


_ROUTES = {
    gloutils.Headers.AUTH_REGISTER: _Route("_create_account", _AUTH, False, True, "executor"),
    gloutils.Headers.AUTH_LOGIN: _Route("_login", _AUTH, False, True, "executor", throttled=True),
    gloutils.Headers.AUTH_LOGOUT: _Route("_logout", None, False, True, "loop"),
    gloutils.Headers.BYE: _Route("_remove_client", None, False, True, "loop"),
    gloutils.Headers.INBOX_READING_REQUEST: _Route(
        "_get_email_list", None, True, True, Server._mailbox_place),
    gloutils.Headers.INBOX_READING_CHOICE: _Route(
        "_get_email", _CHOICE, True, True, Server._reading_place),
    gloutils.Headers.EMAIL_SENDING: _Route(
        "_send_email", _EMAIL_FIELDS, True, False, Server._sending_place, Server._check_sender),
    gloutils.Headers.STATS_REQUEST: _Route("_get_stats", None, True, True, Server._mailbox_place),
}


class _AbortableRelay:
    """Une connexion SMTP inscrite dès l'ouverture de son socket : l'arrêt du serveur la coupe."""

    def __init__(self, server: Server, *args, **kwargs) -> None:
        self._server = server
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        relay_socket = super()._get_socket(host, port, timeout)
        self._server._relays.add(self)
        if self._server._stopping:
            relay_socket.shutdown(socket.SHUT_RDWR)
        return relay_socket

    def close(self) -> None:
        self._server._relays.discard(self)
        super().close()


_RELAY_CLASSES = {
    name: (standard, type(f"_Abortable{name}", (_AbortableRelay, standard), {}))
    for name, standard in (("SMTP", smtplib.SMTP), ("SMTP_SSL", smtplib.SMTP_SSL))}


# -- Ligne de commande --------------------------------------------------------------------
# Messages d'erreur d'argparse, produits en anglais, et leur traduction. Les plus précis
# d'abord : le dernier reprend tout message propre à un argument.
_ARGPARSE_ERRORS = (
    (r"unrecognized arguments: (.*)", "arguments non reconnus : {0}."),
    (r"argument (\S+): expected one argument", "l'argument {0} attend une valeur."),
    (r"argument (\S+): ignored explicit argument (.*)",
     "l'argument {0} ne prend pas de valeur (reçu : {1})."),
    (r"argument (\S+): not allowed with argument (\S+)",
     "l'argument {0} ne va pas avec l'argument {1}."),
    (r"argument (\S+): (.*)", "argument {0} : {1}"),
)


class _FrenchHelpFormatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None) -> None:
        super().add_usage(usage, actions, groups, prefix or "utilisation : ")

    def start_section(self, heading) -> None:
        super().start_section(f"{heading} " if heading else heading)  # L'espace avant « : ».


class _FrenchArgumentParser(argparse.ArgumentParser):
    """Un analyseur d'arguments qui signale les erreurs en français, en une ligne, code 2."""

    def __init__(self, **kwargs) -> None:
        super().__init__(add_help=False, formatter_class=_FrenchHelpFormatter, **kwargs)
        self._optionals.title = "options"
        self.add_argument("-h", "--help", action="help",
                          help="afficher ce message d'aide et quitter")

    def error(self, message: str) -> typing.NoReturn:
        for pattern, french in _ARGPARSE_ERRORS:
            if match := re.fullmatch(pattern, message, re.DOTALL):
                message = french.format(*match.groups())
                break
        self.exit(2, f"{self.prog} : erreur : {message}\n")


def _port(text: str) -> int:
    if _DIGITS.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"le port doit être un entier de 0 à 65535 (reçu : « {text} »).")


def _seconds(text: str) -> float:
    with contextlib.suppress(ValueError):
        if 0 < float(text) < float("inf"):
            return float(text)
    raise argparse.ArgumentTypeError(
        f"le délai doit être un nombre de secondes supérieur à 0 (reçu : « {text} »).")


def _at_least(minimum: int) -> typing.Callable[[str], int]:
    def convert(text: str) -> int:
        if _DIGITS.fullmatch(text) and int(text) >= minimum:
            return int(text)
        raise argparse.ArgumentTypeError(
            f"la valeur doit être un entier d'au moins {minimum} (reçu : « {text} »).")
    return convert


def _main() -> int:
    parser = _FrenchArgumentParser(description="Serveur de courriels @glo2000.ca.")
    add = parser.add_argument
    add("--host", default="", help="Adresse IPv4 d'écoute (défaut : toutes les interfaces).")
    add("--port", type=_port, default=gloutils.APP_PORT,
        help="Port d'écoute (défaut : %(default)s).")
    add("--smtp-host", default=getattr(gloutils, "SMTP_SERVER", _DEFAULT_SMTP_SERVER),
        help="Relais SMTP du courriel externe (défaut : %(default)s).")
    add("--smtp-port", type=_port, default=None,
        help="Port du relais SMTP (défaut : 25, 587 avec --smtp-starttls, 465 avec --smtp-ssl).")
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--smtp-starttls", dest="smtp_security", action="store_const",
                          const="starttls", help="Passer en TLS par STARTTLS (soumission).")
    security.add_argument("--smtp-ssl", dest="smtp_security", action="store_const",
                          const="ssl", help="Parler TLS dès la connexion au relais.")
    add("--smtp-user", default=None,
        help="S'identifier auprès du relais sous ce nom ; le mot de passe est lu dans la "
             f"variable d'environnement {SMTP_PASSWORD_VARIABLE}.")
    add("--smtp-cafile", default=None,
        help="Autorités de certification à croire en plus de celles du système "
             "(avec --smtp-starttls ou --smtp-ssl).")
    add("--smtp-timeout", type=_seconds, default=DEFAULT_SMTP_TIMEOUT,
        help="Délai du relais SMTP, en secondes (défaut : %(default)s).")
    add("--frame-timeout", type=_seconds, default=DEFAULT_FRAME_TIMEOUT,
        help="Délai accordé à une trame incomplète, en secondes (défaut : %(default)s).")
    add("--max-message", type=_at_least(MIN_MAX_MESSAGE), default=DEFAULT_MAX_MESSAGE,
        help=f"Taille maximale d'un message, en octets, au moins {MIN_MAX_MESSAGE} "
             "(défaut : %(default)s).")
    add("--max-clients", type=_at_least(1), default=DEFAULT_MAX_CLIENTS,
        help="Nombre maximal de connexions simultanées (défaut : %(default)s).")
    args = parser.parse_args()
    if args.smtp_cafile is not None and args.smtp_security is None:
        parser.error("l'argument --smtp-cafile demande --smtp-starttls ou --smtp-ssl.")
    password = os.environ.get(SMTP_PASSWORD_VARIABLE)
    if args.smtp_user is not None and not password:
        sys.exit(f"Le mot de passe du relais manque : avec --smtp-user, définissez la "
                 f"variable d'environnement {SMTP_PASSWORD_VARIABLE}.")
    # Lancé en arrière-plan par un shell, le processus hérite d'un SIGINT ignoré ; et SIGTERM
    # doit arrêter aussi proprement que Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = Server(**vars(args), smtp_password=password)  # Une option par paramètre, de même nom.
    try:
        server.run()
    except KeyboardInterrupt:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
