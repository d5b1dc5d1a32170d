"""\
GLO-2000 Travail pratique 4 - Serveur

Serveur de courriels @glo2000.ca : une seule boucle `select.select()` sert
tous les clients. Le fichier se lit en trois couches :

1. la boucle et le découpage des messages (sockets, tampons, échéances) ;
2. les traitements des requêtes, choisis dans une table selon l'en-tête ;
3. le stockage sur disque (comptes, boîtes de courriels, relais SMTP).

Ce qui bloquerait la boucle se fait ailleurs : l'écriture des courriels dans
un processus d'écriture (`_DiskWriter`, lancé à la première livraison) ; le
relais SMTP, le premier chargement de chaque boîte et la relecture des gros
courriels dans des fils.
"""

import argparse
import bisect
import concurrent.futures
import datetime
import email.message
import email.utils
import errno
import functools
import hashlib
import hmac
import itertools
import json
import logging
import operator
import os
import queue
import re
import resource
import select
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
import typing

import glossocket
import gloutils

logger = logging.getLogger("TP4_server")

SMTP_PORT = 25
DEFAULT_SMTP_TIMEOUT = 10.0
DEFAULT_FRAME_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024
# select() ne surveille que les descripteurs < FD_SETSIZE (1024) ; la marge
# couvre l'écoute, le réveil, les sockets SMTP des relais et les fichiers.
SELECT_FD_LIMIT = 1024
DEFAULT_MAX_CLIENTS = 1000
# Descripteurs gardés hors des clients : écoute, réveil, canal du processus
# d'écriture, sockets des relais, fichiers des fils de chargement, et la
# connexion acceptée pour être refusée.
_RESERVED_DESCRIPTORS = 32

_LENGTH = struct.Struct("!I")
_RECV_SIZE = 64 * 1024
# Au-delà de ce volume de réponses non lues, on cesse de lire le client :
# celui qui ne lit pas ses réponses ne peut pas faire grossir la mémoire.
_OUTPUT_HIGH_WATER = 256 * 1024
_RELAY_WORKERS = 8
# Fils qui lisent le disque pour la boucle (chargement des boîtes, relecture
# des gros courriels) : une très grosse boîte dont le chargement traîne ne
# retarde pas le premier usage des autres.
_LOADER_WORKERS = 4
# Pause des acceptations après un échec d'accept() (EMFILE, ENFILE,
# ENOBUFS...) : sans elle, le socket d'écoute resterait prêt et la boucle
# tournerait à vide.
_ACCEPT_BACKOFF = 0.1
# Le processus d'écriture livre en parallèle : des fsync simultanés partagent
# les validations du journal du système de fichiers. Avec seize fils plutôt
# que huit, le p99 du mélange mixed passe d'environ 50 à 45 ms, à débit égal
# (mesuré en alternance avec tests/benchmark.py).
_DISK_WORKERS = 16
# Délai laissé au processus d'écriture pour finir ses écritures à l'arrêt.
_WRITER_STOP_TIMEOUT = 30.0
# Les courriels plus gros restent sur le disque et sont relus à la demande,
# hors de la boucle.
_CACHED_EMAIL_MAX = 16 * 1024

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RESERVED_USERNAMES = {".", "..", gloutils.SERVER_LOST_DIR.lower()}
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"([^@\s\x00-\x1f\x7f]+)@({_DOMAIN}(?:\.{_DOMAIN})*)")
_ADDRESS_MAX = 254
_TEMP_PREFIX = ".tmp-"
_EMAIL_SUFFIX = ".json"

LOGIN_FAILED = "Nom d'utilisateur ou mot de passe invalide."
NOT_LOGGED_IN = "Vous devez être connecté pour faire cette requête."
INVALID_REQUEST = "Requête invalide."
INTERNAL_ERROR = "Erreur interne du serveur."
SERVER_FULL = "Le serveur est plein, réessayez plus tard."

_DISK_ERRORS = {
    errno.ENOSPC: "plus d'espace disque",
    errno.EDQUOT: "quota disque dépassé",
    errno.EACCES: "permission refusée",
    errno.EPERM: "permission refusée",
    errno.EROFS: "disque en lecture seule",
    errno.ENOTDIR: "dossier inaccessible",
    errno.ENOENT: "dossier introuvable",
    errno.EAGAIN: "ressources du système épuisées",
    errno.ENOMEM: "mémoire insuffisante",
    errno.EMFILE: "trop de fichiers ouverts",
    errno.ENFILE: "trop de fichiers ouverts",
}


def _ok(payload=None) -> gloutils.GloMessage:
    """Construit une réponse `OK`, avec une charge utile au besoin."""
    if payload is None:
        return gloutils.GloMessage(header=gloutils.Headers.OK)
    return gloutils.GloMessage(header=gloutils.Headers.OK, payload=payload)


def _error(message: str) -> gloutils.GloMessage:
    """Construit une réponse `ERROR` portant `message`."""
    return gloutils.GloMessage(
        header=gloutils.Headers.ERROR,
        payload=gloutils.ErrorPayload(error_message=message),
    )


def _fields(payload_class) -> tuple:
    """Renvoie les paires (clé, type) qu'exige un `TypedDict` de gloutils."""
    return tuple(typing.get_type_hints(payload_class).items())


_EMAIL_FIELDS = _fields(gloutils.EmailContentPayload)


def _matches(payload, fields: tuple) -> bool:
    """
    Vérifie que `payload` est un dictionnaire portant chaque clé de `fields`
    avec exactement le type attendu (un booléen n'est pas un entier).
    """
    return isinstance(payload, dict) and all(
        type(payload.get(key)) is expected for key, expected in fields
    )


def _shorten(text: str, limit: int = 80) -> str:
    """Abrège un texte du client avant de le citer dans un message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _password_digest(password: str) -> str:
    """
    Empreinte sha3-512 (hexadécimale) d'un mot de passe encodé en UTF-8. Une
    moitié de paire de substitution (permise par JSON) n'a pas d'UTF-8 :
    `surrogatepass` l'encode quand même au lieu de lever une exception. Un tel
    mot de passe est refusé à la création, donc ne correspond à aucun compte.
    """
    return hashlib.sha3_512(password.encode("utf-8", "surrogatepass")).hexdigest()


def _is_strong(password: str) -> bool:
    """
    Au moins 10 caractères dont un chiffre, une minuscule et une majuscule,
    et aucune moitié de paire de substitution (elle n'a pas d'UTF-8).
    """
    # Un parcours de l'ensemble des caractères : un mot de passe de
    # plusieurs mégaoctets ne retient pas la boucle.
    characters = set(password)
    return (
        len(password) >= 10
        and any(char.isdecimal() for char in characters)
        and any(char.islower() for char in characters)
        and any(char.isupper() for char in characters)
        and not any("\ud800" <= char <= "\udfff" for char in characters)
    )


def _disk_error(ex: OSError) -> str:
    """Traduit une erreur du disque en quelques mots pour l'utilisateur."""
    return _DISK_ERRORS.get(ex.errno, "erreur d'entrée-sortie sur le disque")


def _disk_access_error(ex: OSError) -> gloutils.GloMessage:
    """L'`ERROR` d'un dossier d'utilisateur illisible (remplacé, supprimé...)."""
    logger.error("Accès au disque impossible : %s", ex)
    return _error(f"Accès au disque impossible : {_disk_error(ex)}.")


def _is_valid_address(destination: str) -> bool:
    """Vrai pour une adresse de la forme `utilisateur@domaine`."""
    return len(destination) <= _ADDRESS_MAX and _ADDRESS.fullmatch(destination) is not None


def _invalid_address(destination: str) -> gloutils.GloMessage:
    return _error(f"L'adresse {_shorten(destination)} n'est pas valide.")


def _is_external(destination: str) -> bool:
    """Vrai pour une adresse valide d'un autre domaine que celui du serveur."""
    return destination.rpartition("@")[2].lower() != gloutils.SERVER_DOMAIN


def _email_content(payload: gloutils.EmailContentPayload) -> dict:
    """Les cinq champs d'un courriel, dans l'ordre du protocole."""
    return {key: payload[key] for key, _ in _EMAIL_FIELDS}


