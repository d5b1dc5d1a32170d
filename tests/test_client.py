"""\
GLO-2000 Travail pratique 4 - Tests du client
Chaque méthode de `Client` est testée avec un faux socket et des entrées
simulées ; un dernier test fait dialoguer le vrai client avec un faux serveur
sur la boucle locale.
"""

import contextlib
import errno
import io
import json
import os
import socket
import subprocess
import sys
import threading
import unittest
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import glossocket  # noqa: E402
import gloutils  # noqa: E402
import TP4_client  # noqa: E402
from tests import support  # noqa: E402

H = gloutils.Headers

EMAIL = support.HANDOUT_EMAIL
# `print` ajoute une ligne vide après le texte de `EMAIL_DISPLAY`.
EMAIL_TEXT = support.HANDOUT_EMAIL_TEXT + "\n"

LOST = "La connexion avec le serveur a été perdue.\n"
INVALID = "La réponse du serveur est invalide.\n"
REFUSED = "connexion refusée : aucun serveur n'écoute sur ce port."
STATS_SHOWN = "Nombre de messages : 1\nTaille du dossier : 319 octets\n"


def invalid_choice(count):
    """Ligne affichée pour un choix refusé dans un menu de `count` choix."""
    return f"Choix invalide : entrez un nombre de 1 à {count}.\n"


def invalid_inbox_choice(count):
    """Ligne affichée pour un choix refusé après la liste des courriels."""
    return (
        f"Choix invalide : entrez un nombre de 1 à {count}, "
        "ou 0 pour revenir au menu principal.\n"
    )


def reply(header, payload=None):
    """Construit le texte JSON d'une réponse du serveur."""
    message = {"header": header}
    if payload is not None:
        message["payload"] = payload
    return json.dumps(message)


class ClientTestCase(unittest.TestCase):
    """
    Base des tests unitaires : un client sans vraie connexion, `send_msg` et
    `recv_msg` simulés, entrées clavier simulées et sorties capturées. Le
    `select` du client ne trouve rien en attente quand il cherche, sans
    attendre, les réponses que personne n'a demandées, et trouve la réponse
    arrivée quand il l'attend, sauf si un test en décide autrement.
    """

    def setUp(self):
        self.client = TP4_client.Client.__new__(TP4_client.Client)
        self.client._socket = mock.Mock(spec=socket.socket)
        self.client._username = ""
        self.client._timeout = TP4_client.DEFAULT_TIMEOUT
        self.send = self._patch("TP4_client.glossocket.send_msg")
        self.recv = self._patch("TP4_client.glossocket.recv_msg")
        # Le module `select` du client seulement : celui des autres reste vrai.
        self.select = self._patch("TP4_client.select")
        self.select.select.side_effect = lambda sockets, _w, _x, timeout: (
            sockets if timeout else [], [], []
        )
        self.input = self._patch("builtins.input")
        self.getpass = self._patch("getpass.getpass")
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

    def _patch(self, target):
        patcher = mock.patch(target)
        self.addCleanup(patcher.stop)
        return patcher.start()

    def set_inputs(self, *lines):
        """Fait renvoyer `lines` par `input`, dans l'ordre."""
        self.input.side_effect = list(lines)

    def set_replies(self, *replies):
        """Fait renvoyer `replies` par `recv_msg`, dans l'ordre."""
        self.recv.side_effect = list(replies)

    def call(self, method, *args):
        """Appelle `method` en capturant stdout et stderr."""
        with contextlib.redirect_stdout(self.stdout), contextlib.redirect_stderr(
            self.stderr
        ):
            return method(*args)

    def call_exit(self, method, *args):
        """Appelle `method`, qui doit quitter, et renvoie le code de sortie."""
        with self.assertRaises(SystemExit) as context:
            self.call(method, *args)
        return context.exception.code

    def assert_stats_shown(self):
        """Une seule requête, STATS_REQUEST, et les statistiques affichées."""
        self.assertEqual(self.sent(), [{"header": 10}])
        self.assertEqual(self.stdout.getvalue(), STATS_SHOWN)

    def sent(self):
        """Renvoie les messages envoyés, décodés du JSON."""
        for call in self.send.call_args_list:
            self.assertIs(call.args[0], self.client._socket)
        return [json.loads(call.args[1]) for call in self.send.call_args_list]

    def prompts(self):
        """Renvoie les invites passées à `input`."""
        return [
            call.args[0] if call.args else None for call in self.input.call_args_list
        ]


