"""\
GLO-2000 Travail pratique 4 - Nos programmes à côté des modules de chaque édition
Les étudiants et les correcteurs des éditions 2022 à 2025 posent nos
TP4_server.py et TP4_client.py à côté du `glosocket.py` et du `gloutils.py`
de leur année (`tests/editions.py` les écrit). Pour chaque édition, dans un
dossier où seuls ces modules sont importables :

- les modules écrits ont bien les noms de l'édition, et eux seuls ;
- la session de l'énoncé, rejouée avec le vrai client dans un terminal face
  au vrai serveur, s'affiche au caractère près ;
- le correcteur simulé de `tests/test_grader.py` pilote `Server()` et
  `Client(...)` dans un même processus, en espionnant les fonctions de
  découpage de l'édition ;
- le serveur seul répond à un client brut qui passe par les fonctions de
  découpage de l'édition.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import editions, support, test_end_to_end, test_grader  # noqa: E402

import gloutils  # noqa: E402

H = gloutils.Headers
OK = {"header": H.OK}
LOOPBACK = support.LOOPBACK
TIMEOUT = 30
# Le client en terminal de tests/test_end_to_end.py, pris avant d'être remplacé.
_TerminalClient = test_end_to_end.TerminalClient
# Ce que reçoit le client du correcteur simulé : inscription, envoi, liste,
# courriel #1, statistiques (ni la déconnexion ni BYE n'ont de réponse).
GRADER_REPLIES = [
    OK,
    OK,
    {"header": H.OK, "payload": {"email_list": [test_grader.GRADER_SUBJECT_LINE]}},
    {"header": H.OK, "payload": test_grader.GRADER_EMAIL},
    {"header": H.OK, "payload": {
        "count": 1,
        "size": support.DIGEST_SIZE + len(json.dumps(test_grader.GRADER_EMAIL))}},
]
GRADER_REQUESTS = [H.AUTH_REGISTER, H.EMAIL_SENDING, H.INBOX_READING_REQUEST,
                   H.INBOX_READING_CHOICE, H.STATS_REQUEST, H.AUTH_LOGOUT, H.BYE]

# Le correcteur simulé note aussi les requêtes et les réponses du client,
# telles qu'elles passent par les fonctions de découpage espionnées.
_SPY_RETURN = "            return real(*args, **kwargs)\n"
_SPY_RECORDING = """\
            result = real(*args, **kwargs)
            if side == "client":
                if result is None:
                    sent = args[1] if len(args) > 1 else kwargs.get("message")
                    report.setdefault("requests", []).append(json.loads(sent).get("header"))
                else:
                    report.setdefault("replies", []).append(json.loads(result))
            return result
"""


def grader_script(edition: editions.Edition) -> str:
    """
    Le correcteur simulé de `tests/test_grader.py`, qui espionne les deux
    fonctions de découpage de l'édition au lieu de celles de 2022.
    """
    script = editions.replace_once(test_grader.GRADER_SCRIPT, _SPY_RETURN, _SPY_RECORDING)
    for old, new in (("send_msg", edition.send), ("recv_msg", edition.recv)):
        # Deux fois chacun : le nom remplacé dans le module, et celui du rapport.
        if script.count(f'"{old}"') != 2:
            raise ValueError(f"Le correcteur simulé ne nomme plus {old!r} deux fois.")
        script = script.replace(f'"{old}"', f'"{new}"')
    return script


def clean_environment() -> dict:
    """L'environnement de ce processus sans PYTHONPATH : rien du dépôt n'est importable."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def resolved(paths: dict) -> dict:
    """Les mêmes chemins, absolus et sans liens symboliques, pour les comparer."""
    return {name: Path(path).resolve() for name, path in paths.items()}


