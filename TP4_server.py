"""\
GLO-2000 Travail pratique 4 - Serveur

Serveur de courriels @glo2000.ca : une seule boucle `select.select()` sert
tous les clients. Chaque requête suit le même chemin : octets reçus, trame
complète, JSON, entrée de la table des en-têtes, vérification de la charge
utile, puis LA méthode du gabarit de cet en-tête (`_create_account`,
`_login`, `_logout`, `_get_email_list`, `_get_email`, `_get_stats`,
`_send_email`) ; sa valeur de retour est la réponse envoyée.

Le fichier se lit de haut en bas :

1. les petites fonctions (réponses, noms, mots de passe, adresses, dates) ;
2. le stockage : index des boîtes, publication atomique des courriels,
   récupération après une panne, verrou du dossier des données ;
3. `Server` : `__init__` et `cleanup`, les méthodes du gabarit, le relais
   SMTP, la boucle et le découpage des messages, le travail hors de la
   boucle, puis les comptes et les boîtes sur le disque ; la table des
   en-têtes (`_ROUTES`) suit la classe ;
4. la section « Vitesse », que l'on peut sauter : le processus d'écriture ;
5. la ligne de commande.

Une méthode qui attendrait le disque ou le relais SMTP (création de compte,
connexion, relais, premier chargement d'une boîte, lecture d'un gros
courriel) s'exécute dans un fil : seul son client attend sa réponse, la
boucle continue de servir les autres. Les courriels sont écrits par un
processus d'écriture, pour que leurs synchronisations ne disputent pas à la
boucle le verrou global de Python ; un envoi interne s'exécute dans la
boucle, se suspend sur son écriture et se rejoue quand elle est faite
(`_Replay`).
"""

import argparse
import bisect
import collections
import concurrent.futures
import datetime
import email.message
import email.utils
import errno
import fcntl
import functools
import itertools
import hashlib
import hmac
import json
import logging
import operator
import os
import re
import resource
import select
import signal
import smtplib
import socket
import string
import struct
import subprocess
import sys
import threading
import time
import typing

try:
    import glossocket
except ImportError:  # Le module distribué par le cours s'appelle glosocket.py.
    import glosocket as glossocket
import gloutils

logger = logging.getLogger("TP4_server")

SMTP_PORT = 25
DEFAULT_SMTP_TIMEOUT = 10.0
DEFAULT_FRAME_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024
# Le plus petit message permis : de quoi tenir une requête ordinaire.
MIN_MAX_MESSAGE = 1024
# select() ne surveille que les descripteurs < FD_SETSIZE (1024).
SELECT_FD_LIMIT = 1024
DEFAULT_MAX_CLIENTS = 1000
# Descripteurs gardés hors des clients : écoute, réveil, canal du processus
# d'écriture, verrou, sockets des relais, fichiers lus par les fils, et la
# connexion acceptée pour être refusée.
_RESERVED_DESCRIPTORS = 48

_LENGTH = struct.Struct("!I")
_RECV_SIZE = 64 * 1024
# Au-delà de ce volume de réponses non lues, on cesse de lire le client :
# celui qui ne lit pas ses réponses ne peut pas faire grossir la mémoire.
_OUTPUT_HIGH_WATER = 256 * 1024
# Pause des acceptations après un échec d'accept() (EMFILE, ENFILE...) :
# sans elle, le socket d'écoute resterait prêt et la boucle tournerait à vide.
_ACCEPT_BACKOFF = 0.1
# Fils par sorte de travail : un relais lent ne retarde ni les livraisons
# internes ni les chargements de boîtes.
_RELAY_WORKERS = 8
_ACCOUNT_WORKERS = 8
_LOADER_WORKERS = 8
# Fils des livraisons qui ne se rejouent pas (méthode d'envoi remplacée) :
# chacun attend son écriture, faite par le processus d'écriture.
_DISK_WORKERS = 16
# Les derniers courriels livrés ou lus restent en mémoire, jusqu'à ce total :
# la plupart des lectures en épargnent le disque, et la mémoire reste bornée
# quel que soit le courrier stocké.
_RECENT_EMAILS_BYTES = 4 * 1024 * 1024
# Un courriel plus gros est relu par un fil plutôt que dans la boucle.
_INLINE_READ_MAX = 64 * 1024
# Attente du verrou du dossier des données : le processus d'écriture d'un
# serveur tué le rend dès qu'il a constaté la mort de son serveur.
_DATA_LOCK_WAIT = 3.0
# Délai d'une écriture confiée au processus d'écriture ; au-delà, il est
# tué et l'écriture refaite une fois, puis abandonnée : aucun envoi
# n'attend sans fin.
_WRITE_TIMEOUT = 10.0
# Délai laissé au processus d'écriture pour finir ses écritures à l'arrêt.
_WRITER_STOP_TIMEOUT = 10.0

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"([^@\s\x00-\x1f\x7f]+)@({_DOMAIN}(?:\.{_DOMAIN})*)")
_ADDRESS_MAX = 254
_EMAIL_SUFFIX = ".json"
# Fichier en cours d'écriture : caché, il devient un courriel en étant renommé.
_TEMP_PREFIX = ".tmp-"
# Un entier écrit en chiffres ASCII est accepté là où un entier est attendu.
_DIGITS = re.compile(r"[0-9]{1,18}")

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
    errno.ETIMEDOUT: "écriture trop lente",
    errno.ESHUTDOWN: "le serveur s'arrête",
}

_LISTEN_ERRORS = {
    errno.EADDRINUSE: "le port est déjà utilisé",
    errno.EACCES: "permission refusée",
    errno.EPERM: "permission refusée",
    errno.EADDRNOTAVAIL: "adresse non disponible sur cette machine",
}


# ----------------------------------------------------------------------
# Petites fonctions : réponses, charges utiles, noms, adresses, dates
# ----------------------------------------------------------------------

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


def _conform(payload, fields: tuple) -> typing.Optional[dict]:
    """
    La charge utile si elle porte chaque clé de `fields` avec le type attendu
    (un booléen n'est pas un entier), sinon None. Une chaîne de chiffres
    ASCII là où un entier est attendu est lue comme cet entier : des clients
    d'autres éditions du cours envoient `"choice": "1"`, sans ambiguïté.
    """
    if not isinstance(payload, dict):
        return None
    converted = None
    for key, expected in fields:
        value = payload.get(key)
        if type(value) is expected:
            continue
        if expected is int and type(value) is str and _DIGITS.fullmatch(value):
            converted = converted or dict(payload)
            converted[key] = int(value)
            continue
        return None
    return payload if converted is None else converted


def _shorten(text: str, limit: int = 80) -> str:
    """Abrège un texte du client avant de le citer dans un message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loggable(text: str) -> str:
    """Un texte du client cité au journal : abrégé, caractères de contrôle échappés."""
    text = _shorten(text, 64)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


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
    # plusieurs mégaoctets reste rapide à juger.
    characters = set(password)
    return (
        len(password) >= 10
        and any(char.isdecimal() for char in characters)
        and any(char.islower() for char in characters)
        and any(char.isupper() for char in characters)
        and not any("\ud800" <= char <= "\udfff" for char in characters)
    )


def _is_valid_username(username: str) -> bool:
    """Lettres et chiffres ASCII, `_`, `.` et `-` ; ni `.`, `..` ni le dossier `LOST`."""
    return (_USERNAME.fullmatch(username) is not None
            and username not in (".", "..")
            and username.lower() != gloutils.SERVER_LOST_DIR.lower())


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


def _is_external(destination: str) -> bool:
    """Vrai pour une adresse valide d'un autre domaine que celui du serveur."""
    return destination.rpartition("@")[2].lower() != gloutils.SERVER_DOMAIN.lower()


_EMAIL_FIELDS = _fields(gloutils.EmailContentPayload)


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


# ----------------------------------------------------------------------
# Index des boîtes : ce que la liste, la lecture et les statistiques lisent
# ----------------------------------------------------------------------

# Chaque ligne de la liste est mise en forme et encodée en JSON une fois, à
# l'indexation, puis coupée là où va son numéro : la liste et son encodage
# s'assemblent ensuite par des `join`, sans boucle Python par courriel.
_NUMBER_MARK = "\x00#\x00"
_ENCODED_NUMBER_MARK = json.dumps(_NUMBER_MARK)[1:-1]


class _Line(typing.NamedTuple):
    """
    La ligne `SUBJECT_DISPLAY` d'un courriel, coupée là où va son numéro ;
    `quoted` : son encodage JSON n'est que la ligne entre guillemets (rien à
    échapper).
    """

    parts: tuple
    encoded_parts: tuple
    quoted: bool


