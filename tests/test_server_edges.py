"""\
GLO-2000 Travail pratique 4 - Le serveur tel qu'un nouvel utilisateur le trouve
Options de la ligne de commande vérifiées et en français, démarrages ratés qui
ne laissent rien derrière eux, arrêt prompt malgré un relais en attente, et un
journal où chaque événement d'un utilisateur se relie à sa connexion.
"""

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import gloutils  # noqa: E402

H = gloutils.Headers
ENGLISH = ("usage:", "error:", "invalid", "show this help", "expected", "Traceback")


def run_server(*args: str, cwd: str, port: "int | None" = None) -> subprocess.CompletedProcess:
    """`TP4_server.py` lancé avec `args` dans `cwd`, qui doit s'arrêter de lui-même."""
    return support.ServerProcess(*args, workdir=cwd, port=port).run_until_exit(timeout=30)


class TestCommandLine(unittest.TestCase):
    """Chaque option est vérifiée par argparse, en français."""

    def setUp(self):
        workdir = tempfile.TemporaryDirectory(prefix="glo-options-")
        self.addCleanup(workdir.cleanup)
        self.workdir = Path(workdir.name)

    def assert_refused(self, *args: str) -> str:
        result = run_server(*args, cwd=self.workdir)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertRegex(lines[0], r"^TP4_server\.py : erreur : ")
        for word in ENGLISH:
            self.assertNotIn(word, result.stderr)
        self.assertEqual(list(self.workdir.iterdir()), [])
        return lines[0]

    def test_ports_out_of_range(self):
        for option in ("--port", "--smtp-port"):
            for value in ("99999", "65536", "-1", "abc", "", "5321.0"):
                with self.subTest(option=option, value=value):
                    self.assertIn("le port doit être un entier de 0 à 65535", self.assert_refused(f"{option}={value}"))

    def test_timeouts_must_be_positive(self):
        for option in ("--smtp-timeout", "--frame-timeout"):
            for value in ("0", "-3", "abc", "nan", "inf"):
                with self.subTest(option=option, value=value):
                    self.assertIn("le délai doit être un nombre de secondes", self.assert_refused(f"{option}={value}"))

    def test_limits(self):
        for option, value in (("--max-clients", "0"), ("--max-clients", "-5"),
                              ("--max-clients", "deux"), ("--max-message", "10"),
                              ("--max-message", "1023")):
            with self.subTest(option=option, value=value):
                self.assertIn("la valeur doit être un entier d'au moins", self.assert_refused(f"{option}={value}"))

    def test_unknown_option_and_missing_value(self):
        self.assertIn("arguments non reconnus : --bavard.", self.assert_refused("--bavard"))
        self.assertIn("l'argument --port attend une valeur.", self.assert_refused("--port"))

    def test_help_is_french(self):
        result = run_server("--help", cwd=self.workdir)
        self.assertEqual(result.returncode, 0)
        self.assertTrue(result.stdout.startswith("utilisation : "), result.stdout)
        self.assertIn("afficher ce message d'aide et quitter", result.stdout)
        self.assertIn("options :", result.stdout)
        for word in ENGLISH:
            self.assertNotIn(word, result.stdout)
        self.assertEqual(list(self.workdir.iterdir()), [])