def load_module(folder: Path, name: str, year: int):
    """
    Charge `folder/name.py` dans ce processus sous le nom `name_year`, sans
    toucher à `sys.modules` : les modules de plusieurs éditions coexistent.
    """
    spec = importlib.util.spec_from_file_location(f"{name}_{year}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def launched_from(folder: Path):
    """
    Le temps de lancer un client de `tests/test_end_to_end.py` : le script
    est `TP4_client.py`, le dossier de travail `folder` et PYTHONPATH est
    retiré. Le processus enfant hérite des trois au moment du fork.
    """
    previous = os.getcwd()
    with mock.patch.object(support, "CLIENT_SCRIPT", Path("TP4_client.py")), \
            mock.patch.dict(os.environ):
        os.environ.pop("PYTHONPATH", None)
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


class EditionServer(support.ServerProcess):
    """
    `python3 TP4_server.py --host 127.0.0.1 --port P` lancé dans le dossier
    d'une édition, sans PYTHONPATH : Python ne met sur le chemin que ce
    dossier. Aucune option de relais : le défaut vient du gloutils présent.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(workdir=str(folder))
        self.environment = clean_environment()

    def command(self) -> list:
        return [sys.executable, "TP4_server.py", "--host", LOOPBACK, "--port", str(self.port)]


class EditionRawClient(support.RawClient):
    """Client brut dont les trames passent par les fonctions de l'édition."""

    def __init__(self, port: int, framing, edition: editions.Edition) -> None:
        super().__init__(port)
        self._send = getattr(framing, edition.send)
        self._recv = getattr(framing, edition.recv)

    def send_text(self, text: str) -> None:
        self._send(self.sock, text)

    def recv(self) -> dict:
        return json.loads(self._recv(self.sock))


class _EditionTests:
    """
    Les tests d'une édition ; chaque classe `TestEditionAAAA` fixe
    `EDITION`. Un seul dossier par édition, écrit une fois ; chaque test
    part d'un dossier de données vide.
    """

    EDITION: int

    # La session de l'énoncé et ses vérifications, empruntées telles quelles
    # à tests/test_end_to_end.py (elles utilisent `self.server`).
    run_session_one = test_end_to_end.TestHandoutSessions.run_session_one
    run_session_two = test_end_to_end.TestHandoutSessions.run_session_two
    assert_operator_log = test_end_to_end.TestHandoutSessions.assert_operator_log
    replay_handout_sessions = test_end_to_end.TestHandoutSessions.test_sessions

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        folder = tempfile.TemporaryDirectory(prefix=f"glo-edition-{cls.EDITION}-")
        cls.addClassCleanup(folder.cleanup)
        cls.folder = Path(folder.name)
        cls.edition = editions.write_edition(cls.folder, cls.EDITION)
        (cls.folder / "grader.py").write_text(grader_script(cls.edition), encoding="utf-8")
        cls.framing = load_module(cls.folder, "glosocket", cls.EDITION)
        cls.course_utils = load_module(cls.folder, "gloutils", cls.EDITION)

    def setUp(self):
        shutil.rmtree(self.folder / gloutils.SERVER_DATA_DIR, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "server.log").unlink()

    def start_server(self) -> EditionServer:
        """
        Le serveur de l'édition, arrêté à la fin du test ; s'il n'écoute pas,
        l'échec montre son journal.
        """
        server = EditionServer(self.folder)
        self.addCleanup(server.__exit__, None, None, None)
        try:
            return server.start()
        except TimeoutError:
            self.fail(f"TP4_server.py n'écoute pas (édition {self.EDITION}) :\n{server.log()}")

    def terminal_client(self, test: unittest.TestCase, port: int):
        """Le client en terminal de test_end_to_end, lancé depuis le dossier de l'édition."""
        with launched_from(self.folder):
            return _TerminalClient(test, port)

    # ------------------------------------------------------------------
    # Les modules eux-mêmes
    # ------------------------------------------------------------------

    def test_course_modules_of_the_edition(self):
        """Les modules écrits ont les noms de l'édition, et eux seuls."""
        edition, framing, utils = self.edition, self.framing, self.course_utils
        self.assertEqual({name for name in editions.ALL_FRAMING_NAMES if hasattr(framing, name)},
                         {edition.send, edition.recv})
        self.assertTrue(issubclass(framing.GLOSocketError, Exception))
        self.assertEqual(utils.APP_PORT, edition.app_port)
        self.assertEqual(hasattr(utils, "SMTP_SERVER"), edition.smtp_server)
        menus = {name for name in ("CLIENT_USE_CHOICE", "CLIENT_USE_CHOICES")
                 if hasattr(utils, name)}
        self.assertEqual(menus, {edition.main_menu})
        self.assertEqual(getattr(utils, edition.main_menu), gloutils.CLIENT_USE_CHOICE)
        self.assertEqual(utils.CLIENT_AUTH_CHOICE, gloutils.CLIENT_AUTH_CHOICE)
        for template in ("SUBJECT_DISPLAY", "EMAIL_DISPLAY", "STATS_DISPLAY"):
            self.assertIs(type(getattr(utils, template)), str, template)
        email = test_grader.GRADER_EMAIL
        self.assertEqual(
            utils.EMAIL_DISPLAY.format(sender=email["sender"], to=email["destination"],
                                       subject=email["subject"], date=email["date"],
                                       body=email["content"]),
            test_grader.GRADER_EMAIL_TEXT)
        self.assertEqual([header.value for header in utils.Headers], list(range(1, 11)))

        send, recv = getattr(framing, edition.send), getattr(framing, edition.recv)
        left, right = socket.socketpair()
        with left, right:
            send(left, "Réunion ☕")
            self.assertEqual(recv(right), "Réunion ☕")
            left.sendall(support.frame(b"\xff\xfe"))
            expected = UnicodeDecodeError if edition.year == 2022 else framing.GLOSocketError
            with self.assertRaises(expected):
                recv(right)
            left.close()
            with self.assertRaises(framing.GLOSocketError):
                recv(right)

    def test_only_the_edition_folder_is_importable(self):
        """Lancés depuis le dossier, nos programmes prennent les modules de l'édition."""
        probe = (
            "import json, sys, TP4_client, TP4_server\n"
            "print(json.dumps({'path': sys.path, 'modules': {name: module.__file__\n"
            "    for name, module in (('serveur', TP4_server.glossocket),\n"
            "                         ('client', TP4_client.glossocket),\n"
            "                         ('gloutils', TP4_server.gloutils))}}))\n")
        completed = subprocess.run(
            [sys.executable, "-c", probe], cwd=self.folder, env=clean_environment(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(completed.returncode, 0, completed.stderr)
        report = json.loads(completed.stdout)
        self.assertNotIn(str(support.ROOT), report["path"])
        self.assertEqual(resolved(report["modules"]), resolved({
            "serveur": self.folder / "glosocket.py",
            "client": self.folder / "glosocket.py",
            "gloutils": self.folder / "gloutils.py"}))

    # ------------------------------------------------------------------
    # a. La session de l'énoncé, dans un terminal
    # ------------------------------------------------------------------

    def test_handout_session_in_terminal(self):
        """
        Vrai serveur et vrai client (dans un pseudo-terminal) lancés depuis le
        dossier de l'édition ; la session de l'énoncé s'affiche au caractère
        près (vérifications de tests/test_end_to_end.py, date lue à l'écran).
        """
        self.server = self.start_server()
        with mock.patch.object(test_end_to_end, "TerminalClient", self.terminal_client):
            try:
                self.replay_handout_sessions()
            except AssertionError as ex:
                raise AssertionError(f"{ex}\n--- journal du serveur ---\n{self.server.log()}") \
                    from None
        self.assertTrue(self.server.alive(), self.server.log())

    # ------------------------------------------------------------------
    # b. Le correcteur simulé, dans un seul processus
    # ------------------------------------------------------------------

    def run_grader(self) -> dict:
        """Lance le correcteur simulé (`python3 -I grader.py`) et renvoie son rapport."""
        completed = subprocess.run(
            [sys.executable, "-I", "grader.py"], cwd=self.folder, env=clean_environment(),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        stderr = completed.stderr.decode("utf-8", "replace")
        self.assertEqual(completed.returncode, 0, stderr[-3000:])
        report = json.loads(completed.stdout.decode("utf-8").strip().splitlines()[-1])
        report["stderr"] = stderr
        return report

    def test_grader_session_in_process(self):
        """
        `Server()` sur gloutils.APP_PORT remplacé, dans un fil, et
        `Client("127.0.0.1")` piloté par input/getpass remplacés : inscription,
        envoi à soi-même, lecture, statistiques, déconnexion, quitter.
        """
        report = self.run_grader()
        test_grader.assert_grader_started(self, report)
        self.assertEqual(resolved(report["modules"]), resolved({
            name: self.folder / f"{name}.py"
            for name in ("TP4_server", "TP4_client", "gloutils", "glosocket")}))

        # Requêtes et réponses du client, telles que découpées par l'édition.
        self.assertEqual(report.get("requests"), GRADER_REQUESTS)
        self.assertEqual(report.get("replies"), GRADER_REPLIES)
        send, recv = self.edition.send, self.edition.recv
        self.assertLessEqual({f"client:{send}", f"client:{recv}", f"serveur:{send}"},
                             set(report["framing"]), report["framing"])

        output = report["output"]
        for text in (gloutils.CLIENT_AUTH_CHOICE, gloutils.CLIENT_USE_CHOICE,
                     test_grader.GRADER_SUBJECT_LINE, test_grader.GRADER_EMAIL_TEXT,
                     test_grader.GRADER_STATS_TEXT):
            self.assertIn(text, output)
        self.assertEqual(report["answers_left"], 0, report["prompts"])
        data_dir = self.folder / gloutils.SERVER_DATA_DIR
        self.assertTrue((data_dir / "Kohryu" / gloutils.PASSWORD_FILENAME).is_file())

        self.assertTrue(report["server_stopped"], "run() tourne encore après l'arrêt.")
        self.assertEqual(report.get("run_raised"), "GraderStop",
                         "run() doit laisser passer l'exception levée par select.")
        self.assertNotIn("Traceback", report["stderr"])

    # ------------------------------------------------------------------
    # c. Le serveur seul, face à un client brut
    # ------------------------------------------------------------------

    def test_server_with_raw_sockets(self):
        """Chaque requête reçoit sa réponse, par les fonctions de découpage de l'édition."""
        server = self.start_server()
        try:
            self.raw_session(server)
        except self.framing.GLOSocketError as ex:
            self.fail(f"Connexion perdue ({ex}) ; journal du serveur :\n{server.log()}")
        self.assertTrue(server.alive(), server.log())
        self.assertNotIn("Traceback", server.log())

    def raw_session(self, server: EditionServer) -> None:
        """Inscription, envoi à soi-même, liste, lecture, statistiques, refus, BYE."""
        email = test_grader.GRADER_EMAIL
        with EditionRawClient(server.port, self.framing, self.edition) as client:
            self.assertEqual(client.register("Kohryu"), OK)
            self.assertEqual(client.send_email(**email), OK)
            self.assertEqual(client.request(H.INBOX_READING_REQUEST), GRADER_REPLIES[2])
            self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": 1}),
                             {"header": H.OK, "payload": email})
            self.assertEqual(client.request(H.STATS_REQUEST), GRADER_REPLIES[4])
            client.send(H.AUTH_LOGOUT)
            # Aucune réponse à la déconnexion : la suivante est celle-ci.
            support.assert_error(self, client.request(H.STATS_REQUEST), support.NOT_LOGGED_IN)
            support.assert_error(self, client.register("Qing Long", "faible"),
                                 support.creation_failed(support.INVALID_USERNAME,
                                                         support.WEAK_PASSWORD))
            support.assert_error(self, client.login("Kohryu", "Mauvais2022!"),
                                 support.LOGIN_FAILED)
            client.send_raw(support.frame(b"\xff\xfe"))
            support.assert_error(self, client.recv(), support.INVALID_REQUEST)
            self.assertEqual(client.login("kohryu"), OK)
            self.assertEqual(client.request(H.STATS_REQUEST)["payload"]["count"], 1)
            client.send(H.BYE)
            self.assertEqual(client.received_until_closed(), b"")


class TestEdition2022(_EditionTests, unittest.TestCase):
    """Modules de 2022 : send_msg/recv_msg, port 5321, SMTP_SERVER présent."""

    EDITION = 2022


class TestEdition2023(_EditionTests, unittest.TestCase):
    """Modules de 2023 : send_mesg/recv_mesg, port 5321, sans SMTP_SERVER."""

    EDITION = 2023


class TestEdition2024(_EditionTests, unittest.TestCase):
    """Modules de 2024 : snd_mesg/recv_mesg, port 9672, sans SMTP_SERVER."""

    EDITION = 2024


class TestEdition2025(_EditionTests, unittest.TestCase):
    """Modules de 2025 : send_mesg/recv_mesg, port 9673, CLIENT_USE_CHOICES."""

    EDITION = 2025


if __name__ == "__main__":
    unittest.main()