class TestInit(unittest.TestCase):
    """Création et connexion du socket."""

    def test_connects_with_ipv4_tcp(self):
        with mock.patch("TP4_client.socket.socket") as socket_class:
            client = TP4_client.Client("127.0.0.1", 6000)
        socket_class.assert_called_once_with(socket.AF_INET, socket.SOCK_STREAM)
        self.assertIs(client._socket, socket_class.return_value)
        client._socket.connect.assert_called_once_with(("127.0.0.1", 6000))
        self.assertEqual(client._username, "")

    def test_default_port_is_app_port(self):
        with mock.patch("TP4_client.socket.socket") as socket_class:
            TP4_client.Client("localhost")
        socket_class.return_value.connect.assert_called_once_with(
            ("localhost", gloutils.APP_PORT)
        )

    def _init_error(self, *args):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(
            SystemExit
        ) as context:
            TP4_client.Client(*args)
        return context.exception.code, stderr.getvalue()

    def test_connection_refused_exits_non_zero(self):
        port = support.free_port()
        code, error = self._init_error("127.0.0.1", port)
        self.assertEqual(code, 1)
        self.assertEqual(
            error,
            f"Impossible de joindre le serveur 127.0.0.1:{port} : {REFUSED}\n",
        )

    def test_unknown_host_exits_non_zero(self):
        with mock.patch("TP4_client.socket.socket") as socket_class:
            socket_class.return_value.connect.side_effect = socket.gaierror(
                -2, "Name or service not known"
            )
            code, error = self._init_error("serveur.inconnu", 5321)
        self.assertEqual(code, 1)
        self.assertEqual(
            error,
            "Impossible de joindre le serveur serveur.inconnu:5321 : "
            "adresse introuvable.\n",
        )
        socket_class.return_value.close.assert_called_once_with()

    def test_unreachable_host_exits_non_zero(self):
        for number, reason in ((errno.EHOSTUNREACH, "machine injoignable."),
                               (errno.ENETUNREACH, "réseau injoignable.")):
            with self.subTest(reason=reason), mock.patch(
                "TP4_client.socket.socket"
            ) as socket_class:
                socket_class.return_value.connect.side_effect = OSError(
                    number, os.strerror(number)
                )
                code, error = self._init_error("10.9.9.9", 5321)
                self.assertEqual(code, 1)
                self.assertEqual(
                    error, f"Impossible de joindre le serveur 10.9.9.9:5321 : {reason}\n"
                )

    def test_port_out_of_range_exits_non_zero(self):
        code, error = self._init_error("127.0.0.1", 70000)
        self.assertEqual(code, 1)
        self.assertEqual(
            error,
            "Impossible de joindre le serveur 127.0.0.1:70000 : "
            "le port doit être de 1 à 65535.\n",
        )


class TestAskChoice(ClientTestCase):
    """Choix dans un menu."""

    def test_reasks_until_valid(self):
        self.set_inputs("", "abc", "0", "4", "-1", "2.0", " 2 ")
        self.assertEqual(self.call(self.client._ask_choice, 3), 2)
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-3]: "] * 7)
        self.assertEqual(self.stdout.getvalue(), invalid_choice(3) * 6)

    def test_upper_bound_is_valid(self):
        self.set_inputs("4")
        self.assertEqual(self.call(self.client._ask_choice, 4), 4)
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-4]: "])


class TestRegister(ClientTestCase):
    """Création de compte."""

    def test_ok_logs_in(self):
        self.set_inputs("Qing.Long")
        self.getpass.return_value = "MotDePasse123"
        self.set_replies(reply(H.OK))
        self.call(self.client._register)
        self.assertEqual(
            self.sent(),
            [
                {
                    "header": 4,
                    "payload": {"username": "Qing.Long", "password": "MotDePasse123"},
                }
            ],
        )
        self.assertEqual(self.prompts(), ["Entrez un nom d'utilisateur: "])
        self.getpass.assert_called_once_with("Entrez un mot de passe: ")
        self.assertEqual(self.client._username, "Qing.Long")
        self.assertEqual(self.stdout.getvalue(), "")

    def test_error_prints_server_message(self):
        message = (
            "La création a échouée:\n"
            "- Le nom d'utilisateur est invalide.\n"
            "- Le mot de passe n'est pas assez sûr."
        )
        self.set_inputs("Qing Long")
        self.getpass.return_value = "abc"
        self.set_replies(reply(H.ERROR, {"error_message": message}))
        self.call(self.client._register)
        self.assertEqual(self.stdout.getvalue(), message + "\n")
        self.assertEqual(self.client._username, "")


