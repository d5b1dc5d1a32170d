"""\
GLO-2000 Travail pratique 4 - Tests du client : cas limites
Fichiers du cours (glosocket.py, gabarit en texte simple), défauts lus à
l'exécution, saisies nettoyées et vérifiées, Ctrl-D et Ctrl-C pendant la
rédaction, retour depuis la liste des courriels, délais d'attente, réponses
mal formées et ligne de commande en français.
"""

import contextlib
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import glossocket  # noqa: E402
import gloutils  # noqa: E402
import TP4_client  # noqa: E402
from tests import support  # noqa: E402
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
        answers = ["1", "Qing.Long", "3", "4", "3"]

        def slow_input(prompt=None):
            # L'utilisateur réfléchit plus longtemps que le délai.
            time.sleep(0.5)
            return answers.pop(0)

        server = base.start_fake_server(self)
        code, stdout, stderr = self.run_client(server, slow_input, 0.2)
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
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        client = TP4_client.Client.__new__(TP4_client.Client)
        client._socket = ours
        client._timeout = 10.0
        theirs.sendall(b"\x00\x00\x00\x02\xff\xfe")
        glossocket.send_msg(theirs, reply(H.OK, {"count": 1, "size": 2}))
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            client._check_stats()
            client._check_stats()
        self.assertEqual(
            stdout.getvalue(),
            INVALID + "Nombre de messages : 1\nTaille du dossier : 2 octets\n",
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


class TestTerminal(unittest.TestCase):
    """Ctrl-D et Ctrl-C tapés dans un vrai terminal pendant la rédaction."""

    def test_ctrl_d_sends_and_ctrl_c_cancels(self):
        server = base.start_fake_server(
            self, {H.AUTH_REGISTER: reply(H.OK), H.EMAIL_SENDING: reply(H.OK)}
        )
        terminal = TerminalClient(self, server.port)
        main_prompt = "Entrez votre choix [1-4]: "
        terminal.answer(
            ("Entrez votre choix [1-3]: ", "1"),
            ("Entrez un nom d'utilisateur: ", "Qing.Long"),
            ("Entrez un mot de passe: ", "MotDePasse123"),
            (main_prompt, "2"),
            ("Entrez l'adresse du destinataire: ", "kohryu@glo2000.ca"),
            ("Entrez le sujet: ", "Sujet"),
        )
        terminal.expect(INSTRUCTION)
        terminal.type("ligne")
        os.write(terminal.fd, b"\x04")
        terminal.expect(SENT)
        terminal.answer((main_prompt, "2"))
        terminal.expect("Entrez l'adresse du destinataire: ")
        os.write(terminal.fd, b"\x03")
        terminal.expect("Envoi annulé.\n")
        terminal.answer((main_prompt, "4"), ("Entrez votre choix [1-3]: ", "3"))
        self.assertEqual(terminal.wait_exit(), 0)
        server.join(10)
        self.assertEqual(
            [message["header"] for message in server.received], [4, 9, 6, 3]
        )
        self.assertEqual(server.received[1]["payload"]["content"], "ligne")
        self.assertNotIn("Traceback", terminal.transcript)


if __name__ == "__main__":
    unittest.main()