class TestFailedStart(unittest.TestCase):
    """Un serveur qui ne peut pas écouter le dit en français, et ne crée rien."""

    def test_port_taken(self):
        with socket.socket() as taken, tempfile.TemporaryDirectory() as workdir:
            taken.bind((support.LOOPBACK, 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_server(cwd=workdir, port=port)
            self.assertNotEqual(result.returncode, 0)
            self.assertEqual(result.stderr.strip(),
                             f"Impossible d'écouter sur le port {port} : "
                             "le port est déjà utilisé.")
            self.assertEqual(list(Path(workdir).iterdir()), [])

    def assert_cannot_listen_on(self, host: str, reason: str) -> None:
        """Le serveur lancé avec `--host host` quitte sur `reason`, sans rien créer."""
        with tempfile.TemporaryDirectory() as workdir:
            port = support.free_port()
            result = run_server("--host", host, cwd=workdir, port=port)
            self.assertNotEqual(result.returncode, 0)
            self.assertEqual(result.stderr.strip(),
                             f"Impossible d'écouter sur le port {port} : {reason}.")
            self.assertEqual(list(Path(workdir).iterdir()), [])

    def test_address_not_available(self):
        self.assert_cannot_listen_on("192.0.2.1", "adresse non disponible sur cette machine")

    def test_host_not_ipv4(self):
        # Une adresse IPv6 (le serveur n'écoute qu'en IPv4) se refuse sans requête DNS.
        self.assert_cannot_listen_on("::1", "::1 n'est pas une adresse IPv4 connue")


class TestShutdown(unittest.TestCase):
    """Ctrl-C pendant un relais SMTP en attente : le serveur s'arrête tout de suite."""

    def test_pending_relay_abandoned(self):
        with support.SMTPReceiver(mode="silent") as receiver:
            connected = self.watch_connections(receiver)
            server = support.ServerProcess("--smtp-host", support.LOOPBACK,
                                           "--smtp-port", str(receiver.port),
                                           "--smtp-timeout", "60")
            with server:
                with support.RawClient(server.port) as client:
                    self.assertEqual(client.register("alice"), {"header": H.OK})
                    client.send(H.EMAIL_SENDING, {
                        "sender": "alice@glo2000.ca", "destination": "bob@exemple.com",
                        "subject": "Sujet", "date": gloutils.get_current_utc_time(),
                        "content": "Contenu"})
                    self.assertTrue(connected.wait(10), "Le relais n'a jamais appelé.")
                    started = time.monotonic()
                    server.process.send_signal(signal.SIGINT)
                    server.process.wait(timeout=10)
                    # Bien avant le délai du relais (60 s) : il a été abandonné.
                    self.assertLess(time.monotonic() - started, 5)
                lines = server.log().splitlines()
                self.assertEqual(server.process.returncode, 0)
                self.assertTrue(lines[-1].endswith("Serveur arrêté."), lines[-1])
                self.assertEqual(sum("Relais SMTP vers bob@exemple.com abandonné : arrêt du "
                                     "serveur." in line for line in lines), 1, lines)
                self.assertNotIn("Échec du relais", server.log())
                self.assertNotIn("Traceback", server.log())

    @staticmethod
    def watch_connections(receiver: support.SMTPReceiver) -> threading.Event:
        """Un événement levé quand le récepteur muet reçoit une connexion du relais."""
        connected = threading.Event()
        silence = receiver.silent_event

        class Watched:
            def wait(self, timeout=None):
                connected.set()
                return silence.wait(timeout)

            def set(self):
                silence.set()

        receiver.silent_event = Watched()
        return connected


class TestOperatorLog(unittest.TestCase):
    """Chaque événement d'un utilisateur tient sur une ligne, avec l'adresse de sa connexion."""

    def test_refusals_and_logouts_are_logged(self):
        secret = "Secret2022-pas-au-journal"
        with support.ServerProcess() as server:
            with support.RawClient(server.port) as client:
                peer = "%s:%d" % client.sock.getsockname()
                self.assertEqual(client.register("alice", secret)["header"], H.OK)
                client.send(H.AUTH_LOGOUT)
                self.assertEqual(client.register("alice", secret)["header"], H.ERROR)
                self.assertEqual(client.register("Qing Long", "faible")["header"], H.ERROR)
                self.assertEqual(client.login("alice", "Mauvais" + secret)["header"], H.ERROR)
                self.assertEqual(client.login("inconnu\nfaux", secret)["header"], H.ERROR)
                self.assertEqual(client.login("alice", secret)["header"], H.OK)
            log = server.log()
        expected = [
            f"Compte créé : alice, depuis {peer}",
            f"Déconnexion de l'utilisateur alice depuis {peer}",
            f"Création refusée pour alice depuis {peer} : "
            "Le nom d'utilisateur est déjà utilisé.",
            f"Création refusée pour Qing Long depuis {peer} : Le nom d'utilisateur "
            "est invalide. Le mot de passe n'est pas assez sûr.",
            f"Connexion refusée pour alice depuis {peer}",
            f"Connexion refusée pour inconnu\\nfaux depuis {peer}",
            f"Connexion de l'utilisateur alice depuis {peer}",
        ]
        events = [line.split(" INFO ", 1)[1] for line in log.splitlines() if " INFO " in line]
        self.assertEqual([event for event in events if peer in event and "Connexion de "
                          + peer not in event and "Fin de la connexion" not in event], expected)
        for secret_text in (secret, "faible"):
            self.assertNotIn(secret_text, log)
        for line in log.splitlines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


class TestOtherEditionsClients(unittest.TestCase):
    """Des clients d'autres éditions envoient `"choice": "1"` : lu comme l'entier 1."""

    def test_choice_as_ascii_digits(self):
        with support.ServerProcess() as server, support.RawClient(server.port) as client:
            self.assertEqual(client.register("alice"), {"header": H.OK})
            self.assertEqual(client.send_email("alice@glo2000.ca", "alice@glo2000.ca",
                                               "Bonjour"), {"header": H.OK})
            email_ = client.request(H.INBOX_READING_CHOICE, {"choice": 1})
            self.assertEqual(email_["header"], H.OK)
            for choice in ("1", "01"):
                with self.subTest(choice=choice):
                    self.assertEqual(client.request(H.INBOX_READING_CHOICE,
                                                    {"choice": choice}), email_)
            self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": "2"}),
                             {"header": H.ERROR,
                              "payload": {"error_message": "Le courriel #2 n'existe pas."}})
            for choice in (" 1", "1 ", "1.0", "-1", "+1", "١", "1e0", "", True, 1.0, None):
                with self.subTest(choice=choice):
                    self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": choice}),
                                     {"header": H.ERROR,
                                      "payload": {"error_message": "Requête invalide."}})


class TestReadme(unittest.TestCase):
    """Le README se suffit : le protocole y est, rien ne renvoie hors du dépôt."""

    def test_stands_alone(self):
        readme = (support.ROOT / "README.md").read_text(encoding="utf-8")
        self.assertNotIn("/".join(("..", "shared")), readme)
        self.assertIn("## Protocole", readme)
        for header in gloutils.Headers:
            self.assertRegex(readme, rf"\| `{header.name}` \| {int(header)} \|")
        for payload in (gloutils.AuthPayload, gloutils.EmailContentPayload,
                        gloutils.EmailChoicePayload, gloutils.StatsPayload,
                        gloutils.EmailListPayload, gloutils.ErrorPayload):
            for key in payload.__annotations__:
                self.assertIn(f"`{key}`", readme)
        for command in ("python3 TP4_server.py", "python3 TP4_client.py -d 127.0.0.1",
                        "python3 -m unittest discover -s tests -v"):
            self.assertIn(command, readme)


if __name__ == "__main__":
    unittest.main()