@functools.lru_cache(maxsize=8)
def _has_plain_number(template: str) -> bool:
    """Vrai si `{number}` paraît une fois dans le gabarit, sans mise en forme."""
    try:
        fields = [(name, spec, conversion)
                  for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        return False
    return fields.count(("number", "", None)) == 1 and not any(
        name.startswith("number") and (name, spec, conversion) != ("number", "", None)
        for name, spec, conversion in fields)


def _cut_line(sender: str, subject: str, date: str) -> typing.Optional[_Line]:
    """
    La ligne d'un courriel et son encodage JSON, coupés là où va son numéro,
    ou None si la coupe ne redonnerait pas exactement la ligne (marque dans
    le texte du client, numéro mis en forme par le gabarit). Avec un
    `{number}` simple et une seule marque de chaque côté, joindre les
    morceaux par le numéro redonne exactement la ligne et son encodage.
    """
    template = gloutils.SUBJECT_DISPLAY
    if not _has_plain_number(template):
        return None
    try:
        marked = template.format(number=_NUMBER_MARK, sender=sender, subject=subject,
                                 date=date)
    except (ValueError, KeyError, IndexError):
        return None
    parts = tuple(marked.split(_NUMBER_MARK))
    encoded_parts = tuple(json.dumps(marked).split(_ENCODED_NUMBER_MARK))
    if not len(parts) == len(encoded_parts) == 2:
        return None
    quoted = encoded_parts == (f'"{parts[0]}', f'{parts[1]}"')
    return _Line(parts, encoded_parts, quoted)


class _Email(typing.NamedTuple):
    """
    Entrée de l'index d'une boîte : de quoi trier, lister et compter. Le
    corps reste sur le disque : la mémoire suit l'index, pas le courrier.
    """

    sort_key: tuple
    filename: str
    size: int
    sender: str
    subject: str
    date: str
    line: typing.Optional[_Line]

    def subject_line(self, number: int) -> str:
        """Ligne `SUBJECT_DISPLAY` du courriel sous le numéro `number`."""
        return gloutils.SUBJECT_DISPLAY.format(
            number=number, sender=self.sender, subject=self.subject, date=self.date)


def _index_entry(filename: str, size: int, content: dict) -> _Email:
    """
    Entrée d'index : triée par date, l'ordre d'arrivée (le nom du fichier)
    départageant les égalités et plaçant les dates illisibles.
    """
    stem = filename[: -len(_EMAIL_SUFFIX)]
    arrival = int(stem) if stem.isdigit() else 0
    timestamp = _timestamp(content["date"])
    if timestamp is None:
        timestamp = arrival / 1e9
    sender, subject, date = content["sender"], content["subject"], content["date"]
    return _Email((timestamp, arrival, filename), filename, size,
                  sender, subject, date, _cut_line(sender, subject, date))


class _Listing(list):
    """
    Liste des lignes `SUBJECT_DISPLAY` renvoyée par `_get_email_list`, une
    vraie liste de chaînes ; elle porte aussi son encodage JSON, calculé une
    fois par état de la boîte, que la boucle envoie tel quel.
    """

    __slots__ = ("encoded",)

    def __init__(self, lines: list, encoded: str) -> None:
        super().__init__(lines)
        self.encoded = encoded


_SORT_KEY = operator.attrgetter("sort_key")


class _Numbers:
    """Les numéros de la liste déjà écrits : "1", "2"... ; la liste les réutilise."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._lock = threading.Lock()

    def first(self, count: int) -> list[str]:
        """Les `count` premiers numéros, en texte."""
        if len(self._texts) < count:
            with self._lock:
                self._texts.extend(map(str, range(len(self._texts) + 1, 2 * count + 1)))
        return self._texts[:count]


_numbers = _Numbers()


class _Mailbox:
    """
    Index d'un dossier d'utilisateur, reconstruit depuis le disque au premier
    usage puis tenu à jour à chaque livraison. Les fils de livraison y
    ajoutent pendant que la boucle le lit : un verrou garde sa cohérence.
    """

    def __init__(self, emails: typing.Iterable[_Email] = (), other_size: int = 0) -> None:
        """`other_size` : les octets des fichiers du dossier qui ne sont pas des courriels."""
        self._lock = threading.Lock()
        self._emails: list[_Email] = sorted(emails, key=_SORT_KEY)
        self._size = other_size + sum(entry.size for entry in self._emails)
        # Les morceaux des lignes, dans l'ordre des courriels : la liste s'en
        # assemble sans lire un attribut par courriel.
        self._parts = [entry.line and entry.line.parts for entry in self._emails]
        self._encoded_parts = [entry.line and entry.line.encoded_parts
                               for entry in self._emails]
        # Courriels dont la ligne n'a pas pu être coupée : liste assemblée à la main.
        self._uncut = self._parts.count(None)
        # Courriels dont la ligne a des caractères à échapper en JSON.
        self._escaped = sum(not entry.line.quoted for entry in self._emails if entry.line)
        self._listing: typing.Optional[_Listing] = None

    def add(self, entry: _Email) -> None:
        """Range un courriel selon sa date, puis son ordre d'arrivée."""
        with self._lock:
            index = bisect.bisect_right(self._emails, entry.sort_key, key=_SORT_KEY)
            self._emails.insert(index, entry)
            self._parts.insert(index, entry.line and entry.line.parts)
            self._encoded_parts.insert(index, entry.line and entry.line.encoded_parts)
            self._size += entry.size
            self._uncut += entry.line is None
            self._escaped += entry.line is not None and not entry.line.quoted
            self._listing = None

    def stats(self) -> tuple[int, int]:
        """Nombre de courriels et octets du dossier."""
        with self._lock:
            return len(self._emails), self._size

    def listing(self) -> _Listing:
        """Lignes `SUBJECT_DISPLAY`, #1 étant le courriel le plus récent (une copie)."""
        with self._lock:
            if self._listing is None:
                self._listing = self._build_listing()
            return _Listing(self._listing, self._listing.encoded)

    def _build_listing(self) -> _Listing:
        if self._uncut:
            lines = [entry.subject_line(number)
                     for number, entry in enumerate(reversed(self._emails), start=1)]
            return _Listing(lines, json.dumps(lines))
        numbers = _numbers.first(len(self._emails))
        lines = list(map(str.join, numbers, reversed(self._parts)))
        if not lines:
            return _Listing(lines, "[]")
        if self._escaped:
            encoded = ", ".join(map(str.join, numbers, reversed(self._encoded_parts)))
            return _Listing(lines, f"[{encoded}]")
        # Rien à échapper : l'encodage n'est que les lignes entre guillemets.
        return _Listing(lines, '["' + '", "'.join(lines) + '"]')

    def by_number(self, number: int) -> typing.Optional[_Email]:
        """Courriel #`number` de la liste, ou None hors des bornes."""
        with self._lock:
            if 1 <= number <= len(self._emails):
                return self._emails[len(self._emails) - number]
        return None


class _RecentEmails:
    """
    Le contenu des derniers courriels livrés ou lus, par chemin, jusqu'à
    `limit` octets ; les plus anciens sortent d'abord. Un courriel ne change
    jamais une fois publié : rien à invalider.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, path: str) -> typing.Optional[dict]:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            self._entries.move_to_end(path)
            return entry[0]

    def put(self, path: str, content: dict, size: int) -> None:
        if size > self._limit // 64:
            return  # Un gros courriel chasserait tous les autres.
        with self._lock:
            if path in self._entries:
                return
            self._entries[path] = (content, size)
            self._size += size
            while self._size > self._limit:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._size -= evicted


# ----------------------------------------------------------------------
# Fichiers : publication atomique, récupération, verrou du dossier
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


def _new_email_name() -> str:
    """Nom d'un nouveau courriel : son heure d'arrivée, en nanosecondes."""
    return f"{_arrivals.next():020d}{_EMAIL_SUFFIX}"


def _create_file(path: str, data: bytes) -> int:
    """
    Crée `path` (jamais par-dessus un fichier), y écrit `data` et renvoie
    son descripteur, encore ouvert : à l'appelant de le synchroniser.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        remaining = memoryview(data)
        while remaining:
            remaining = remaining[os.write(descriptor, remaining):]
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


def _write_new_file(path: str, data: bytes) -> None:
    """Crée `path` (jamais par-dessus un fichier), y écrit `data` et le synchronise."""
    descriptor = _create_file(path, data)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _discard_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_directory(folder: str) -> None:
    """Synchronise un dossier : ses nouvelles entrées survivent à une panne."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Publication:
    """
    Un courriel à publier : son nom définitif, son fichier caché (ouvert le
    temps de le rendre durable), puis l'issue de sa publication.
    """

    __slots__ = ("final", "temporary", "descriptor", "error")

    def __init__(self, folder: str, filename: str) -> None:
        self.final = os.path.join(folder, filename)
        self.temporary = os.path.join(folder, _TEMP_PREFIX + filename)
        self.descriptor: typing.Optional[int] = None
        self.error: typing.Optional[OSError] = None


def _publish_all(publications: list, contents: list, make_durable) -> None:
    """
    Publie des courriels, chacun complet ou pas du tout : chacun est écrit
    sous son nom caché (`.tmp-<nom>`), tous sont rendus durables d'un coup
    (`make_durable`), puis chacun est renommé. Le renommage n'écrase rien :
    un seul processus écrit dans le dossier (son verrou) et ses noms sont
    uniques ; un nom déjà présent (horloge reculée depuis un redémarrage)
    est un FileExistsError, au client d'en choisir un autre. Si une panne
    perd le renommage, le fichier caché, complet et durable, est publié au
    démarrage suivant (`_recover_interrupted_writes`) : un courriel confirmé
    survit. L'issue de chacun est dans son `error` ; une erreur ne fait
    échouer que les courriels qu'elle touche, et n'en laisse rien.
    """
    for publication, data in zip(publications, contents):
        if os.path.lexists(publication.final):
            publication.error = FileExistsError(
                errno.EEXIST, os.strerror(errno.EEXIST), publication.final)
            continue
        try:
            publication.descriptor = _create_file(publication.temporary, data)
        except OSError as ex:
            publication.error = ex
            _discard_quietly(publication.temporary)
    written = [publication for publication in publications if publication.descriptor is not None]
    try:
        make_durable(written)
    finally:
        for publication in written:
            os.close(publication.descriptor)
    for publication in written:
        try:
            if publication.error is None:
                os.rename(publication.temporary, publication.final)
        except OSError as ex:
            publication.error = ex
        if publication.error is not None:
            _discard_quietly(publication.temporary)


def _fsync_each(publications: list) -> None:
    """Rend durable chaque fichier, l'un après l'autre."""
    for publication in publications:
        try:
            os.fsync(publication.descriptor)
        except OSError as ex:
            publication.error = ex


def _publish_email(folder: str, filename: str, data: bytes) -> None:
    """
    Publie un courriel sous `folder/filename` (`_publish_all`) ; lève
    l'erreur de sa publication, FileExistsError si le nom est déjà pris.
    """
    publication = _Publication(folder, filename)
    _publish_all([publication], [data], _fsync_each)
    if publication.error is not None:
        raise publication.error


def _publish_new_email(folder: str, data: bytes) -> str:
    """Publie `data` sous un nom neuf dans `folder` et renvoie ce nom."""
    while True:
        filename = _new_email_name()
        try:
            _publish_email(folder, filename, data)
            return filename
        except FileExistsError:
            continue  # Un nom déjà pris (horloge reculée) : on en prend un autre.


def _write_file(folder: str, filename: str, data: bytes) -> None:
    """
    Remplace `folder/filename` par `data` d'un coup (le fichier `pass`) :
    fichier caché synchronisé, renommé, puis dossier synchronisé.
    """
    temporary = os.path.join(folder, f"{_TEMP_PREFIX}{_arrivals.next()}")
    try:
        _write_new_file(temporary, data)
        os.replace(temporary, os.path.join(folder, filename))
    except OSError:
        _discard_quietly(temporary)
        raise
    _sync_directory(folder)


def _read_email_file(path: str) -> typing.Optional[dict]:
    """Les cinq champs d'un fichier de courriel, ou None s'il est illisible."""
    try:
        # Sans objet fichier de `io` : cette lecture se fait dans la boucle.
        descriptor = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(descriptor, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(descriptor)
        content = json.loads(b"".join(chunks))
    except (OSError, ValueError, RecursionError):
        return None
    return content if _conform(content, _EMAIL_FIELDS) is content else None


def _recover_interrupted_writes(folder: str) -> None:
    """
    Solde les écritures qu'un arrêt brutal a interrompues dans `folder` : un
    fichier caché complet dont le renommage s'est perdu est publié (il a pu être
    confirmé), un fichier incomplet est effacé (il ne l'a jamais été).
    """
    for entry in os.scandir(folder):
        if not entry.name.startswith(_TEMP_PREFIX):
            continue
        final = os.path.join(folder, entry.name[len(_TEMP_PREFIX):])
        if (entry.name.endswith(_EMAIL_SUFFIX) and not os.path.exists(final)
                and _read_email_file(entry.path) is not None):
            os.link(entry.path, final)
            logger.warning("Courriel interrompu par un arrêt brutal récupéré : %s", final)
        else:
            logger.info("Écriture interrompue effacée : %s", entry.path)
        os.unlink(entry.path)


# Verrous de dossier tenus par ce processus : (appareil, inode) -> [descripteur,
# serveurs qui s'en servent]. Un correcteur peut construire plusieurs
# `Server()` de suite dans un même processus et un même dossier.
_data_locks: dict[tuple[int, int], list] = {}
_data_locks_guard = threading.Lock()


class _DataFolderBusy(Exception):
    """Un autre processus vivant sert déjà ce dossier de données."""


def _lock_data_folder(folder: str) -> tuple[int, int]:
    """
    Réserve `folder` à ce processus (flock exclusif sur le dossier). Le
    verrou passe au processus d'écriture : un nouveau serveur n'indexe
    jamais un dossier qu'un autre processus vivant peut encore modifier.
    Lève `_DataFolderBusy` après `_DATA_LOCK_WAIT` secondes d'attente.
    Renvoie la clé à donner à `_unlock_data_folder`.
    """
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    status = os.fstat(descriptor)
    key = (status.st_dev, status.st_ino)
    with _data_locks_guard:
        if key in _data_locks:
            os.close(descriptor)
            _data_locks[key][1] += 1
            return key
        deadline = time.monotonic() + _DATA_LOCK_WAIT
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    raise _DataFolderBusy(folder) from None
                time.sleep(0.05)
        _data_locks[key] = [descriptor, 1]
        return key


def _data_lock_descriptor(key: tuple[int, int]) -> int:
    return _data_locks[key][0]


def _unlock_data_folder(key: tuple[int, int]) -> None:
    """Rend le verrou quand plus aucun serveur de ce processus ne s'en sert."""
    with _data_locks_guard:
        held = _data_locks[key]
        held[1] -= 1
        if held[1] == 0:
            del _data_locks[key]
            os.close(held[0])


class Server:
    """Serveur de courriels @glo2000.ca."""

    def __init__(
        self,
        host: str = "",
        port: typing.Optional[int] = None,
        *,
        smtp_host: typing.Optional[str] = None,
        smtp_port: int = SMTP_PORT,
        smtp_timeout: float = DEFAULT_SMTP_TIMEOUT,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        """
        Réserve le port `port` (`gloutils.APP_PORT` par défaut, IPv4, TCP),
        prépare le dossier des données, puis écoute : un client qui se
        connecte trouve les données prêtes, et un port indisponible ne
        laisse aucun dossier derrière lui. Quitte le programme avec un code
        non nul si l'un ou l'autre échoue.
        """
        port = gloutils.APP_PORT if port is None else port
        self._smtp_host = gloutils.SMTP_SERVER if smtp_host is None else smtp_host
        self._smtp_port = smtp_port
        self._smtp_timeout = smtp_timeout
        self._frame_timeout = frame_timeout
        self._max_message = max_message
        self._max_clients = max_clients

        self._client_socs: list[socket.socket] = []
        self._logged_users: dict[socket.socket, str] = {}
        self._connections: dict[socket.socket, _Connection] = {}
        # Index tirés des connexions, pour que chaque tour de boucle ne les
        # parcoure pas toutes : réponses pas encore parties, trames incomplètes.
        self._unsent: set[socket.socket] = set()
        self._partial: set[socket.socket] = set()
        self._accept_resumes_at = 0.0
        self._loop_thread: typing.Optional[int] = None
        self._serving = False

        self._accounts: dict[str, str] = {}
        self._accounts_lock = threading.Lock()
        self._mailboxes: dict[str, _Mailbox] = {}
        self._recent_emails = _RecentEmails(_RECENT_EMAILS_BYTES)
        self._mailbox_locks: dict[str, threading.Lock] = collections.defaultdict(
            threading.Lock)
        self._relays: set[socket.socket] = set()
        self._stopping = False

        try:
            self._server_socket = self._bind(host, port)
        except OSError as ex:
            reason = _LISTEN_ERRORS.get(ex.errno, ex.strerror or str(ex))
            sys.exit(f"Impossible d'écouter sur le port {port} : {reason}.")
        try:
            self._data_lock = self._prepare_storage()
        except SystemExit:
            self._server_socket.close()
            raise
        try:
            self._server_socket.listen(socket.SOMAXCONN)
        except OSError as ex:
            self._server_socket.close()
            _unlock_data_folder(self._data_lock)
            sys.exit(f"Impossible d'écouter sur le port {port} : {ex.strerror or ex}.")
        self._fit_max_clients(self._raise_descriptor_limit())
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        self._wakeup_sent = False
        self._finished: collections.deque = collections.deque()
        # Appels rejoués dans la boucle : en cours, et prêts à reprendre.
        self._replay: typing.Optional[_Replay] = None
        self._resumable: collections.deque = collections.deque()
        self._pools = {
            "relay": concurrent.futures.ThreadPoolExecutor(
                _RELAY_WORKERS, thread_name_prefix="relais-smtp"),
            "accounts": concurrent.futures.ThreadPoolExecutor(
                _ACCOUNT_WORKERS, thread_name_prefix="comptes"),
            "delivery": concurrent.futures.ThreadPoolExecutor(
                _DISK_WORKERS, thread_name_prefix="livraison"),
            "load": concurrent.futures.ThreadPoolExecutor(
                _LOADER_WORKERS, thread_name_prefix="chargement"),
        }
        self._disk_writer = _DiskWriter(_data_lock_descriptor(self._data_lock), self._wake_loop)
        logger.info("En écoute sur %s:%d, %d compte(s) chargé(s).",
                    *self._server_socket.getsockname()[:2], len(self._accounts))
        if self._max_clients < max_clients:
            logger.warning("Limite de descripteurs trop basse : %d client(s) au plus "
                           "au lieu de %d.", self._max_clients, max_clients)

    def cleanup(self) -> None:
        """
        Ferme toutes les connexions et le socket d'écoute, abandonne les
        relais en attente et laisse finir les écritures commencées : un
        courriel déjà confirmé est retrouvé au redémarrage. Un second appel
        ne fait rien.
        """
        if self._stopping:
            return
        self._stopping = True
        for client_soc in list(self._client_socs):
            self._remove_client(client_soc)
        self._abandon_relays()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        # Les écritures confiées se terminent ici, ce qui libère les fils qui
        # les attendent ; les fils, eux, sont bornés par les délais du relais.
        self._disk_writer.close()
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        self._server_socket.close()
        self._wakeup_reader.close()
        self._wakeup_writer.close()
        _unlock_data_folder(self._data_lock)
        logger.info("Serveur arrêté.")

    # ------------------------------------------------------------------
    # Méthodes du gabarit : une par requête, chacune seule à la traiter
    # ------------------------------------------------------------------

    def _create_account(self, client_soc: socket.socket,
                        payload: gloutils.AuthPayload) -> gloutils.GloMessage:
        """
        Crée le compte et connecte le socket, ou renvoie un `ERROR` qui
        énumère tous les problèmes à la fois.
        """
        username, password = payload["username"], payload["password"]
        with self._accounts_lock:  # Deux créations du même nom : une seule réussit.
            problems = []
            if not _is_valid_username(username):
                problems.append("Le nom d'utilisateur est invalide.")
            elif username.lower() in self._accounts:
                problems.append("Le nom d'utilisateur est déjà utilisé.")
            if not _is_strong(password):
                problems.append("Le mot de passe n'est pas assez sûr.")
            if problems:
                logger.info("Création refusée pour %s depuis %s : %s", _loggable(username),
                            self._peer(client_soc), " ".join(problems))
                return _error("\n- ".join(["La création a échouée:", *problems]))
            try:
                self._store_account(username, _password_digest(password))
            except OSError as ex:
                logger.error("Création du compte %s impossible : %s", username, ex)
                return _error(f"La création a échouée:\n- {_disk_error(ex).capitalize()}.")
            self._accounts[username.lower()] = username
        self._logged_users[client_soc] = username
        logger.info("Compte créé : %s, depuis %s", username, self._peer(client_soc))
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
        """Liste des sujets de l'utilisateur, du plus récent au plus ancien."""
        username = self._logged_users.get(client_soc)
        if username is None:
            return _error(NOT_LOGGED_IN)
        try:
            listing = self._mailbox(username).listing()
        except OSError as ex:
            return _disk_access_error(ex)
        return _ok(gloutils.EmailListPayload(email_list=listing))

    def _get_email(self, client_soc: socket.socket,
                   payload: gloutils.EmailChoicePayload) -> gloutils.GloMessage:
        """Courriel choisi, numéroté comme dans la liste (#1 = plus récent)."""
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
        path = os.path.join(self._user_dir(username), entry.filename)
        content = self._recent_emails.get(path)
        if content is None:
            content = _read_email_file(path)
            if content is not None:
                self._recent_emails.put(path, content, entry.size)
        if content is None:
            logger.error("Courriel %s de %s illisible.", entry.filename, username)
            return _error(f"Le courriel #{choice} est illisible.")
        return _ok(gloutils.EmailContentPayload(**_email_content(content)))

    def _get_stats(self, client_soc: socket.socket) -> gloutils.GloMessage:
        """Nombre de courriels et taille totale du dossier de l'utilisateur."""
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
        Livre un courriel : dans le dossier du destinataire s'il est du
        domaine du serveur (dans `LOST`, avec un `ERROR`, s'il n'existe pas),
        sinon par le relais SMTP. Ne répond `OK` qu'une fois le courriel
        durable ou accepté par le relais.
        """
        destination = payload["destination"]
        if not _is_valid_address(destination):
            return _error(f"L'adresse {_shorten(destination)} n'est pas valide.")
        if _is_external(destination):
            return self._relay_external(payload)
        recipient = self._accounts.get(destination.rpartition("@")[0].lower())
        content = _email_content(payload)
        data = json.dumps(content).encode("utf-8")
        try:
            # L'index est chargé avant l'écriture : chargé après, il compterait
            # deux fois le nouveau courriel.
            mailbox = self._mailbox(recipient) if recipient else None
            folder = self._user_dir(recipient) if recipient else self._lost_dir()
            filename = self._store_email(folder, data)
        except OSError as ex:
            logger.error("Livraison à %s impossible : %s", _loggable(destination), ex)
            return _error(f"Le courriel n'a pas pu être enregistré : {_disk_error(ex)}.")
        if mailbox is None:
            logger.info("Destinataire inconnu %s : courriel placé dans %s",
                        _loggable(destination), gloutils.SERVER_LOST_DIR)
            return _error(f"Le destinataire {_shorten(destination)} n'existe pas.")
        mailbox.add(_index_entry(filename, len(data), content))
        self._recent_emails.put(os.path.join(folder, filename), content, len(data))
        logger.info("Courriel de %s livré à %s", _loggable(payload["sender"]), recipient)
        return _ok()

    # ------------------------------------------------------------------
    # Relais SMTP
    # ------------------------------------------------------------------

    def _relay_external(self, payload: gloutils.EmailContentPayload) -> gloutils.GloMessage:
        """
        Confie le courriel au relais SMTP. Toute défaillance (refus, relais
        injoignable, délai dépassé) devient un `ERROR` en français,
        journalisé une fois avec sa cause technique.
        """
        relay = f"{self._smtp_host}:{self._smtp_port}"
        destination = _shorten(payload["destination"])
        try:
            message = self._build_message(payload)
            with self._smtp_class()(self._smtp_host, self._smtp_port,
                                    timeout=self._smtp_timeout) as smtp:
                smtp.send_message(message)
        except (OSError, ValueError) as ex:  # smtplib.SMTPException est une OSError.
            if self._stopping:
                logger.warning("Relais SMTP vers %s abandonné : arrêt du serveur.", destination)
                return _error("Le serveur s'arrête : le courriel n'a pas été relayé.")
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

    def _smtp_class(self) -> typing.Callable[..., smtplib.SMTP]:
        """
        `smtplib.SMTP`, lu à l'appel : un correcteur peut l'avoir remplacé, et
        on s'en sert alors tel quel. L'ordinaire est remplacé par `_TrackedSMTP`,
        qui inscrit sa connexion dès son ouverture, avant même la salutation
        du relais : l'arrêt du serveur peut ainsi la couper.
        """
        if smtplib.SMTP is _STANDARD_SMTP:
            return functools.partial(_TrackedSMTP, self._relays, lambda: self._stopping)
        return smtplib.SMTP

    def _abandon_relays(self) -> None:
        """
        À l'arrêt : coupe les relais en cours plutôt que d'attendre leur délai ;
        chacun journalise son abandon avant la dernière ligne, « Serveur arrêté. ».
        """
        for relay_socket in list(self._relays):
            try:
                relay_socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------
    # Boucle : connexions, découpage des messages, table des en-têtes
    # ------------------------------------------------------------------

    def run(self) -> None:
        """
        Sert les clients jusqu'à l'interruption du programme. Un défaut dans
        le traitement d'une requête ne coûte qu'un `ERROR` à son client
        (`_answer`) ; un défaut de la boucle elle-même sort d'ici.
        """
        self._loop_thread = threading.get_ident()
        self._serving = True
        try:
            while True:
                self._serve_once()
        finally:
            self._serving = False

    def _serve_once(self) -> None:
        """
        Un tour de boucle : attendre dans select(), envoyer ce que les
        sockets acceptent, accepter, lire et traiter les requêtes complètes,
        répondre aux travaux finis hors de la boucle, puis fermer les
        connexions dont une trame traîne.
        """
        readers = [self._wakeup_reader]
        writers = list(self._unsent)
        if self._is_accepting():
            readers.append(self._server_socket)
        if self._disk_writer.running:
            readers.append(self._disk_writer)
            if self._disk_writer.has_output():
                writers.append(self._disk_writer)
        readers += [client_soc for client_soc, connection in self._connections.items()
                    if not (connection.busy or connection.held)]
        next_deadline = min((self._connections[client_soc].frame_started + self._frame_timeout
                             for client_soc in self._partial), default=None)
        wake_at = min(filter(None, (next_deadline, self._accept_resumes_at,
                                    self._disk_writer.next_deadline())), default=None)
        timeout = None if wake_at is None else max(0.0, wake_at - time.monotonic())
        if self._finished or self._resumable:
            timeout = 0
        readable, writable, _ = select.select(readers, writers, [], timeout)
        for ready in writable:
            if ready is self._disk_writer:
                self._disk_writer.send()
            else:
                self._flush(ready)
                self._resume_if_drained(ready)
        for ready in readable:
            if ready is self._server_socket:
                self._accept_client()
            elif ready is self._wakeup_reader:
                self._drain_wakeups()
            elif ready is self._disk_writer:
                self._disk_writer.receive()
                self._resume_replays()
                self._collect_finished()
            elif ready in self._connections:
                self._receive(ready)
                if self._finished:
                    self._collect_finished()
        self._collect_finished()
        self._disk_writer.expire()
        # Les écritures demandées pendant ce tour partent sans attendre le suivant.
        self._disk_writer.send()
        self._resume_replays()
        if next_deadline is not None and time.monotonic() >= next_deadline:
            self._drop_stalled_frames()

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """Le socket d'écoute, non bloquant et lié à son port, avec `SO_REUSEADDR`."""
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server_socket.bind((host, port))
            server_socket.setblocking(False)
        except (OSError, OverflowError) as ex:
            server_socket.close()
            if isinstance(ex, OverflowError):
                raise OSError(errno.EINVAL, "port hors des bornes (0 à 65535)") from ex
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

    def _is_accepting(self) -> bool:
        """Faux pendant la courte pause qui suit un échec d'accept()."""
        if self._accept_resumes_at and time.monotonic() < self._accept_resumes_at:
            return False
        self._accept_resumes_at = 0.0
        return True

    def _accept_client(self) -> None:
        """
        Accepte une connexion. Au-delà de `max_clients`, ou si le descripteur
        échappe à select(), elle reçoit un `ERROR` et est refermée aussitôt.
        """
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
            return
        client_soc.setblocking(False)
        try:
            client_soc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # Déjà fermé par le client : la première lecture le verra.
        self._client_socs.append(client_soc)
        self._connections[client_soc] = _Connection("%s:%d" % tuple(address[:2]))
        logger.info("Connexion de %s", self._peer(client_soc))

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
            logger.info("Fin de la connexion de %s", self._peer(client_soc))
        self._logged_users.pop(client_soc, None)
        self._connections.pop(client_soc, None)
        self._unsent.discard(client_soc)
        self._partial.discard(client_soc)
        client_soc.close()

    def _peer(self, client_soc: socket.socket) -> str:
        """L'adresse du client, pour relier au journal les actions d'une connexion."""
        connection = self._connections.get(client_soc)
        return connection.address if connection is not None else "?"

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
        self._connections[client_soc].inbox += data
        self._process_frames(client_soc)

    # Le module glossocket ne sait lire qu'une trame entière d'un seul coup :
    # lui confier un socket dont la trame n'est pas complète bloquerait tous
    # les clients, et MSG_PEEK ne voit pas les trames plus grandes que le
    # tampon du noyau. Les octets sont donc accumulés par client et chaque
    # trame complète (longueur "!I" de 4 octets, puis le texte UTF-8 du
    # protocole) est découpée ici ; les réponses passent par send_msg.
    def _process_frames(self, client_soc: socket.socket) -> None:
        """Traite, dans l'ordre, chaque trame complète reçue du client."""
        connection = self._connections[client_soc]
        inbox = connection.inbox
        start = 0
        while connection.reading and len(inbox) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(inbox, start)
            if length > self._max_message:
                logger.warning("Trame de %d octets refusée : connexion de %s fermée.",
                               length, connection.address)
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
            # Une nouvelle trame commence : son échéance part de maintenant.
            connection.frame_started = time.monotonic()
            self._partial.add(client_soc)

    def _drop_stalled_frames(self) -> None:
        """Ferme les connexions dont une trame reste incomplète trop longtemps."""
        deadline = time.monotonic() - self._frame_timeout
        stalled = [client_soc for client_soc in self._partial
                   if self._connections[client_soc].frame_started <= deadline]
        for client_soc in stalled:
            logger.warning("Trame incomplète depuis %.0f s : connexion de %s fermée.",
                           self._frame_timeout, self._peer(client_soc))
            self._remove_client(client_soc)

    def _reply(self, client_soc: socket.socket, message: gloutils.GloMessage) -> None:
        """Met une réponse en file ; la boucle l'envoie sans jamais bloquer."""
        connection = self._connections[client_soc]
        glossocket.send_msg(connection.outbox, _encode(message))
        self._flush(client_soc)
        if len(connection.outbox.data) > _OUTPUT_HIGH_WATER:
            connection.held = True

    def _flush(self, client_soc: socket.socket) -> None:
        """Envoie ce que le socket accepte sans bloquer ; garde le reste."""
        connection = self._connections.get(client_soc)
        if connection is None:
            return
        outbox = connection.outbox.data
        try:
            sent = client_soc.send(outbox) if outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._remove_client(client_soc)
            return
        del outbox[:sent]
        if outbox:
            self._unsent.add(client_soc)
        else:
            self._unsent.discard(client_soc)

    def _resume_if_drained(self, client_soc: socket.socket) -> None:
        """Reprend les requêtes d'un client retenu qui a lu assez de réponses."""
        connection = self._connections.get(client_soc)
        if (connection is not None and connection.held
                and len(connection.outbox.data) <= _OUTPUT_HIGH_WATER):
            connection.held = False
            self._process_frames(client_soc)

    def _handle_frame(self, client_soc: socket.socket, frame: bytes) -> None:
        """
        Décode une requête et la confie à la méthode du gabarit que la table
        `_ROUTES` prévoit pour son en-tête, après les vérifications communes
        (en-tête connu, connexion, forme de la charge utile). Une requête
        malformée reçoit un `ERROR` ; aucune ne fait tomber le serveur.
        """
        try:
            message = json.loads(frame.decode("utf-8"))
        except (ValueError, RecursionError):
            self._reply(client_soc, _error(INVALID_REQUEST))
            return
        header = message.get("header") if isinstance(message, dict) else None
        route = _ROUTES.get(header) if type(header) is int else None
        if route is None:
            self._reply(client_soc, _error(INVALID_REQUEST))
            return
        if route.login_required and client_soc not in self._logged_users:
            self._reply(client_soc, _error(NOT_LOGGED_IN))
            return
        payload = message.get("payload")
        if route.payload is not None:
            payload = _conform(payload, route.payload)
            if payload is None:
                self._reply(client_soc, _error(INVALID_REQUEST))
                return
        refusal = route.check(self, client_soc, payload) if route.check else None
        if refusal is not None:
            self._reply(client_soc, refusal)
            return
        method = getattr(self, route.method)  # Lu à chaque requête : un correctif s'applique.
        arguments = route.arguments(client_soc, payload)
        pool = route.pool(self, client_soc, payload) if route.pool else None
        if pool is None:
            self._answer(client_soc, method, arguments)
        elif pool is _REPLAYED:
            self._answer_replayed(_Replay(client_soc, method, arguments, self._resumable.append))
        else:
            self._run_off_loop(client_soc, pool, method, arguments)

    def _answer(self, client_soc: socket.socket, method: typing.Callable,
                arguments: tuple) -> None:
        """
        Appelle la méthode du gabarit dans la boucle et envoie sa valeur de
        retour (rien si elle renvoie None). Une exception ne coûte qu'un
        `ERROR` à ce client, comme `handle_error` dans `socketserver`.
        """
        try:
            reply = method(*arguments)
        except Exception:
            reply = self._request_failed(method)
        if reply is not None and client_soc in self._connections:
            self._reply(client_soc, reply)

    def _answer_replayed(self, replay: "_Replay") -> None:
        """
        Comme `_answer`, pour une méthode qui se suspend sur son écriture
        durable (`_Replay`) : le client attend, occupé, et la boucle rejoue
        l'appel une fois l'écriture faite ; la réponse est la valeur de
        retour de ce dernier appel. Il va à son terme même si le client est
        parti : le courriel écrit doit être indexé.
        """
        connection = self._connections.get(replay.client_soc)
        self._replay = replay
        try:
            reply = replay.method(*replay.arguments)
        except _Suspended:
            if connection is not None:
                connection.busy = True
            return
        except Exception:
            reply = self._request_failed(replay.method)
        finally:
            self._replay = None
        if connection is None or replay.client_soc not in self._connections:
            return
        connection.busy = False
        if reply is not None:
            self._reply(replay.client_soc, reply)

    def _resume_replays(self) -> None:
        """Rejoue les appels dont l'écriture est faite, puis reprend leurs clients."""
        while self._resumable:
            replay = self._resumable.popleft()
            self._answer_replayed(replay)
            connection = self._connections.get(replay.client_soc)
            if connection is not None and connection.reading:
                self._process_frames(replay.client_soc)

    @staticmethod
    def _request_failed(method: typing.Callable) -> gloutils.GloMessage:
        logger.exception("Échec imprévu de %s", getattr(method, "__name__", method))
        return _error(INTERNAL_ERROR)

    # Vérifications propres à une requête, faites avant sa méthode du gabarit.

    def _check_sender(self, client_soc: socket.socket,
                      payload: gloutils.EmailContentPayload) -> typing.Optional[gloutils.GloMessage]:
        """L'expéditeur d'un envoi doit être l'adresse de l'utilisateur connecté."""
        own_address = f"{self._logged_users[client_soc]}@{gloutils.SERVER_DOMAIN}"
        if payload["sender"].lower() != own_address.lower():
            return _error(f"L'expéditeur doit être votre adresse, {own_address}.")
        return None

    # Où s'exécute une requête : None pour la boucle, sinon les fils qui la font.

    def _accounts_pool(self, _client_soc, _payload) -> concurrent.futures.Executor:
        """Création et connexion lisent ou écrivent le disque : hors de la boucle."""
        return self._pools["accounts"]

    def _mailbox_pool(self, client_soc: socket.socket,
                      _payload) -> typing.Optional[concurrent.futures.Executor]:
        """Hors de la boucle tant que l'index de la boîte n'est pas en mémoire."""
        return None if self._has_index(self._logged_users[client_soc]) else self._pools["load"]

    def _reading_pool(self, client_soc: socket.socket,
                      payload: gloutils.EmailChoicePayload
                      ) -> typing.Optional[concurrent.futures.Executor]:
        """Un petit courriel se relit dans la boucle, un gros (ou une boîte à charger) ailleurs."""
        username = self._logged_users[client_soc]
        if not self._has_index(username):
            return self._pools["load"]
        entry = self._mailbox(username).by_number(payload["choice"])
        return self._pools["load"] if entry and entry.size > _INLINE_READ_MAX else None

    def _sending_pool(self, _client_soc, payload: gloutils.EmailContentPayload):
        """
        Un envoi attend le relais SMTP (dans un fil) ou l'écriture durable.
        Vers un destinataire dont l'index est en mémoire, notre `_send_email`
        se rejoue dans la boucle (`_REPLAYED`) ; sinon l'index se charge
        d'abord, dans un fil, et une méthode remplacée s'exécute dans un fil.
        """
        destination = payload["destination"]
        if _is_valid_address(destination):
            if _is_external(destination):
                return self._pools["relay"]
            recipient = self._accounts.get(destination.rpartition("@")[0].lower())
            if recipient is not None and not self._has_index(recipient):
                return self._pools["load"]
        return _REPLAYED if self._is_replay_safe("_send_email") else self._pools["delivery"]

    def _is_replay_safe(self, name: str) -> bool:
        """
        Vrai si la méthode `name` est la nôtre, que l'on sait rejouer sans
        effet en double (`_Replay`) ; une méthode remplacée (par un correcteur,
        une sous-classe) s'exécute une seule fois, dans un fil.
        """
        return name not in vars(self) and getattr(type(self), name) is _REPLAY_SAFE[name]

    # ------------------------------------------------------------------
    # Hors de la boucle : une méthode du gabarit dans un fil, sa réponse
    # envoyée par la boucle quand elle est prête
    # ------------------------------------------------------------------

    def _run_off_loop(self, client_soc: socket.socket,
                      pool: concurrent.futures.Executor,
                      method: typing.Callable, arguments: tuple) -> None:
        """
        Confie l'appel de la méthode à `pool`. Le client est occupé jusqu'à
        la réponse : ses requêtes suivantes attendent, dans l'ordre, et les
        autres clients sont servis pendant ce temps.
        """
        self._connections[client_soc].busy = True
        future = pool.submit(method, *arguments)
        future.add_done_callback(functools.partial(self._work_finished, client_soc, method))

    def _work_finished(self, client_soc: socket.socket, method: typing.Callable,
                       future: concurrent.futures.Future) -> None:
        """Dans le fil qui a fini : remet le résultat à la boucle et la réveille."""
        self._finished.append((client_soc, method, future))
        self._wake_loop()

    def _wake_loop(self) -> None:
        """
        Réveille la boucle si elle dort dans select() : un seul octet en
        attente suffit, la boucle recueille tous les travaux finis à la fois.
        """
        if threading.get_ident() == self._loop_thread or self._wakeup_sent:
            return
        self._wakeup_sent = True
        try:
            self._wakeup_writer.send(b"\0")
        except OSError:
            pass  # Le tampon est plein (un réveil attend déjà) ou le serveur s'arrête.

    def _drain_wakeups(self) -> None:
        """
        Vide le socket de réveil ; les travaux finis sont dans la file. Le
        drapeau ne retombe qu'après : un fil qui le lève ensuite envoie un
        octet que le prochain select() verra.
        """
        try:
            while self._wakeup_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._wakeup_sent = False

    def _collect_finished(self) -> None:
        """
        Envoie la réponse de chaque travail fini à son client, s'il est encore
        là, puis reprend ses requêtes en attente. Un client parti pendant sa
        connexion n'y reste pas inscrit.
        """
        while self._finished:
            client_soc, method, future = self._finished.popleft()
            if future.cancelled():
                continue
            try:
                reply = future.result()
            except Exception:
                reply = self._request_failed(method)
            connection = self._connections.get(client_soc)
            if connection is None:
                self._logged_users.pop(client_soc, None)
                continue
            connection.busy = False
            if reply is not None:
                self._reply(client_soc, reply)
            if client_soc in self._connections and connection.reading:
                self._process_frames(client_soc)

    # ------------------------------------------------------------------
    # Stockage sur disque
    # ------------------------------------------------------------------

    def _prepare_storage(self) -> tuple[int, int]:
        """
        Crée les dossiers des données au besoin, les réserve à ce processus,
        solde les écritures interrompues et charge les comptes.
        """
        data_dir = gloutils.SERVER_DATA_DIR
        try:
            os.makedirs(self._lost_dir(), exist_ok=True)
            data_lock = _lock_data_folder(data_dir)
        except _DataFolderBusy:
            sys.exit(f"Le dossier {data_dir} est déjà utilisé par un autre serveur.")
        except OSError as ex:
            sys.exit(f"Impossible de préparer le dossier {data_dir} : {_disk_error(ex)}.")
        try:
            self._load_accounts()
            for folder in [self._lost_dir(), *map(self._user_dir, self._accounts.values())]:
                _recover_interrupted_writes(folder)
        except OSError as ex:
            _unlock_data_folder(data_lock)
            sys.exit(f"Impossible de lire le dossier {data_dir} : {_disk_error(ex)}.")
        return data_lock

    @staticmethod
    def _lost_dir() -> str:
        return os.path.join(gloutils.SERVER_DATA_DIR, gloutils.SERVER_LOST_DIR)

    @staticmethod
    def _user_dir(username: str) -> str:
        return os.path.join(gloutils.SERVER_DATA_DIR, username)

    def _load_accounts(self) -> None:
        """Retrouve les comptes : chaque dossier valide portant un fichier `pass`."""
        for entry in sorted(os.scandir(gloutils.SERVER_DATA_DIR), key=lambda e: e.name):
            if not (entry.is_dir() and _is_valid_username(entry.name)):
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
            pass  # Reste d'une création interrompue : le dossier n'a pas de `pass`.
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

    def _stored_digest(self, username: str) -> typing.Optional[str]:
        """Empreinte enregistrée du mot de passe, ou None si illisible."""
        path = os.path.join(self._user_dir(username), gloutils.PASSWORD_FILENAME)
        try:
            with open(path, encoding="ascii") as password_file:
                return password_file.read().strip()
        except (OSError, ValueError) as ex:
            logger.error("Empreinte de %s illisible : %s", username, ex)
            return None

    def _mailbox(self, username: str) -> _Mailbox:
        """
        Index de la boîte de l'utilisateur, chargé du disque au premier usage.
        Un seul chargement par boîte : une livraison qui arrive pendant qu'il
        se fait attend son index, sans quoi elle pourrait y manquer.
        """
        key = username.lower()
        mailbox = self._mailboxes.get(key)
        if mailbox is None:
            with self._mailbox_locks[key]:
                mailbox = self._mailboxes.get(key)
                if mailbox is None:
                    mailbox = self._load_mailbox(username)
                    self._mailboxes[key] = mailbox
        return mailbox

    def _has_index(self, username: str) -> bool:
        """Vrai si l'index de la boîte est en mémoire : la lire ne touche pas le disque."""
        return username.lower() in self._mailboxes

    def _load_mailbox(self, username: str) -> _Mailbox:
        """Reconstruit l'index d'un dossier ; un fichier illisible est ignoré."""
        emails = []
        other_size = 0
        for entry in os.scandir(self._user_dir(username)):
            if entry.name.startswith(_TEMP_PREFIX):
                continue
            indexed = None
            if entry.name.endswith(_EMAIL_SUFFIX):
                indexed = self._index_file(entry.path, entry.name)
            if indexed is None:
                other_size += entry.stat().st_size
            else:
                emails.append(indexed)
        mailbox = _Mailbox(emails, other_size)
        logger.info("Boîte de %s chargée : %d courriel(s).", username, len(emails))
        return mailbox

    @staticmethod
    def _index_file(path: str, filename: str) -> typing.Optional[_Email]:
        """Entrée d'index d'un fichier de courriel, ou None s'il est illisible."""
        try:
            size = os.stat(path).st_size
        except OSError:
            return None
        content = _read_email_file(path)
        if content is None:
            logger.warning("Courriel illisible ignoré : %s", path)
            return None
        return _index_entry(filename, size, content)

    def _store_email(self, folder: str, data: bytes) -> str:
        """
        Publie un nouveau courriel dans `folder` et renvoie son nom, une fois
        durable. La boucle en marche, l'écriture est confiée au processus
        d'écriture (section « Vitesse ») : le fil qui appelle l'attend, et
        un appel rejoué dans la boucle (`_Replay`) se suspend jusqu'à elle.
        Un appel direct de `_send_email` écrit ici.
        """
        on_loop = threading.get_ident() == self._loop_thread
        if on_loop and self._replay is not None:
            return self._replay.store(self._disk_writer, folder, data)
        if self._serving and not on_loop:
            return self._disk_writer.store(folder, data)
        return _publish_new_email(folder, data)


class _Suspended(BaseException):
    """
    Levée par `_store_email` dans un appel rejoué dont l'écriture n'est pas
    faite : elle remonte à `_answer_replayed`. Une `BaseException`, pour
    qu'aucun `except Exception` (ou `except OSError`) ne l'arrête en chemin.
    """


class _Replay:
    """
    Un appel de méthode du gabarit exécuté dans la boucle et suspendu sur son
    écriture durable. Au premier passage, `store` confie l'écriture au
    processus d'écriture et suspend l'appel ; une fois l'écriture faite, la
    boucle rejoue l'appel depuis le début, et `store` rend cette fois le nom
    du courriel publié. Ce qui précède l'écriture dans `_send_email` (vérifier,
    encoder) se refait sans effet ; ce qui la suit ne se fait qu'une fois.

    Pourquoi : la réponse doit être la valeur de retour de la méthode, et la
    méthode attend un fsync. L'attendre dans un fil coûtait, par envoi,
    plusieurs réveils de fils et autant de disputes du verrou global avec la
    boucle ; rejouer l'appel n'en coûte aucun (mesuré en alternance : le
    mélange `mixed` du banc d'essai passe d'environ 5 500 à 7 500 requêtes/s).
    """

    __slots__ = ("client_soc", "method", "arguments", "_resume", "_request",
                 "_filename", "_error")

    def __init__(self, client_soc: socket.socket, method: typing.Callable,
                 arguments: tuple, resume: typing.Callable[["_Replay"], None]) -> None:
        self.client_soc = client_soc
        self.method = method
        self.arguments = arguments
        self._resume = resume
        self._request: typing.Optional[tuple] = None
        self._filename: typing.Optional[str] = None
        self._error: typing.Optional[OSError] = None

    def store(self, writer: "_DiskWriter", folder: str, data: bytes) -> str:
        """Le nom du courriel publié ; la première fois, confie l'écriture et suspend."""
        if self._request == (folder, data):
            if self._error is not None:
                raise self._error
            if self._filename is not None:
                return self._filename
        else:
            # Première demande, ou une autre que la première (un compte créé
            # entre-temps change le dossier) : elle est faite à son tour.
            self._request, self._filename, self._error = (folder, data), None, None
            writer.submit(folder, data, self._written)
        raise _Suspended

    def _written(self, filename: typing.Optional[str], error: typing.Optional[OSError]) -> None:
        """Dans la boucle : l'issue de l'écriture ; l'appel peut être rejoué."""
        self._filename, self._error = filename, error
        self._resume(self)


# Ce que renvoie le choix des fils d'une requête pour dire « dans la boucle,
# en `_Replay` ».
_REPLAYED = object()


class _Outbox:
    """
    Tampon des réponses d'un client, que `glossocket.send_msg` remplit comme
    un socket. Le découpage reste ainsi celui du module du cours, tandis que
    la boucle vide le tampon à son rythme sans jamais bloquer.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        """Ajoute une trame complète au tampon (appelé par `send_msg`)."""
        self.data += data


class _Connection:
    """Tout ce que la boucle sait d'une connexion de client."""

    __slots__ = ("address", "inbox", "outbox", "frame_started", "busy", "held")

    def __init__(self, address: str) -> None:
        self.address = address
        self.inbox = bytearray()
        self.outbox = _Outbox()
        # Début de la trame incomplète en tête de `inbox`, ou None.
        self.frame_started: typing.Optional[float] = None
        # Une requête s'exécute hors de la boucle : les suivantes attendent.
        self.busy = False
        # Trop de réponses non lues : on cesse de lire ses requêtes.
        self.held = False

    @property
    def reading(self) -> bool:
        """Vrai si la boucle lit et traite les requêtes de ce client."""
        return not (self.busy or self.held)


# La réponse à une liste est la seule dont la taille croît avec la boîte, et
# on liste bien plus souvent qu'on ne reçoit : `_Listing` garde son encodage,
# et la réponse s'assemble de ces morceaux sans repasser par `json.dumps`.
_LIST_REPLY_HEAD, _LIST_REPLY_TAIL = json.dumps(
    _ok(gloutils.EmailListPayload(email_list=[]))).split("[]")


def _encode(message: gloutils.GloMessage) -> str:
    """Le texte JSON d'une réponse ; exactement `json.dumps(message)`."""
    payload = message.get("payload")
    if type(payload) is dict and len(payload) == 1 and len(message) == 2:
        listing = payload.get("email_list")
        if (type(listing) is _Listing and next(iter(message)) == "header"
                and message["header"] == gloutils.Headers.OK):
            return _LIST_REPLY_HEAD + listing.encoded + _LIST_REPLY_TAIL
    return json.dumps(message)


class _Route(typing.NamedTuple):
    """Ce que la boucle fait d'un en-tête de requête."""

    # Nom de la méthode du gabarit, cherchée sur le serveur à chaque requête.
    method: str
    # Paires (clé, type) exigées de la charge utile, ou None.
    payload: typing.Optional[tuple]
    login_required: bool
    # Arguments de la méthode, tirés de (socket, charge utile).
    arguments: typing.Callable[[socket.socket, typing.Any], tuple]
    # Vérification propre à la requête : un `ERROR`, ou None pour continuer.
    check: typing.Optional[typing.Callable] = None
    # Fils où l'exécuter (None : dans la boucle), choisis selon la requête.
    pool: typing.Optional[typing.Callable] = None


def _socket_only(client_soc, _payload) -> tuple:
    return (client_soc,)


def _socket_and_payload(client_soc, payload) -> tuple:
    return (client_soc, payload)


def _payload_only(_client_soc, payload) -> tuple:
    return (payload,)


# Les méthodes que l'on sait rejouer (`_Replay`), telles qu'écrites ici.
_REPLAY_SAFE = {"_send_email": Server._send_email}

_AUTH = _fields(gloutils.AuthPayload)

_ROUTES = {
    gloutils.Headers.AUTH_REGISTER: _Route(
        "_create_account", _AUTH, False, _socket_and_payload, pool=Server._accounts_pool),
    gloutils.Headers.AUTH_LOGIN: _Route(
        "_login", _AUTH, False, _socket_and_payload, pool=Server._accounts_pool),
    gloutils.Headers.AUTH_LOGOUT: _Route("_logout", None, False, _socket_only),
    gloutils.Headers.BYE: _Route("_remove_client", None, False, _socket_only),
    gloutils.Headers.INBOX_READING_REQUEST: _Route(
        "_get_email_list", None, True, _socket_only, pool=Server._mailbox_pool),
    gloutils.Headers.INBOX_READING_CHOICE: _Route(
        "_get_email", _fields(gloutils.EmailChoicePayload), True, _socket_and_payload,
        pool=Server._reading_pool),
    gloutils.Headers.EMAIL_SENDING: _Route(
        "_send_email", _EMAIL_FIELDS, True, _payload_only,
        check=Server._check_sender, pool=Server._sending_pool),
    gloutils.Headers.STATS_REQUEST: _Route(
        "_get_stats", None, True, _socket_only, pool=Server._mailbox_pool),
}


_STANDARD_SMTP = smtplib.SMTP


class _TrackedSMTP(smtplib.SMTP):
    """
    Connexion SMTP inscrite dans `relays` de son ouverture à sa fermeture ;
    ouverte alors que le serveur s'arrête déjà (`stopping()`), elle est
    coupée aussitôt : l'arrêt ne l'a peut-être pas vue passer.
    """

    def __init__(self, relays: set, stopping: typing.Callable[[], bool],
                 *args, **kwargs) -> None:
        self._relays = relays
        self._stopping = stopping
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        relay_socket = super()._get_socket(host, port, timeout)
        self._relays.add(relay_socket)
        if self._stopping():
            relay_socket.shutdown(socket.SHUT_RDWR)
        return relay_socket

    def close(self) -> None:
        self._relays.discard(self.sock)
        super().close()


# ----------------------------------------------------------------------
# Vitesse : le processus d'écriture (section que l'on peut sauter)
#
# Un fsync bloque de 0,1 à 1 ms. Fait par les fils du serveur, chaque retour
# d'appel système dispute à la boucle le verrou global de Python : mesuré,
# le mélange `mixed` du banc d'essai plafonnait vers 9 % du plafond. Les
# écritures se font donc dans un second processus Python, qui a son propre
# verrou ; `Server._store_email` est la seule porte d'entrée. Ce processus
# publie par lots, un seul fil et une seule synchronisation par lot : avec
# 16 fils et un fsync chacun, il prenait autant de temps de processeur que
# la boucle (mesuré : 63 % d'un cœur chacun, `mixed` à 100 clients), et le
# mélange donnait de 7 300 à 8 400 req/s ; par lots, 31 % et de 10 000 à
# 10 900 req/s (mesuré en alternance).
# ----------------------------------------------------------------------

# La boucle envoie au processus des trames (longueur "!I", puis le corps) :
# un en-tête JSON {"id", "folder", "filename"}, un saut de ligne, puis le
# contenu du fichier ; une trame vide demande l'arrêt. Chaque réponse tient
# sur une ligne : {"id"} si le courriel est publié, ou {"id", "errno",
# "strerror"}. Seule la boucle touche au canal, qu'elle lit et écrit par
# lots, une fois par tour : un envoi rejoué (`_Replay`) y dépose sa demande
# sans fil, et un fil qui livre (méthode remplacée) dépose la sienne puis
# attend que la boucle lui rende l'issue.
_STOP_FRAME = _LENGTH.pack(0)


class _WriterLost(OSError):
    """Le processus d'écriture est mort, ou a répondu de travers, ou trop tard."""


def _serve_disk_writer(descriptor: int) -> None:
    """
    Programme du processus d'écriture. Il lit d'un coup toutes les demandes
    arrivées sur le canal `descriptor` et les publie en un lot
    (`_publish_batch`) ; pendant ce temps, les suivantes s'accumulent et
    forment le lot suivant. Une fin de canal sans trame d'arrêt veut dire
    que le serveur est mort : le processus s'arrête après son lot en cours
    (il garde le verrou du dossier jusque-là : aucun serveur ne lit le
    dossier avant). Ce qui n'est pas confirmé est soldé par le serveur ou
    au démarrage suivant ; de même si un défaut imprévu fait mourir le
    processus en plein lot.
    """
    # Ctrl-C au terminal vise tout le groupe : c'est au serveur de nous arrêter.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=descriptor)
    make_durable = _durability_method()
    received = bytearray()
    while True:
        try:
            data = channel.recv(_RECV_SIZE)
        except OSError:  # ECONNRESET : le serveur est mort sans lire nos réponses.
            data = b""
        if not data:
            os._exit(1)
        received += data
        requests, stopping = _take_requests(received)
        if requests:
            replies = _publish_batch(requests, make_durable)
            try:
                channel.sendall(replies)
            except OSError:
                os._exit(1)
        if stopping:
            break
    channel.close()


def _take_requests(received: bytearray) -> tuple[list, bool]:
    """
    Retire de `received` les demandes complètes, (en-tête, contenu) chacune,
    et dit si la trame d'arrêt a suivi. Une trame incomplète y reste.
    """
    requests, offset = [], 0
    while len(received) - offset >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(received, offset)
        if not length:
            return requests, True
        end = offset + _LENGTH.size + length
        if end > len(received):
            break
        header, _, data = bytes(received[offset + _LENGTH.size:end]).partition(b"\n")
        requests.append((json.loads(header), data))
        offset = end
    del received[:offset]
    return requests, False


def _publish_batch(requests: list, make_durable) -> bytes:
    """
    Publie un lot de demandes d'un coup (`_publish_all`) et renvoie les
    lignes de réponse, une par demande, dans leur ordre.
    """
    publications = [_Publication(request["folder"], request["filename"])
                    for request, _ in requests]
    _publish_all(publications, [data for _, data in requests], make_durable)
    return b"".join(_write_reply(request["id"], publication.error)
                    for (request, _), publication in zip(requests, publications))


def _write_reply(request_id: int, error: typing.Optional[OSError]) -> bytes:
    """La ligne de réponse d'une demande : publiée, ou son erreur."""
    reply: dict = {"id": request_id}
    if error is not None:
        reply.update(errno=error.errno or errno.EIO, strerror=error.strerror or str(error))
    return json.dumps(reply).encode("utf-8") + b"\n"


def _durability_method():
    """
    Comment rendre un lot durable : un seul syncfs(2) par système de
    fichiers si le noyau en rapporte les erreurs d'écriture (Linux 5.8 et
    suivants), sinon (ou s'il est refusé) un fsync par fichier. Le système
    de fichiers écrit le lot en une fois : mesuré ici, 16 courriels prennent
    1,3 ms par syncfs contre 0,3 ms chacun par fsync.
    """
    syncfs = _load_syncfs()
    if syncfs is None:
        return _fsync_each

    def sync_each_filesystem(publications: list) -> None:
        by_device = collections.defaultdict(list)
        for publication in publications:
            by_device[os.fstat(publication.descriptor).st_dev].append(publication)
        for group in by_device.values():
            # Le descripteur ouvert avant toutes les écritures du groupe :
            # syncfs rapporte toute erreur survenue depuis son ouverture.
            try:
                syncfs(group[0].descriptor)
            except OSError as ex:
                if ex.errno in (errno.ENOSYS, errno.EPERM):
                    _fsync_each(group)  # Appel refusé (filtre seccomp...) : un fsync chacun.
                    continue
                for publication in group:
                    publication.error = ex

    return sync_each_filesystem


def _load_syncfs():
    """
    syncfs(2) de la libc, qui lève OSError, si le noyau en rapporte les
    erreurs ; sinon None.
    """
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if not sys.platform.startswith("linux") or release is None:
        return None
    if tuple(map(int, release.groups())) < (5, 8):
        return None
    try:
        import ctypes  # Seul le processus d'écriture s'en sert.
        libc_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ImportError, OSError, AttributeError):
        return None
    libc_syncfs.argtypes = [ctypes.c_int]
    libc_syncfs.restype = ctypes.c_int

    def syncfs(descriptor: int) -> None:
        if libc_syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return syncfs


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


class _PendingWrite:
    """Un courriel à publier par le processus d'écriture, et qui prévenir."""

    __slots__ = ("folder", "data", "on_done", "filename", "attempts", "deadline")

    def __init__(self, folder: str, data: bytes,
                 on_done: typing.Callable[[typing.Optional[str],
                                           typing.Optional[OSError]], None]) -> None:
        self.folder = os.path.abspath(folder)
        self.data = data
        self.on_done = on_done
        self.filename = ""
        self.attempts = 0
        self.deadline = 0.0

    def frame(self, request_id: int) -> bytes:
        header = json.dumps({"id": request_id, "folder": self.folder,
                             "filename": self.filename}).encode("utf-8")
        body = header + b"\n" + self.data
        return _LENGTH.pack(len(body)) + body


class _DiskWriter:
    """
    Le processus d'écriture, vu du serveur. On lui confie un courriel par
    `submit` (de n'importe quel fil) ou par `store` (un fil qui attend) ; la
    boucle, seule à toucher au processus et à son canal, le démarre au
    besoin, envoie les demandes, lit les réponses et prévient chacun, dans
    la boucle, du nom du courriel publié ou de l'erreur.

    Le processus hérite du verrou du dossier des données : tant qu'il vit,
    aucun autre serveur ne s'en empare. Rien de ce qu'il fait ne laisse une
    écriture en suspens : une réponse invalide, sa mort ou une écriture plus
    lente que `_WRITE_TIMEOUT` le font tuer, puis chaque écriture en cours se
    solde d'après le disque (publiée : réussie ; sinon rien n'en reste, et
    elle est refaite une fois par le processus suivant).
    """

    def __init__(self, lock_descriptor: int, wake_loop: typing.Callable[[], None]) -> None:
        self._lock_descriptor = lock_descriptor
        self._wake_loop = wake_loop
        self._submitted: collections.deque = collections.deque()  # De n'importe quel fil.
        self._closed = False
        # Le reste n'est touché que par la boucle (et par `close`, après elle).
        self._process: typing.Optional[subprocess.Popen] = None
        self._channel: typing.Optional[socket.socket] = None
        self._in_flight: dict[int, _PendingWrite] = {}  # Confiées au canal, dans l'ordre.
        self._request_ids = itertools.count(1)
        self._outgoing = bytearray()
        self._incoming = bytearray()

    def submit(self, folder: str, data: bytes, on_done) -> None:
        """Confie un courriel ; `on_done(nom, erreur)` sera appelé dans la boucle."""
        if self._closed:
            on_done(None, OSError(errno.ESHUTDOWN, "le serveur s'arrête"))
            return
        self._submitted.append(_PendingWrite(folder, data, on_done))
        self._wake_loop()

    def store(self, folder: str, data: bytes) -> str:
        """
        Dans un fil : publie un courriel et attend, puis renvoie son nom ou
        lève l'OSError de l'écriture. L'attente est bornée même si la boucle
        s'est arrêtée entre-temps.
        """
        done = threading.Lock()
        done.acquire()
        outcome = {}

        def written(filename, error) -> None:
            outcome.update(filename=filename, error=error)
            done.release()

        self.submit(folder, data, written)
        if not done.acquire(timeout=3 * _WRITE_TIMEOUT):
            raise OSError(errno.ETIMEDOUT, "processus d'écriture injoignable")
        if outcome["error"] is not None:
            raise outcome["error"]
        return outcome["filename"]

    # Côté boucle.

    def fileno(self) -> int:
        """Le canal vers le processus, pour select()."""
        return self._channel.fileno()

    @property
    def running(self) -> bool:
        return self._channel is not None

    def has_output(self) -> bool:
        return bool(self._outgoing or self._submitted)

    def next_deadline(self) -> typing.Optional[float]:
        """L'échéance de la plus ancienne écriture en cours, ou None."""
        for write in self._in_flight.values():
            return write.deadline
        return None

    def expire(self) -> None:
        """Tue le processus si une écriture tarde au-delà de `_WRITE_TIMEOUT`."""
        deadline = self.next_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            self._lose("écriture trop lente")

    def send(self) -> None:
        """Envoie les demandes confiées, autant que le canal en accepte sans bloquer."""
        while self._submitted:
            write = self._submitted.popleft()
            if self._process is None:
                try:
                    self._start()
                except OSError as ex:
                    logger.error("Processus d'écriture impossible à lancer : %s", ex)
                    write.on_done(None, ex)
                    continue
            self._dispatch(write)
        if not self._outgoing:
            return
        try:
            sent = self._channel.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lose("canal du processus d'écriture rompu")
            return
        del self._outgoing[:sent]

    def _dispatch(self, write: _PendingWrite) -> None:
        """Nomme le courriel et met sa demande sur le canal."""
        request_id = next(self._request_ids)
        write.filename = _new_email_name()
        write.attempts += 1
        write.deadline = time.monotonic() + _WRITE_TIMEOUT
        self._in_flight[request_id] = write
        self._outgoing += write.frame(request_id)

    def _start(self) -> None:
        """
        Lance un Python neuf qui exécute `_WRITER_PROGRAM` sur l'autre bout
        d'une paire de sockets, avec le verrou du dossier des données.
        """
        parent_end, child_end = socket.socketpair()
        try:
            with child_end:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", _WRITER_PROGRAM, os.path.abspath(__file__),
                     str(child_end.fileno()), *sys.path],
                    pass_fds=(child_end.fileno(), self._lock_descriptor),
                    stdin=subprocess.DEVNULL)
        except OSError:
            parent_end.close()
            raise
        parent_end.setblocking(False)
        self._channel = parent_end
        logger.info("Processus d'écriture lancé (pid %d).", self._process.pid)

    def receive(self) -> None:
        """Lit les réponses arrivées et prévient chacun de l'issue de son écriture."""
        try:
            data = self._channel.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lose("fin du canal")
            return
        self._incoming += data
        *lines, rest = self._incoming.split(b"\n")
        self._incoming[:] = rest
        for line in lines:
            if not self._settle(line):
                self._lose(f"réponse invalide du processus d'écriture : {line[:80]!r}")
                return

    def _settle(self, line: bytes) -> bool:
        """Termine l'écriture dont `line` est la réponse ; faux si elle est invalide."""
        try:
            reply = json.loads(line)
            write = self._in_flight.pop(reply["id"])
            error = (OSError(reply["errno"], reply["strerror"])
                     if "errno" in reply else None)
        except (ValueError, TypeError, KeyError):
            return False
        if isinstance(error, FileExistsError) and not self._closed:
            self._submitted.appendleft(write)  # Nom déjà pris (horloge reculée) : un autre.
        elif error is not None:
            write.on_done(None, error)
        else:
            write.on_done(write.filename, None)
        return True

    def _lose(self, reason: str) -> None:
        """
        Tue le processus et attend sa fin : plus rien ne peut s'écrire. Puis
        solde chaque écriture en cours d'après le disque ; le processus
        suivant démarrera à la prochaine demande.
        """
        process, channel = self._process, self._channel
        self._process, self._channel = None, None
        process.kill()
        code = process.wait()
        channel.close()
        self._outgoing.clear()
        self._incoming.clear()
        in_flight, self._in_flight = list(self._in_flight.values()), {}
        logger.error("Processus d'écriture arrêté (code %s, %s) avec %d écriture(s) "
                     "en cours.", code, reason, len(in_flight))
        for write in in_flight:
            self._after_loss(write, reason)

    def _after_loss(self, write: _PendingWrite, reason: str) -> None:
        """Publiée, l'écriture a réussi ; sinon rien n'en reste, et elle est refaite une fois."""
        _discard_quietly(os.path.join(write.folder, _TEMP_PREFIX + write.filename))
        if os.path.exists(os.path.join(write.folder, write.filename)):
            write.on_done(write.filename, None)
        elif write.attempts < 2 and not self._closed:
            self._submitted.appendleft(write)
        else:
            write.on_done(None, _WriterLost(errno.EIO, reason))

    def close(self) -> None:
        """
        Arrêt propre, la boucle arrêtée : envoie les demandes restantes et la
        trame d'arrêt, lit les dernières réponses, puis attend la fin du
        processus (tué après `_WRITER_STOP_TIMEOUT`). Toute demande confiée
        est soldée ; les suivantes sont refusées.
        """
        self._closed = True
        if self._process is None and self._submitted:
            try:
                self._start()
            except OSError as ex:
                logger.error("Processus d'écriture impossible à lancer : %s", ex)
        if self._process is None:
            for write in self._submitted:
                write.on_done(None, OSError(errno.ESHUTDOWN, "le serveur s'arrête"))
            self._submitted.clear()
            return
        while self._submitted:
            self._dispatch(self._submitted.popleft())
        try:
            self._channel.settimeout(_WRITER_STOP_TIMEOUT)
            self._channel.sendall(bytes(self._outgoing) + _STOP_FRAME)
            self._outgoing.clear()
            while data := self._channel.recv(_RECV_SIZE):
                self._incoming += data
                *lines, rest = self._incoming.split(b"\n")
                self._incoming[:] = rest
                for line in lines:
                    self._settle(line)
            self._process.wait(timeout=_WRITER_STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as ex:
            logger.error("Processus d'écriture tué à l'arrêt : %s", ex)
        if self._in_flight:
            self._lose("arrêt du serveur")
        else:
            self._process.wait()
            self._channel.close()
            self._process, self._channel = None, None


# ----------------------------------------------------------------------
# Ligne de commande
# ----------------------------------------------------------------------

# Messages d'erreur d'argparse, produits en anglais, et leur traduction. Les
# plus précis d'abord : le dernier reprend tout message propre à un argument.
_ARGPARSE_ERRORS = (
    (r"unrecognized arguments: (.*)", "arguments non reconnus : {0}."),
    (r"argument (\S+): expected one argument", "l'argument {0} attend une valeur."),
    (r"argument (\S+): ignored explicit argument (.*)",
     "l'argument {0} ne prend pas de valeur (reçu : {1})."),
    (r"argument (\S+): (.*)", "argument {0} : {1}"),
)


class _FrenchHelpFormatter(argparse.HelpFormatter):
    """Mise en forme de l'aide avec les titres à la française."""

    def add_usage(self, usage, actions, groups, prefix=None) -> None:
        """Annonce la ligne d'utilisation en français."""
        super().add_usage(usage, actions, groups, prefix or "utilisation : ")

    def start_section(self, heading) -> None:
        """Ajoute l'espace qui précède le deux-points en français."""
        super().start_section(f"{heading} " if heading else heading)


class _FrenchArgumentParser(argparse.ArgumentParser):
    """Analyseur d'arguments qui signale les erreurs en français, en une ligne."""

    def __init__(self, **kwargs) -> None:
        super().__init__(add_help=False, formatter_class=_FrenchHelpFormatter, **kwargs)
        self._optionals.title = "options"
        self.add_argument("-h", "--help", action="help",
                          help="afficher ce message d'aide et quitter")

    def error(self, message: str) -> typing.NoReturn:
        """Affiche l'erreur traduite et quitte avec le code 2, comme argparse."""
        for pattern, french in _ARGPARSE_ERRORS:
            match = re.fullmatch(pattern, message, re.DOTALL)
            if match:
                message = french.format(*match.groups())
                break
        self.exit(2, f"{self.prog} : erreur : {message}\n")


def _port(text: str) -> int:
    """Un numéro de port de 0 à 65535 (0 : le système en choisit un)."""
    if not _DIGITS.fullmatch(text) or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"le port doit être un entier de 0 à 65535 (reçu : « {text} »).")
    return int(text)


