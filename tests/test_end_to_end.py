"""\
GLO-2000 Travail pratique 4 - Tests de bout en bout
Le serveur tourne comme un vrai processus (dossier temporaire, port libre) ;
les sessions de l'énoncé sont rejouées avec le vrai client dans un
pseudo-terminal, et des clients bruts du protocole vérifient la concurrence,
la robustesse face aux requêtes malformées, le relais SMTP et les arrêts.
"""

import contextlib
import io
import itertools
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import malformed, support  # noqa: E402

import gloutils  # noqa: E402
import TP4_client  # noqa: E402

H = gloutils.Headers
OK = {"header": H.OK}
PASSWORD = support.STRONG_PASSWORD
LOGIN_FAILED = support.LOGIN_FAILED
AUTH_MENU = gloutils.CLIENT_AUTH_CHOICE.split("\n")
MAIN_MENU = gloutils.CLIENT_USE_CHOICE.split("\n")
AUTH_PROMPT = "Entrez votre choix [1-3]: "
MAIN_PROMPT = "Entrez votre choix [1-4]: "
CONTENT_PROMPT = ("Entrez le contenu du courriel, "
                  "terminez la saisie avec un '.' seul sur une ligne:")
TIMEOUT = 10


class TerminalClient:
    """
    `TP4_client.py` lancé dans un pseudo-terminal (getpass lit le terminal) :
    on attend chaque invite avant d'y répondre, comme un utilisateur.
    """

    def __init__(self, test: unittest.TestCase, port: int) -> None:
        self._test = test
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - processus enfant
            try:
                os.execv(sys.executable, [sys.executable, str(support.CLIENT_SCRIPT),
                                          "-d", support.LOOPBACK, "-p", str(port)])
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self._raw = bytearray()
        self._position = 0
        self._exit_code = None
        test.addCleanup(self.close)

    @property
    def transcript(self) -> str:
        """Tout ce que le client a affiché, fins de ligne normalisées."""
        return self._raw.decode("utf-8", "replace").replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        """Lit ce qui arrive pendant au plus `timeout` s ; faux à la fin du flux."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO : le client a quitté et fermé le terminal.
            data = b""
        self._raw += data
        return bool(data)

    def expect(self, text: str) -> None:
        """Attend que `text` s'affiche après ce qui a déjà été attendu."""
        deadline = time.monotonic() + TIMEOUT
        while (found := self.transcript.find(text, self._position)) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                self._test.fail(f"{text!r} n'est pas apparu :\n{self.transcript}")
        self._position = found + len(text)

    def type(self, *lines: str) -> None:
        """Tape `lines`, chacune suivie de Entrée."""
        os.write(self.fd, "".join(line + "\n" for line in lines).encode("utf-8"))

    def answer(self, *steps: tuple) -> None:
        """Pour chaque paire (invite, réponse) : attend l'invite, puis répond."""
        for prompt, reply in steps:
            self.expect(prompt)
            self.type(reply)

    def wait_exit(self) -> int:
        """Lit jusqu'à la fin du flux et renvoie le code de sortie du client."""
        deadline = time.monotonic() + TIMEOUT
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                self._test.fail(f"Le client ne se termine pas :\n{self.transcript}")
        while self._exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._exit_code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                self._test.fail("Le client a fermé son terminal sans se terminer.")
            else:
                time.sleep(0.01)
        return self._exit_code

    def close(self) -> None:
        if self._exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._exit_code = -signal.SIGKILL
        os.close(self.fd)


def assert_blocks_in_order(test: unittest.TestCase, text: str, blocks: list) -> None:
    """
    Chaque bloc (liste de lignes) apparaît tel quel, lignes consécutives,
    dans `text`, et les blocs apparaissent dans l'ordre donné.
    """
    lines = text.split("\n")
    start = 0
    for block in blocks:
        for index in range(start, len(lines) - len(block) + 1):
            if lines[index:index + len(block)] == block:
                start = index + len(block)
                break
        else:
            test.fail("Lignes introuvables (ou pas dans l'ordre) :\n"
                      + "\n".join(block) + "\n--- dans ---\n" + text)