class TestLogin(ClientTestCase):
    """Connexion."""

    def test_ok_logs_in(self):
        self.set_inputs("Kohryu")
        self.getpass.return_value = "MotDePasse123"
        self.set_replies(reply(H.OK))
        self.call(self.client._login)
        self.assertEqual(
            self.sent(),
            [
                {
                    "header": 5,
                    "payload": {"username": "Kohryu", "password": "MotDePasse123"},
                }
            ],
        )
        self.assertEqual(self.prompts(), ["Entrez votre nom d'utilisateur: "])
        self.getpass.assert_called_once_with("Entrez votre mot de passe: ")
        self.assertEqual(self.client._username, "Kohryu")

    def test_error_prints_server_message(self):
        message = support.LOGIN_FAILED
        self.set_inputs("Kohryu")
        self.getpass.return_value = "mauvais"
        self.set_replies(reply(H.ERROR, {"error_message": message}))
        self.call(self.client._login)
        self.assertEqual(self.stdout.getvalue(), message + "\n")
        self.assertEqual(self.client._username, "")


class TestLogout(ClientTestCase):
    """Déconnexion : aucune réponse attendue."""

    def test_sends_logout_without_waiting(self):
        self.client._username = "Kohryu"
        self.call(self.client._logout)
        self.assertEqual(self.sent(), [{"header": 6}])
        self.recv.assert_not_called()
        self.client._socket.close.assert_not_called()
        self.assertEqual(self.client._username, "")
        self.assertEqual(self.stdout.getvalue(), "")


class TestStrayReplies(ClientTestCase):
    """
    Avant chaque requête, les réponses que personne n'a demandées sont
    jetées, sans attendre : un `select` de délai nul.
    """

    def test_nothing_pending_costs_no_wait(self):
        self.set_replies(reply(H.OK, {"count": 1, "size": 319}))
        self.call(self.client._check_stats)
        # Puis l'attente de la réponse, qui elle est déjà là.
        self.assertEqual(
            self.select.select.call_args_list,
            [
                mock.call([self.client._socket], [], [], 0),
                mock.call([self.client._socket], [], [], TP4_client.WAIT_SLICE),
            ],
        )
        self.assertEqual(self.recv.call_count, 1)
        self.assertEqual(self.stdout.getvalue(), STATS_SHOWN)

    def test_stray_replies_are_dropped_before_the_request(self):
        pending = ([self.client._socket], [], [])
        # Deux trames en attente, plus rien, puis la réponse attendue.
        self.select.select.side_effect = [pending, pending, ([], [], []), pending]
        # Un OK de trop, puis une trame en mauvais UTF-8, puis la réponse.
        self.set_replies(
            reply(H.OK),
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            reply(H.OK, {"count": 1, "size": 319}),
        )
        self.call(self.client._check_stats)
        self.assert_stats_shown()

    def test_server_gone_while_dropping(self):
        self.select.select.side_effect = None
        self.select.select.return_value = ([self.client._socket], [], [])
        self.set_replies(glossocket.GLOSocketError("parti"))
        self.assertEqual(self.call_exit(self.client._check_stats), 1)
        self.assertEqual(self.stderr.getvalue(), LOST)
        self.send.assert_not_called()


class TestQuit(ClientTestCase):
    """Départ : BYE sans réponse, puis fermeture."""

    def test_sends_bye_and_closes(self):
        self.call(self.client._quit)
        self.assertEqual(self.sent(), [{"header": 3}])
        self.recv.assert_not_called()
        self.client._socket.close.assert_called_once_with()

    def test_ignores_a_lost_server(self):
        self.send.side_effect = glossocket.GLOSocketError("parti")
        self.call(self.client._quit)
        self.client._socket.close.assert_called_once_with()
        self.assertEqual(self.stdout.getvalue() + self.stderr.getvalue(), "")


