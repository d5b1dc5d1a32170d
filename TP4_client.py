"""\
GLO-2000 Travail pratique 4 - Client
Client en ligne de commande du service de courriels @glo2000.ca : création de
compte, connexion, lecture et envoi de courriels, statistiques.
"""

# Les annotations ne sont pas évaluées à l'importation : rien de gloutils
# n'est lu avant que le code ne s'exécute.
from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import io
import json
import math
import re
import select
import socket
import sys
import time
import typing
from typing import NoReturn, Optional

# Le module de l'énoncé s'appelle glossocket ; celui distribué par le cours
# en 2022 s'appelle glosocket : le client fonctionne avec l'un ou l'autre.
try:
    import glossocket
except ImportError:
    import glosocket as glossocket
import gloutils

DEFAULT_TIMEOUT = 10.0
# Au-delà d'un jour, un délai n'a plus de sens pour un humain au clavier, et
# le système refuse les valeurs démesurées.
MAX_TIMEOUT = 86_400.0
# Plus longue attente d'un seul appel à select : sous Windows, un Ctrl-C
# n'interrompt pas un appel bloquant du socket et n'est vu qu'à son retour.
WAIT_SLICE = 0.5

INVALID_REPLY = "La réponse du serveur est invalide."
CONNECTION_LOST = "La connexion avec le serveur a été perdue."
# Pourquoi la connexion a échoué, en français : le texte du système est en
# anglais sous Linux et macOS. Les autres causes gardent ce texte.
CONNECT_FAILURES = (
    (ConnectionRefusedError, "connexion refusée : aucun serveur n'écoute sur ce port."),
    (socket.gaierror, "adresse introuvable."),
    (OverflowError, "le port doit être de 1 à 65535."),
)
CONNECT_ERRNOS = {
    errno.EHOSTUNREACH: "machine injoignable.",
    errno.ENETUNREACH: "réseau injoignable.",
    errno.EADDRNOTAVAIL: "adresse non disponible.",
}

# Noms des fonctions d'envoi et de réception selon l'édition du module du
# cours : 2022, puis 2023 et 2025, puis 2024. Notre glossocket les a tous ;
# le nom de 2022 passe en premier, car c'est lui qu'un correcteur y remplace.
SEND_NAMES = ("send_msg", "send_mesg", "snd_mesg")
RECV_NAMES = ("recv_msg", "recv_mesg")
# Nom du menu principal jusqu'en 2024, puis en 2025 (même texte).
MAIN_MENU_NAMES = ("CLIENT_USE_CHOICE", "CLIENT_USE_CHOICES")
# Texte du menu principal de 2022, pour un gloutils qui n'aurait ni l'un ni
# l'autre de ces noms.
MAIN_MENU_2022 = """Menu principal
1. Consultation de courriels
2. Envoi de courriels
3. Statistiques
4. Se déconnecter"""


def _course_name(module: object, names: tuple, default: object = None) -> object:
    """
    Renvoie l'attribut de `module` nommé par le premier des `names` qu'il
    possède, ou `default` s'il n'en a aucun.

    Cherché à chaque appel, jamais retenu à l'importation : une fonction ou
    une constante qu'un correcteur remplace après coup est celle qui sert.
    """
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    return default


def _seconds(timeout: float) -> str:
    """Écrit un délai en secondes à la française : 10, 0,5."""
    return f"{timeout:g}".replace(".", ",")


def _caused_by(error: BaseException, kind: type) -> bool:
    """
    Indique si `error`, ou une exception qui l'a provoquée, est de type
    `kind` : le module de communication enveloppe l'erreur d'origine dans
    une `GLOSocketError`, et c'est elle qui dit ce qui s'est passé.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _as_int(value: object) -> Optional[int]:
    """
    Renvoie `value` comme entier, ou `None` si ce n'en est pas un.

    Un entier écrit en chiffres décimaux ASCII est accepté : un serveur de
    2022 envoie par exemple `"size": "318"`. Un booléen JSON n'est pas un
    nombre, même si Python le traite comme tel.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        # int() refuse les chaînes de plusieurs milliers de chiffres.
        with contextlib.suppress(ValueError):
            return int(value)
    return None