class EndToEndTestCase(unittest.TestCase):
    """Un serveur `TP4_server.py` par test, arrêté à la fin."""

    server_args: tuple = ()

    def setUp(self):
        self.server = support.start_server(self, *self.server_args)
        self._names = itertools.count(1)

    def client(self, server=None) -> support.RawClient:
        client = support.RawClient((server or self.server).port)
        self.addCleanup(client.close)
        return client

    def logged_in_client(self):
        """Un client brut connecté sous un nouveau compte ; renvoie (client, nom)."""
        client = self.client()
        username = f"Utilisateur{next(self._names)}"
        self.assertEqual(client.register(username), OK)
        return client, username

    def assert_server_healthy(self, server=None):
        """Le serveur vit, sert un nouveau client et n'a écrit aucune trace d'erreur."""
        server = server or self.server
        self.assertTrue(server.alive(), server.log())
        with support.RawClient(server.port) as probe:
            self.assertEqual(probe.register(f"Sonde{next(self._names)}"), OK)
            self.assertEqual(probe.request(H.STATS_REQUEST)["header"], H.OK)
        self.assertNotIn("Traceback", server.log())


class TestHandoutSessions(EndToEndTestCase):
    """Les deux sessions de l'énoncé, avec le vrai client dans un terminal."""

    def run_session_one(self):
        terminal = TerminalClient(self, self.server.port)
        terminal.answer(
            (AUTH_PROMPT, "1"), ("Entrez un nom d'utilisateur: ", "Qing Long"),
            ("Entrez un mot de passe: ", "faible"),
            (AUTH_PROMPT, "1"), ("Entrez un nom d'utilisateur: ", "Kohryu"),
            ("Entrez un mot de passe: ", "Kohryu2022!"),
            (MAIN_PROMPT, "4"),
            (AUTH_PROMPT, "1"), ("Entrez un nom d'utilisateur: ", "Qing.Long"),
            ("Entrez un mot de passe: ", "QingLong2022"),
            (MAIN_PROMPT, "2"),
            ("Entrez l'adresse du destinataire: ", "kohryu@glo2000.ca"),
            ("Entrez le sujet: ", "Bonjour!"))
        terminal.expect(CONTENT_PROMPT + "\n")
        terminal.type("Exemple de contenu", "Sur plusieurs lignes", ".")
        terminal.answer((MAIN_PROMPT, "4"), (AUTH_PROMPT, "3"))
        self.assertEqual(terminal.wait_exit(), 0)
        return terminal.transcript

    def run_session_two(self):
        terminal = TerminalClient(self, self.server.port)
        terminal.answer(
            (AUTH_PROMPT, "2"), ("Entrez votre nom d'utilisateur: ", "Kohryu"),
            ("Entrez votre mot de passe: ", "Mauvais2022!"),
            (AUTH_PROMPT, "2"), ("Entrez votre nom d'utilisateur: ", "Kohryu"),
            ("Entrez votre mot de passe: ", "Kohryu2022!"),
            (MAIN_PROMPT, "1"), ("Entrez votre choix [1-1]: ", "1"),
            (MAIN_PROMPT, "3"), (MAIN_PROMPT, "4"), (AUTH_PROMPT, "3"))
        self.assertEqual(terminal.wait_exit(), 0)
        return terminal.transcript

    def test_sessions(self):
        first = self.run_session_one()
        assert_blocks_in_order(self, first, [
            AUTH_MENU + [
                AUTH_PROMPT + "1",
                "Entrez un nom d'utilisateur: Qing Long",
                "Entrez un mot de passe: ",
                "La création a échouée:",
                "- Le nom d'utilisateur est invalide.",
                "- Le mot de passe n'est pas assez sûr."] + AUTH_MENU + [
                AUTH_PROMPT + "1",
                "Entrez un nom d'utilisateur: Kohryu",
                "Entrez un mot de passe: "] + MAIN_MENU + [
                MAIN_PROMPT + "4"] + AUTH_MENU + [
                AUTH_PROMPT + "1",
                "Entrez un nom d'utilisateur: Qing.Long",
                "Entrez un mot de passe: "] + MAIN_MENU + [
                MAIN_PROMPT + "2",
                "Entrez l'adresse du destinataire: kohryu@glo2000.ca",
                "Entrez le sujet: Bonjour!",
                CONTENT_PROMPT,
                "Exemple de contenu",
                "Sur plusieurs lignes",
                "."],
            MAIN_MENU + [MAIN_PROMPT + "4"] + AUTH_MENU + [AUTH_PROMPT + "3"],
        ])

        second = self.run_session_two()
        found = re.search(rf"^#1 Qing\.Long@glo2000\.ca - Bonjour! ({support.DATE_PATTERN})$",
                          second, re.MULTILINE)
        self.assertIsNotNone(found, second)
        date = found.group(1)
        assert_blocks_in_order(self, second, [
            AUTH_MENU + [
                AUTH_PROMPT + "2",
                "Entrez votre nom d'utilisateur: Kohryu",
                "Entrez votre mot de passe: ",
                LOGIN_FAILED] + AUTH_MENU + [
                AUTH_PROMPT + "2",
                "Entrez votre nom d'utilisateur: Kohryu",
                "Entrez votre mot de passe: "] + MAIN_MENU + [
                MAIN_PROMPT + "1",
                f"#1 Qing.Long@glo2000.ca - Bonjour! {date}",
                "Entrez votre choix [1-1]: 1",
                "De : Qing.Long@glo2000.ca",
                "À : kohryu@glo2000.ca",
                "Sujet : Bonjour!",
                f"Date : {date}",
                "----------------------------------------",
                "Exemple de contenu",
                "Sur plusieurs lignes",
                ""] + MAIN_MENU + [
                MAIN_PROMPT + "3",
                "Nombre de messages : 1",
                "Taille du dossier : 319 octets"] + MAIN_MENU + [
                MAIN_PROMPT + "4"] + AUTH_MENU + [
                AUTH_PROMPT + "3"],
        ])
        secrets = ("faible", "Kohryu2022!", "QingLong2022", "Mauvais2022!")
        for transcript in (first, second):
            for secret in secrets:
                self.assertNotIn(secret, transcript)
            self.assertNotIn("Traceback", transcript)
        self.assert_operator_log(secrets)

    def assert_operator_log(self, secrets):
        """Le journal dit connexions, comptes et livraisons, jamais un mot de passe."""
        log = self.server.log()
        for event in ("Connexion de 127.0.0.1:", "Compte créé : Kohryu",
                      "Compte créé : Qing.Long", "Connexion de l'utilisateur Kohryu",
                      "Courriel de Qing.Long@glo2000.ca livré à Kohryu"):
            self.assertIn(event, log)
        for secret in secrets:
            self.assertNotIn(secret, log)
        self.assertNotIn("Traceback", log)