class TestReadEmail(ClientTestCase):
    """Consultation des courriels."""

    LIST = [
        "#1 Qing.Long@glo2000.ca - Bonjour! Tue, 12 Jul 2022 19:21:57 +0000",
        "#2 bob@glo2000.ca - Salut Mon, 11 Jul 2022 08:00:00 +0000",
    ]

    def test_empty_inbox(self):
        self.set_replies(reply(H.OK, {"email_list": []}))
        self.call(self.client._read_email)
        self.assertEqual(self.sent(), [{"header": 7}])
        self.assertEqual(
            self.stdout.getvalue(), "Votre boîte de réception est vide.\n"
        )
        self.input.assert_not_called()

    def test_lists_then_displays_choice(self):
        self.set_inputs("abc", "3", "2")
        self.set_replies(
            reply(H.OK, {"email_list": self.LIST}), reply(H.OK, EMAIL)
        )
        self.call(self.client._read_email)
        self.assertEqual(
            self.sent(), [{"header": 7}, {"header": 8, "payload": {"choice": 2}}]
        )
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-2]: "] * 3)
        self.assertEqual(
            self.stdout.getvalue(),
            "\n".join(self.LIST) + "\n" + invalid_inbox_choice(2) * 2 + EMAIL_TEXT,
        )

    def test_choice_error(self):
        self.set_inputs("1")
        self.set_replies(
            reply(H.OK, {"email_list": self.LIST[:1]}),
            reply(H.ERROR, {"error_message": "Courriel introuvable."}),
        )
        self.call(self.client._read_email)
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-1]: "])
        self.assertEqual(
            self.stdout.getvalue(), self.LIST[0] + "\nCourriel introuvable.\n"
        )

    def test_request_error(self):
        self.set_replies(reply(H.ERROR, {"error_message": "Non connecté."}))
        self.call(self.client._read_email)
        self.assertEqual(self.stdout.getvalue(), "Non connecté.\n")
        self.input.assert_not_called()


class TestSendEmail(ClientTestCase):
    """Envoi de courriels."""

    DATE = "Tue, 12 Jul 2022 19:21:57 +0000"
    INSTRUCTION = (
        "Entrez le contenu du courriel, "
        "terminez la saisie avec un '.' seul sur une ligne:\n"
    )

    def setUp(self):
        super().setUp()
        self.client._username = "Qing.Long"
        self._patch("TP4_client.gloutils.get_current_utc_time").return_value = self.DATE

    def test_sends_email(self):
        self.set_inputs(
            "kohryu@glo2000.ca",
            "Bonjour!",
            "Exemple de contenu",
            "",
            " . ",
            "..",
            "Sur plusieurs lignes",
            ".",
        )
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        self.assertEqual(
            self.sent(),
            [
                {
                    "header": 9,
                    "payload": {
                        "sender": "Qing.Long@glo2000.ca",
                        "destination": "kohryu@glo2000.ca",
                        "subject": "Bonjour!",
                        "date": self.DATE,
                        "content": (
                            "Exemple de contenu\n\n . \n..\nSur plusieurs lignes"
                        ),
                    },
                }
            ],
        )
        self.assertEqual(
            self.prompts(),
            ["Entrez l'adresse du destinataire: ", "Entrez le sujet: "] + [None] * 6,
        )
        self.assertEqual(
            self.stdout.getvalue(), self.INSTRUCTION + "Le courriel a été envoyé.\n"
        )

    def test_empty_content(self):
        self.set_inputs("kohryu@glo2000.ca", "Vide", ".")
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        self.assertEqual(self.sent()[0]["payload"]["content"], "")

    def test_error_prints_server_message(self):
        message = "Le destinataire n'existe pas."
        self.set_inputs("personne@glo2000.ca", "Allo", "Texte", ".")
        self.set_replies(reply(H.ERROR, {"error_message": message}))
        self.call(self.client._send_email)
        self.assertEqual(self.stdout.getvalue(), self.INSTRUCTION + message + "\n")