@functools.lru_cache(maxsize=4096)
def _timestamp(date: str) -> typing.Optional[float]:
    """
    Instant d'une date de courriel (RFC 2822), ou None si elle est illisible.
    Les courriels d'une même seconde portent la même date : d'où le cache.
    """
    try:
        moment = email.utils.parsedate_to_datetime(date)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    except (TypeError, ValueError, OverflowError):
        return None


def _email_reply(choice: int, content: typing.Optional[dict]) -> gloutils.GloMessage:
    """Réponse à la lecture du courriel #`choice` (None : fichier illisible)."""
    if content is None:
        return _error(f"Le courriel #{choice} est illisible.")
    return _ok(content)


def _future_reply(future: concurrent.futures.Future) -> gloutils.GloMessage:
    """Réponse toute faite d'un travail hors de la boucle (le relais SMTP)."""
    return future.result()


def _run_now(_pool, work: typing.Callable, finish: typing.Callable) -> gloutils.GloMessage:
    """
    Exécute `work` dans le fil courant, sans passer par un pool, et renvoie
    la réponse que `finish` tire de son résultat (ou de son exception).
    """
    done = concurrent.futures.Future()
    try:
        done.set_result(work())
    except Exception as ex:
        done.set_exception(ex)
    return finish(done)


class _EncodedReply(str):
    """Une réponse déjà encodée en JSON : `_reply` l'envoie telle quelle."""


# Ce qui entoure le tableau des lignes dans la réponse à `INBOX_READING_REQUEST`.
_LIST_REPLY_HEAD, _LIST_REPLY_TAIL = json.dumps(
    _ok(gloutils.EmailListPayload(email_list=[]))).split("[]")


class _Outbox:
    """
    Tampon des réponses d'un client, que `glossocket.send_msg` remplit comme
    un socket. Le découpage reste ainsi celui du module du cours, tandis que
    la boucle vide le tampon à son rythme sans jamais bloquer sur un client
    qui ne lit pas.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        """Ajoute une trame complète au tampon (appelé par `send_msg`)."""
        self.data += data


# La liste est la seule réponse dont la taille croît avec la boîte, et une
# boîte reçoit souvent entre deux listes : chaque ligne est donc encodée en
# JSON une seule fois, coupée là où va son numéro (`_NUMBER_MARK`), et la
# réponse s'assemble de ces morceaux sans repasser par `json.dumps`.
_NUMBER_MARK = "\x00#\x00"
_ENCODED_NUMBER_MARK = json.dumps(_NUMBER_MARK)[1:-1]


def _encoded_line_parts(sender: str, subject: str, date: str) -> typing.Optional[tuple]:
    """
    La ligne `SUBJECT_DISPLAY` d'un courriel encodée en chaîne JSON et
    coupée là où va son numéro ; None si cette coupe ne redonne pas
    exactement l'encodage de la ligne (marque dans le texte du client,
    numéro mis en forme par le gabarit).
    """
    fields = {"sender": sender, "subject": subject, "date": date}
    try:
        marked = gloutils.SUBJECT_DISPLAY.format(number=_NUMBER_MARK, **fields)
    except ValueError:
        return None
    parts = tuple(json.dumps(marked).split(_ENCODED_NUMBER_MARK))
    if "1".join(parts) != json.dumps(gloutils.SUBJECT_DISPLAY.format(number=1, **fields)):
        return None
    return parts


class _Email(typing.NamedTuple):
    """Entrée de l'index en mémoire d'une boîte de courriels."""

    sort_key: tuple
    filename: str
    size: int
    sender: str
    subject: str
    date: str
    payload: typing.Optional[dict]
    encoded_line_parts: typing.Optional[tuple]

    def subject_line(self, number: int) -> str:
        """Ligne `SUBJECT_DISPLAY` du courriel sous le numéro `number`."""
        return gloutils.SUBJECT_DISPLAY.format(
            number=number, sender=self.sender, subject=self.subject, date=self.date)

    def encoded_subject_line(self, number: int) -> str:
        """La même ligne, encodée en chaîne JSON."""
        if self.encoded_line_parts is None:
            return json.dumps(self.subject_line(number))
        return str(number).join(self.encoded_line_parts)


_SORT_KEY = operator.attrgetter("sort_key")


class _Mailbox:
    """
    Index en mémoire d'un dossier d'utilisateur, reconstruit depuis le disque
    à la première utilisation puis tenu à jour à chaque livraison : lister,
    lire et compter ne relisent jamais tout le dossier.
    """

    __slots__ = ("emails", "size", "_line_parts", "_unsplit_lines", "_encoded_listing")

    def __init__(self, emails: typing.Iterable[_Email] = (), other_size: int = 0) -> None:
        """`other_size` : les octets des fichiers du dossier qui ne sont pas des courriels."""
        self.emails: list[_Email] = sorted(emails, key=_SORT_KEY)
        self.size = other_size + sum(entry.size for entry in self.emails)
        # Les `encoded_line_parts` des courriels, dans le même ordre : gardés à
        # part, la liste s'assemble sans lire un attribut par courriel.
        self._line_parts = [entry.encoded_line_parts for entry in self.emails]
        self._unsplit_lines = self._line_parts.count(None)
        self._encoded_listing: typing.Optional[str] = None

    def add(self, entry: _Email) -> None:
        """Range un courriel selon sa date, puis son ordre d'arrivée."""
        index = bisect.bisect_right(self.emails, entry.sort_key, key=_SORT_KEY)
        self.emails.insert(index, entry)
        self._line_parts.insert(index, entry.encoded_line_parts)
        self._unsplit_lines += entry.encoded_line_parts is None
        self.size += entry.size
        self._encoded_listing = None

    def listing(self) -> list[str]:
        """Lignes `SUBJECT_DISPLAY`, #1 étant le courriel le plus récent."""
        return [entry.subject_line(number)
                for number, entry in enumerate(reversed(self.emails), start=1)]

    def encoded_listing(self) -> str:
        """`listing()` encodée en tableau JSON, gardée jusqu'au prochain courriel."""
        if self._encoded_listing is None:
            if self._unsplit_lines:
                lines = [entry.encoded_subject_line(number)
                         for number, entry in enumerate(reversed(self.emails), start=1)]
            else:
                # Chaque numéro, du plus récent au plus ancien, joint les morceaux
                # de sa ligne : des `map` de fonctions natives, sans boucle Python.
                numbers = map(str, range(1, len(self._line_parts) + 1))
                lines = map(str.join, numbers, reversed(self._line_parts))
            self._encoded_listing = "[" + ", ".join(lines) + "]"
        return self._encoded_listing

    def by_number(self, number: int) -> typing.Optional[_Email]:
        """Courriel #`number` de la liste, ou None hors des bornes."""
        if 1 <= number <= len(self.emails):
            return self.emails[len(self.emails) - number]
        return None


# ----------------------------------------------------------------------
# Écriture sûre des fichiers (dans le serveur ou le processus d'écriture)
# ----------------------------------------------------------------------