def _seconds(text: str) -> float:
    """Un délai en secondes, strictement positif."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"le délai doit être un nombre de secondes supérieur à 0 (reçu : « {text} »).")
    return value


def _at_least(minimum: int) -> typing.Callable[[str], int]:
    """Un entier au moins égal à `minimum`."""
    def convert(text: str) -> int:
        if not _DIGITS.fullmatch(text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(
                f"la valeur doit être un entier d'au moins {minimum} (reçu : « {text} »).")
        return int(text)
    return convert


def _parse_args() -> argparse.Namespace:
    parser = _FrenchArgumentParser(description="Serveur de courriels @glo2000.ca.")
    parser.add_argument("--host", default="",
                        help="Adresse IPv4 d'écoute (défaut : toutes les interfaces).")
    parser.add_argument("--port", type=_port, default=gloutils.APP_PORT,
                        help="Port d'écoute (défaut : %(default)s).")
    parser.add_argument("--smtp-host", default=gloutils.SMTP_SERVER,
                        help="Relais SMTP du courriel externe (défaut : %(default)s).")
    parser.add_argument("--smtp-port", type=_port, default=SMTP_PORT,
                        help="Port du relais SMTP (défaut : %(default)s).")
    parser.add_argument("--smtp-timeout", type=_seconds, default=DEFAULT_SMTP_TIMEOUT,
                        help="Délai du relais SMTP, en secondes (défaut : %(default)s).")
    parser.add_argument("--frame-timeout", type=_seconds, default=DEFAULT_FRAME_TIMEOUT,
                        help="Délai accordé à une trame incomplète, en secondes "
                             "(défaut : %(default)s).")
    parser.add_argument("--max-message", type=_at_least(MIN_MAX_MESSAGE),
                        default=DEFAULT_MAX_MESSAGE,
                        help="Taille maximale d'un message, en octets, au moins "
                             f"{MIN_MAX_MESSAGE} (défaut : %(default)s).")
    parser.add_argument("--max-clients", type=_at_least(1), default=DEFAULT_MAX_CLIENTS,
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
    # Le format n'en montre rien : chaque ligne du journal s'épargne ces
    # appels, dont la remontée de la pile qui cherche la ligne appelante.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
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