class TestCheckStats(ClientTestCase):
    """Statistiques."""

    def test_displays_stats(self):
        self.set_replies(reply(H.OK, {"count": 1, "size": 319}))
        self.call(self.client._check_stats)
        self.assert_stats_shown()


class TestServerLost(ClientTestCase):
    """Un serveur disparu termine le client (code 1)."""

    def assert_lost(self, method):
        self.assertEqual(self.call_exit(method), 1)
        self.assertEqual(self.stderr.getvalue(), LOST)
        self.assertEqual(self.stdout.getvalue(), "")
        self.client._socket.close.assert_called_with()

    def test_send_fails(self):
        self.send.side_effect = glossocket.GLOSocketError("parti")
        self.assert_lost(self.client._check_stats)
        self.recv.assert_not_called()

    def test_logout_send_fails(self):
        self.send.side_effect = glossocket.GLOSocketError("parti")
        self.assert_lost(self.client._logout)

    def test_receive_fails(self):
        self.set_replies(glossocket.GLOSocketError("parti"))
        self.assert_lost(self.client._check_stats)



class TestInvalidReply(ClientTestCase):
    """
    Une réponse bien encadrée mais mal formée est signalée ; le client reste
    connecté et revient au menu.
    """

    def assert_invalid(self, method):
        self.assertIsNone(self.call(method))
        self.assertEqual(self.stdout.getvalue(), INVALID)
        self.assertEqual(self.stderr.getvalue(), "")
        self.client._socket.close.assert_not_called()

    def test_reply_is_not_json(self):
        self.set_replies("pas du JSON")
        self.assert_invalid(self.client._check_stats)

    def test_reply_is_not_an_object(self):
        self.set_replies("[1, 2]")
        self.assert_invalid(self.client._check_stats)

    def test_unknown_header(self):
        self.set_replies(reply(99))
        self.assert_invalid(self.client._check_stats)

    def test_missing_payload_key(self):
        self.set_replies(reply(H.OK, {"count": 1}))
        self.assert_invalid(self.client._check_stats)

    def test_wrong_payload_type(self):
        self.set_replies(reply(H.OK, {"email_list": 3}))
        self.assert_invalid(self.client._read_email)

    def test_error_without_message(self):
        self.set_replies(reply(H.ERROR))
        self.assert_invalid(self.client._check_stats)


