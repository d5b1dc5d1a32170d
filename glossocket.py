"""\
GLO-2000 Travail pratique 4 - glossocket
Envoi et réception de messages : une longueur de 4 octets (gros-boutiste,
non signée) suivie du texte encodé en UTF-8.
"""

import socket
import struct

_LENGTH = struct.Struct("!I")


class GLOSocketError(Exception):
    """Levée pour toute erreur de communication."""


def send_msg(dest_soc: socket.socket, message: str) -> None:
    """
    Envoie `message` au socket `dest_soc`, précédé de sa longueur.

    Le tout part en un seul `sendall`. Lève `GLOSocketError` si l'envoi échoue.
    """
    data = message.encode("utf-8")
    try:
        dest_soc.sendall(_LENGTH.pack(len(data)) + data)
    except (OSError, struct.error) as ex:
        raise GLOSocketError(f"L'envoi du message a échoué : {ex}") from ex


def recv_msg(source_soc: socket.socket) -> str:
    """
    Reçoit un message complet de `source_soc` et le renvoie décodé.

    Lève `GLOSocketError` si le pair a fermé la connexion, si la lecture
    échoue ou si le texte n'est pas de l'UTF-8 valide.
    """
    (length,) = _LENGTH.unpack(_recv_exactly(source_soc, _LENGTH.size))
    try:
        return _recv_exactly(source_soc, length).decode("utf-8")
    except UnicodeDecodeError as ex:
        raise GLOSocketError("Le message reçu n'est pas de l'UTF-8 valide.") from ex


def _recv_exactly(source_soc: socket.socket, count: int) -> bytes:
    """Lit exactement `count` octets ou lève `GLOSocketError`."""
    data = bytearray()
    while len(data) < count:
        try:
            chunk = source_soc.recv(min(count - len(data), 1 << 20))
        except OSError as ex:
            raise GLOSocketError(f"La réception a échoué : {ex}") from ex
        if not chunk:
            raise GLOSocketError("La connexion a été fermée par le pair.")
        data += chunk
    return bytes(data)


# Noms donnés aux mêmes fonctions dans les éditions suivantes du cours.
send_mesg = send_msg
snd_mesg = send_msg
recv_mesg = recv_msg
