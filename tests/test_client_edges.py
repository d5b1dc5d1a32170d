"""\
GLO-2000 Travail pratique 4 - Tests du client : cas limites
Fichiers du cours de chaque édition (2022 à 2025), défauts lus à
l'exécution, réponses que personne n'a demandées, saisies nettoyées et
vérifiées, Ctrl-D, Ctrl-Z et Ctrl-C pendant la rédaction, retour depuis la
liste des courriels, délais d'attente, attente d'une réponse qu'un Ctrl-C
interrompt, réponses mal formées, ligne de commande en français, un système
sans les modules propres à Unix, et ce que Windows fait des sorties et du
mot de passe.
"""

import contextlib
import importlib.util
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import glossocket  # noqa: E402
import gloutils  # noqa: E402
import TP4_client  # noqa: E402
from tests import editions, support  # noqa: E402
from tests import test_client as base  # noqa: E402
from tests.test_end_to_end import TerminalClient  # noqa: E402

H = gloutils.Headers
reply = base.reply
INVALID = base.INVALID
AUTH = gloutils.CLIENT_AUTH_CHOICE + "\n"
USE = gloutils.CLIENT_USE_CHOICE + "\n"
CANCELLED = "\nEnvoi annulé.\n"
SENT = "Le courriel a été envoyé.\n"
INSTRUCTION = base.TestSendEmail.INSTRUCTION
STATS_TEXT = gloutils.STATS_DISPLAY.format(**base.FakeServer.STATS) + "\n"
AUTH_PROMPT = "Entrez votre choix [1-3]: "
MAIN_PROMPT = "Entrez votre choix [1-4]: "
# Une trame entière dont le texte n'est pas de l'UTF-8.
BAD_UTF8_FRAME = b"\x00\x00\x00\x02\xff\xfe"
# Délai généreux pour ce qui dépend de l'ordonnanceur d'une machine chargée.
DEADLINE = 30