class TestRun(ClientTestCase):
    """Boucle des menus."""

    AUTH = gloutils.CLIENT_AUTH_CHOICE + "\n"
    USE = gloutils.CLIENT_USE_CHOICE + "\n"

    def test_quit_from_auth_menu(self):
        self.set_inputs("x", "3")
        self.assertIsNone(self.call(self.client.run))
        self.assertEqual(self.sent(), [{"header": 3}])
        self.client._socket.close.assert_called_once_with()
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-3]: "] * 2)
        self.assertEqual(self.stdout.getvalue(), self.AUTH + invalid_choice(3))

    def test_full_session(self):
        self.set_inputs("1", "Qing.Long", "9", "3", "4", "2", "Qing.Long", "4", "3")
        self.getpass.side_effect = ["MotDePasse123", "MotDePasse123"]
        self.set_replies(
            reply(H.OK), reply(H.OK, {"count": 0, "size": 128}), reply(H.OK)
        )
        self.call(self.client.run)
        self.assertEqual(
            [message["header"] for message in self.sent()], [4, 10, 6, 5, 6, 3]
        )
        self.assertEqual(
            self.prompts(),
            [
                "Entrez votre choix [1-3]: ",
                "Entrez un nom d'utilisateur: ",
                "Entrez votre choix [1-4]: ",
                "Entrez votre choix [1-4]: ",
                "Entrez votre choix [1-4]: ",
                "Entrez votre choix [1-3]: ",
                "Entrez votre nom d'utilisateur: ",
                "Entrez votre choix [1-4]: ",
                "Entrez votre choix [1-3]: ",
            ],
        )
        self.assertEqual(
            self.stdout.getvalue(),
            self.AUTH
            + self.USE
            + invalid_choice(4)
            + "Nombre de messages : 0\nTaille du dossier : 128 octets\n"
            + self.USE
            + self.AUTH
            + self.USE
            + self.AUTH,
        )
        self.assertEqual(self.client._username, "")

    def test_error_returns_to_menu(self):
        message = support.LOGIN_FAILED
        self.set_inputs("2", "Kohryu", "3")
        self.getpass.return_value = "mauvais"
        self.set_replies(reply(H.ERROR, {"error_message": message}))
        self.call(self.client.run)
        self.assertEqual(self.stdout.getvalue(), self.AUTH + message + "\n" + self.AUTH)

    def test_read_then_main_menu(self):
        self.client._username = "kohryu"
        self.set_inputs("1", "1", "4", "3")
        self.set_replies(
            reply(H.OK, {"email_list": ["#1 a@glo2000.ca - Bonjour! date"]}),
            reply(H.OK, EMAIL),
        )
        self.call(self.client.run)
        self.assertEqual(
            self.stdout.getvalue(),
            self.USE
            + "#1 a@glo2000.ca - Bonjour! date\n"
            + EMAIL_TEXT
            + self.USE
            + self.AUTH,
        )

    def assert_clean_exit(self):
        self.assertEqual(self.call_exit(self.client.run), 0)
        self.assertEqual(self.sent()[-1], {"header": 3})
        self.client._socket.close.assert_called_with()
        self.assertTrue(self.stdout.getvalue().endswith("\n"))
        self.assertEqual(self.stderr.getvalue(), "")

    def test_ctrl_c_at_auth_menu(self):
        self.set_inputs(KeyboardInterrupt)
        self.assert_clean_exit()
        self.assertEqual(self.stdout.getvalue(), self.AUTH + "\n")

    def test_eof_at_auth_menu(self):
        self.set_inputs(EOFError)
        self.assert_clean_exit()

    def test_ctrl_c_at_password(self):
        self.set_inputs("1", "Qing.Long")
        self.getpass.side_effect = KeyboardInterrupt
        self.assert_clean_exit()
        self.assertEqual(self.sent(), [{"header": 3}])

    def test_eof_in_email_content(self):
        # Ctrl-D termine le corps et le courriel part ; une entrée qui reste
        # fermée (un tube) fait ensuite quitter au menu principal.
        self.client._username = "Qing.Long"
        self.set_inputs("2", "kohryu@glo2000.ca", "Sujet", "ligne", EOFError, EOFError)
        self.set_replies(reply(H.OK))
        self.assert_clean_exit()
        self.assertEqual([message["header"] for message in self.sent()], [9, 3])
        self.assertEqual(self.sent()[0]["payload"]["content"], "ligne")

    def test_ctrl_c_with_server_gone(self):
        self.set_inputs(KeyboardInterrupt)
        self.send.side_effect = glossocket.GLOSocketError("parti")
        self.assert_clean_exit()

    def test_server_lost_during_session(self):
        self.client._username = "Qing.Long"
        self.set_inputs("3")
        self.set_replies(glossocket.GLOSocketError("parti"))
        self.assertEqual(self.call_exit(self.client.run), 1)
        self.assertEqual(self.stdout.getvalue(), self.USE)
        self.assertEqual(self.stderr.getvalue(), LOST)


class TestMain(unittest.TestCase):
    """Arguments de la ligne de commande."""

    def run_main(self, *args):
        with mock.patch.object(sys, "argv", ["TP4_client.py", *args]), mock.patch(
            "TP4_client.Client"
        ) as client_class:
            TP4_client._main()
        return client_class

    def test_destination_short(self):
        client_class = self.run_main("-d", "127.0.0.1")
        client_class.assert_called_once_with(
            "127.0.0.1", gloutils.APP_PORT, timeout=10.0
        )
        client_class.return_value.run.assert_called_once_with()

    def test_destination_long_and_port(self):
        client_class = self.run_main("--destination", "serveur", "-p", "6000")
        client_class.assert_called_once_with("serveur", 6000, timeout=10.0)

    def test_port_long(self):
        client_class = self.run_main("-d", "serveur", "--port", "6001")
        client_class.assert_called_once_with("serveur", 6001, timeout=10.0)

    def assert_usage_error(self, *args):
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(
            SystemExit
        ) as context:
            self.run_main(*args)
        self.assertEqual(context.exception.code, 2)

    def test_destination_required(self):
        self.assert_usage_error()

    def test_port_must_be_an_integer(self):
        self.assert_usage_error("-d", "serveur", "-p", "abc")

    def test_help_text(self):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), self.assertRaises(SystemExit):
            self.run_main("--help")
        self.assertIn("Adresse IP/URL du serveur.", stdout.getvalue())


