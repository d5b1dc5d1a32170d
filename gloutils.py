"""\
GLO-2000 Travail pratique 4 - Outils
Constantes, gabarits d'affichage, en-têtes et charges utiles du protocole.
"""

import datetime
import enum
from typing import TypedDict, Union

APP_PORT = 5321
SERVER_DATA_DIR = "glo_server_data"
SERVER_LOST_DIR = "LOST"
SERVER_DOMAIN = "glo2000.ca"
SMTP_SERVER = "smtp.ulaval.ca"
PASSWORD_FILENAME = "pass"

CLIENT_AUTH_CHOICE = """Menu de connexion
1. Créer un compte
2. Se connecter
3. Quitter"""

CLIENT_USE_CHOICE = """Menu principal
1. Consultation de courriels
2. Envoi de courriels
3. Statistiques
4. Se déconnecter"""

SUBJECT_DISPLAY = "#{number} {sender} - {subject} {date}"


class _EmailTemplate(str):
    """
    Gabarit d'affichage d'un courriel.

    Le texte utilise `sender`, `to` et `body`, mais l'énoncé l'appelle avec
    `source`, `destination` et `content`, et le code naturel avec les clés
    d'un `EmailContentPayload`. `format` accepte donc les trois graphies et
    donne toujours le même texte.
    """

    _ALIASES = {"source": "sender", "destination": "to", "content": "body"}

    def format(self, *args, **kwargs) -> str:
        for alias, name in self._ALIASES.items():
            if alias in kwargs:
                kwargs.setdefault(name, kwargs.pop(alias))
        return str.format(self, *args, **kwargs)

    def format_map(self, mapping) -> str:
        return self.format(**mapping)


EMAIL_DISPLAY = _EmailTemplate(
    "De : {sender}\nÀ : {to}\nSujet : {subject}\nDate : {date}\n"
    + "-" * 40
    + "\n{body}\n"
)

STATS_DISPLAY = "Nombre de messages : {count}\nTaille du dossier : {size} octets"


class Headers(enum.IntEnum):
    """En-têtes des messages échangés entre le client et le serveur."""

    OK = enum.auto()
    ERROR = enum.auto()
    BYE = enum.auto()
    AUTH_REGISTER = enum.auto()
    AUTH_LOGIN = enum.auto()
    AUTH_LOGOUT = enum.auto()
    INBOX_READING_REQUEST = enum.auto()
    INBOX_READING_CHOICE = enum.auto()
    EMAIL_SENDING = enum.auto()
    STATS_REQUEST = enum.auto()


class ErrorPayload(TypedDict):
    """Charge utile d'un message d'erreur."""

    error_message: str


class AuthPayload(TypedDict):
    """Charge utile d'une création de compte ou d'une connexion."""

    username: str
    password: str


class EmailContentPayload(TypedDict):
    """Charge utile d'un courriel, à l'envoi comme à la lecture."""

    sender: str
    destination: str
    subject: str
    date: str
    content: str


class EmailListPayload(TypedDict):
    """Charge utile de la liste des courriels, un sujet par ligne."""

    email_list: list[str]


class EmailChoicePayload(TypedDict):
    """Charge utile du choix d'un courriel (numéro à partir de 1)."""

    choice: int


class StatsPayload(TypedDict):
    """Charge utile des statistiques du dossier de l'utilisateur."""

    count: int
    size: int


class GloMessage(TypedDict, total=False):
    """Message du protocole : un en-tête et, au besoin, une charge utile."""

    header: Headers
    payload: Union[
        ErrorPayload,
        AuthPayload,
        EmailContentPayload,
        EmailListPayload,
        EmailChoicePayload,
        StatsPayload,
    ]


def get_current_utc_time() -> str:
    """Renvoie l'heure UTC courante au format des courriels de l'énoncé."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%a, %d %b %Y %H:%M:%S %z"
    )