def run_script(script: Path, *args: str, stdin: str = "", cwd=ROOT):
    """Lance `script` avec `args` et renvoie le résultat, sorties en texte."""
    return subprocess.run(
        [sys.executable, "-E", str(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
        cwd=cwd,
    )


class TestCourseModules(unittest.TestCase):
    """Le client fonctionne avec les fichiers distribués par le cours."""

    def test_falls_back_to_glosocket(self):
        # None dans sys.modules fait échouer `import glossocket`.
        modules = {"glossocket": None, "glosocket": glossocket}
        with mock.patch.dict(sys.modules, modules):
            spec = importlib.util.spec_from_file_location(
                "TP4_client_cours", ROOT / "TP4_client.py"
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        self.assertIs(module.glossocket, glossocket)

    def test_runs_next_to_glosocket_only(self):
        folder = tempfile.TemporaryDirectory(prefix="glo-cours-")
        self.addCleanup(folder.cleanup)
        for name in ("TP4_client.py", "gloutils.py"):
            shutil.copy(ROOT / name, folder.name)
        shutil.copy(ROOT / "glossocket.py", Path(folder.name) / "glosocket.py")
        server = base.start_fake_server(self)
        result = run_script(
            Path(folder.name) / "TP4_client.py",
            "-d", support.LOOPBACK, "-p", str(server.port),
            stdin="3\n",
            cwd=folder.name,
        )
        server.join(10)
        self.assertEqual(result.stderr, "")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(server.received, [{"header": H.BYE}])

    def test_functions_reached_through_the_module(self):
        client = TP4_client.Client.__new__(TP4_client.Client)
        client._socket = mock.Mock(spec=socket.socket)
        with mock.patch.object(glossocket, "send_msg") as send:
            client._quit()
        send.assert_called_once_with(client._socket, json.dumps({"header": H.BYE}))

    def check_plain_template(self, template):
        with mock.patch.object(gloutils, "EMAIL_DISPLAY", template):
            text = TP4_client.Client._format_email(support.HANDOUT_EMAIL)
        self.assertEqual(text, support.HANDOUT_EMAIL_TEXT)

    def test_plain_string_template(self):
        self.check_plain_template(
            "De : {sender}\nÀ : {to}\nSujet : {subject}\nDate : {date}\n"
            + "-" * 40 + "\n{body}\n"
        )

    def test_plain_string_template_with_handout_names(self):
        self.check_plain_template(
            "De : {source}\nÀ : {destination}\nSujet : {subject}\nDate : {date}\n"
            + "-" * 40 + "\n{content}\n"
        )


# Correcteur simulé, lancé à côté des modules d'une édition : il remplace la
# fonction d'envoi (nommée en argument) après l'importation, lit le mot de
# passe comme le reste de l'entrée (pas de terminal), lance le client avec
# les arguments suivants et écrit sur stderr les en-têtes passés par son
# remplaçant.
GRADER = '''\
import getpass
import json
import sys

import glosocket
import TP4_client

SEND = sys.argv[1]
real_send = getattr(glosocket, SEND)
headers = []


def spy(dest_soc, message):
    headers.append(json.loads(message)["header"])
    real_send(dest_soc, message)


setattr(glosocket, SEND, spy)
getpass.getpass = input
sys.argv = ["TP4_client.py", *sys.argv[2:]]
try:
    TP4_client._main()
finally:
    print(json.dumps(headers), file=sys.stderr)
'''


def edition_folder(test: unittest.TestCase, year: int) -> Path:
    """Un dossier temporaire : les modules de l'édition `year` et notre client."""
    folder = tempfile.TemporaryDirectory(prefix=f"glo-{year}-")
    test.addCleanup(folder.cleanup)
    path = Path(folder.name)
    editions.write_edition(path, year)
    return path


def edition_glosocket(test: unittest.TestCase, year: int) -> types.ModuleType:
    """Le glosocket de l'édition `year`, importé sous un nom qui lui est propre."""
    path = edition_folder(test, year) / "glosocket.py"
    spec = importlib.util.spec_from_file_location(f"glosocket_{year}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestEveryEdition(unittest.TestCase):
    """
    Notre TP4_client.py posé à côté des modules de chaque édition du cours,
    lancé dans un sous-processus comme un correcteur le ferait.
    """

    LINE = "#1 Qing.Long@glo2000.ca - Bonjour! Tue, 12 Jul 2022 19:21:57 +0000"
    # Créer un compte, statistiques (réponse en mauvais UTF-8), lire le
    # courriel #1, se déconnecter, quitter.
    STDIN = "1\nQing.Long\nMotDePasse123\n3\n1\n1\n4\n3\n"

    def expected_stdout(self):
        auth = AUTH + AUTH_PROMPT
        use = USE + MAIN_PROMPT
        return (
            auth + "Entrez un nom d'utilisateur: " + "Entrez un mot de passe: "
            + use + INVALID
            + use + self.LINE + "\n" + "Entrez votre choix [1-1]: " + base.EMAIL_TEXT
            + use + auth
        )

    def run_edition(self, year):
        folder = edition_folder(self, year)
        (folder / "grader.py").write_text(GRADER, encoding="utf-8")
        server = base.start_fake_server(self, {
            H.AUTH_REGISTER: reply(H.OK),
            H.STATS_REQUEST: BAD_UTF8_FRAME,
            H.INBOX_READING_REQUEST: reply(H.OK, {"email_list": [self.LINE]}),
            H.INBOX_READING_CHOICE: reply(H.OK, support.HANDOUT_EMAIL),
        })
        result = run_script(
            folder / "grader.py", editions.EDITIONS[year].send,
            "-d", support.LOOPBACK, "-p", str(server.port),
            stdin=self.STDIN, cwd=folder,
        )
        server.join(10)
        headers = [H.AUTH_REGISTER, H.STATS_REQUEST, H.INBOX_READING_REQUEST,
                   H.INBOX_READING_CHOICE, H.AUTH_LOGOUT, H.BYE]
        # stderr ne contient que le compte rendu du correcteur : aucune trace.
        self.assertEqual(result.stderr, json.dumps(headers) + "\n")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, self.expected_stdout())
        self.assertEqual([message["header"] for message in server.received], headers)
        self.assertEqual(server.received[3]["payload"], {"choice": 1})
        help_text = run_script(folder / "TP4_client.py", "-h", cwd=folder).stdout
        self.assertIn(f"(par défaut : {editions.EDITIONS[year].app_port})", help_text)

    def test_each_edition(self):
        for year in editions.EDITIONS:
            with self.subTest(edition=year):
                self.run_edition(year)


class TestModuleNamesAtCallTime(base.ClientTestCase):
    """Fonctions et menu trouvés sous le nom de l'édition, à chaque appel."""

    def edition_module(self, send, recv):
        """Un module de communication qui n'a que les noms `send` et `recv`."""
        module = types.SimpleNamespace(GLOSocketError=glossocket.GLOSocketError)
        setattr(module, send, mock.Mock())
        stats = reply(H.OK, {"count": 1, "size": 2})
        setattr(module, recv, mock.Mock(return_value=stats))
        self._patch_object(TP4_client, "glossocket", module)
        return module

    def _patch_object(self, target, name, value):
        patcher = mock.patch.object(target, name, value)
        self.addCleanup(patcher.stop)
        patcher.start()

    def test_each_edition_names(self):
        for send, recv in (("send_mesg", "recv_mesg"), ("snd_mesg", "recv_mesg")):
            with self.subTest(send=send):
                module = self.edition_module(send, recv)
                self.call(self.client._check_stats)
                self.call(self.client._quit)
                calls = getattr(module, send).call_args_list
                self.assertEqual(
                    [json.loads(call.args[1]) for call in calls],
                    [{"header": H.STATS_REQUEST}, {"header": H.BYE}],
                )
                getattr(module, recv).assert_called_once_with(self.client._socket)

    def test_function_replaced_between_requests(self):
        module = self.edition_module("snd_mesg", "recv_mesg")
        first = module.snd_mesg
        self.call(self.client._check_stats)
        module.snd_mesg = mock.Mock()
        self.call(self.client._check_stats)
        first.assert_called_once()
        module.snd_mesg.assert_called_once()

    def menu_shown(self):
        self.set_inputs("4")
        self.call(self.client._main_menu)
        return self.stdout.getvalue()

    def test_2025_menu_name(self):
        with mock.patch.dict(gloutils.__dict__, {"CLIENT_USE_CHOICES": "Menu de 2025"}):
            del gloutils.CLIENT_USE_CHOICE
            self.assertEqual(self.menu_shown(), "Menu de 2025\n")

    def test_2022_menu_text_when_no_name(self):
        with mock.patch.dict(gloutils.__dict__):
            del gloutils.CLIENT_USE_CHOICE
            self.assertEqual(
                self.menu_shown(),
                "Menu principal\n1. Consultation de courriels\n2. Envoi de courriels\n"
                "3. Statistiques\n4. Se déconnecter\n",
            )

    def test_menu_replaced_after_import(self):
        with mock.patch.object(gloutils, "CLIENT_USE_CHOICE", "Menu remplacé"):
            self.assertEqual(self.menu_shown(), "Menu remplacé\n")


class TestStrayRepliesFromOtherServers(unittest.TestCase):
    """
    Un serveur d'une autre édition répond `OK` à `AUTH_LOGOUT` : cette
    réponse que personne n'a demandée est jetée, et chaque requête suivante
    reçoit la sienne.
    """

    ANSWERS = {
        H.AUTH_REGISTER: reply(H.OK),
        H.AUTH_LOGOUT: reply(H.OK),
        H.AUTH_LOGIN: reply(H.ERROR, {"error_message": support.LOGIN_FAILED}),
        H.STATS_REQUEST: reply(H.OK, base.FakeServer.STATS),
    }
    # Marque, dans les réponses de l'utilisateur, l'endroit où il lit l'écran
    # assez longtemps pour que le OK de trop soit arrivé.
    PAUSE = object()

    def run_client(self, answers):
        """
        Fait tourner le vrai client face à un faux serveur qui répond à
        `AUTH_LOGOUT` ; renvoie (stdout, en-têtes reçus par le serveur).
        """
        server = base.start_fake_server(self, self.ANSWERS)
        client = TP4_client.Client(support.LOOPBACK, server.port)
        self.addCleanup(client._socket.close)
        answers = list(answers)

        def user(prompt=None):
            answer = answers.pop(0)
            if answer is self.PAUSE:
                select.select([client._socket], [], [], DEADLINE)
                answer = answers.pop(0)
            return answer

        stdout = io.StringIO()
        with mock.patch("builtins.input", user), mock.patch(
            "getpass.getpass", return_value="MotDePasse123"
        ), contextlib.redirect_stdout(stdout):
            client.run()
        server.join(10)
        return stdout.getvalue(), [message["header"] for message in server.received]

    def test_each_request_gets_its_own_reply(self):
        stdout, headers = self.run_client([
            "1", "Qing.Long", "4",
            self.PAUSE, "2", "Kohryu",
            "1", "Qing.Long", "3", "4",
            self.PAUSE, "3",
        ])
        self.assertEqual(
            stdout,
            AUTH + USE + AUTH + support.LOGIN_FAILED + "\n"
            + AUTH + USE + STATS_TEXT + USE + AUTH,
        )
        self.assertEqual(headers, [4, 6, 5, 4, 10, 6, 3])

    def test_with_each_edition_module(self):
        for year in editions.EDITIONS:
            with self.subTest(edition=year), mock.patch.object(
                TP4_client, "glossocket", edition_glosocket(self, year)
            ):
                stdout, headers = self.run_client(
                    ["1", "Qing.Long", "4", self.PAUSE, "1", "Qing.Long", "3", "4", "3"]
                )
                self.assertEqual(
                    stdout, AUTH + USE + AUTH + USE + STATS_TEXT + USE + AUTH
                )
                self.assertEqual(headers, [4, 6, 4, 10, 6, 3])

    def test_partial_frame_is_read_entirely(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.settimeout(DEADLINE)
        theirs.settimeout(DEADLINE)
        client = TP4_client.Client.__new__(TP4_client.Client)
        client._socket = ours
        client._timeout = DEADLINE
        stray = support.frame(reply(H.OK))
        theirs.sendall(stray[:6])
        requests = []

        def server():
            # La fin de la trame arrive pendant que le client la lit ; que ce
            # soit avant ou après, il doit la lire en entier.
            time.sleep(0.2)
            theirs.sendall(stray[6:])
            requests.append(json.loads(glossocket.recv_msg(theirs)))
            glossocket.send_msg(theirs, reply(H.OK, {"count": 1, "size": 2}))

        thread = threading.Thread(target=server, daemon=True)
        thread.start()
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            client._check_stats()
        thread.join(DEADLINE)
        self.assertEqual(
            stdout.getvalue(), "Nombre de messages : 1\nTaille du dossier : 2 octets\n"
        )
        self.assertEqual(requests, [{"header": H.STATS_REQUEST}])


class TestDefaultsReadAtRunTime(unittest.TestCase):
    """Les défauts de `gloutils` sont lus à l'appel, pas à l'importation."""

    def test_constructor_reads_app_port(self):
        with mock.patch.object(gloutils, "APP_PORT", 6123), mock.patch(
            "TP4_client.socket.socket"
        ) as socket_class:
            TP4_client.Client("127.0.0.1")
        socket_class.return_value.connect.assert_called_once_with(("127.0.0.1", 6123))

    def test_constructor_connects_to_patched_port(self):
        server = base.start_fake_server(self)
        with mock.patch.object(gloutils, "APP_PORT", server.port):
            client = TP4_client.Client(support.LOOPBACK)
        client._quit()
        server.join(10)
        self.assertEqual(server.received, [{"header": H.BYE}])

    def test_command_line_reads_app_port(self):
        with mock.patch.object(gloutils, "APP_PORT", 6124), mock.patch.object(
            sys, "argv", ["TP4_client.py", "-d", "serveur"]
        ), mock.patch("TP4_client.Client") as client_class:
            TP4_client._main()
        client_class.assert_called_once_with("serveur", 6124, timeout=10.0)


class TestTrimmedFields(base.ClientTestCase):
    """Espaces autour des champs retirés, sauf dans le mot de passe et le corps."""

    def test_register_username(self):
        self.set_inputs("  Qing.Long ")
        self.getpass.return_value = " MotDePasse123 "
        self.set_replies(reply(H.OK))
        self.call(self.client._register)
        self.assertEqual(
            self.sent()[0]["payload"],
            {"username": "Qing.Long", "password": " MotDePasse123 "},
        )
        self.assertEqual(self.client._username, "Qing.Long")

    def test_login_username(self):
        self.set_inputs(" Kohryu")
        self.getpass.return_value = "MotDePasse123"
        self.set_replies(reply(H.OK))
        self.call(self.client._login)
        self.assertEqual(self.sent()[0]["payload"]["username"], "Kohryu")
        self.assertEqual(self.client._username, "Kohryu")

    def test_email_fields(self):
        self.client._username = "Qing.Long"
        self.set_inputs("kohryu@glo2000.ca ", "  Bonjour! ", "  indenté  ", ".")
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        payload = self.sent()[0]["payload"]
        self.assertEqual(payload["sender"], "Qing.Long@glo2000.ca")
        self.assertEqual(payload["destination"], "kohryu@glo2000.ca")
        self.assertEqual(payload["subject"], "Bonjour!")
        self.assertEqual(payload["content"], "  indenté  ")


class TestAddressCheck(base.ClientTestCase):
    """La syntaxe de l'adresse est vérifiée avant le sujet et le corps."""

    ADDRESS_PROMPT = "Entrez l'adresse du destinataire: "

    def setUp(self):
        super().setUp()
        self.client._username = "Qing.Long"

    def test_reasks_until_valid(self):
        self.set_inputs(
            "", "kohryu", "koh ryu@glo2000.ca", "kohryu@glo2000.ca\tx", "@glo2000.ca",
            "kohryu@", "a@b@glo2000.ca", "kohryu@glo2000.ca", "Sujet", ".",
        )
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        self.assertEqual(
            self.prompts(), [self.ADDRESS_PROMPT] * 8 + ["Entrez le sujet: ", None]
        )
        self.assertEqual(
            self.stdout.getvalue(),
            "Adresse invalide : l'adresse est vide.\n"
            "Adresse invalide : il manque le « @ ».\n"
            "Adresse invalide : l'adresse ne doit pas contenir d'espace.\n"
            "Adresse invalide : l'adresse ne doit pas contenir d'espace.\n"
            "Adresse invalide : il manque le nom avant le « @ ».\n"
            "Adresse invalide : il manque le domaine après le « @ ».\n"
            "Adresse invalide : l'adresse ne doit contenir qu'un seul « @ ».\n"
            + INSTRUCTION + SENT,
        )
        self.assertEqual(len(self.sent()), 1)

    def test_external_address_is_left_to_the_server(self):
        self.set_inputs("quelqu.un@exemple.com", "Sujet", ".")
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        self.assertEqual(
            self.sent()[0]["payload"]["destination"], "quelqu.un@exemple.com"
        )


class TestWritingInterrupted(base.ClientTestCase):
    """Ctrl-D termine le corps ; Ctrl-C abandonne le courriel, pas le client."""

    def setUp(self):
        super().setUp()
        self.client._username = "Qing.Long"

    def test_eof_ends_the_body(self):
        self.set_inputs("kohryu@glo2000.ca", "Sujet", "ligne 1", "ligne 2", EOFError)
        self.set_replies(reply(H.OK))
        self.call(self.client._send_email)
        self.assertEqual(self.sent()[0]["payload"]["content"], "ligne 1\nligne 2")
        self.assertEqual(self.stdout.getvalue(), INSTRUCTION + SENT)

    def assert_cancelled(self, *inputs, before=""):
        self.set_inputs(*inputs, KeyboardInterrupt)
        self.call(self.client._send_email)
        self.send.assert_not_called()
        self.assertEqual(self.stdout.getvalue(), before + CANCELLED)

    def test_ctrl_c_at_address(self):
        self.assert_cancelled()

    def test_ctrl_c_at_subject(self):
        self.assert_cancelled("kohryu@glo2000.ca")

    def test_ctrl_c_in_body(self):
        self.assert_cancelled("kohryu@glo2000.ca", "Sujet", "ligne", before=INSTRUCTION)

    def test_ctrl_c_returns_to_main_menu(self):
        self.set_inputs("2", "kohryu@glo2000.ca", KeyboardInterrupt, "4", "3")
        self.assertIsNone(self.call(self.client.run))
        self.assertEqual([message["header"] for message in self.sent()], [6, 3])
        self.assertEqual(self.stdout.getvalue(), USE + CANCELLED + USE + AUTH)

    def test_ctrl_z_enter_ends_the_body_and_the_session_goes_on(self):
        # Sous Windows, Ctrl-Z puis Entrée fait lever EOFError à input() ;
        # la console reste ouverte et la session continue.
        self.set_inputs(
            "2", "kohryu@glo2000.ca", "Sujet", "ligne", EOFError, "3", "4", "3"
        )
        self.set_replies(reply(H.OK), reply(H.OK, base.FakeServer.STATS))
        self.assertIsNone(self.call(self.client.run))
        self.assertEqual([message["header"] for message in self.sent()], [9, 10, 6, 3])
        self.assertEqual(self.sent()[0]["payload"]["content"], "ligne")
        self.assertEqual(
            self.stdout.getvalue(),
            USE + INSTRUCTION + SENT + USE + STATS_TEXT + USE + AUTH,
        )

    def test_eof_at_address_still_quits(self):
        self.set_inputs("2", EOFError)
        with self.assertRaises(SystemExit) as context:
            self.call(self.client.run)
        self.assertEqual(context.exception.code, 0)
        self.assertEqual(self.sent(), [{"header": 3}])


class TestInboxGoBack(base.ClientTestCase):
    """Une réponse vide ou 0 après la liste ramène au menu sans rien lire."""

    LIST = base.TestReadEmail.LIST

    def assert_goes_back(self, answer):
        self.set_inputs(answer)
        self.set_replies(reply(H.OK, {"email_list": self.LIST}))
        self.call(self.client._read_email)
        self.assertEqual(self.sent(), [{"header": 7}])
        self.assertEqual(self.prompts(), ["Entrez votre choix [1-2]: "])
        self.assertEqual(self.stdout.getvalue(), "\n".join(self.LIST) + "\n")

    def test_empty_answer(self):
        self.assert_goes_back("")

    def test_zero(self):
        self.assert_goes_back("0")

    def test_back_to_main_menu(self):
        self.client._username = "kohryu"
        self.set_inputs("1", " ", "4", "3")
        self.set_replies(reply(H.OK, {"email_list": self.LIST}))
        self.call(self.client.run)
        self.assertEqual(
            self.stdout.getvalue(), USE + "\n".join(self.LIST) + "\n" + USE + AUTH
        )

    def test_main_menu_explains_invalid_choice(self):
        self.client._username = "kohryu"
        self.set_inputs("", "5", "4", "3")
        self.call(self.client.run)
        self.assertEqual(
            self.stdout.getvalue(), USE + base.invalid_choice(4) * 2 + AUTH
        )


class TestTimeout(unittest.TestCase):
    """Délai de connexion et de réponse ; jamais pendant une saisie."""

    def test_default_timeout(self):
        with mock.patch("TP4_client.socket.socket") as socket_class:
            TP4_client.Client("127.0.0.1", 6000)
        socket_class.return_value.settimeout.assert_called_once_with(10.0)

    def test_timeout_keyword(self):
        with mock.patch("TP4_client.socket.socket") as socket_class:
            TP4_client.Client("127.0.0.1", 6000, timeout=2.5)
        socket_class.return_value.settimeout.assert_called_once_with(2.5)

    def test_connect_times_out(self):
        stderr = io.StringIO()
        with mock.patch("TP4_client.socket.socket") as socket_class:
            socket_class.return_value.connect.side_effect = TimeoutError("timed out")
            with contextlib.redirect_stderr(stderr), self.assertRaises(
                SystemExit
            ) as context:
                TP4_client.Client("10.0.0.1", 5321, timeout=0.5)
        self.assertEqual(context.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            "Impossible de joindre le serveur 10.0.0.1:5321 : "
            "aucune réponse en 0,5 s.\n",
        )
        socket_class.return_value.close.assert_called_once_with()

    def test_connect_times_out_for_real(self):
        # Une file d'attente pleine fait ignorer les nouvelles connexions.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind((support.LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(10):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(filler.close)
            filler.settimeout(0.3)
            try:
                filler.connect((support.LOOPBACK, port))
            except TimeoutError:
                break
        else:
            self.skipTest("le système accepte toujours de nouvelles connexions")
        result = run_script(
            support.CLIENT_SCRIPT, "-d", support.LOOPBACK, "-p", str(port),
            "--timeout", "0.5",
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            f"Impossible de joindre le serveur 127.0.0.1:{port} : "
            "aucune réponse en 0,5 s.\n",
        )

    def run_client(self, server, inputs, timeout):
        """Fait tourner le vrai client face à `server` ; renvoie (code, sorties)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        with mock.patch("builtins.input", side_effect=inputs), mock.patch(
            "getpass.getpass", return_value="MotDePasse123"
        ), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            client = TP4_client.Client(support.LOOPBACK, server.port, timeout=timeout)
            self.addCleanup(client._socket.close)
            try:
                client.run()
                code = None
            except SystemExit as ex:
                code = ex.code
        server.join(10)
        return code, stdout.getvalue(), stderr.getvalue()

    def test_silent_server_ends_the_client(self):
        server = base.start_fake_server(self, {H.AUTH_REGISTER: reply(H.OK)})
        code, stdout, stderr = self.run_client(server, ["1", "Qing.Long", "3"], 0.3)
        self.assertEqual(code, 1)
        self.assertEqual(
            stderr, "Le serveur ne répond plus (délai de 0,3 s dépassé).\n"
        )
        self.assertEqual(stdout, AUTH + USE)
        self.assertEqual([message["header"] for message in server.received], [4, 10])

    def test_waiting_for_the_user_never_times_out(self):
        answers = iter(["1", "Qing.Long", "3", "4", "3"])
        # Assez long pour qu'un faux serveur réponde à temps sur une machine
        # chargée.
        timeout = 2.0

        def slow_input(prompt=None):
            answer = next(answers)
            # Connecté, l'utilisateur réfléchit plus longtemps que le délai
            # avant de demander les statistiques.
            if (prompt, answer) == (MAIN_PROMPT, "3"):
                time.sleep(timeout + 0.5)
            return answer

        server = base.start_fake_server(self)
        code, stdout, stderr = self.run_client(server, slow_input, timeout)
        self.assertIsNone(code)
        self.assertEqual(stderr, "")
        self.assertIn(gloutils.STATS_DISPLAY.format(**base.FakeServer.STATS), stdout)
        self.assertEqual(
            [message["header"] for message in server.received], [4, 10, 6, 3]
        )


class TestFailureKinds(base.ClientTestCase):
    """Ce que le client dit selon la cause d'une erreur de communication."""

    def setUp(self):
        super().setUp()
        self.client._timeout = 10.0

    @staticmethod
    def wrapped(cause):
        """Une `GLOSocketError` provoquée par `cause`, comme glossocket la lève."""
        error = glossocket.GLOSocketError("échec")
        error.__cause__ = cause
        return error

    def assert_exit(self, stderr):
        with self.assertRaises(SystemExit) as context:
            self.call(self.client._check_stats)
        self.assertEqual(context.exception.code, 1)
        self.assertEqual(self.stderr.getvalue(), stderr)
        self.client._socket.close.assert_called_with()

    def test_receive_times_out(self):
        self.set_replies(self.wrapped(TimeoutError("timed out")))
        self.assert_exit("Le serveur ne répond plus (délai de 10 s dépassé).\n")

    def test_send_times_out(self):
        self.send.side_effect = self.wrapped(TimeoutError("timed out"))
        self.assert_exit("Le serveur ne répond plus (délai de 10 s dépassé).\n")

    def test_unwrapped_socket_error(self):
        self.set_replies(ConnectionResetError(104, "Connection reset by peer"))
        self.assert_exit(base.LOST)

    def test_bad_utf8_keeps_the_connection(self):
        self.set_replies(self.wrapped(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x")))
        self.call(self.client._check_stats)
        self.assertEqual(self.stdout.getvalue(), INVALID)
        self.client._socket.close.assert_not_called()


class TestInterruptibleWait(base.ClientTestCase):
    """
    La réponse est attendue par tranches courtes de `select` : sous Windows,
    un Ctrl-C n'est vu qu'au retour d'un appel bloquant du socket.
    """

    NOTHING = ([], [], [])

    def timeouts(self):
        """Les délais passés à `select`, dans l'ordre."""
        return [call.args[3] for call in self.select.select.call_args_list]

    def test_waits_in_short_slices(self):
        arrived = ([self.client._socket], [], [])
        # Rien en attente, deux tranches sans réponse, puis la réponse.
        self.select.select.side_effect = [self.NOTHING] * 3 + [arrived]
        self.set_replies(reply(H.OK, {"count": 1, "size": 319}))
        self.call(self.client._check_stats)
        self.assertEqual(self.timeouts(), [0] + [TP4_client.WAIT_SLICE] * 3)
        self.assertEqual(
            self.stdout.getvalue(),
            "Nombre de messages : 1\nTaille du dossier : 319 octets\n",
        )

    def test_silence_ends_at_the_deadline(self):
        # Une horloge que seul `select` fait avancer, du temps qu'il attend.
        now = [0.0]
        self._patch("TP4_client.time").monotonic.side_effect = lambda: now[0]

        def silent(sockets, _w, _x, timeout):
            now[0] += timeout
            return self.NOTHING

        self.select.select.side_effect = silent
        self.client._timeout = 1.2
        self.assertEqual(self.call_exit(self.client._check_stats), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "Le serveur ne répond plus (délai de 1,2 s dépassé).\n",
        )
        first, *slices, last = self.timeouts()
        self.assertEqual((first, slices), (0, [TP4_client.WAIT_SLICE] * 2))
        # La dernière tranche s'arrête au délai, sans le dépasser.
        self.assertAlmostEqual(last, 0.2)
        self.recv.assert_not_called()

    def test_ctrl_c_while_waiting_quits_cleanly(self):
        def interrupted(sockets, _w, _x, timeout):
            if timeout:
                raise KeyboardInterrupt
            return self.NOTHING

        self.select.select.side_effect = interrupted
        self.set_inputs("1", "Qing.Long")
        self.getpass.return_value = "MotDePasse123"
        self.assertEqual(self.call_exit(self.client.run), 0)
        self.assertEqual(self.stdout.getvalue(), AUTH + "\n")
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertEqual([message["header"] for message in self.sent()], [4, 3])
        self.recv.assert_not_called()
        self.client._socket.close.assert_called_once_with()


class TestLenientReplies(base.ClientTestCase):
    """Entiers écrits en chiffres acceptés ; autres formes fautives refusées."""

    def test_stats_as_digit_strings(self):
        self.set_replies(reply(H.OK, {"count": "1", "size": "318"}))
        self.call(self.client._check_stats)
        self.assertEqual(
            self.stdout.getvalue(),
            "Nombre de messages : 1\nTaille du dossier : 318 octets\n",
        )

    def test_header_as_digit_string(self):
        self.set_replies(
            json.dumps({"header": "1", "payload": {"count": 0, "size": 0}})
        )
        self.call(self.client._check_stats)
        self.assertTrue(self.stdout.getvalue().startswith("Nombre de messages : 0\n"))

    def test_not_integers(self):
        for size in ("-3", "3.5", " 318", "٣", True, 3.0, None, "9" * 5000):
            with self.subTest(size=size):
                self.stdout.truncate(0)
                self.stdout.seek(0)
                self.set_replies(reply(H.OK, {"count": 1, "size": size}))
                self.call(self.client._check_stats)
                self.assertEqual(self.stdout.getvalue(), INVALID)

    def test_list_items_must_be_text(self):
        self.set_replies(reply(H.OK, {"email_list": ["#1 a", 2]}))
        self.call(self.client._read_email)
        self.assertEqual(self.stdout.getvalue(), INVALID)
        self.input.assert_not_called()

    def test_deeply_nested_json(self):
        self.set_replies("[" * 100_000 + "]" * 100_000)
        self.call(self.client._check_stats)
        self.assertEqual(self.stdout.getvalue(), INVALID)

    def test_session_goes_on_after_an_invalid_reply(self):
        self.client._username = "kohryu"
        self.set_inputs("3", "3", "4", "3")
        self.set_replies("{}", reply(H.OK, {"count": 0, "size": 128}))
        self.call(self.client.run)
        self.assertEqual(
            self.stdout.getvalue(),
            USE + INVALID + USE
            + "Nombre de messages : 0\nTaille du dossier : 128 octets\n"
            + USE + AUTH,
        )
        self.assertEqual(
            [message["header"] for message in self.sent()], [10, 10, 6, 3]
        )

    def test_invalid_login_reply_stays_logged_out(self):
        self.set_inputs("Kohryu")
        self.getpass.return_value = "MotDePasse123"
        self.set_replies(reply(H.OK, None) + "x")
        self.call(self.client._login)
        self.assertEqual(self.client._username, "")
        self.assertEqual(self.stdout.getvalue(), INVALID)


class TestBadUtf8OnTheWire(unittest.TestCase):
    """Une trame entière en mauvais UTF-8 laisse la connexion lisible."""

    def test_next_reply_is_read(self):
        server = base.start_fake_server(self, {
            H.STATS_REQUEST: BAD_UTF8_FRAME,
            H.INBOX_READING_REQUEST: reply(H.OK, {"email_list": []}),
        })
        client = TP4_client.Client(support.LOOPBACK, server.port)
        self.addCleanup(client._socket.close)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            client._check_stats()
            client._read_email()
        self.assertEqual(
            stdout.getvalue(), INVALID + "Votre boîte de réception est vide.\n"
        )


class TestFrenchCommandLine(unittest.TestCase):
    """Aide et erreurs de la ligne de commande en français."""

    ENGLISH = ("usage", "show this", "optional arguments", "error", "required",
               "unrecognized", "invalid", "expected", "ignored")

    def parse(self, *args):
        """Analyse `args` ; renvoie (code de sortie, stdout, stderr, Client simulé)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        code = None
        with mock.patch.object(sys, "argv", ["TP4_client.py", *args]), mock.patch(
            "TP4_client.Client"
        ) as client_class, contextlib.redirect_stdout(
            stdout
        ), contextlib.redirect_stderr(stderr):
            try:
                TP4_client._main()
            except SystemExit as ex:
                code = ex.code
        return code, stdout.getvalue(), stderr.getvalue(), client_class

    def assert_french(self, text):
        for english in self.ENGLISH:
            self.assertNotIn(english, text)
        # En français, le deux-points est précédé d'une espace.
        self.assertNotRegex(text, r"\S:")

    def test_help(self):
        for option in ("-h", "--help"):
            with self.subTest(option=option):
                code, stdout, stderr, _ = self.parse(option)
                self.assertEqual(code, 0)
                self.assertEqual(stderr, "")
                self.assertTrue(
                    stdout.startswith("utilisation : TP4_client.py [-h] -d ")
                )
                for text in ("afficher ce message d'aide et quitter",
                             "argument obligatoire :", "options :",
                             "Adresse IP/URL du serveur.", "--timeout SECONDES",
                             "(par défaut : 5321)", "(par défaut : 10)"):
                    self.assertIn(text, stdout)
                self.assert_french(stdout)

    def assert_error(self, args, message):
        code, stdout, stderr, client_class = self.parse(*args)
        self.assertEqual(code, 2)
        self.assertEqual(stdout, "")
        self.assertEqual(stderr, f"TP4_client.py : erreur : {message}\n")
        self.assert_french(stderr)
        client_class.assert_not_called()

    def test_destination_required(self):
        self.assert_error(
            [], "arguments obligatoires manquants : -d/--destination."
        )

    def test_missing_value(self):
        self.assert_error(["-d"], "l'argument -d/--destination attend une valeur.")

    def test_unknown_argument(self):
        self.assert_error(["-d", "x", "y"], "arguments non reconnus : y.")

    def test_help_takes_no_value(self):
        self.assert_error(
            ["-d", "x", "--help=y"],
            "l'argument -h/--help ne prend pas de valeur (reçu : 'y').",
        )

    def test_port_out_of_range(self):
        for port in ("0", "65536", "-1", "abc", "80.5"):
            with self.subTest(port=port):
                self.assert_error(
                    ["-d", "x", "-p", port],
                    "argument -p/--port : le port doit être un entier de 1 à 65535 "
                    f"(reçu : « {port} »).",
                )

    def test_port_bounds_accepted(self):
        for port in (1, 65535):
            with self.subTest(port=port):
                code, _, _, client_class = self.parse("-d", "x", "-p", str(port))
                self.assertIsNone(code)
                client_class.assert_called_once_with("x", port, timeout=10.0)

    def test_timeout_accepted(self):
        for text, seconds in (("2.5", 2.5), ("0,5", 0.5), ("86400", 86400.0)):
            with self.subTest(text=text):
                code, _, _, client_class = self.parse("-d", "x", "--timeout", text)
                self.assertIsNone(code)
                client_class.assert_called_once_with("x", 5321, timeout=seconds)

    def test_timeout_rejected(self):
        for text in ("0", "-1", "abc", "nan", "inf", "86401", "1e12"):
            with self.subTest(text=text):
                self.assert_error(
                    ["-d", "x", "--timeout", text],
                    "argument --timeout : le délai doit être un nombre de secondes "
                    f"supérieur à 0 et d'au plus 86400 (reçu : « {text} »).",
                )

    def test_script_error_is_one_line(self):
        result = run_script(support.CLIENT_SCRIPT, "-d", "x", "-p", "70000")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            "TP4_client.py : erreur : argument -p/--port : le port doit être un "
            "entier de 1 à 65535 (reçu : « 70000 »).\n",
        )


def process_state(pid: int) -> str:
    """L'état du processus `pid` selon le système : R, S (il dort), Z…"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        # Sans /proc (macOS, BSD), ps donne le même état.
        result = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True
        )
        return result.stdout.strip()[:1]
    # Le nom du programme, entre parenthèses, peut contenir des espaces.
    return stat.rpartition(")")[2].split()[0]


class Terminal(TerminalClient):
    """Un `TerminalClient` qui tape Ctrl-C sans course avec `input()`."""

    def interrupt(self, prompt: str) -> None:
        """
        Attend `prompt`, puis que le client dorme, et tape Ctrl-C.

        `input()` affiche son invite, puis lit le terminal. Un SIGINT reçu
        entre les deux est noté par Python, mais la lecture qui suit ne
        s'interrompt pas pour lui : le client resterait bloqué. Une fois
        l'invite affichée, le client ne dort plus que dans cette lecture.
        """
        self.expect(prompt)
        deadline = time.monotonic() + DEADLINE
        while process_state(self.pid) != "S":
            if time.monotonic() > deadline:
                self._test.fail(
                    f"Le client ne lit pas le terminal :\n{self.transcript}"
                )
            time.sleep(0.01)
        os.write(self.fd, b"\x03")


class TestTerminal(unittest.TestCase):
    """Ctrl-D et Ctrl-C tapés dans un vrai terminal pendant la rédaction."""

    def test_ctrl_d_sends_and_ctrl_c_cancels(self):
        server = base.start_fake_server(
            self, {H.AUTH_REGISTER: reply(H.OK), H.EMAIL_SENDING: reply(H.OK)}
        )
        terminal = Terminal(self, server.port)
        terminal.answer(
            (AUTH_PROMPT, "1"),
            ("Entrez un nom d'utilisateur: ", "Qing.Long"),
            ("Entrez un mot de passe: ", "MotDePasse123"),
            (MAIN_PROMPT, "2"),
            ("Entrez l'adresse du destinataire: ", "kohryu@glo2000.ca"),
            ("Entrez le sujet: ", "Sujet"),
        )
        terminal.expect(INSTRUCTION)
        # Le terminal garde la ligne et la fin d'entrée jusqu'à leur lecture :
        # les taper d'avance est sans course.
        terminal.type("ligne")
        os.write(terminal.fd, b"\x04")
        terminal.expect(SENT)
        terminal.answer((MAIN_PROMPT, "2"))
        terminal.interrupt("Entrez l'adresse du destinataire: ")
        terminal.expect("Envoi annulé.\n")
        terminal.answer((MAIN_PROMPT, "4"), (AUTH_PROMPT, "3"))
        self.assertEqual(terminal.wait_exit(), 0)
        server.join(10)
        self.assertEqual(
            [message["header"] for message in server.received], [4, 9, 6, 3]
        )
        self.assertEqual(server.received[1]["payload"]["content"], "ligne")
        self.assertNotIn("Traceback", terminal.transcript)


class TestWithoutUnixModules(unittest.TestCase):
    """
    Le client s'importe et fonctionne sans les modules propres à Unix,
    comme sous Windows (None dans sys.modules fait échouer leur import).
    """

    BLOCKED = ("fcntl", "resource", "termios", "pwd", "grp", "readline")

    def run_without(self, code, stdin=""):
        prologue = (
            "import sys\n"
            f"for name in {self.BLOCKED!r}:\n"
            "    sys.modules[name] = None\n"
        )
        return subprocess.run(
            [sys.executable, "-E", "-c", prologue + code],
            input=stdin, capture_output=True, text=True, timeout=DEADLINE, cwd=ROOT,
        )

    def test_imports(self):
        result = self.run_without("import TP4_client\n")
        self.assertEqual(result.stderr, "")
        self.assertEqual(result.returncode, 0)

    def test_runs_a_session(self):
        server = base.start_fake_server(self)
        result = self.run_without(
            "import runpy\n"
            f"sys.argv = ['TP4_client.py', '-d', {support.LOOPBACK!r}, "
            f"'-p', '{server.port}']\n"
            "runpy.run_path('TP4_client.py', run_name='__main__')\n",
            stdin="1\nQing.Long\nMotDePasse123\n3\n4\n3\n",
        )
        server.join(10)
        # Sans termios, getpass prévient que le mot de passe peut s'afficher.
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(result.returncode, 0)
        self.assertIn(STATS_TEXT, result.stdout)
        self.assertEqual(
            [message["header"] for message in server.received], [4, 10, 6, 3]
        )


class TestWindowsConsole(unittest.TestCase):
    """
    Sous Windows, une sortie redirigée est en cp1252, et `getpass` lit la
    console, jamais l'entrée standard.
    """

    EMAIL = {
        "sender": "alice@glo2000.ca",
        "destination": "qing.long@glo2000.ca",
        "subject": "Œuvre ✓",
        "date": "Tue, 12 Jul 2022 19:21:57 +0000",
        # Une demi-paire de substitution : du JSON valide, que nul codage
        # n'écrit.
        "content": "Fini \ud800",
    }

    def run_client(self, encoding):
        """
        Lit le courriel dans une session dont les sorties sont redirigées et
        codées en `encoding`, comme sous Windows ; renvoie le résultat.
        """
        line = gloutils.SUBJECT_DISPLAY.format(number=1, **self.EMAIL)
        server = base.start_fake_server(self, {
            H.AUTH_REGISTER: reply(H.OK),
            H.INBOX_READING_REQUEST: reply(H.OK, {"email_list": [line]}),
            H.INBOX_READING_CHOICE: reply(H.OK, self.EMAIL),
        })
        code = (
            "import runpy, sys\n"
            "for stream in (sys.stdout, sys.stderr):\n"
            f"    stream.reconfigure(encoding={encoding!r}, errors='strict')\n"
            f"sys.argv = ['TP4_client.py', '-d', {support.LOOPBACK!r}, "
            f"'-p', '{server.port}']\n"
            "runpy.run_path('TP4_client.py', run_name='__main__')\n"
        )
        # Sans terminal de contrôle, getpass lit l'entrée standard.
        result = subprocess.run(
            [sys.executable, "-E", "-c", code],
            input=b"1\nQing.Long\nMotDePasse123\n1\n1\n4\n3\n",
            capture_output=True, timeout=DEADLINE, cwd=ROOT, start_new_session=True,
        )
        server.join(10)
        return result

    def test_unwritable_characters_are_replaced(self):
        # Les accents, que cp1252 connaît, restent lisibles.
        cases = (("cp1252", "Sujet : Œuvre ?"), ("utf-8", "Sujet : Œuvre ✓"))
        for encoding, subject in cases:
            with self.subTest(encoding=encoding):
                result = self.run_client(encoding)
                stderr = result.stderr.decode(encoding, "replace")
                self.assertNotIn("Traceback", stderr)
                self.assertEqual(result.returncode, 0, stderr)
                stdout = result.stdout.decode(encoding)
                self.assertIn("1. Créer un compte", stdout)
                self.assertIn(subject, stdout)
                self.assertIn("Fini ?", stdout)

    def ask_password(self, is_console):
        """Demande un mot de passe comme sous Windows ; renvoie (réponse, getpass)."""
        stdin = mock.Mock(**{"isatty.return_value": is_console})
        with mock.patch.object(sys, "platform", "win32"), mock.patch.object(
            sys, "stdin", stdin
        ), mock.patch("builtins.input", return_value="MotDePasse123"), mock.patch(
            "getpass.getpass", return_value="Secret123"
        ) as getpass:
            return TP4_client._ask_password("Entrez un mot de passe: "), getpass

    def test_redirected_input_reads_the_password_as_a_line(self):
        password, getpass = self.ask_password(is_console=False)
        self.assertEqual(password, "MotDePasse123")
        getpass.assert_not_called()

    def test_console_hides_the_password(self):
        password, getpass = self.ask_password(is_console=True)
        self.assertEqual(password, "Secret123")
        getpass.assert_called_once_with("Entrez un mot de passe: ")


if __name__ == "__main__":
    unittest.main()