class TestInProcessClient(EndToEndTestCase):
    """`Client(...).run()` dans le processus de test, entrées simulées."""

    def test_short_session(self):
        answers = ["1", "Kohryu", "2", "KOHRYU@glo2000.ca", "Note", "Ligne 1", "Ligne 2", ".",
                   "1", "1", "3", "4", "3"]
        stdout = io.StringIO()
        with mock.patch("builtins.input", side_effect=answers) as fake_input, \
                mock.patch("getpass.getpass", return_value=PASSWORD) as fake_getpass, \
                contextlib.redirect_stdout(stdout):
            client = TP4_client.Client(support.LOOPBACK, self.server.port)
            self.addCleanup(client._socket.close)
            client.run()
        self.assertEqual([call.args for call in fake_input.call_args_list], [
            (AUTH_PROMPT,), ("Entrez un nom d'utilisateur: ",), (MAIN_PROMPT,),
            ("Entrez l'adresse du destinataire: ",), ("Entrez le sujet: ",), (), (), (),
            (MAIN_PROMPT,), ("Entrez votre choix [1-1]: ",), (MAIN_PROMPT,),
            (MAIN_PROMPT,), (AUTH_PROMPT,)])
        fake_getpass.assert_called_once_with("Entrez un mot de passe: ")
        output = stdout.getvalue()
        found = re.search(rf"^#1 Kohryu@glo2000\.ca - Note ({support.DATE_PATTERN})$",
                          output, re.MULTILINE)
        self.assertIsNotNone(found, output)
        email = {"sender": "Kohryu@glo2000.ca", "destination": "KOHRYU@glo2000.ca",
                 "subject": "Note", "date": found.group(1), "content": "Ligne 1\nLigne 2"}
        self.assertIn(gloutils.EMAIL_DISPLAY.format(**email) + "\n", output)
        size = support.DIGEST_SIZE + len(json.dumps(email))
        self.assertIn(gloutils.STATS_DISPLAY.format(count=1, size=size), output)
        self.assertEqual(client._socket.fileno(), -1)