def _conform_value(value: object, hint: object) -> object:
    """
    Renvoie `value` ramenée au type `hint` (entier, liste typée ou autre
    classe), ou `None` si elle n'y correspond pas. Aucun champ du protocole
    n'admet `null`, donc `None` ne peut pas être une valeur valide.
    """
    if hint is int:
        return _as_int(value)
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            return None
        (item_hint,) = typing.get_args(hint)
        items = [_conform_value(item, item_hint) for item in value]
        return None if None in items else items
    return value if isinstance(value, hint) else None


def _conform(payload: object, payload_type: type) -> Optional[dict]:
    """
    Renvoie une copie de `payload` dont chaque clé du `TypedDict`
    `payload_type` a une valeur du bon type, ou `None` si une clé manque ou
    ne peut pas être ramenée à son type.

    Sert à rejeter une réponse du serveur mal formée avant de s'en servir.
    """
    if not isinstance(payload, dict):
        return None
    conformed = {
        key: _conform_value(payload.get(key), hint)
        for key, hint in typing.get_type_hints(payload_type).items()
    }
    return None if None in conformed.values() else conformed


def _ask_password(prompt: str) -> str:
    """
    Demande un mot de passe sans l'afficher, avec `getpass`.

    Sous Windows, `getpass` lit la console elle-même et non l'entrée
    standard : redirigée (tube, console d'un IDE), elle attendrait sans fin
    une frappe qui n'arrive jamais. Le mot de passe y est alors lu comme
    une autre réponse, comme le fait `getpass` sous Unix sans terminal.
    """
    if sys.platform == "win32" and not sys.stdin.isatty():
        return input(prompt)
    return getpass.getpass(prompt)


def _tolerate_any_encoding() -> None:
    """
    Fait remplacer par « ? » ce que le codage des entrées et sorties ne peut
    pas représenter, plutôt que de terminer le client sur une trace.

    Sous Windows, une sortie redirigée (tube, fichier, console d'un IDE)
    est en cp1252, où un sujet comme « ✓ » n'existe pas ; même en UTF-8,
    une chaîne JSON peut contenir une demi-paire de substitution. Le codage
    est gardé : les accents restent lisibles par qui l'attend.
    """
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        # IDLE remplace ces flux par ses propres objets, et pythonw par None.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def _address_problem(address: str) -> Optional[str]:
    """
    Renvoie ce qui ne va pas dans la syntaxe de l'adresse `address`, ou
    `None` si elle a la forme nom@domaine. Seule la forme est vérifiée ici :
    le serveur reste juge de l'existence du destinataire.
    """
    if not address:
        return "l'adresse est vide."
    if any(character.isspace() for character in address):
        return "l'adresse ne doit pas contenir d'espace."
    if "@" not in address:
        return "il manque le « @ »."
    if address.count("@") > 1:
        return "l'adresse ne doit contenir qu'un seul « @ »."
    name, _, domain = address.partition("@")
    if not name:
        return "il manque le nom avant le « @ »."
    if not domain:
        return "il manque le domaine après le « @ »."
    return None