class FakeServer(threading.Thread):
    """
    Faux serveur d'une seule session : répond à chaque en-tête de `answers`
    par le texte associé (ou envoie tels quels les octets d'une trame), ne
    répond pas aux autres et s'arrête au BYE. Par défaut, il répond OK aux
    créations de compte et des statistiques fixes aux demandes de
    statistiques. Garde les messages reçus.
    """

    STATS = {"count": 2, "size": 447}

    def __init__(self, answers=None):
        super().__init__(daemon=True)
        self.answers = answers or {
            H.AUTH_REGISTER: reply(H.OK),
            H.STATS_REQUEST: reply(H.OK, self.STATS),
        }
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.received = []
        self.error = None

    def run(self):
        try:
            connection, _ = self.listener.accept()
            with connection:
                connection.settimeout(10)
                self._serve(connection)
        except (OSError, glossocket.GLOSocketError) as ex:
            self.error = ex
        finally:
            self.listener.close()

    def _serve(self, connection):
        while True:
            message = json.loads(glossocket.recv_msg(connection))
            self.received.append(message)
            if message["header"] == H.BYE:
                return
            answer = self.answers.get(message["header"])
            if isinstance(answer, bytes):
                # Une trame toute faite, par exemple en mauvais UTF-8.
                connection.sendall(answer)
            elif answer is not None:
                glossocket.send_msg(connection, answer)


def start_fake_server(test: unittest.TestCase, answers=None) -> "FakeServer":
    """Un `FakeServer` démarré, fermé et attendu à la fin de `test`."""
    server = FakeServer(answers)
    test.addCleanup(server.listener.close)
    server.start()
    test.addCleanup(server.join, 10)
    return server


class TestLoopback(unittest.TestCase):
    """Le vrai client face à un faux serveur sur 127.0.0.1."""

    def setUp(self):
        self.server = start_fake_server(self)

    def test_register_stats_quit(self):
        stdout = io.StringIO()
        with mock.patch(
            "builtins.input", side_effect=["1", "Qing.Long", "3", "4", "3"]
        ), mock.patch("getpass.getpass", return_value="MotDePasse123"):
            client = TP4_client.Client("127.0.0.1", self.server.port)
            self.addCleanup(client._socket.close)
            with contextlib.redirect_stdout(stdout):
                client.run()
        self.server.join(10)
        self.assertFalse(self.server.is_alive())
        self.assertIsNone(self.server.error)
        self.assertEqual(
            self.server.received,
            [
                {
                    "header": 4,
                    "payload": {"username": "Qing.Long", "password": "MotDePasse123"},
                },
                {"header": 10},
                {"header": 6},
                {"header": 3},
            ],
        )
        self.assertIn(
            "Nombre de messages : 2\nTaille du dossier : 447 octets\n",
            stdout.getvalue(),
        )
        self.assertEqual(client._socket.fileno(), -1)


class TestCommandLine(unittest.TestCase):
    """Le programme lancé pour de vrai n'affiche jamais de trace Python."""

    def run_client(self, port, stdin=""):
        return subprocess.run(
            [sys.executable, str(support.CLIENT_SCRIPT)]
            + ["-d", "127.0.0.1", "-p", str(port)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )

    def test_connection_refused(self):
        port = support.free_port()
        result = self.run_client(port)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            f"Impossible de joindre le serveur 127.0.0.1:{port} : {REFUSED}\n",
        )

    def test_end_of_input_says_bye(self):
        server = start_fake_server(self)
        result = self.run_client(server.port, stdin="x\n")
        server.join(10)
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stderr, "")
        self.assertEqual(
            result.stdout,
            gloutils.CLIENT_AUTH_CHOICE + "\n" + "Entrez votre choix [1-3]: "
            + invalid_choice(3) + "Entrez votre choix [1-3]: " + "\n",
        )
        self.assertEqual(server.received, [{"header": 3}])


if __name__ == "__main__":
    unittest.main()