class TestManyClients(EndToEndTestCase):
    """50 clients en même temps s'inscrivent et s'écrivent."""

    CLIENTS = 50
    OFFSETS = (1, 2, 7)
    DATE = "Tue, 12 Jul 2022 19:21:57 +0000"

    def test_fifty_clients(self):
        barrier = threading.Barrier(self.CLIENTS, timeout=30)
        results, errors = {}, []

        def name(index):
            return f"Client{index:02d}"

        def session(index):
            try:
                with support.RawClient(self.server.port) as client:
                    replies = [client.register(name(index))]
                    barrier.wait()
                    for offset in self.OFFSETS:
                        other = name((index + offset) % self.CLIENTS)
                        replies.append(client.send_email(
                            f"{name(index)}@glo2000.ca", f"{other.lower()}@glo2000.ca",
                            f"De {name(index)} à {other}", f"Bonjour {other}", self.DATE))
                    barrier.wait()
                    listing = client.request(H.INBOX_READING_REQUEST)
                    stats = client.request(H.STATS_REQUEST)
                    emails = [client.request(H.INBOX_READING_CHOICE, {"choice": number})
                              for number in range(1, len(self.OFFSETS) + 1)]
                    results[index] = (replies, listing, stats, emails)
            except Exception as ex:  # transmis au fil principal
                barrier.abort()
                errors.append((index, repr(ex)))

        threads = [threading.Thread(target=session, args=(index,), daemon=True)
                   for index in range(self.CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), list(range(self.CLIENTS)))

        for index, (replies, listing, stats, emails) in results.items():
            with self.subTest(client=name(index)):
                self.assertEqual(replies, [OK] * (1 + len(self.OFFSETS)))
                received = [{
                    "sender": f"{name(sender)}@glo2000.ca",
                    "destination": f"{name(index).lower()}@glo2000.ca",
                    "subject": f"De {name(sender)} à {name(index)}",
                    "date": self.DATE,
                    "content": f"Bonjour {name(index)}"}
                    for sender in ((index - offset) % self.CLIENTS for offset in self.OFFSETS)]
                self.assertEqual(listing["header"], H.OK)
                lines = listing["payload"]["email_list"]
                self.assertEqual([line.split(" ", 1)[0] for line in lines], ["#1", "#2", "#3"])
                self.assertEqual(
                    sorted(line.split(" ", 1)[1] for line in lines),
                    sorted(f"{email['sender']} - {email['subject']} {self.DATE}"
                           for email in received))
                self.assertEqual(sorted(json.dumps(email["payload"]) for email in emails),
                                 sorted(json.dumps(email) for email in received))
                size = support.DIGEST_SIZE + sum(len(json.dumps(email)) for email in received)
                self.assertEqual(stats, {"header": H.OK,
                                         "payload": {"count": 3, "size": size}})
        self.assert_server_healthy()