class Client:
    """Client du serveur de courriels."""

    def __init__(
        self,
        destination: str,
        port: int | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """
        Prépare et connecte le socket du client au serveur `destination`.

        Le port par défaut est lu dans `gloutils` à chaque appel, et non à
        l'importation, pour suivre une valeur remplacée entre-temps. Le délai
        `timeout` (en secondes) vaut pour la connexion et pour chaque
        échange avec le serveur, jamais pour l'attente d'une saisie.

        Si le serveur est injoignable, affiche la raison et quitte avec le
        code 1 : sans connexion, le client ne peut rien faire.
        """
        port = gloutils.APP_PORT if port is None else port
        self._timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._username = ""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.settimeout(self._timeout)
        try:
            self._socket.connect((destination, port))
        except (OSError, OverflowError) as ex:
            self._socket.close()
            print(
                f"Impossible de joindre le serveur {destination}:{port} : "
                f"{self._connect_failure(ex)}",
                file=sys.stderr,
            )
            sys.exit(1)

    def _connect_failure(self, error: Exception) -> str:
        """Dit pourquoi la connexion a échoué ; un délai dépassé, en français."""
        if isinstance(error, TimeoutError):
            return f"aucune réponse en {_seconds(self._timeout)} s."
        for kind, reason in CONNECT_FAILURES:
            if isinstance(error, kind):
                return reason
        if getattr(error, "errno", None) in CONNECT_ERRNOS:
            return CONNECT_ERRNOS[error.errno]
        return getattr(error, "strerror", None) or str(error)

    def _connection_failed(self, error: BaseException) -> NoReturn:
        """
        Signale la fin de la communication avec le serveur et quitte avec le
        code 1 : un serveur muet au-delà du délai et un serveur perdu
        laissent tous deux le client sans rien à faire.
        """
        self._socket.close()
        if _caused_by(error, TimeoutError):
            message = (
                "Le serveur ne répond plus "
                f"(délai de {_seconds(self._timeout)} s dépassé)."
            )
        else:
            message = CONNECTION_LOST
        print(message, file=sys.stderr)
        sys.exit(1)

    def _send(self, header: gloutils.Headers, payload: Optional[dict] = None) -> None:
        """Envoie un message au serveur, avec une charge utile si fournie."""
        message = gloutils.GloMessage(header=header)
        if payload is not None:
            message["payload"] = payload
        try:
            _course_name(glossocket, SEND_NAMES)(self._socket, json.dumps(message))
        # OSError : une version du module qui n'enveloppe pas les erreurs du
        # socket (dont le délai dépassé) ne doit pas afficher de trace.
        except (glossocket.GLOSocketError, OSError) as ex:
            self._connection_failed(ex)

    def _receive(self) -> object:
        """
        Reçoit et décode la réponse du serveur. Renvoie `None` si le message
        est arrivé entier mais n'est pas du JSON en UTF-8 : la connexion
        reste utilisable, seule cette réponse est à jeter.
        """
        try:
            text = _course_name(glossocket, RECV_NAMES)(self._socket)
        # UnicodeDecodeError : le module de 2022 la laisse passer telle quelle.
        except (glossocket.GLOSocketError, OSError, UnicodeDecodeError) as ex:
            # Le texte est décodé une fois la trame lue en entier : un
            # mauvais UTF-8 ne désynchronise pas la connexion.
            if _caused_by(ex, UnicodeDecodeError):
                return None
            self._connection_failed(ex)
        try:
            return json.loads(text)
        # RecursionError : un JSON imbriqué trop profondément.
        except (ValueError, RecursionError):
            return None

    def _wait_for_reply(self) -> None:
        """
        Attend que la réponse du serveur commence à arriver, au plus le délai
        du client, par tranches de `WAIT_SLICE` : sous Windows, un Ctrl-C
        n'est vu qu'entre deux tranches, alors qu'une lecture bloquante ne le
        verrait qu'à la fin du délai. Le délai dépassé termine le client.
        """
        deadline = time.monotonic() + self._timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if select.select([self._socket], [], [], min(remaining, WAIT_SLICE))[0]:
                return
        self._connection_failed(TimeoutError())

    def _drop_stray_replies(self) -> None:
        """
        Jette, sans attendre, les réponses que personne n'a demandées : le
        serveur de certaines éditions répond `OK` à `AUTH_LOGOUT`, et le
        client lirait sinon chaque réponse suivante avec une requête de
        retard.

        Une trame dont le début est arrivé est lue en entier, puisque le
        serveur est en train de l'envoyer.
        """
        while select.select([self._socket], [], [], 0)[0]:
            self._receive()

    def _request(
        self,
        header: gloutils.Headers,
        payload: Optional[dict] = None,
        reply_type: Optional[type] = None,
    ) -> Optional[dict]:
        """
        Envoie une requête et renvoie la charge utile de la réponse `OK`
        (un dictionnaire vide si `reply_type` est `None`).

        Une réponse `ERROR` affiche son message et renvoie `None`. Toute
        autre réponse est signalée comme invalide et renvoie aussi `None` :
        le client reste connecté et revient au menu.
        """
        self._drop_stray_replies()
        self._send(header, payload)
        # Une fois la réponse commencée, le module la lit en entier.
        self._wait_for_reply()
        reply = self._receive()
        if isinstance(reply, dict):
            reply_header = _as_int(reply.get("header"))
            if reply_header == gloutils.Headers.ERROR:
                error = _conform(reply.get("payload"), gloutils.ErrorPayload)
                if error is not None:
                    print(error["error_message"])
                    return None
            elif reply_header == gloutils.Headers.OK:
                if reply_type is None:
                    return {}
                content = _conform(reply.get("payload"), reply_type)
                if content is not None:
                    return content
        print(INVALID_REPLY)
        return None

    def _ask_choice(self, count: int, can_go_back: bool = False) -> int:
        """
        Redemande un choix tant qu'il n'est pas un entier de 1 à `count`, en
        disant pourquoi la réponse est refusée.

        Avec `can_go_back`, une réponse vide ou 0 renvoie 0 : l'utilisateur
        revient en arrière sans rien choisir.
        """
        while True:
            answer = input(f"Entrez votre choix [1-{count}]: ").strip()
            number = _as_int(answer)
            if can_go_back and (not answer or number == 0):
                return 0
            if number is not None and 1 <= number <= count:
                return number
            print(self._invalid_choice(count, can_go_back))

    @staticmethod
    def _invalid_choice(count: int, can_go_back: bool) -> str:
        """Explique quelles réponses le menu accepte."""
        message = f"Choix invalide : entrez un nombre de 1 à {count}"
        if can_go_back:
            return message + ", ou 0 pour revenir au menu principal."
        return message + "."

    def _authenticate(
        self, header: gloutils.Headers, username: str, password: str
    ) -> None:
        """Envoie une création de compte ou une connexion ; `OK` connecte."""
        payload = gloutils.AuthPayload(username=username, password=password)
        if self._request(header, payload) is not None:
            self._username = username

    def _register(self) -> None:
        """
        Demande un nom d'utilisateur et un mot de passe, puis demande au
        serveur de créer le compte. En cas de succès, l'utilisateur est
        connecté ; sinon, le message d'erreur du serveur est affiché.

        Les espaces autour du nom sont retirés ; le mot de passe est
        transmis tel quel, car chacun de ses caractères compte.
        """
        username = input("Entrez un nom d'utilisateur: ").strip()
        password = _ask_password("Entrez un mot de passe: ")
        self._authenticate(gloutils.Headers.AUTH_REGISTER, username, password)

    def _login(self) -> None:
        """
        Demande un nom d'utilisateur et un mot de passe, puis demande au
        serveur de connecter l'utilisateur. En cas d'échec, le message
        d'erreur du serveur est affiché.

        Comme à la création, le nom est débarrassé des espaces qui
        l'entourent et le mot de passe est transmis tel quel.
        """
        username = input("Entrez votre nom d'utilisateur: ").strip()
        password = _ask_password("Entrez votre mot de passe: ")
        self._authenticate(gloutils.Headers.AUTH_LOGIN, username, password)

    def _quit(self) -> None:
        """
        Annonce le départ au serveur (`BYE`, sans réponse) et ferme le socket.

        Une erreur d'envoi est ignorée : le client s'en va de toute façon.
        """
        with contextlib.suppress(glossocket.GLOSocketError, OSError):
            _course_name(glossocket, SEND_NAMES)(
                self._socket,
                json.dumps(gloutils.GloMessage(header=gloutils.Headers.BYE)),
            )
        self._socket.close()

    def _read_email(self) -> None:
        """
        Affiche la liste des courriels reçus, demande lequel lire et
        l'affiche. Une boîte vide, une réponse vide ou 0 ramènent au menu
        principal.
        """
        listing = self._request(
            gloutils.Headers.INBOX_READING_REQUEST,
            reply_type=gloutils.EmailListPayload,
        )
        if listing is None:
            return
        emails = listing["email_list"]
        if not emails:
            print("Votre boîte de réception est vide.")
            return
        for line in emails:
            print(line)
        choice = self._ask_choice(len(emails), can_go_back=True)
        if choice:
            self._display_email(choice)

    def _display_email(self, choice: int) -> None:
        """Demande au serveur le courriel numéro `choice` et l'affiche."""
        email = self._request(
            gloutils.Headers.INBOX_READING_CHOICE,
            gloutils.EmailChoicePayload(choice=choice),
            gloutils.EmailContentPayload,
        )
        if email is not None:
            print(self._format_email(email))

    @staticmethod
    def _format_email(email: gloutils.EmailContentPayload) -> str:
        """
        Met le courriel en forme avec `EMAIL_DISPLAY`. Chaque champ est passé
        sous ses deux noms (`sender`/`source`, `to`/`destination`,
        `body`/`content`) : le gabarit de toute édition du cours y trouve le
        sien, et `str.format` ignore les autres.
        """
        return gloutils.EMAIL_DISPLAY.format(
            sender=email["sender"],
            source=email["sender"],
            to=email["destination"],
            destination=email["destination"],
            subject=email["subject"],
            date=email["date"],
            body=email["content"],
            content=email["content"],
        )

    def _ask_address(self) -> str:
        """
        Redemande l'adresse du destinataire tant que sa syntaxe est fausse,
        en disant pourquoi, pour ne pas faire taper le sujet et le contenu
        d'un courriel que le serveur refuserait.
        """
        while True:
            address = input("Entrez l'adresse du destinataire: ").strip()
            problem = _address_problem(address)
            if problem is None:
                return address
            print(f"Adresse invalide : {problem}")

    def _read_content(self) -> str:
        """
        Lit le corps d'un courriel, ligne par ligne, jusqu'à un '.' seul ou
        jusqu'à la fin de l'entrée (Ctrl-D), qui termine aussi la saisie.
        """
        print(
            "Entrez le contenu du courriel, "
            "terminez la saisie avec un '.' seul sur une ligne:"
        )
        lines = []
        with contextlib.suppress(EOFError):
            while (line := input()) != ".":
                lines.append(line)
        return "\n".join(lines)

    def _send_email(self) -> None:
        """
        Demande le destinataire, le sujet et le contenu d'un courriel, puis
        le transmet au serveur, daté de l'heure UTC courante.

        Un Ctrl-C pendant la rédaction abandonne le courriel et ramène au
        menu principal, sans quitter le client.
        """
        try:
            destination = self._ask_address()
            subject = input("Entrez le sujet: ").strip()
            content = self._read_content()
        except KeyboardInterrupt:
            # Passer à la ligne : le terminal a laissé le curseur après ^C.
            print()
            print("Envoi annulé.")
            return
        email = gloutils.EmailContentPayload(
            sender=f"{self._username}@{gloutils.SERVER_DOMAIN}",
            destination=destination,
            subject=subject,
            date=gloutils.get_current_utc_time(),
            content=content,
        )
        if self._request(gloutils.Headers.EMAIL_SENDING, email) is not None:
            print("Le courriel a été envoyé.")

    def _check_stats(self) -> None:
        """Demande et affiche le nombre de courriels et la taille du dossier."""
        stats = self._request(
            gloutils.Headers.STATS_REQUEST, reply_type=gloutils.StatsPayload
        )
        if stats is not None:
            print(gloutils.STATS_DISPLAY.format(**stats))

    def _logout(self) -> None:
        """
        Déconnecte l'utilisateur (`AUTH_LOGOUT`). Le serveur n'y répond
        jamais : on n'attend donc pas de réponse. Le `OK` qu'envoient
        quand même certains serveurs est jeté avant la requête suivante.
        """
        self._send(gloutils.Headers.AUTH_LOGOUT)
        self._username = ""

    def _auth_menu(self) -> bool:
        """
        Affiche le menu de connexion et exécute le choix.

        Renvoie `False` si l'utilisateur a choisi de quitter.
        """
        print(gloutils.CLIENT_AUTH_CHOICE)
        choice = self._ask_choice(3)
        if choice == 3:
            self._quit()
            return False
        {1: self._register, 2: self._login}[choice]()
        return True

    def _main_menu(self) -> None:
        """Affiche le menu principal et exécute le choix."""
        print(_course_name(gloutils, MAIN_MENU_NAMES, MAIN_MENU_2022))
        actions = {
            1: self._read_email,
            2: self._send_email,
            3: self._check_stats,
            4: self._logout,
        }
        actions[self._ask_choice(len(actions))]()

    def _abort(self) -> NoReturn:
        """
        Quitte proprement après un Ctrl-C ou la fin de l'entrée : salue le
        serveur, passe à la ligne pour laisser une invite propre et quitte
        avec le code 0.
        """
        self._quit()
        print()
        sys.exit(0)

    def run(self) -> None:
        """Affiche les menus en boucle jusqu'à ce que l'utilisateur quitte."""
        try:
            running = True
            while running:
                if self._username:
                    self._main_menu()
                else:
                    running = self._auth_menu()
        except (KeyboardInterrupt, EOFError):
            self._abort()


# Messages d'erreur d'argparse, produits en anglais, et leur traduction. Les
# plus précis d'abord : le dernier reprend tout message propre à un argument.
_ARGPARSE_ERRORS = (
    (r"the following arguments are required: (.*)",
     "arguments obligatoires manquants : {0}."),
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
        if prefix is None:
            prefix = "utilisation : "
        super().add_usage(usage, actions, groups, prefix)

    def start_section(self, heading) -> None:
        """Ajoute l'espace qui précède le deux-points en français."""
        super().start_section(f"{heading} " if heading else heading)


class _FrenchArgumentParser(argparse.ArgumentParser):
    """Analyseur d'arguments qui signale les erreurs en français."""

    def error(self, message: str) -> NoReturn:
        """
        Affiche l'erreur traduite en une seule ligne et quitte avec le code
        2, comme argparse.
        """
        for pattern, french in _ARGPARSE_ERRORS:
            match = re.fullmatch(pattern, message, re.DOTALL)
            if match:
                message = french.format(*match.groups())
                break
        self.exit(2, f"{self.prog} : erreur : {message}\n")


def _port(text: str) -> int:
    """Lit un numéro de port TCP, de 1 à 65535."""
    with contextlib.suppress(ValueError):
        port = int(text)
        if 1 <= port <= 65535:
            return port
    raise argparse.ArgumentTypeError(
        f"le port doit être un entier de 1 à 65535 (reçu : « {text} »)."
    )


def _timeout(text: str) -> float:
    """Lit un délai en secondes, strictement positif ; la virgule est admise."""
    with contextlib.suppress(ValueError):
        seconds = float(text.replace(",", "."))
        # math.isfinite écarte nan, que les comparaisons laissent passer.
        if math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT:
            return seconds
    raise argparse.ArgumentTypeError(
        "le délai doit être un nombre de secondes supérieur à 0 et d'au plus "
        f"{MAX_TIMEOUT:.0f} (reçu : « {text} »)."
    )


def _build_parser() -> argparse.ArgumentParser:
    """
    Construit l'analyseur de la ligne de commande, entièrement en français.
    Les défauts sont lus dans `gloutils` à cet appel, pas à l'importation.
    """
    parser = _FrenchArgumentParser(
        description="Client du service de courriels @glo2000.ca.",
        formatter_class=_FrenchHelpFormatter,
        add_help=False,
    )
    required = parser.add_argument_group("argument obligatoire")
    options = parser.add_argument_group("options")
    options.add_argument(
        "-h", "--help", action="help", help="afficher ce message d'aide et quitter"
    )
    required.add_argument(
        "-d",
        "--destination",
        action="store",
        dest="dest",
        required=True,
        metavar="ADRESSE",
        help="Adresse IP/URL du serveur.",
    )
    options.add_argument(
        "-p",
        "--port",
        type=_port,
        default=gloutils.APP_PORT,
        help="Port du serveur, de 1 à 65535 (par défaut : %(default)s).",
    )
    options.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDES",
        help="Délai d'attente de la connexion et de chaque réponse du serveur "
        "(par défaut : %(default)g).",
    )
    return parser


def _main() -> None:
    """Lit les arguments de la ligne de commande et lance le client."""
    _tolerate_any_encoding()
    args = _build_parser().parse_args()
    Client(args.dest, args.port, timeout=args.timeout).run()


if __name__ == "__main__":
    _main()
