"""\
GLO-2000 Travail pratique 4 - Client
Client en ligne de commande du service de courriels @glo2000.ca : création de
compte, connexion, lecture et envoi de courriels, statistiques.
"""

import argparse
import contextlib
import getpass
import json
import socket
import sys
import typing
from typing import NoReturn, Optional

import glossocket
import gloutils


def _matches(payload: object, payload_type: type) -> bool:
    """
    Indique si `payload` est un dictionnaire qui a toutes les clés du
    `TypedDict` `payload_type`, chacune avec une valeur du bon type.

    Sert à rejeter une réponse du serveur mal formée avant de s'en servir.
    """
    if not isinstance(payload, dict):
        return False
    return all(
        key in payload and isinstance(payload[key], typing.get_origin(hint) or hint)
        for key, hint in typing.get_type_hints(payload_type).items()
    )


class Client:
    """Client du serveur de courriels."""

    def __init__(self, destination: str, port: int = gloutils.APP_PORT) -> None:
        """
        Prépare et connecte le socket du client au serveur `destination`.

        Si le serveur est injoignable, affiche la raison et quitte avec le
        code 1 : sans connexion, le client ne peut rien faire.
        """
        self._username = ""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.connect((destination, port))
        except (OSError, OverflowError) as ex:
            self._socket.close()
            reason = getattr(ex, "strerror", None) or ex
            print(
                f"Impossible de joindre le serveur {destination}:{port} : {reason}",
                file=sys.stderr,
            )
            sys.exit(1)

    def _connection_lost(self) -> NoReturn:
        """Signale la perte du serveur et quitte avec le code 1."""
        self._socket.close()
        print("La connexion avec le serveur a été perdue.", file=sys.stderr)
        sys.exit(1)

    def _send(self, header: gloutils.Headers, payload: Optional[dict] = None) -> None:
        """Envoie un message au serveur, avec une charge utile si fournie."""
        message = gloutils.GloMessage(header=header)
        if payload is not None:
            message["payload"] = payload
        try:
            glossocket.send_msg(self._socket, json.dumps(message))
        except glossocket.GLOSocketError:
            self._connection_lost()

    def _receive(self) -> dict:
        """Reçoit et décode la réponse du serveur, qui doit être un objet JSON."""
        try:
            reply = json.loads(glossocket.recv_msg(self._socket))
        except (glossocket.GLOSocketError, ValueError):
            self._connection_lost()
        if not isinstance(reply, dict):
            self._connection_lost()
        return reply

    def _request(
        self,
        header: gloutils.Headers,
        payload: Optional[dict] = None,
        reply_type: Optional[type] = None,
    ) -> Optional[dict]:
        """
        Envoie une requête et renvoie la charge utile de la réponse `OK`
        (un dictionnaire vide si `reply_type` est `None`).

        Une réponse `ERROR` affiche son message et renvoie `None` ; toute
        autre réponse est incompréhensible et traitée comme une perte de
        connexion.
        """
        self._send(header, payload)
        reply = self._receive()
        if reply.get("header") == gloutils.Headers.ERROR and _matches(
            reply.get("payload"), gloutils.ErrorPayload
        ):
            print(reply["payload"]["error_message"])
            return None
        if reply.get("header") == gloutils.Headers.OK:
            if reply_type is None:
                return {}
            if _matches(reply.get("payload"), reply_type):
                return reply["payload"]
        self._connection_lost()

    def _ask_choice(self, count: int) -> int:
        """Redemande un choix tant qu'il n'est pas un entier de 1 à `count`."""
        while True:
            answer = input(f"Entrez votre choix [1-{count}]: ").strip()
            if answer.isdecimal() and 1 <= int(answer) <= count:
                return int(answer)

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
        """
        username = input("Entrez un nom d'utilisateur: ")
        password = getpass.getpass("Entrez un mot de passe: ")
        self._authenticate(gloutils.Headers.AUTH_REGISTER, username, password)

    def _login(self) -> None:
        """
        Demande un nom d'utilisateur et un mot de passe, puis demande au
        serveur de connecter l'utilisateur. En cas d'échec, le message
        d'erreur du serveur est affiché.
        """
        username = input("Entrez votre nom d'utilisateur: ")
        password = getpass.getpass("Entrez votre mot de passe: ")
        self._authenticate(gloutils.Headers.AUTH_LOGIN, username, password)

    def _quit(self) -> None:
        """
        Annonce le départ au serveur (`BYE`, sans réponse) et ferme le socket.

        Une erreur d'envoi est ignorée : le client s'en va de toute façon.
        """
        with contextlib.suppress(glossocket.GLOSocketError):
            glossocket.send_msg(
                self._socket,
                json.dumps(gloutils.GloMessage(header=gloutils.Headers.BYE)),
            )
        self._socket.close()

    def _read_email(self) -> None:
        """
        Affiche la liste des courriels reçus, demande lequel lire et
        l'affiche. Une boîte vide ramène directement au menu principal.
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
        self._display_email(self._ask_choice(len(emails)))

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

    def _read_content(self) -> str:
        """Lit le corps d'un courriel, ligne par ligne, jusqu'à un '.' seul."""
        print(
            "Entrez le contenu du courriel, "
            "terminez la saisie avec un '.' seul sur une ligne:"
        )
        lines = []
        while (line := input()) != ".":
            lines.append(line)
        return "\n".join(lines)

    def _send_email(self) -> None:
        """
        Demande le destinataire, le sujet et le contenu d'un courriel, puis
        le transmet au serveur, daté de l'heure UTC courante.
        """
        destination = input("Entrez l'adresse du destinataire: ")
        subject = input("Entrez le sujet: ")
        content = self._read_content()
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
        jamais : on n'attend donc pas de réponse.
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
        print(gloutils.CLIENT_USE_CHOICE)
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


def _main() -> None:
    """Lit les arguments de la ligne de commande et lance le client."""
    parser = argparse.ArgumentParser(
        description="Client du service de courriels @glo2000.ca."
    )
    parser.add_argument(
        "-d",
        "--destination",
        action="store",
        dest="dest",
        required=True,
        help="Adresse IP/URL du serveur.",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        default=gloutils.APP_PORT,
        help="Port du serveur (par défaut : %(default)s).",
    )
    args = parser.parse_args()
    Client(args.dest, args.port).run()


if __name__ == "__main__":
    _main()