class TestMalformedRequests(EndToEndTestCase):
    """
    Les cas de `tests/malformed.py` qui touchent au protocole lui-même :
    trames, JSON, en-têtes, réponses prises pour des requêtes, requêtes
    avant la connexion (les charges utiles mal typées sont rejouées par
    `tests/test_hostile.py`). Chacun reçoit l'`ERROR` prévu, la connexion
    reste utilisable et le serveur continue de servir les autres.
    """

    def setUp(self):
        super().setUp()
        self.runner = malformed.Runner(self, self.server)

    def check_group(self, group):
        self.runner.run(malformed.cases(group))
        for client in self.runner.clients.values():
            self.assertTrue(client.nothing_received())
        self.assert_server_healthy()

    def test_not_json_or_not_an_object(self):
        self.check_group("json")

    def test_bad_headers(self):
        self.check_group("en-tête")

    def test_replies_are_not_requests(self):
        self.check_group("réponse")

    def test_requests_before_login(self):
        self.check_group("connexion requise")

    def test_oversized_length_closes_the_connection(self):
        self.runner.run(malformed.cases("trame", outcomes=(malformed.CLOSED,)))
        self.assert_server_healthy()

    def test_peer_vanishes_mid_frame(self):
        """Une trame reste incomplète, puis le client part, poliment ou non (RST)."""
        for case in malformed.cases("trame", outcomes=(malformed.NO_REPLY,)):
            for abrupt in (False, True):
                with self.subTest(case=case.name, abrupt=abrupt):
                    client = self.runner.check(case)
                    if abrupt:
                        client.abort()
                    else:
                        client.close()
                    self.assert_server_healthy()

    def test_lone_surrogate_in_password(self):
        """JSON permet "\\ud800", qui n'a pas d'UTF-8 : refusé, sans plantage ni trace."""
        client = self.client()
        password = "\ud800" + PASSWORD
        support.assert_error(self, client.register("Surrogat", password),
                             support.creation_failed(support.WEAK_PASSWORD))
        self.assertEqual(client.register("Surrogat"), OK)
        client.send(H.AUTH_LOGOUT)
        for wrong in (password, PASSWORD + "\udfff"):
            support.assert_error(self, client.login("Surrogat", wrong), LOGIN_FAILED)
        self.assertEqual(client.login("Surrogat"), OK)
        self.assert_server_healthy()

    def test_pipelined_requests_answered_in_order(self):
        client, _ = self.logged_in_client()
        client.send_text("pas du json")
        client.send(H.STATS_REQUEST)
        client.send(H.INBOX_READING_CHOICE, {"choice": 1})
        client.send(H.INBOX_READING_REQUEST)
        support.assert_error(self, client.recv(), support.INVALID_REQUEST)
        self.assertEqual(client.recv()["payload"]["count"], 0)
        support.assert_error(self, client.recv())
        self.assertEqual(client.recv(), {"header": H.OK, "payload": {"email_list": []}})
        self.assertTrue(client.nothing_received())


class TestNoReply(EndToEndTestCase):
    """`AUTH_LOGOUT` et `BYE` ne reçoivent jamais de réponse."""

    def test_logout_when_logged_in(self):
        client, username = self.logged_in_client()
        client.send(H.AUTH_LOGOUT)
        self.assertTrue(client.nothing_received())
        support.assert_error(self, client.request(H.STATS_REQUEST), support.NOT_LOGGED_IN)
        self.assertEqual(client.login(username), OK)
        self.assertEqual(client.request(H.STATS_REQUEST)["header"], H.OK)

    def test_logout_when_not_logged_in(self):
        client = self.client()
        client.send(H.AUTH_LOGOUT)
        self.assertTrue(client.nothing_received())
        self.assertEqual(client.register("Nouveau"), OK)

    def test_logout_then_request_in_one_write(self):
        client, _ = self.logged_in_client()
        client.send(H.AUTH_LOGOUT)
        client.send(H.STATS_REQUEST)
        support.assert_error(self, client.recv(), support.NOT_LOGGED_IN)
        self.assertTrue(client.nothing_received())

    def test_logout_twice(self):
        client, username = self.logged_in_client()
        client.send(H.AUTH_LOGOUT)
        client.send(H.AUTH_LOGOUT)
        self.assertEqual(client.login(username), OK)
        self.assertTrue(client.nothing_received())

    def test_bye_when_logged_in(self):
        client, username = self.logged_in_client()
        client.send(H.BYE)
        self.assertEqual(client.received_until_closed(), b"")
        with support.RawClient(self.server.port) as again:
            self.assertEqual(again.login(username), OK)

    def test_bye_when_not_logged_in(self):
        client = self.client()
        client.send(H.BYE)
        self.assertEqual(client.received_until_closed(), b"")
        self.assert_server_healthy()

    def test_requests_after_bye_are_ignored(self):
        client = self.client()
        client.send(H.BYE)
        client.send(H.STATS_REQUEST)
        self.assertEqual(client.received_until_closed(), b"")
        self.assert_server_healthy()