class _ArrivalClock:
    """Horodatages d'arrivée en nanosecondes, strictement croissants."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


_arrivals = _ArrivalClock()


def _write_all(descriptor: int, data: bytes) -> None:
    """Écrit tout `data` dans le fichier ouvert, puis le synchronise sur le disque."""
    remaining = memoryview(data)
    while remaining:
        remaining = remaining[os.write(descriptor, remaining):]
    os.fsync(descriptor)


def _discard_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_directory(folder: str) -> None:
    """
    Synchronise un dossier : ses nouvelles entrées (fichier renommé,
    sous-dossier) survivent alors à une panne.
    """
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_new_email(folder: str, data: bytes) -> str:
    """
    Crée le fichier d'un nouveau courriel, nommé d'après l'heure d'arrivée
    (en nanosecondes), y écrit `data`, le synchronise et renvoie son nom.
    O_EXCL ne remplace jamais un fichier existant, même si l'horloge a
    reculé depuis un redémarrage ou qu'un autre processus écrit au même
    instant.

    Une création et une synchronisation par courriel : sur les systèmes de
    fichiers journalisés de Linux (ext4, XFS, btrfs), le fsync d'un fichier
    neuf valide aussi la transaction qui l'a ajouté à son dossier. Une
    panne pendant l'écriture peut laisser un fichier incomplet : jamais
    confirmé au client, il est ignoré au chargement de la boîte.
    """
    while True:
        filename = f"{_arrivals.next():020d}{_EMAIL_SUFFIX}"
        path = os.path.join(folder, filename)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    try:
        _write_all(descriptor, data)
    except OSError:
        _discard_quietly(path)
        raise
    finally:
        os.close(descriptor)
    return filename


def _write_file(folder: str, filename: str, data: bytes) -> None:
    """
    Remplace `folder/filename` par `data` d'un coup : fichier temporaire
    caché et synchronisé, renommé, puis dossier synchronisé. Un arrêt
    brutal laisse l'ancien contenu ou le nouveau, au pire un temporaire
    qu'efface le chargement de la boîte.
    """
    temporary = os.path.join(folder, f"{_TEMP_PREFIX}{_arrivals.next()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(descriptor, data)
        finally:
            os.close(descriptor)
        os.replace(temporary, os.path.join(folder, filename))
    except OSError:
        _discard_quietly(temporary)
        raise
    _sync_directory(folder)


class _EmailWrite(typing.NamedTuple):
    """
    Écriture d'un nouveau courriel : exécutée sur place par un appel direct
    de `_send_email`, ou envoyée au processus d'écriture par la boucle.
    """

    folder: str
    data: bytes

    def __call__(self) -> str:
        return _write_new_email(self.folder, self.data)


# La boucle envoie au processus d'écriture des trames comme celles du
# protocole (longueur "!I", puis le corps) : un en-tête JSON {"id", "folder"},
# un saut de ligne, puis le contenu du fichier ; une trame vide demande
# l'arrêt. Chaque réponse tient sur une ligne : le JSON {"id", "filename"}
# ou {"id", "errno", "strerror"}.
_STOP_FRAME = _LENGTH.pack(0)


def _serve_disk_writer(descriptor: int) -> None:
    """
    Programme du processus d'écriture. Chaque demande lue sur le canal
    `descriptor` est confiée à un fil : les fsync se chevauchent et le
    système de fichiers les regroupe. Chaque fil renvoie lui-même sa réponse.

    Une fin de canal sans trame d'arrêt veut dire que le serveur est mort :
    les écritures en cours, jamais confirmées, sont abandonnées, comme elles
    l'auraient été si le serveur les avait faites lui-même.
    """
    # Ctrl-C au terminal vise tout le groupe : c'est au serveur de nous arrêter.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=descriptor)
    requests = channel.makefile("rb")
    replies = threading.Lock()
    workers = concurrent.futures.ThreadPoolExecutor(
        max_workers=_DISK_WORKERS, thread_name_prefix="ecriture")
    while True:
        body = _read_frame(requests)
        if body is None:
            os._exit(1)
        if not body:
            break
        header, _, data = body.partition(b"\n")
        request = json.loads(header)
        workers.submit(_answer_write, channel, replies, request["id"],
                       _EmailWrite(request["folder"], data))
    workers.shutdown(wait=True)
    channel.close()


def _read_frame(stream: typing.BinaryIO) -> typing.Optional[bytes]:
    """Corps de la trame suivante, ou None si le canal se ferme avant sa fin."""
    try:
        head = stream.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack(head)
        body = stream.read(length)
    except OSError:  # ECONNRESET : le serveur est mort sans lire nos réponses.
        return None
    return body if len(body) == length else None


def _answer_write(channel: socket.socket, replies: threading.Lock,
                  request_id: int, write: _EmailWrite) -> None:
    """Exécute une écriture dans le processus d'écriture et en renvoie l'issue."""
    try:
        reply = {"id": request_id, "filename": write()}
    except OSError as ex:
        reply = {"id": request_id, "errno": ex.errno, "strerror": ex.strerror or str(ex)}
    except Exception as ex:  # Un défaut imprévu ne doit pas laisser l'expéditeur attendre.
        reply = {"id": request_id, "errno": errno.EIO, "strerror": repr(ex)}
    try:
        with replies:
            channel.sendall(json.dumps(reply).encode("utf-8") + b"\n")
    except OSError:
        pass  # Le serveur est mort : la lecture du canal le constatera.


# Programme du processus d'écriture : il charge ce fichier-ci par son chemin,
# sous un autre nom que `__main__` (le serveur ne s'y relance donc pas) et
# avec les chemins d'importation du serveur, puis sert le canal reçu.
_WRITER_PROGRAM = """\
import importlib.util, sys
path, descriptor, *server_path = sys.argv[1:]
sys.path[:0] = server_path
spec = importlib.util.spec_from_file_location("tp4_ecriture", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module._serve_disk_writer(int(descriptor))
"""


class _DiskWriter:
    """
    Côté boucle du processus d'écriture des courriels, qui fait toutes les
    livraisons internes venues du réseau.

    Pourquoi un processus : un fsync bloque de 0,1 à 0,4 ms. Fait dans la
    boucle, il ferait attendre tous les clients ; fait dans des fils du
    serveur, chaque retour d'appel système de ces fils dispute à la boucle
    le verrou global de Python, et chaque recv ou send de la boucle coûtait
    alors des dizaines de microsecondes. Le processus fils a son propre
    verrou ; la boucle n'échange avec lui que des trames, sur un socket non
    bloquant, comme avec un client. Il démarre à la première écriture et
    redémarre à la suivante s'il meurt.
    """

    def __init__(self, on_lost: typing.Callable[[], None]) -> None:
        """`on_lost` est appelé quand le processus meurt avec des écritures en cours."""
        self._on_lost = on_lost
        self._process: typing.Optional[subprocess.Popen] = None
        self._channel: typing.Optional[socket.socket] = None
        self._outgoing = bytearray()
        self._incoming = bytearray()
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._request_ids = itertools.count(1)

    @property
    def running(self) -> bool:
        return self._channel is not None

    def fileno(self) -> int:
        """Le canal vers le processus, pour select()."""
        return self._channel.fileno()

    def has_output(self) -> bool:
        return bool(self._outgoing)

    def submit(self, write: _EmailWrite) -> concurrent.futures.Future:
        """
        Met une écriture en file pour le processus. Le futur renvoyé donne le
        nom du fichier, ou l'OSError de l'écriture ; la boucle le termine en
        lisant la réponse (`receive`).
        """
        future = concurrent.futures.Future()
        if self._process is None:
            try:
                self._start()
            except OSError as ex:
                logger.error("Processus d'écriture impossible à lancer : %s", ex)
                future.set_exception(ex)
                return future
        request_id = next(self._request_ids)
        header = json.dumps({"id": request_id, "folder": write.folder}).encode("utf-8")
        body = header + b"\n" + write.data
        self._outgoing += _LENGTH.pack(len(body)) + body
        self._pending[request_id] = future
        return future

    def _start(self) -> None:
        """
        Lance un Python neuf qui exécute `_WRITER_PROGRAM` sur l'autre bout
        d'une paire de sockets.
        """
        parent_end, child_end = socket.socketpair()
        try:
            with child_end:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", _WRITER_PROGRAM, os.path.abspath(__file__),
                     str(child_end.fileno()), *sys.path],
                    pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL)
        except OSError:
            parent_end.close()
            raise
        parent_end.setblocking(False)
        self._channel = parent_end
        logger.info("Processus d'écriture lancé (pid %d).", self._process.pid)

    def send(self) -> None:
        """Envoie au processus ce que le canal accepte sans bloquer."""
        if not self._outgoing:
            return
        try:
            sent = self._channel.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lose()
            return
        del self._outgoing[:sent]

    def receive(self) -> None:
        """Lit les réponses arrivées et termine les futurs correspondants."""
        try:
            data = self._channel.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lose()
            return
        self._incoming += data
        *lines, rest = self._incoming.split(b"\n")
        self._incoming = bytearray(rest)
        for line in lines:
            reply = json.loads(line)
            future = self._pending.pop(reply["id"])
            if "filename" in reply:
                future.set_result(reply["filename"])
            else:
                future.set_exception(OSError(reply["errno"], reply["strerror"]))

    def _lose(self) -> None:
        """
        Le processus est mort : ses écritures en cours échouent (certaines ont
        pu aboutir sans réponse, d'où `on_lost`) et le suivant démarrera à la
        prochaine écriture.
        """
        self._process.kill()
        code = self._process.wait()
        logger.error("Processus d'écriture arrêté (code %s) avec %d écriture(s) en cours.",
                     code, len(self._pending))
        self._channel.close()
        self._process, self._channel = None, None
        self._outgoing.clear()
        self._incoming.clear()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(OSError(errno.EIO, "processus d'écriture arrêté"))
        if pending:
            self._on_lost()

    def close(self) -> None:
        """
        Arrêt propre : envoie ce qui reste en file et la trame d'arrêt, puis
        attend que le processus ait fini ses écritures (ou le tue après
        `_WRITER_STOP_TIMEOUT`). Les réponses restantes sont abandonnées.
        """
        if self._process is None:
            return
        try:
            self._channel.settimeout(_WRITER_STOP_TIMEOUT)
            self._channel.sendall(bytes(self._outgoing) + _STOP_FRAME)
            self._process.wait(timeout=_WRITER_STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as ex:
            logger.error("Processus d'écriture tué à l'arrêt : %s", ex)
            self._process.kill()
            self._process.wait()
        self._channel.close()
        self._process, self._channel = None, None


class _Route(typing.NamedTuple):
    """Traitement d'un en-tête de requête, et ce qu'il exige d'abord."""

    handler: typing.Callable
    # Paires (clé, type) exigées de la charge utile, ou None.
    fields: typing.Optional[tuple]
    login_required: bool
    # Compte dont la requête lit l'index, selon (socket, charge utile).
    mailbox_of: typing.Optional[typing.Callable] = None


class Server:
    """Serveur de courriels @glo2000.ca."""

    def __init__(
        self,
        host: str = "",
        port: int = gloutils.APP_PORT,
        *,
        smtp_host: str = gloutils.SMTP_SERVER,
        smtp_port: int = SMTP_PORT,
        smtp_timeout: float = DEFAULT_SMTP_TIMEOUT,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        """
        Prépare le dossier des données et le socket d'écoute (IPv4, TCP).
        Quitte le programme avec un code non nul si l'un ou l'autre échoue.
        """
        self._smtp_host = smtp_host
        self._smtp_port = smtp_port
        self._smtp_timeout = smtp_timeout
        self._frame_timeout = frame_timeout
        self._max_message = max_message
        self._max_clients = max_clients

        self._client_socs: list[socket.socket] = []
        self._logged_users: dict[socket.socket, str] = {}
        self._addresses: dict[socket.socket, str] = {}
        self._inboxes: dict[socket.socket, bytearray] = {}
        self._outboxes: dict[socket.socket, _Outbox] = {}
        self._frame_started: dict[socket.socket, float] = {}
        self._paused: set[socket.socket] = set()
        self._waiting: set[socket.socket] = set()
        self._resumable: set[socket.socket] = set()
        self._unsent: set[socket.socket] = set()
        self._to_flush: set[socket.socket] = set()

        self._accounts: dict[str, str] = {}
        self._mailboxes: dict[str, _Mailbox] = {}
        # Boîtes en cours de chargement -> clients dont la requête les attend.
        self._loading: dict[str, list[socket.socket]] = {}
        self._accept_resumes_at = 0.0
        self._loop_thread: typing.Optional[int] = None

        self._routes = {
            gloutils.Headers.AUTH_REGISTER: _Route(
                self._create_account, _fields(gloutils.AuthPayload), False),
            gloutils.Headers.AUTH_LOGIN: _Route(
                self._login, _fields(gloutils.AuthPayload), False),
            gloutils.Headers.AUTH_LOGOUT: _Route(self._handle_logout, None, False),
            gloutils.Headers.BYE: _Route(self._handle_bye, None, False),
            gloutils.Headers.INBOX_READING_REQUEST: _Route(
                self._handle_email_list, None, True, self._own_account),
            gloutils.Headers.INBOX_READING_CHOICE: _Route(
                self._handle_email_choice, _fields(gloutils.EmailChoicePayload), True,
                self._own_account),
            gloutils.Headers.EMAIL_SENDING: _Route(
                self._handle_email_sending, _EMAIL_FIELDS, True, self._recipient_account),
            gloutils.Headers.STATS_REQUEST: _Route(
                self._handle_stats, None, True, self._own_account),
        }

        self._prepare_storage()
        self._fit_max_clients(self._raise_descriptor_limit())
        try:
            self._server_socket = self._listen(host, port)
        except OSError as ex:
            sys.exit(f"Impossible d'écouter sur le port {port} : {ex.strerror or ex}")
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        self._finished_work: queue.SimpleQueue = queue.SimpleQueue()
        self._relay_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_RELAY_WORKERS, thread_name_prefix="relais-smtp")
        self._loader_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_LOADER_WORKERS, thread_name_prefix="chargement")
        self._disk_writer = _DiskWriter(on_lost=self._forget_mailboxes)
        # Rien n'est journalisé avant l'écoute : un échec tient en une ligne.
        logger.info("En écoute sur %s:%d, %d compte(s) chargé(s).",
                    *self._server_socket.getsockname()[:2], len(self._accounts))
        if self._max_clients < max_clients:
            logger.warning("Limite de descripteurs trop basse : %d client(s) au plus "
                           "au lieu de %d.", self._max_clients, max_clients)

    # ------------------------------------------------------------------
    # Boucle, connexions et découpage des messages
    # ------------------------------------------------------------------

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        """Ouvre le socket d'écoute non bloquant, avec `SO_REUSEADDR`."""
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server_socket.bind((host, port))
            server_socket.listen(socket.SOMAXCONN)
            server_socket.setblocking(False)
        except OSError:
            server_socket.close()
            raise
        return server_socket

    @staticmethod
    def _raise_descriptor_limit() -> int:
        """
        Relève la limite souple de descripteurs au-dessus de celle de
        select() : c'est `max_clients` qui refuse les connexions en trop,
        jamais un `accept()` en échec qui laisserait la boucle tourner à vide.
        Renvoie la limite obtenue.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 4 * SELECT_FD_LIMIT
        if soft != resource.RLIM_INFINITY and soft < wanted:
            if hard != resource.RLIM_INFINITY:
                wanted = min(wanted, hard)
            soft = max(soft, wanted)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return sys.maxsize if soft == resource.RLIM_INFINITY else soft

    def _fit_max_clients(self, descriptors: int) -> None:
        """
        Abaisse `max_clients` si la limite dure de descripteurs ne peut le
        contenir : la connexion en trop reçoit alors le `ERROR` « serveur
        plein », au lieu d'un `accept()` en échec (EMFILE) répété sans fin.
        """
        room = max(1, descriptors - _RESERVED_DESCRIPTORS)
        self._max_clients = min(self._max_clients, room)

    def cleanup(self) -> None:
        """
        Ferme toutes les connexions et le socket d'écoute, abandonne les
        relais en attente et laisse finir les écritures commencées : un
        courriel déjà écrit est retrouvé au redémarrage.
        """
        for client_soc in list(self._client_socs):
            self._remove_client(client_soc)
        self._relay_pool.shutdown(wait=False, cancel_futures=True)
        self._loader_pool.shutdown(wait=False, cancel_futures=True)
        self._disk_writer.close()
        self._server_socket.close()
        self._wakeup_reader.close()
        self._wakeup_writer.close()
        logger.info("Serveur arrêté.")

    def run(self) -> None:
        """
        Sert les clients jusqu'à l'interruption du programme. Une erreur
        imprévue est journalisée et le service continue : un défaut ne doit
        pas couper tous les clients.
        """
        self._loop_thread = threading.get_ident()
        while True:
            try:
                self._serve_once()
            except Exception:
                logger.exception("Erreur imprévue dans la boucle du serveur")

    def _serve_once(self) -> None:
        """
        Un tour de boucle : envoyer ce que les sockets acceptent, lire ce
        qui est prêt, traiter les requêtes complètes et répondre. Les
        livraisons se terminent dans le processus d'écriture et les relais
        dans des fils ; leurs réponses arrivent par leurs sockets.
        """
        readers = [self._wakeup_reader]
        writers = list(self._unsent)
        if self._disk_writer.running:
            readers.append(self._disk_writer)
        if self._disk_writer.has_output():
            writers.append(self._disk_writer)
        if self._is_accepting():
            readers.append(self._server_socket)
        if self._paused:
            readers += [soc for soc in self._client_socs if soc not in self._paused]
        else:
            readers += self._client_socs
        readable, writable, _ = select.select(
            readers, writers, [], self._select_timeout())
        for ready in writable:
            if ready is self._disk_writer:
                self._disk_writer.send()
            else:
                self._flush(ready)
        self._resume_clients()
        for ready in readable:
            if ready is self._server_socket:
                self._accept_client()
            elif ready is self._wakeup_reader:
                self._drain_wakeups()
            elif ready is self._disk_writer:
                self._disk_writer.receive()
            elif ready in self._inboxes:
                self._receive(ready)
        self._collect_finished_work()
        # Les écritures demandées pendant ce tour partent sans attendre le suivant.
        self._disk_writer.send()
        while self._to_flush:
            self._flush(self._to_flush.pop())
        self._drop_stalled_frames()

    def _select_timeout(self) -> typing.Optional[float]:
        """
        Délai d'attente de select() : nul si des clients peuvent reprendre ou
        si des travaux finis attendent, sinon jusqu'à la prochaine échéance
        (trame incomplète, reprise des acceptations), sans fin s'il n'y en
        a pas.
        """
        if self._resumable or not self._finished_work.empty():
            return 0
        deadlines = []
        if self._frame_started:
            deadlines.append(min(self._frame_started.values()) + self._frame_timeout)
        if self._accept_resumes_at:
            deadlines.append(self._accept_resumes_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _is_accepting(self) -> bool:
        """Faux pendant la courte pause qui suit un échec d'accept()."""
        if self._accept_resumes_at and time.monotonic() < self._accept_resumes_at:
            return False
        self._accept_resumes_at = 0.0
        return True

    def _accept_client(self) -> None:
        """
        Accepte les connexions en attente. Au-delà de `max_clients`, ou si le
        descripteur échappe à select(), la connexion reçoit un `ERROR` et
        est refermée aussitôt.
        """
        for _ in range(64):
            try:
                client_soc, address = self._server_socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as ex:
                logger.warning("Connexions suspendues %.1f s : %s", _ACCEPT_BACKOFF, ex)
                self._accept_resumes_at = time.monotonic() + _ACCEPT_BACKOFF
                return
            if (len(self._client_socs) >= self._max_clients
                    or client_soc.fileno() >= SELECT_FD_LIMIT):
                self._refuse(client_soc)
                continue
            client_soc.setblocking(False)
            client_soc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client_socs.append(client_soc)
            self._addresses[client_soc] = "%s:%d" % address[:2]
            self._inboxes[client_soc] = bytearray()
            self._outboxes[client_soc] = _Outbox()
            logger.info("Connexion de %s", self._addresses[client_soc])

    @staticmethod
    def _refuse(client_soc: socket.socket) -> None:
        """Dit au client que le serveur est plein, puis ferme la connexion."""
        client_soc.setblocking(False)
        try:
            glossocket.send_msg(client_soc, json.dumps(_error(SERVER_FULL)))
        except glossocket.GLOSocketError:
            pass
        client_soc.close()
        logger.warning("Serveur plein : connexion refusée.")

    def _remove_client(self, client_soc: socket.socket) -> None:
        """Oublie tout ce qui concerne le client et ferme son socket."""
        if client_soc in self._client_socs:
            self._client_socs.remove(client_soc)
            logger.info("Déconnexion de %s", self._addresses.pop(client_soc, "?"))
        self._logged_users.pop(client_soc, None)
        self._inboxes.pop(client_soc, None)
        self._outboxes.pop(client_soc, None)
        self._frame_started.pop(client_soc, None)
        for state in (self._paused, self._waiting, self._resumable,
                      self._unsent, self._to_flush):
            state.discard(client_soc)
        client_soc.close()

    def _receive(self, client_soc: socket.socket) -> None:
        """Lit ce que le client a envoyé et traite ses requêtes complètes."""
        try:
            data = client_soc.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._remove_client(client_soc)
            return
        self._inboxes[client_soc] += data
        self._process_frames(client_soc)

    # Le module glossocket ne sait lire qu'une trame entière d'un seul coup :
    # lui confier un socket dont la trame n'est pas complète bloquerait tous
    # les clients, et MSG_PEEK ne voit pas les trames plus grandes que le
    # tampon du noyau. Les octets sont donc accumulés par client et chaque
    # trame complète (longueur "!I" de 4 octets, puis le texte UTF-8 du
    # protocole) est découpée ici ; les réponses passent par send_msg.
    def _process_frames(self, client_soc: socket.socket) -> None:
        """Traite, dans l'ordre, chaque trame complète reçue du client."""
        inbox = self._inboxes[client_soc]
        start = 0
        while client_soc not in self._paused and len(inbox) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(inbox, start)
            if length > self._max_message:
                logger.warning("Trame de %d octets refusée : connexion fermée.", length)
                self._remove_client(client_soc)
                return
            end = start + _LENGTH.size + length
            if len(inbox) < end:
                break
            frame = bytes(inbox[start + _LENGTH.size:end])
            if not self._handle_frame(client_soc, frame):
                break  # Elle attend le chargement d'une boîte et reste en tête.
            start = end
            if client_soc not in self._inboxes:
                return
        del inbox[:start]
        if not inbox or client_soc in self._paused:
            self._frame_started.pop(client_soc, None)
        elif start or client_soc not in self._frame_started:
            # Une nouvelle trame commence : son échéance part de maintenant.
            self._frame_started[client_soc] = time.monotonic()

    def _drop_stalled_frames(self) -> None:
        """Ferme les connexions dont une trame reste incomplète trop longtemps."""
        if not self._frame_started:
            return
        deadline = time.monotonic() - self._frame_timeout
        for client_soc, started in list(self._frame_started.items()):
            if started <= deadline:
                logger.warning("Trame incomplète depuis %.0f s : connexion fermée.",
                               self._frame_timeout)
                self._remove_client(client_soc)

    def _reply(self, client_soc: socket.socket,
               message: typing.Union[gloutils.GloMessage, "_EncodedReply"]) -> None:
        """Met une réponse en file ; la boucle l'envoie sans jamais bloquer."""
        outbox = self._outboxes[client_soc]
        text = message if isinstance(message, _EncodedReply) else json.dumps(message)
        glossocket.send_msg(outbox, text)
        self._to_flush.add(client_soc)
        if len(outbox.data) > _OUTPUT_HIGH_WATER:
            self._paused.add(client_soc)

    def _flush(self, client_soc: socket.socket) -> None:
        """Envoie ce que le socket accepte sans bloquer ; garde le reste."""
        outbox = self._outboxes.get(client_soc)
        if outbox is None:
            return
        try:
            sent = client_soc.send(outbox.data) if outbox.data else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._remove_client(client_soc)
            return
        del outbox.data[:sent]
        if outbox.data:
            self._unsent.add(client_soc)
        else:
            self._unsent.discard(client_soc)
        if (client_soc in self._paused and client_soc not in self._waiting
                and len(outbox.data) <= _OUTPUT_HIGH_WATER):
            self._resumable.add(client_soc)

    def _resume_clients(self) -> None:
        """Reprend les requêtes en attente des clients qui ont vidé leurs réponses."""
        while self._resumable:
            client_soc = self._resumable.pop()
            self._paused.discard(client_soc)
            if client_soc in self._inboxes:
                self._process_frames(client_soc)

    # ------------------------------------------------------------------
    # Traitement des requêtes
    # ------------------------------------------------------------------

    def _handle_frame(self, client_soc: socket.socket, frame: bytes) -> bool:
        """
        Décode une requête, la confie au traitement prévu pour son en-tête et
        répond s'il y a lieu. Aucune requête, même malformée, ne fait tomber
        le serveur : elle reçoit un `ERROR`. Renvoie False si la requête
        attend le chargement d'une boîte : elle sera traitée ensuite.
        """
        try:
            message = json.loads(frame.decode("utf-8"))
        except (ValueError, RecursionError):
            self._reply(client_soc, _error(INVALID_REQUEST))
            return True
        header = message.get("header") if isinstance(message, dict) else None
        route = self._routes.get(header) if type(header) is int else None
        if route is None:
            self._reply(client_soc, _error(INVALID_REQUEST))
            return True
        payload = message.get("payload")
        if route.login_required and client_soc not in self._logged_users:
            reply = _error(NOT_LOGGED_IN)
        elif route.fields is not None and not _matches(payload, route.fields):
            reply = _error(INVALID_REQUEST)
        elif route.mailbox_of and self._awaits_mailbox(
                client_soc, route.mailbox_of(client_soc, payload)):
            return False
        else:
            try:
                reply = route.handler(client_soc, payload)
            except OSError as ex:
                reply = _disk_access_error(ex)
            except Exception:
                logger.exception("Échec du traitement de la requête %d", header)
                reply = _error(INTERNAL_ERROR)
        if reply is not None:
            self._reply(client_soc, reply)
        return True

    def _own_account(self, client_soc: socket.socket, _payload) -> typing.Optional[str]:
        """Le compte connecté sur ce socket : la requête lit sa boîte."""
        return self._logged_users.get(client_soc)

    def _recipient_account(self, _client_soc: socket.socket,
                           payload: gloutils.EmailContentPayload) -> typing.Optional[str]:
        """Le compte destinataire d'un envoi interne : sa boîte sera indexée."""
        destination = payload["destination"]
        if not _is_valid_address(destination) or _is_external(destination):
            return None
        return self._accounts.get(destination.rpartition("@")[0].lower())

    def _awaits_mailbox(self, client_soc: socket.socket,
                        account: typing.Optional[str]) -> bool:
        """
        Vrai si l'index de `account` n'est pas encore en mémoire : un fil le
        charge alors du disque (ce qui peut prendre une seconde pour une
        très grosse boîte) et le client attend, sans bloquer les autres.
        """
        if account is None or account.lower() in self._mailboxes:
            return False
        if account.lower() not in self._loading:
            future = self._loader_pool.submit(self._load_mailbox, account)
            self._loading[account.lower()] = []
            finish = functools.partial(self._mailbox_loaded, account)
            future.add_done_callback(lambda done: self._work_finished(None, done, finish))
        self._loading[account.lower()].append(client_soc)
        self._waiting.add(client_soc)
        self._paused.add(client_soc)
        return True

    def _mailbox_loaded(self, account: str, loaded: concurrent.futures.Future) -> None:
        """
        Installe l'index chargé et reprend les requêtes qui l'attendaient. Si
        le chargement a échoué, chacune reçoit l'`ERROR` qu'aurait produit
        son traitement.
        """
        failure = None
        try:
            self._mailboxes.setdefault(account.lower(), loaded.result())
        except OSError as ex:
            failure = _disk_access_error(ex)
        except Exception:
            logger.exception("Échec inattendu du chargement de la boîte de %s", account)
            failure = _error(INTERNAL_ERROR)
        for client_soc in self._loading.pop(account.lower(), []):
            if client_soc not in self._inboxes:
                continue
            self._waiting.discard(client_soc)
            self._paused.discard(client_soc)
            if failure is not None:
                self._drop_first_frame(client_soc)
                self._reply(client_soc, failure)
            self._process_frames(client_soc)

    def _drop_first_frame(self, client_soc: socket.socket) -> None:
        """Retire la trame en tête des octets reçus du client (déjà traitée)."""
        inbox = self._inboxes[client_soc]
        (length,) = _LENGTH.unpack_from(inbox)
        del inbox[:_LENGTH.size + length]

    def _create_account(self, client_soc: socket.socket,
                        payload: gloutils.AuthPayload) -> gloutils.GloMessage:
        """
        Crée le compte et connecte le socket, ou renvoie un `ERROR` qui
        énumère tous les problèmes à la fois.
        """
        username, password = payload["username"], payload["password"]
        problems = []
        if not self._is_valid_username(username):
            problems.append("Le nom d'utilisateur est invalide.")
        elif username.lower() in self._accounts:
            problems.append("Le nom d'utilisateur est déjà utilisé.")
        if not _is_strong(password):
            problems.append("Le mot de passe n'est pas assez sûr.")
        if problems:
            return _error("\n- ".join(["La création a échouée:", *problems]))
        try:
            self._store_account(username, _password_digest(password))
        except OSError as ex:
            logger.error("Création du compte %s impossible : %s", username, ex)
            return _error(f"La création a échouée:\n- {_disk_error(ex).capitalize()}.")
        self._logged_users[client_soc] = username
        logger.info("Compte créé : %s", username)
        return _ok()

    def _login(self, client_soc: socket.socket,
               payload: gloutils.AuthPayload) -> gloutils.GloMessage:
        """
        Connecte le socket si le mot de passe est le bon. Un nom inconnu et
        un mauvais mot de passe reçoivent la même réponse.
        """
        username = self._accounts.get(payload["username"].lower())
        expected = self._stored_digest(username) if username else None
        given = _password_digest(payload["password"])
        if expected is None or not hmac.compare_digest(given, expected):
            return _error(LOGIN_FAILED)
        self._logged_users[client_soc] = username
        logger.info("Connexion de l'utilisateur %s", username)
        return _ok()

    def _logout(self, client_soc: socket.socket) -> None:
        """Déconnecte l'utilisateur ; le socket reste ouvert."""
        self._logged_users.pop(client_soc, None)

    def _handle_logout(self, client_soc: socket.socket, _payload) -> None:
        """`AUTH_LOGOUT` ne reçoit jamais de réponse."""
        self._logout(client_soc)

    def _handle_bye(self, client_soc: socket.socket, _payload) -> None:
        """`BYE` ne reçoit jamais de réponse : le client part."""
        self._remove_client(client_soc)

    def _get_email_list(self, client_soc: socket.socket) -> gloutils.GloMessage:
        """Liste des sujets de l'utilisateur, du plus récent au plus ancien."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        listing = self._mailbox(username).listing()
        return _ok(gloutils.EmailListPayload(email_list=listing))

    def _handle_email_list(self, client_soc: socket.socket, _payload) -> "_EncodedReply":
        """
        Traitement de `INBOX_READING_REQUEST` : la réponse de
        `_get_email_list`, assemblée de la liste déjà encodée.
        """
        listing = self._mailbox(self._logged_users[client_soc]).encoded_listing()
        return _EncodedReply(_LIST_REPLY_HEAD + listing + _LIST_REPLY_TAIL)

    def _get_email(self, client_soc: socket.socket,
                   payload: gloutils.EmailChoicePayload) -> gloutils.GloMessage:
        """Courriel choisi, numéroté comme dans la liste (#1 = plus récent)."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        choice = payload["choice"]
        entry = self._mailbox(username).by_number(choice)
        if entry is None:
            return _error(f"Le courriel #{choice} n'existe pas.")
        return _email_reply(choice, entry.payload or self._read_email(username, entry.filename))

    def _handle_email_choice(self, client_soc: socket.socket,
                             payload: gloutils.EmailChoicePayload):
        """
        Traitement de `INBOX_READING_CHOICE` : la réponse de `_get_email`,
        mais un courriel trop gros pour l'index est relu du disque par un
        fil, hors de la boucle.
        """
        username = self._logged_users[client_soc]
        entry = self._mailbox(username).by_number(payload["choice"])
        if entry is None or entry.payload is not None:
            return self._get_email(client_soc, payload)
        return self._run_off_loop(
            client_soc, self._loader_pool,
            functools.partial(self._read_email, username, entry.filename),
            lambda read: _email_reply(payload["choice"], read.result()))

    def _get_stats(self, client_soc: socket.socket) -> gloutils.GloMessage:
        """Nombre de courriels et taille totale du dossier de l'utilisateur."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        mailbox = self._mailbox(username)
        return _ok(gloutils.StatsPayload(count=len(mailbox.emails), size=mailbox.size))

    def _handle_stats(self, client_soc: socket.socket, _payload):
        """Traitement de `STATS_REQUEST`."""
        return self._get_stats(client_soc)

    def _handle_email_sending(self, client_soc: socket.socket,
                              payload: gloutils.EmailContentPayload):
        """
        Vérifie que l'expéditeur est bien l'utilisateur connecté, puis livre
        le courriel hors de la boucle : écriture sur le disque ou relais
        SMTP. La réponse part quand le travail se termine, et les requêtes
        suivantes du client attendent jusque-là.
        """
        own_address = f"{self._logged_users[client_soc]}@{gloutils.SERVER_DOMAIN}"
        if payload["sender"].lower() != own_address.lower():
            return _error(f"L'expéditeur doit être votre adresse, {own_address}.")
        return self._deliver(payload, functools.partial(self._run_off_loop, client_soc))

    def _send_email(self, payload: gloutils.EmailContentPayload) -> gloutils.GloMessage:
        """
        Livre un courriel tout de suite, dans le fil de l'appelant : dans le
        dossier du destinataire s'il est du domaine du serveur (dans `LOST`
        s'il n'existe pas), sinon par le relais SMTP.
        """
        return self._deliver(payload, _run_now)

    def _deliver(self, payload: gloutils.EmailContentPayload, run: typing.Callable):
        """
        Choisit la livraison d'un courriel selon sa destination et la confie
        à `run(pool, travail, fin)` : `_run_now` l'exécute sur-le-champ et
        renvoie la réponse, `_run_off_loop` le confie à `pool` (les fils du
        relais ou le processus d'écriture) et renvoie None : la réponse
        partira plus tard.
        """
        destination = payload["destination"]
        if not _is_valid_address(destination):
            return _invalid_address(destination)
        if _is_external(destination):
            return run(self._relay_pool,
                       functools.partial(self._relay_external, payload), _future_reply)
        recipient = self._recipient(destination)
        folder, data = self._delivery_file(recipient, payload)
        return run(self._disk_writer, _EmailWrite(folder, data),
                   functools.partial(self._delivery_reply, payload, recipient, len(data)))

    def _recipient(self, destination: str) -> typing.Optional[str]:
        """
        Compte destinataire d'une adresse interne, ou None s'il n'existe
        pas. Son index est chargé ici, avant l'écriture : chargé après, il
        compterait deux fois le nouveau courriel.
        """
        recipient = self._accounts.get(destination.rpartition("@")[0].lower())
        if recipient is not None:
            self._mailbox(recipient)
        return recipient

    def _delivery_file(self, recipient: typing.Optional[str],
                       payload: gloutils.EmailContentPayload) -> tuple[str, bytes]:
        """
        Dossier (celui du destinataire, ou `LOST` s'il n'existe pas) et
        contenu du fichier d'un courriel : le JSON de ses cinq champs.
        """
        folder = self._lost_dir() if recipient is None else self._user_dir(recipient)
        return folder, json.dumps(_email_content(payload)).encode("utf-8")

    def _delivery_reply(self, payload: gloutils.EmailContentPayload,
                        recipient: typing.Optional[str], size: int,
                        written: concurrent.futures.Future) -> gloutils.GloMessage:
        """
        Après l'écriture (`written` donne le nom du fichier) : indexe le
        courriel livré et dit au client ce qu'il en est. Un destinataire
        inconnu reçoit un `ERROR`, bien que sa copie soit gardée dans `LOST`.
        """
        destination = _shorten(payload["destination"])
        try:
            filename = written.result()
        except OSError as ex:
            logger.error("Livraison à %s impossible : %s", destination, ex)
            return _error(f"Le courriel n'a pas pu être enregistré : {_disk_error(ex)}.")
        if recipient is None:
            logger.info("Destinataire inconnu %s : courriel placé dans %s",
                        destination, gloutils.SERVER_LOST_DIR)
            return _error(f"Le destinataire {destination} n'existe pas.")
        mailbox = self._mailboxes.get(recipient.lower())
        if mailbox is not None:  # Sinon, son chargement trouvera le fichier.
            mailbox.add(self._make_entry(filename, size, _email_content(payload)))
        logger.info("Courriel de %s livré à %s", payload["sender"], recipient)
        return _ok()

    def _run_off_loop(self, client_soc: socket.socket,
                      pool: concurrent.futures.Executor,
                      work: typing.Callable[[], typing.Any],
                      finish: typing.Callable[[concurrent.futures.Future],
                                              gloutils.GloMessage]) -> None:
        """
        Confie `work` (sans effet sur l'état de la boucle) à `pool` ; la
        boucle appellera `finish` avec son résultat pour construire la
        réponse. D'ici là, le client est mis en attente. Renvoie None : il
        n'y a pas encore de réponse à envoyer.
        """
        future = pool.submit(work)  # S'il lève, le client n'est pas mis en attente.
        self._waiting.add(client_soc)
        self._paused.add(client_soc)
        future.add_done_callback(
            lambda done: self._work_finished(client_soc, done, finish))

    def _work_finished(self, client_soc: socket.socket,
                       future: concurrent.futures.Future,
                       finish: typing.Callable) -> None:
        """
        Appelé à la fin d'un travail, dans un fil du relais (ou dans la
        boucle, qui lit les réponses du processus d'écriture) : remet le
        résultat à la boucle et la réveille. Seule la boucle touche aux
        sockets et aux index.
        """
        if future.cancelled():
            return
        self._finished_work.put((client_soc, future, finish))
        if threading.get_ident() == self._loop_thread:
            return  # La boucle recueille la file à chaque tour, sans attendre.
        try:
            self._wakeup_writer.send(b"\0")
        except OSError:
            pass  # Un réveil est déjà en attente, ou le serveur s'arrête.

    def _drain_wakeups(self) -> None:
        """Vide le socket de réveil : les travaux finis sont dans la file."""
        try:
            while self._wakeup_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _collect_finished_work(self) -> None:
        """
        Termine les travaux finis hors de la boucle : indexe, répond si le
        client est toujours là, puis reprend ses requêtes en attente.
        """
        while not self._finished_work.empty():
            client_soc, future, finish = self._finished_work.get()
            try:
                reply = finish(future)
            except Exception:
                logger.exception("Échec inattendu d'un travail hors de la boucle")
                reply = _error(INTERNAL_ERROR)
            if client_soc is None or client_soc not in self._inboxes:
                continue  # Travail sans client (chargement d'une boîte), ou client parti.
            self._waiting.discard(client_soc)
            self._reply(client_soc, reply)
            if len(self._outboxes[client_soc].data) <= _OUTPUT_HIGH_WATER:
                self._paused.discard(client_soc)
                self._process_frames(client_soc)

    # ------------------------------------------------------------------
    # Relais SMTP
    # ------------------------------------------------------------------

    def _relay_external(self, payload: gloutils.EmailContentPayload) -> gloutils.GloMessage:
        """
        Confie le courriel au relais SMTP. Toute défaillance (refus,
        relais injoignable, délai dépassé) devient un `ERROR` en français,
        journalisé une fois avec sa cause technique.
        """
        relay = f"{self._smtp_host}:{self._smtp_port}"
        destination = _shorten(payload["destination"])
        try:
            message = self._build_message(payload)
            with smtplib.SMTP(self._smtp_host, self._smtp_port,
                              timeout=self._smtp_timeout) as smtp:
                smtp.send_message(message)
        except (OSError, ValueError) as ex:  # smtplib.SMTPException est une OSError.
            reply = _error(self._relay_failure(ex, destination, relay))
            logger.warning("Échec du relais vers %s : %s (%s)",
                           destination, reply["payload"]["error_message"], ex)
            return reply
        logger.info("Courriel de %s relayé à %s par %s", payload["sender"], destination, relay)
        return _ok()

    def _relay_failure(self, ex: Exception, destination: str, relay: str) -> str:
        """Ce que l'expéditeur apprend d'un échec du relais."""
        if isinstance(ex, smtplib.SMTPRecipientsRefused):
            return f"Le serveur SMTP a refusé le destinataire {destination}."
        if isinstance(ex, smtplib.SMTPResponseException):
            return f"Le serveur SMTP a refusé le courriel ({ex.smtp_code})."
        if isinstance(ex, (TimeoutError, smtplib.SMTPServerDisconnected)):
            return (f"Le serveur SMTP {relay} n'a pas répondu à temps." if self._timed_out(ex)
                    else f"Le serveur SMTP {relay} a coupé la connexion.")
        if isinstance(ex, ValueError):
            return "Le courriel contient un champ invalide."
        return f"Le serveur SMTP {relay} est injoignable."

    @staticmethod
    def _timed_out(ex: BaseException) -> bool:
        """Vrai si l'échec vient d'un délai dépassé (smtplib l'enveloppe)."""
        while ex is not None:
            if isinstance(ex, TimeoutError):
                return True
            ex = ex.__cause__ or ex.__context__
        return False

    @staticmethod
    def _build_message(payload: gloutils.EmailContentPayload) -> email.message.EmailMessage:
        """
        Construit le courriel à relayer. Une date illisible est remplacée par
        l'heure courante : le module `email` laisserait l'en-tête vide.
        """
        message = email.message.EmailMessage()
        message["From"] = payload["sender"]
        message["To"] = payload["destination"]
        message["Subject"] = payload["subject"]
        try:
            email.utils.parsedate_to_datetime(payload["date"])
            message["Date"] = payload["date"]
        except (TypeError, ValueError):
            message["Date"] = email.utils.formatdate()
        message.set_content(payload["content"])
        return message

    # ------------------------------------------------------------------
    # Stockage sur disque
    # ------------------------------------------------------------------

    def _prepare_storage(self) -> None:
        """Crée les dossiers des données au besoin et charge les comptes."""
        try:
            os.makedirs(self._lost_dir(), exist_ok=True)
            self._load_accounts()
        except OSError as ex:
            sys.exit(f"Impossible de préparer le dossier {gloutils.SERVER_DATA_DIR} : {ex}")

    @staticmethod
    def _lost_dir() -> str:
        return os.path.join(gloutils.SERVER_DATA_DIR, gloutils.SERVER_LOST_DIR)

    @staticmethod
    def _user_dir(username: str) -> str:
        return os.path.join(gloutils.SERVER_DATA_DIR, username)

    @staticmethod
    def _is_valid_username(username: str) -> bool:
        """Lettres et chiffres ASCII, `_`, `.` et `-` ; ni `.`, `..` ni `LOST`."""
        return (_USERNAME.fullmatch(username) is not None
                and username.lower() not in _RESERVED_USERNAMES)

    def _load_accounts(self) -> None:
        """Retrouve les comptes : chaque dossier valide portant un fichier `pass`."""
        for entry in sorted(os.scandir(gloutils.SERVER_DATA_DIR), key=lambda e: e.name):
            if not (entry.is_dir() and self._is_valid_username(entry.name)):
                continue
            if not os.path.isfile(os.path.join(entry.path, gloutils.PASSWORD_FILENAME)):
                continue
            if entry.name.lower() in self._accounts:
                logger.warning("Dossier %s ignoré : le compte %s existe déjà.",
                               entry.name, self._accounts[entry.name.lower()])
                continue
            self._accounts[entry.name.lower()] = entry.name

    def _store_account(self, username: str, digest: str) -> None:
        """
        Crée le dossier du compte et y écrit l'empreinte du mot de passe. Si
        l'écriture échoue (disque plein...), le dossier créé ici est retiré :
        un refus ne laisse rien derrière lui.
        """
        folder = self._user_dir(username)
        created = False
        try:
            os.mkdir(folder)
            created = True
        except FileExistsError:
            # Reste d'une création interrompue : le dossier n'a pas de `pass`.
            pass
        try:
            _write_file(folder, gloutils.PASSWORD_FILENAME, digest.encode("ascii"))
        except OSError:
            if created:
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
            raise
        _sync_directory(gloutils.SERVER_DATA_DIR)
        self._accounts[username.lower()] = username

    def _stored_digest(self, username: str) -> typing.Optional[str]:
        """Empreinte enregistrée du mot de passe, ou None si illisible."""
        path = os.path.join(self._user_dir(username), gloutils.PASSWORD_FILENAME)
        try:
            with open(path, encoding="ascii") as password_file:
                return password_file.read().strip()
        except (OSError, ValueError) as ex:
            logger.error("Empreinte de %s illisible : %s", username, ex)
            return None

    def _forget_mailboxes(self) -> None:
        """
        Après la mort du processus d'écriture : des courriels ont pu être
        écrits sans réponse, donc les index sont relus du disque au prochain
        usage. Aucune écriture n'est plus en cours à cet instant.
        """
        self._mailboxes.clear()

    def _mailbox(self, username: str) -> _Mailbox:
        """Index de la boîte de l'utilisateur, chargé du disque au premier usage."""
        mailbox = self._mailboxes.get(username.lower())
        if mailbox is None:
            mailbox = self._load_mailbox(username)
            self._mailboxes[username.lower()] = mailbox
        return mailbox

    def _load_mailbox(self, username: str) -> _Mailbox:
        """
        Reconstruit l'index d'un dossier. Les fichiers temporaires d'une
        écriture interrompue n'ont jamais été confirmés : ils sont effacés.
        """
        emails = []
        other_size = 0
        for entry in os.scandir(self._user_dir(username)):
            if entry.name.startswith(_TEMP_PREFIX):
                self._discard_temporary(entry.path)
                continue
            email_ = None
            if entry.name.endswith(_EMAIL_SUFFIX):
                email_ = self._index_entry(entry.path, entry.name)
            if email_ is None:
                other_size += entry.stat().st_size
            else:
                emails.append(email_)
        mailbox = _Mailbox(emails, other_size)
        logger.info("Boîte de %s chargée : %d courriel(s).", username, len(mailbox.emails))
        return mailbox

    @staticmethod
    def _discard_temporary(path: str) -> None:
        try:
            os.unlink(path)
            logger.info("Fichier temporaire abandonné effacé : %s", path)
        except OSError as ex:
            logger.warning("Fichier temporaire %s impossible à effacer : %s", path, ex)

    def _index_entry(self, path: str, filename: str) -> typing.Optional[_Email]:
        """Entrée d'index d'un fichier de courriel, ou None s'il est illisible."""
        try:
            with open(path, "rb") as email_file:
                size = os.fstat(email_file.fileno()).st_size
                content = json.loads(email_file.read())
        except (OSError, ValueError, RecursionError) as ex:
            logger.warning("Courriel illisible ignoré : %s (%s)", path, ex)
            return None
        if not _matches(content, _EMAIL_FIELDS):
            logger.warning("Courriel mal formé ignoré : %s", path)
            return None
        return self._make_entry(filename, size, content)

    @staticmethod
    def _make_entry(filename: str, size: int, content: dict) -> _Email:
        """
        Entrée d'index : triée par date, l'ordre d'arrivée (le nom du fichier)
        départageant les égalités et plaçant les dates illisibles.
        """
        stem = filename[: -len(_EMAIL_SUFFIX)]
        arrival = int(stem) if stem.isdigit() else 0
        timestamp = _timestamp(content["date"])
        if timestamp is None:
            timestamp = arrival / 1e9
        return _Email(
            sort_key=(timestamp, arrival, filename),
            filename=filename,
            size=size,
            sender=content["sender"],
            subject=content["subject"],
            date=content["date"],
            payload=content if size <= _CACHED_EMAIL_MAX else None,
            encoded_line_parts=_encoded_line_parts(content["sender"], content["subject"],
                                                   content["date"]),
        )

    def _read_email(self, username: str, filename: str) -> typing.Optional[dict]:
        """Relit du disque un courriel trop gros pour rester en mémoire."""
        path = os.path.join(self._user_dir(username), filename)
        try:
            with open(path, encoding="utf-8") as email_file:
                return json.load(email_file)
        except (OSError, ValueError) as ex:
            logger.error("Courriel %s illisible : %s", path, ex)
            return None


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serveur de courriels @glo2000.ca.")
    parser.add_argument("--host", default="",
                        help="Adresse IPv4 d'écoute (défaut : toutes les interfaces).")
    parser.add_argument("--port", type=int, default=gloutils.APP_PORT,
                        help=f"Port d'écoute (défaut : {gloutils.APP_PORT}).")
    parser.add_argument("--smtp-host", default=gloutils.SMTP_SERVER,
                        help=f"Relais SMTP du courriel externe (défaut : {gloutils.SMTP_SERVER}).")
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT,
                        help=f"Port du relais SMTP (défaut : {SMTP_PORT}).")
    parser.add_argument("--smtp-timeout", type=float, default=DEFAULT_SMTP_TIMEOUT,
                        help="Délai du relais SMTP, en secondes (défaut : %(default)s).")
    parser.add_argument("--frame-timeout", type=float, default=DEFAULT_FRAME_TIMEOUT,
                        help="Délai accordé à une trame incomplète, en secondes "
                             "(défaut : %(default)s).")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE,
                        help="Taille maximale d'un message, en octets (défaut : %(default)s).")
    parser.add_argument("--max-clients", type=int, default=DEFAULT_MAX_CLIENTS,
                        help="Nombre maximal de connexions simultanées "
                             "(défaut : %(default)s).")
    return parser.parse_args()


def _main() -> int:
    args = _parse_args()
    # Lancé en arrière-plan par un shell, le processus hérite d'un SIGINT
    # ignoré ; et SIGTERM doit arrêter aussi proprement que Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = Server(
        args.host,
        args.port,
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
        smtp_timeout=args.smtp_timeout,
        frame_timeout=args.frame_timeout,
        max_message=args.max_message,
        max_clients=args.max_clients,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