class TestExternalRelay(EndToEndTestCase):
    """Courriel externe relayé par SMTP (127.0.0.1)."""

    def setUp(self):
        self.receiver = support.SMTPReceiver().__enter__()
        self.addCleanup(self.receiver.__exit__, None, None, None)
        self.server_args = ("--smtp-host", support.LOOPBACK,
                            "--smtp-port", str(self.receiver.port), "--smtp-timeout", "5")
        super().setUp()

    def test_relayed(self):
        client, username = self.logged_in_client()
        payload = {"sender": f"{username}@glo2000.ca", "destination": "ami@example.com",
                   "subject": "Réunion ☕", "date": gloutils.get_current_utc_time(),
                   "content": "Exemple de contenu\nSur plusieurs lignes"}
        self.assertEqual(client.send_email(**payload), OK)
        [envelope] = self.receiver.messages
        support.assert_relayed(self, envelope, payload)
        self.assertEqual(client.request(H.STATS_REQUEST)["payload"]["count"], 0)
        self.assert_server_healthy()

    def test_refused(self):
        self.receiver.mode = "refuse"
        client, username = self.logged_in_client()
        support.assert_error(self, client.send_email(f"{username}@glo2000.ca",
                                                     "refus@example.com"))
        self.assertEqual(self.receiver.messages, [])
        self.assert_server_healthy()


class TestRelayUnreachable(EndToEndTestCase):
    """
    Rien n'écoute sur le port du relais (le réglage par défaut de
    `support.ServerProcess`) : `ERROR`, et le serveur continue.
    """

    def test_error(self):
        client, username = self.logged_in_client()
        support.assert_error(self, client.send_email(f"{username}@glo2000.ca",
                                                     "ami@example.com"))
        self.assertEqual(client.request(H.STATS_REQUEST)["header"], H.OK)
        self.assert_server_healthy()


def run_client(*args) -> subprocess.CompletedProcess:
    """Lance le client et attend sa fin (entrée vide, sorties capturées)."""
    return subprocess.run([sys.executable, str(support.CLIENT_SCRIPT), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


class TestFailures(unittest.TestCase):
    """Pannes au démarrage et en cours de route : une ligne, pas de trace."""

    def assert_one_line_exit(self, result):
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.strip())

    def test_server_port_taken(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind((support.LOOPBACK, 0))
            taken.listen()
            server = support.ServerProcess(port=taken.getsockname()[1])
            self.addCleanup(server.__exit__, None, None, None)
            result = server.run_until_exit(TIMEOUT)
        self.assert_one_line_exit(result)
        self.assertEqual(result.stdout, "")

    def test_client_without_server(self):
        result = run_client("-d", support.LOOPBACK, "-p", str(support.free_port()))
        self.assert_one_line_exit(result)
        self.assertEqual(result.stdout, "")


class TestServerStops(EndToEndTestCase):
    """Le serveur disparaît pendant une session, ou reçoit Ctrl-C."""

    def test_server_killed_mid_session(self):
        terminal = TerminalClient(self, self.server.port)
        terminal.answer((AUTH_PROMPT, "1"), ("Entrez un nom d'utilisateur: ", "Kohryu"),
                        ("Entrez un mot de passe: ", PASSWORD))
        terminal.expect(MAIN_PROMPT)
        self.server.kill()
        terminal.type("3")
        self.assertNotEqual(terminal.wait_exit(), 0)
        after = terminal.transcript.split(MAIN_PROMPT + "3\n", 1)[1]
        self.assertNotIn("Traceback", after)
        self.assertEqual(len(after.splitlines()), 1, after)
        self.assertTrue(after.strip())

    def test_ctrl_c(self):
        client, username = self.logged_in_client()
        self.assertEqual(client.send_email(f"{username}@glo2000.ca", f"{username}@glo2000.ca"),
                         OK)
        self.server.process.send_signal(signal.SIGINT)
        self.assertEqual(self.server.process.wait(TIMEOUT), 0)
        self.assertNotIn("Traceback", self.server.log())
        self.assertEqual(client.received_until_closed(), b"")

        restarted = support.start_server(self, workdir=self.server.workdir,
                                         port=self.server.port)
        with support.RawClient(restarted.port) as again:
            self.assertEqual(again.login(username), OK)
            self.assertEqual(again.request(H.STATS_REQUEST)["payload"]["count"], 1)


if __name__ == "__main__":
    unittest.main()
