"""\
GLO-2000 Travail pratique 4 - Tests à la manière du correcteur
Le correcteur du cours n'utilise ni nos options ni nos modules : il pose nos
TP4_server.py et TP4_client.py à côté des modules distribués en 2022
(`glosocket.py`, un seul s), remplace des constantes de gloutils et
`select.select`, construit `Server()` sans argument, remplace les méthodes du
gabarit sur la classe et pilote le vrai client par `input`/`getpass`
remplacés. Ces tests refont ces gestes, sur 127.0.0.1 et dans des dossiers
temporaires.
"""

import inspect
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import gloutils  # noqa: E402
import TP4_client  # noqa: E402
import TP4_server  # noqa: E402

H = gloutils.Headers
LOOPBACK = support.LOOPBACK
PASSWORD = support.STRONG_PASSWORD
TIMEOUT = 10
# Le vrai select.select, pris avant que les tests ne le remplacent.
_REAL_SELECT = TP4_server.select.select
# Délai d'attente maximal du select remplacé : la demande d'arrêt est vue vite.
_SELECT_SLICE = 0.05

# ----------------------------------------------------------------------
# Modules du cours, écrits d'après PROTOCOL.md : un correcteur les pose à
# côté de nos programmes à la place des nôtres.
# ----------------------------------------------------------------------

COURSE_GLOSOCKET = r'''"""Module de découpage distribué avec l'énoncé de 2022 (un seul s)."""

import socket
import struct


class GLOSocketError(Exception):
    """Toute erreur de communication."""


def send_msg(dest_soc: socket.socket, message: str) -> None:
    """Envoie la longueur (4 octets, "!I") puis le texte UTF-8, en un sendall."""
    data = message.encode("utf-8")
    try:
        dest_soc.sendall(struct.pack("!I", len(data)) + data)
    except OSError as ex:
        raise GLOSocketError(ex) from ex


def _recv_exactly(source_soc: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        try:
            chunk = source_soc.recv(count - len(data))
        except OSError as ex:
            raise GLOSocketError(ex) from ex
        if not chunk:
            raise GLOSocketError("Connexion fermée.")
        data += chunk
    return data


def recv_msg(source_soc: socket.socket) -> str:
    """Lit la longueur puis exactement autant d'octets, décodés en UTF-8."""
    (length,) = struct.unpack("!I", _recv_exactly(source_soc, 4))
    return _recv_exactly(source_soc, length).decode("utf-8")
'''

COURSE_GLOUTILS = r'''"""Module d'outils distribué avec l'énoncé de 2022 : gabarits en chaînes simples."""

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
EMAIL_DISPLAY = ("De : {sender}\nÀ : {to}\nSujet : {subject}\nDate : {date}\n"
                 + "-" * 40 + "\n{body}\n")
STATS_DISPLAY = "Nombre de messages : {count}\nTaille du dossier : {size} octets"


class Headers(enum.IntEnum):
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
    error_message: str


class AuthPayload(TypedDict):
    username: str
    password: str


class EmailContentPayload(TypedDict):
    sender: str
    destination: str
    subject: str
    date: str
    content: str


class EmailListPayload(TypedDict):
    email_list: list[str]


class EmailChoicePayload(TypedDict):
    choice: int


class StatsPayload(TypedDict):
    count: int
    size: int


class GloMessage(TypedDict, total=False):
    header: Headers
    payload: Union[ErrorPayload, AuthPayload, EmailContentPayload,
                   EmailListPayload, EmailChoicePayload, StatsPayload]


def get_current_utc_time() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S %z")
'''

# Script du correcteur simulé, exécuté avec `python3 -I` dans le dossier
# d'assemblage : il ne voit que les modules de ce dossier. Il écrit son
# compte rendu en JSON sur la dernière ligne de la sortie standard ; le test
# en tire ses vérifications, pour des messages d'échec lisibles.
GRADER_SCRIPT = r'''"""Correcteur simulé : Server() et Client() pilotés comme par le correcteur du cours."""

import contextlib
import io
import json
import os
import socket
import sys
import threading
import traceback
from unittest import mock

# -I retire le dossier du script des chemins : on l'y remet, lui seul.
FOLDER = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, FOLDER)

import gloutils
import TP4_client
import TP4_server

try:
    import glossocket as framing
except ImportError:
    import glosocket as framing

DATE = "Tue, 12 Jul 2022 19:21:57 +0000"
PASSWORD = "Motdepasse123"
# Créer Kohryu, s'écrire, lire le courriel #1, statistiques, déconnexion, quitter.
ANSWERS = ["1", "Kohryu",
           "2", "kohryu@glo2000.ca", "Bonjour!",
           "Exemple de contenu", "Sur plusieurs lignes", ".",
           "1", "1",
           "3",
           "4",
           "3"]
# Au-delà, run() a avalé l'arrêt demandé : on le fait tomber pour de bon
# plutôt que de le laisser tourner à vide.
SWALLOWED_STOPS_MAX = 20


class GraderStop(Exception):
    """Levée par le select.select remplacé pour arrêter run()."""


class HardStop(BaseException):
    """Arrêt forcé d'un run() qui avale les exceptions."""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def grade(report):
    stop = threading.Event()
    stops = []
    serving = {}

    def stoppable_select(rlist, wlist, xlist, timeout=None):
        if threading.current_thread() is serving.get("thread") and stop.is_set():
            stops.append(True)
            raise HardStop if len(stops) > SWALLOWED_STOPS_MAX else GraderStop
        timeout = 0.05 if timeout is None else min(timeout, 0.05)
        return real_select(rlist, wlist, xlist, timeout)

    def spy(name):
        real = getattr(framing, name)

        def wrapper(*args, **kwargs):
            side = "client" if threading.current_thread() is threading.main_thread() else "serveur"
            report["framing"].append(f"{side}:{name}")
            return real(*args, **kwargs)
        return wrapper

    answers = iter(ANSWERS)

    def fake_input(prompt=""):
        report["prompts"].append(prompt)
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    def fake_getpass(prompt="Password: ", stream=None):
        report["prompts"].append(prompt)
        return PASSWORD

    def serve(server):
        try:
            server.run()
        except BaseException as ex:
            report["run_raised"] = type(ex).__name__

    real_select = TP4_server.select.select
    port = free_port()
    output = io.StringIO()
    with mock.patch.object(gloutils, "APP_PORT", port), \
            mock.patch.object(gloutils, "get_current_utc_time", lambda: DATE), \
            mock.patch.object(TP4_server.select, "select", stoppable_select), \
            mock.patch.object(framing, "send_msg", spy("send_msg")), \
            mock.patch.object(framing, "recv_msg", spy("recv_msg")):
        try:
            server = TP4_server.Server()
        except SystemExit as ex:
            report["server_exit"] = str(ex.code)
            return
        report["listening_port"] = server._server_socket.getsockname()[1]
        report["expected_port"] = port
        serving["thread"] = threading.Thread(target=serve, args=(server,), daemon=True)
        serving["thread"].start()
        with mock.patch("builtins.input", fake_input), \
                mock.patch("getpass.getpass", fake_getpass), \
                contextlib.redirect_stdout(output):
            try:
                TP4_client.Client("127.0.0.1").run()
            except SystemExit as ex:
                report["client_exit"] = str(ex.code)
        report["output"] = output.getvalue()
        report["answers_left"] = len(list(answers))
        stop.set()
        serving["thread"].join(5)
        report["server_stopped"] = not serving["thread"].is_alive()
        if report["server_stopped"]:
            server.cleanup()


def main():
    report = {"framing": [], "prompts": []}
    try:
        grade(report)
    except BaseException:
        report["error"] = traceback.format_exc()
    report["modules"] = {
        name: getattr(sys.modules[name], "__file__", None)
        for name in ("TP4_server", "TP4_client", "gloutils", "glossocket", "glosocket")
        if name in sys.modules}
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Un fil de serveur resté en vie ne doit pas retenir le processus.
    os._exit(0)


main()
'''

# Ce que la session du correcteur simulé doit afficher (date fixée par lui).
GRADER_DATE = "Tue, 12 Jul 2022 19:21:57 +0000"
GRADER_EMAIL = {
    "sender": "Kohryu@glo2000.ca",
    "destination": "kohryu@glo2000.ca",
    "subject": "Bonjour!",
    "date": GRADER_DATE,
    "content": "Exemple de contenu\nSur plusieurs lignes",
}
GRADER_EMAIL_TEXT = (
    "De : Kohryu@glo2000.ca\n"
    "À : kohryu@glo2000.ca\n"
    "Sujet : Bonjour!\n"
    f"Date : {GRADER_DATE}\n"
    + "-" * 40 + "\n"
    "Exemple de contenu\n"
    "Sur plusieurs lignes\n"
)
GRADER_SUBJECT_LINE = f"#1 Kohryu@glo2000.ca - Bonjour! {GRADER_DATE}"
# Le dossier de Kohryu : son fichier pass et le JSON de son seul courriel.
GRADER_STATS_TEXT = ("Nombre de messages : 1\nTaille du dossier : "
                     f"{support.DIGEST_SIZE + len(json.dumps(GRADER_EMAIL))} octets")


# Les journaux du serveur en cours de test ne doivent pas noyer la sortie.
_QUIET = logging.NullHandler()


def setUpModule():
    logging.getLogger(TP4_server.__name__).addHandler(_QUIET)


def tearDownModule():
    logging.getLogger(TP4_server.__name__).removeHandler(_QUIET)


# ----------------------------------------------------------------------
# Outils
# ----------------------------------------------------------------------

class _ServerStopped(BaseException):
    """
    Arrête `run()` à la fin d'un test. Hors de la hiérarchie d'`Exception`,
    pour arrêter même un `run()` qui avalerait les erreurs (les tests de
    `TestRunLoop` vérifient à part qu'il ne le fait pas).
    """


class _GraderStop(Exception):
    """L'exception qu'un correcteur fait lever par `select.select` remplacé."""


def enter_temp_cwd(test: unittest.TestCase) -> Path:
    """Un dossier de travail temporaire neuf, quitté et effacé à la fin du test."""
    folder = tempfile.TemporaryDirectory(prefix="glo-correcteur-")
    test.addCleanup(folder.cleanup)
    test.addCleanup(os.chdir, os.getcwd())
    os.chdir(folder.name)
    return Path(folder.name)


def patch_for_test(test: unittest.TestCase, target, attribute: str, value) -> None:
    """Remplace `target.attribute` jusqu'à la fin du test."""
    patcher = mock.patch.object(target, attribute, value)
    patcher.start()
    test.addCleanup(patcher.stop)


def cleanup_once(test: unittest.TestCase, server: TP4_server.Server):
    """
    Garantit un seul `cleanup()` du serveur, à la fin du test au plus tard.
    Renvoie la fonction à appeler pour le faire plus tôt.
    """
    done = []

    def clean() -> None:
        if not done:
            done.append(True)
            server.cleanup()
    test.addCleanup(clean)
    return clean


def build_server(test: unittest.TestCase, **kwargs) -> tuple:
    """
    Un `Server` sur 127.0.0.1 et un port libre (relais SMTP : un port fermé
    de 127.0.0.1 sauf indication contraire), nettoyé à la fin du test.
    Renvoie (serveur, cleanup).
    """
    arguments = {"host": LOOPBACK, "port": support.free_port(), "smtp_host": LOOPBACK,
                 "smtp_port": support.free_port(), "smtp_timeout": 5, **kwargs}
    server = TP4_server.Server(**arguments)
    return server, cleanup_once(test, server)


def build_grader_server(test: unittest.TestCase, port: "int | None" = None):
    """
    `Server()` sans argument, comme le correcteur : seul `gloutils.APP_PORT`
    est remplacé, par un port libre. Renvoie (serveur, port, cleanup).
    """
    port = port or support.free_port()
    with mock.patch.object(gloutils, "APP_PORT", port):
        try:
            server = TP4_server.Server()
        except SystemExit as ex:
            test.fail(f"Server() a quitté ({ex.code}) au lieu d'écouter sur {port}.")
    return server, port, cleanup_once(test, server)


def tcp_pair() -> tuple:
    """Deux sockets TCP connectés l'un à l'autre sur 127.0.0.1."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        outside = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        inside, _ = listener.accept()
    return inside, outside


def wait_until(condition, timeout: float = 5.0) -> bool:
    """Attend que `condition()` soit vraie ; renvoie False si le délai expire."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wire(message: dict) -> dict:
    """Un `GloMessage` tel qu'il arrive de l'autre côté du fil."""
    return json.loads(json.dumps(message))


def sentinel_error(name: str) -> dict:
    """Un `ERROR` qu'aucun traitement réel ne produirait."""
    return gloutils.GloMessage(
        header=H.ERROR,
        payload=gloutils.ErrorPayload(error_message=f"Sentinelle du correcteur : {name} 4242"))


class RunningServer:
    """
    Un `TP4_server.Server` construit dans ce processus, dans un dossier de
    travail temporaire, dont `run()` tourne dans un fil. Comme chez le
    correcteur, `select.select` est remplacé : une fois `stop()` demandé, il
    lève `_ServerStopped` dans ce fil ; `cleanup()` suit. Le select remplacé
    n'attend jamais plus de `_SELECT_SLICE`, pour voir l'arrêt à temps, et
    laisse passer les appels des autres fils.
    """

    def __init__(self, test: unittest.TestCase, **server_kwargs) -> None:
        self._test = test
        self.workdir = enter_temp_cwd(test)
        self.data_dir = self.workdir / gloutils.SERVER_DATA_DIR
        self.server, self._cleanup = build_server(test, **server_kwargs)
        self.port = self.server._server_socket.getsockname()[1]
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="serveur-teste", daemon=True)
        self.run_error: "BaseException | None" = None
        patch_for_test(test, TP4_server.select, "select", self._select)
        self._thread.start()
        test.addCleanup(self.stop)

    def _select(self, rlist, wlist, xlist, timeout=None):
        if threading.current_thread() is not self._thread:
            return _REAL_SELECT(rlist, wlist, xlist, timeout)
        if self._stop_requested.is_set():
            raise _ServerStopped
        timeout = _SELECT_SLICE if timeout is None else min(timeout, _SELECT_SLICE)
        return _REAL_SELECT(rlist, wlist, xlist, timeout)

    def _serve(self) -> None:
        try:
            self.server.run()
        except _ServerStopped:
            pass
        except BaseException as ex:  # Gardée pour le test : le fil ne doit rien perdre.
            self.run_error = ex

    def stop(self) -> None:
        """Arrête `run()`, puis `cleanup()` ; sans effet la seconde fois."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        self._thread.join(TIMEOUT)
        if self._thread.is_alive():
            raise AssertionError("run() ne s'est pas arrêté après la demande d'arrêt.")
        self._cleanup()
        if self.run_error is not None:
            raise AssertionError(f"run() a levé {self.run_error!r}.")

    def client(self) -> support.RawClient:
        """Un client brut connecté, fermé à la fin du test."""
        client = support.RawClient(self.port)
        self._test.addCleanup(client.close)
        return client


class ScriptedSelect:
    """
    `select.select` d'un correcteur : rend les résultats prévus, un par tour,
    puis lève `_GraderStop`. Si `run()` avale cette exception et revient,
    `_ServerStopped` finit par l'arrêter pour de bon, et `stops` dit combien
    de fois l'arrêt a été demandé.
    """

    SWALLOWED_STOPS_MAX = 20

    def __init__(self, *results) -> None:
        self._results = list(results)
        self.calls = 0
        self.stops = 0

    def __call__(self, rlist, wlist, xlist, timeout=None):
        self.calls += 1
        if self._results:
            return self._results.pop(0)
        self.stops += 1
        if self.stops > self.SWALLOWED_STOPS_MAX:
            raise _ServerStopped
        raise _GraderStop


def run_with_select(test: unittest.TestCase, server: TP4_server.Server,
                    fake_select: ScriptedSelect) -> "BaseException | None":
    """Exécute `server.run()` dans un fil avec `fake_select` ; renvoie ce qu'il a levé."""
    outcome = {}

    def serve() -> None:
        try:
            server.run()
        except BaseException as ex:
            outcome["raised"] = ex

    with mock.patch.object(TP4_server.select, "select", fake_select):
        thread = threading.Thread(target=serve, name="serveur-scripte", daemon=True)
        thread.start()
        thread.join(TIMEOUT)
    test.assertFalse(thread.is_alive(), "run() tourne encore malgré select qui lève.")
    return outcome.get("raised")


class Assembly:
    """
    Un dossier temporaire où des copies de nos TP4_server.py et TP4_client.py
    côtoient des modules de soutien : ceux du cours (`glosocket.py`, un seul
    s, et un gloutils aux gabarits en chaînes simples) ou les nôtres. Le
    correcteur simulé et le serveur y sont lancés sans accès au dépôt.
    """

    def __init__(self, test: unittest.TestCase, course_modules: bool) -> None:
        self._test = test
        folder = tempfile.TemporaryDirectory(prefix="glo-assemblage-")
        test.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        for program in (support.SERVER_SCRIPT, support.CLIENT_SCRIPT):
            shutil.copy(program, self.folder)
        if course_modules:
            (self.folder / "glosocket.py").write_text(COURSE_GLOSOCKET, encoding="utf-8")
            (self.folder / "gloutils.py").write_text(COURSE_GLOUTILS, encoding="utf-8")
        else:
            for module in ("glossocket.py", "gloutils.py"):
                shutil.copy(support.ROOT / module, self.folder)
        (self.folder / "grader.py").write_text(GRADER_SCRIPT, encoding="utf-8")
        self.data_dir = self.folder / gloutils.SERVER_DATA_DIR

    def run_grader(self) -> dict:
        """Lance le correcteur simulé et renvoie son compte rendu."""
        completed = subprocess.run(
            [sys.executable, "-I", "grader.py"], cwd=self.folder, capture_output=True,
            stdin=subprocess.DEVNULL, timeout=30)
        stderr = completed.stderr.decode("utf-8", "replace")
        self._test.assertEqual(completed.returncode, 0, stderr[-3000:])
        last_line = completed.stdout.decode("utf-8").strip().splitlines()[-1]
        report = json.loads(last_line)
        report["stderr"] = stderr
        return report

    def start_server(self, port: int) -> subprocess.Popen:
        """
        `python3 TP4_server.py` dans le dossier, sans PYTHONPATH : Python ne
        met sur le chemin que le dossier du script. Arrêté à la fin du test.
        """
        environment = {key: value for key, value in os.environ.items()
                       if key != "PYTHONPATH"}
        log = open(self.folder / "server.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-s", "TP4_server.py", "--host", LOOPBACK, "--port", str(port)],
            cwd=self.folder, env=environment, stdin=subprocess.DEVNULL,
            stdout=log, stderr=log)
        log.close()
        self._test.addCleanup(_stop_process, process)
        return process

    def server_log(self) -> str:
        return (self.folder / "server.log").read_text(encoding="utf-8", errors="replace")


def _stop_process(process: subprocess.Popen) -> None:
    """Ctrl-C, puis SIGKILL s'il le faut ; le processus est toujours attendu."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=TIMEOUT)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


# ----------------------------------------------------------------------
# A. Assemblages
# ----------------------------------------------------------------------

def assert_grader_started(test: unittest.TestCase, report: dict) -> None:
    """Le correcteur simulé a bâti `Server()` sur le port remplacé et mené le client."""
    test.assertNotIn("error", report, report.get("error"))
    test.assertNotIn("server_exit", report, "Server() a quitté.")
    test.assertEqual(report["listening_port"], report["expected_port"],
                     "Server() n'écoute pas sur gloutils.APP_PORT remplacé.")
    test.assertNotIn("client_exit", report,
                     "Client('127.0.0.1') a quitté : " + report.get("output", ""))


class TestAssemblies(unittest.TestCase):
    """Nos programmes posés à côté des modules du cours, ou des nôtres."""

    def assert_grader_session(self, assembly: Assembly, framing_module: str) -> None:
        report = assembly.run_grader()
        assert_grader_started(self, report)
        # Chaque module vient du dossier d'assemblage, jamais du dépôt.
        for name, path in report["modules"].items():
            self.assertEqual(Path(path).resolve().parent, assembly.folder.resolve(), name)
        other = {"glosocket": "glossocket", "glossocket": "glosocket"}[framing_module]
        self.assertIn(framing_module, report["modules"])
        self.assertNotIn(other, report["modules"])

        output = report["output"]
        self.assertIn(gloutils.CLIENT_AUTH_CHOICE, output)
        self.assertIn(gloutils.CLIENT_USE_CHOICE, output)
        self.assertIn(GRADER_SUBJECT_LINE, output)
        self.assertIn(GRADER_EMAIL_TEXT, output)
        self.assertIn(GRADER_STATS_TEXT, output)
        self.assertEqual(report["answers_left"], 0, report["prompts"])
        self.assertTrue((assembly.data_dir / "Kohryu" / gloutils.PASSWORD_FILENAME).is_file())

        # Les deux programmes passent par le module de découpage (remplaçable).
        self.assertIn("client:send_msg", report["framing"])
        self.assertIn("client:recv_msg", report["framing"])
        self.assertIn("serveur:send_msg", report["framing"])

        self.assertTrue(report["server_stopped"], "run() tourne encore après l'arrêt.")
        self.assertEqual(report.get("run_raised"), "GraderStop",
                         "run() doit laisser passer l'exception levée par select.")
        self.assertNotIn("Traceback", report["stderr"])

    def test_course_modules_grader_session(self):
        self.assert_grader_session(Assembly(self, course_modules=True), "glosocket")

    def test_our_modules_grader_session(self):
        self.assert_grader_session(Assembly(self, course_modules=False), "glossocket")

    def test_course_modules_server_process(self):
        assembly = Assembly(self, course_modules=True)
        port = support.free_port()
        process = assembly.start_server(port)
        try:
            support.wait_for_port(port)
        except TimeoutError:
            self.fail("Le serveur n'écoute pas :\n" + assembly.server_log())
        with support.RawClient(port) as client:
            self.assertEqual(client.register("Kohryu"), {"header": H.OK})
            self.assertEqual(client.send_email(**GRADER_EMAIL), {"header": H.OK})
            self.assertEqual(client.request(H.INBOX_READING_REQUEST),
                             {"header": H.OK, "payload": {"email_list": [GRADER_SUBJECT_LINE]}})
            self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": 1}),
                             {"header": H.OK, "payload": GRADER_EMAIL})
            client.send(H.BYE)
            self.assertEqual(client.received_until_closed(), b"")
        _stop_process(process)
        self.assertNotIn("Traceback", assembly.server_log())


# ----------------------------------------------------------------------
# B. Constantes de gloutils lues à l'appel
# ----------------------------------------------------------------------

class TestConstantsReadAtCallTime(unittest.TestCase):
    """Un correcteur remplace les constantes de gloutils après l'importation."""

    def setUp(self):
        self.workdir = enter_temp_cwd(self)

    def test_app_port(self):
        server, port, _ = build_grader_server(self)
        self.assertEqual(server._server_socket.getsockname()[1], port)
        with mock.patch.object(gloutils, "APP_PORT", port):
            try:
                client = TP4_client.Client(LOOPBACK)
            except SystemExit as ex:
                self.fail(f"Client({LOOPBACK!r}) a quitté ({ex.code}) au lieu de joindre {port}.")
        self.addCleanup(client._socket.close)
        self.assertEqual(client._socket.getpeername(), (LOOPBACK, port))

    def test_server_data_dir(self):
        data_dir = self.workdir / "ailleurs" / "donnees"
        patch_for_test(self, gloutils, "SERVER_DATA_DIR", str(data_dir))
        server, _, _ = build_grader_server(self)
        reply = server._create_account(
            mock.Mock(spec=socket.socket),
            gloutils.AuthPayload(username="Kohryu", password=PASSWORD))
        self.assertEqual(reply, {"header": H.OK})
        self.assertTrue((data_dir / "Kohryu" / gloutils.PASSWORD_FILENAME).is_file())
        reply = server._send_email(gloutils.EmailContentPayload(
            sender="Kohryu@glo2000.ca", destination="personne@glo2000.ca", subject="Perdu",
            date=GRADER_DATE, content="Pour personne"))
        self.assertEqual(reply["header"], H.ERROR)
        lost = data_dir / gloutils.SERVER_LOST_DIR
        self.assertTrue(lost.is_dir() and any(lost.iterdir()),
                        "Le courriel perdu n'est pas dans LOST du dossier remplacé.")
        self.assertFalse((self.workdir / "glo_server_data").exists())

    def test_smtp_server(self):
        patch_for_test(self, gloutils, "SMTP_SERVER", LOOPBACK)
        # Garde-fou : un relais qui contournerait le faux smtplib.SMTP ne doit
        # joindre aucun serveur réel (port 25 de 127.0.0.1 compris).
        patch_for_test(self, TP4_server.smtplib.SMTP, "connect", mock.Mock(
            side_effect=ConnectionRefusedError("connexion SMTP réelle interdite")))
        smtp_class = mock.MagicMock(name="SMTP")
        patch_for_test(self, TP4_server.smtplib, "SMTP", smtp_class)
        server, _, _ = build_grader_server(self)
        reply = server._send_email(gloutils.EmailContentPayload(
            sender="Kohryu@glo2000.ca", destination="alice@example.com", subject="Externe",
            date=GRADER_DATE, content="Bonjour"))
        self.assertEqual(smtp_class.call_count, 1,
                         "Le relais doit passer par smtplib.SMTP, que le correcteur remplace.")
        args, kwargs = smtp_class.call_args
        host = args[0] if args else kwargs.get("host")
        self.assertEqual(host, LOOPBACK, "Le relais doit être gloutils.SMTP_SERVER lu à l'appel.")
        self.assertEqual(reply, {"header": H.OK})


# ----------------------------------------------------------------------
# C. run() piloté par select.select remplacé
# ----------------------------------------------------------------------

class TestRunLoop(unittest.TestCase):
    """`run()` et `_accept_client()` pilotés comme par un correcteur."""

    def setUp(self):
        enter_temp_cwd(self)
        self.server, _ = build_server(self)

    def mock_listening_socket(self, accepted: socket.socket) -> mock.Mock:
        """
        Remplace le socket d'écoute par un faux dont `accept()` rend toujours
        `accepted` ; le vrai est remis en place avant `cleanup()`.
        """
        real = self.server._server_socket
        self.addCleanup(setattr, self.server, "_server_socket", real)
        listening = mock.Mock()
        listening.accept.return_value = (accepted, (LOOPBACK, 12345))
        self.server._server_socket = listening
        return listening

    def test_exception_from_select_propagates(self):
        scripted = ScriptedSelect(([], [], []), ([], [], []))
        raised = run_with_select(self, self.server, scripted)
        self.assertIsInstance(raised, _GraderStop,
                              f"run() a avalé l'exception ({scripted.stops} arrêts demandés).")
        self.assertEqual(scripted.calls, 3)

    def test_accept_client_appends_one_socket(self):
        for make_pair in (socket.socketpair, tcp_pair):
            with self.subTest(make_pair.__name__):
                accepted, peer = make_pair()
                self.addCleanup(peer.close)
                self.addCleanup(accepted.close)
                self.server._client_socs.clear()
                self.mock_listening_socket(accepted)
                self.server._accept_client()
                self.assertEqual(self.server._client_socs, [accepted])

    def test_run_accepts_one_client_when_listening_socket_is_readable(self):
        accepted, peer = tcp_pair()
        self.addCleanup(peer.close)
        self.addCleanup(accepted.close)
        listening = self.mock_listening_socket(accepted)
        scripted = ScriptedSelect(([listening], [], []))
        raised = run_with_select(self, self.server, scripted)
        self.assertEqual(self.server._client_socs, [accepted])
        self.assertIsInstance(raised, _GraderStop)


# ----------------------------------------------------------------------
# D. Chaque méthode du gabarit est sur le chemin des requêtes
# ----------------------------------------------------------------------

class TestTemplateMethodsOnTheWire(unittest.TestCase):
    """
    Un correcteur remplace une méthode du gabarit sur la classe, après la
    construction du serveur, et attend sa réponse sur le fil.
    """

    def setUp(self):
        self.receiver = support.SMTPReceiver().__enter__()
        self.addCleanup(self.receiver.__exit__, None, None, None)
        self.running = RunningServer(self, smtp_port=self.receiver.port)
        self.server = self.running.server
        self.client = self.running.client()
        self.assertEqual(self.client.register("Kohryu"), {"header": H.OK})

    def patch_method(self, name: str, reply) -> mock.Mock:
        """Remplace `Server.name` (avec sa signature) par un faux qui rend `reply`."""
        self.original = getattr(TP4_server.Server, name)
        patcher = mock.patch.object(TP4_server.Server, name, autospec=True, return_value=reply)
        method = patcher.start()
        self.addCleanup(patcher.stop)
        return method

    def assert_called_with_socket(self, method: mock.Mock, client: support.RawClient,
                                  *rest) -> None:
        """
        Un seul appel, avec le serveur, le socket du serveur relié à `client`
        puis `rest`, quelle que soit la façon de passer les arguments.
        """
        method.assert_called_once()
        bound = inspect.signature(self.original).bind(*method.call_args.args,
                                                      **method.call_args.kwargs)
        server, client_soc, *others = bound.arguments.values()
        self.assertIs(server, self.server)
        self.assertEqual(client_soc.getpeername(), client.sock.getsockname())
        self.assertEqual(others, list(rest))

    def email(self, destination: str) -> dict:
        return gloutils.EmailContentPayload(
            sender="Kohryu@glo2000.ca", destination=destination, subject="Sentinelle",
            date=gloutils.get_current_utc_time(), content="Contenu")

    def test_create_account(self):
        sentinel = sentinel_error("_create_account")
        method = self.patch_method("_create_account", sentinel)
        newcomer = self.running.client()
        self.assertEqual(newcomer.register("Nouveau"), wire(sentinel))
        self.assert_called_with_socket(method, newcomer,
                                       {"username": "Nouveau", "password": PASSWORD})

    def test_login(self):
        sentinel = sentinel_error("_login")
        method = self.patch_method("_login", sentinel)
        other = self.running.client()
        self.assertEqual(other.login("Kohryu"), wire(sentinel))
        self.assert_called_with_socket(method, other, {"username": "Kohryu", "password": PASSWORD})

    def test_get_email_list(self):
        sentinel = sentinel_error("_get_email_list")
        method = self.patch_method("_get_email_list", sentinel)
        self.assertEqual(self.client.request(H.INBOX_READING_REQUEST), wire(sentinel))
        self.assert_called_with_socket(method, self.client)

    def test_get_email(self):
        # Un vrai courriel #1 : le serveur n'a aucune raison de refuser le choix.
        self.assertEqual(self.client.send_email(**self.email("kohryu@glo2000.ca")),
                         {"header": H.OK})
        sentinel = sentinel_error("_get_email")
        method = self.patch_method("_get_email", sentinel)
        self.assertEqual(self.client.request(H.INBOX_READING_CHOICE, {"choice": 1}),
                         wire(sentinel))
        self.assert_called_with_socket(method, self.client, {"choice": 1})

    def test_get_stats(self):
        sentinel = gloutils.GloMessage(header=H.OK, payload=gloutils.StatsPayload(
            count=4242, size=17))
        method = self.patch_method("_get_stats", sentinel)
        self.assertEqual(self.client.request(H.STATS_REQUEST), wire(sentinel))
        self.assert_called_with_socket(method, self.client)

    def assert_send_email_is_the_path(self, destination: str) -> None:
        sentinel = sentinel_error("_send_email")
        method = self.patch_method("_send_email", sentinel)
        email = self.email(destination)
        self.assertEqual(self.client.send_email(**email), wire(sentinel))
        method.assert_called_once()
        bound = inspect.signature(self.original).bind(*method.call_args.args,
                                                      **method.call_args.kwargs)
        self.assertEqual(list(bound.arguments.values()), [self.server, email])

    def test_send_email_internal(self):
        folder = self.running.data_dir / "Kohryu"
        before = sorted(os.listdir(folder))
        self.assert_send_email_is_the_path("kohryu@glo2000.ca")
        self.assertEqual(sorted(os.listdir(folder)), before,
                         "Le courriel a été livré sans passer par _send_email.")

    def test_send_email_external(self):
        self.assert_send_email_is_the_path("alice@example.com")
        self.assertEqual(self.receiver.messages, [],
                         "Le courriel a été relayé sans passer par _send_email.")

    def test_logout(self):
        method = self.patch_method("_logout", None)
        self.client.send(H.AUTH_LOGOUT)
        self.assertTrue(wait_until(lambda: method.called), "_logout n'a pas été appelé.")
        self.assertTrue(self.client.nothing_received())
        self.assert_called_with_socket(method, self.client)


class TestListingOnTheWire(unittest.TestCase):
    """
    La liste envoyée sur le fil est celle que `_get_email_list` renvoie à
    ce moment-là : un correcteur qui l'enveloppe et la modifie, ou qui
    remplace `gloutils.SUBJECT_DISPLAY`, voit son effet chez le client.
    """

    SUBJECTS = ("premier", "deuxième", "troisième")

    def setUp(self):
        self.running = RunningServer(self)
        self.client = self.running.client()
        self.assertEqual(self.client.register("Kohryu"), {"header": H.OK})
        for second, subject in enumerate(self.SUBJECTS):
            self.assertEqual(self.client.send_email(
                "Kohryu@glo2000.ca", "kohryu@glo2000.ca", subject,
                date=f"Tue, 12 Jul 2022 19:21:{second:02d} +0000"), {"header": H.OK})
        # Une première liste : la boîte est chargée, comme à la correction.
        self.assertEqual(len(self.listing()), len(self.SUBJECTS))

    def listing(self) -> list:
        reply = self.client.request(H.INBOX_READING_REQUEST)
        self.assertEqual(reply["header"], H.OK, reply)
        return reply["payload"]["email_list"]

    def test_trimmed_listing_reaches_the_wire(self):
        original = TP4_server.Server._get_email_list
        returned = []

        def trimmed(server, client_soc):
            reply = original(server, client_soc)
            del reply["payload"]["email_list"][1:]
            returned.append(wire(reply))
            return reply

        with mock.patch.object(TP4_server.Server, "_get_email_list", trimmed):
            lines = self.listing()
        self.assertEqual(lines, ["#1 Kohryu@glo2000.ca - troisième Tue, 12 Jul 2022 "
                                 "19:21:02 +0000"])
        self.assertEqual(returned, [{"header": H.OK, "payload": {"email_list": lines}}])

    def test_subject_display_read_at_request_time(self):
        template = "{number}) {subject} <{sender}> 100%"
        with mock.patch.object(gloutils, "SUBJECT_DISPLAY", template):
            lines = self.listing()
        self.assertEqual(lines, [f"{number}) {subject} <Kohryu@glo2000.ca> 100%"
                                 for number, subject in enumerate(self.SUBJECTS[::-1], 1)])
        self.assertEqual(self.listing()[0],
                         "#1 Kohryu@glo2000.ca - troisième Tue, 12 Jul 2022 19:21:02 +0000")


# ----------------------------------------------------------------------
# E. Un seul serveur par dossier de données
# ----------------------------------------------------------------------

class TestOneServerPerDataFolder(unittest.TestCase):
    """Deux serveurs ne partagent jamais un dossier de données... sauf dans un même processus."""

    def setUp(self):
        folder = tempfile.TemporaryDirectory(prefix="glo-dossier-")
        self.addCleanup(folder.cleanup)
        self.workdir = folder.name

    def start_first(self) -> support.ServerProcess:
        first = support.ServerProcess(workdir=self.workdir).start()
        self.addCleanup(first.stop)
        with support.RawClient(first.port) as client:
            self.assertEqual(client.register("Kohryu"), {"header": H.OK})
        return first

    def assert_serves(self, port: int) -> None:
        with support.RawClient(port) as client:
            self.assertEqual(client.login("Kohryu"), {"header": H.OK})

    def test_second_process_refused(self):
        first = self.start_first()
        # Le second réserve son port, trouve le dossier pris et s'arrête.
        second = support.ServerProcess(workdir=self.workdir).run_until_exit(timeout=TIMEOUT)
        self.assertNotEqual(second.returncode, 0)
        lines = second.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", lines[0])
        self.assertIn(gloutils.SERVER_DATA_DIR, lines[0])
        self.assertTrue(first.alive())
        self.assert_serves(first.port)

    def test_restart_after_kill(self):
        self.start_first().kill()
        restarted = support.ServerProcess(workdir=self.workdir).start()
        self.addCleanup(restarted.stop)
        self.assert_serves(restarted.port)

    def test_two_servers_in_one_process_with_cleanup(self):
        enter_temp_cwd(self)
        first, port, first_cleanup = build_grader_server(self)
        self.assertEqual(first._create_account(mock.Mock(spec=socket.socket), {
            "username": "Kohryu", "password": PASSWORD}), {"header": H.OK})
        first_cleanup()
        second, _, _ = build_grader_server(self, port)
        self.assertEqual(second._login(mock.Mock(spec=socket.socket), {
            "username": "Kohryu", "password": PASSWORD}), {"header": H.OK})

    def test_two_servers_in_one_process_without_cleanup(self):
        enter_temp_cwd(self)
        first, _, _ = build_grader_server(self)
        self.assertEqual(first._create_account(mock.Mock(spec=socket.socket), {
            "username": "Kohryu", "password": PASSWORD}), {"header": H.OK})
        second, _, _ = build_grader_server(self)
        self.assertEqual(second._login(mock.Mock(spec=socket.socket), {
            "username": "Kohryu", "password": PASSWORD}), {"header": H.OK})


# ----------------------------------------------------------------------
# F. Rien ne reste derrière un serveur nettoyé
# ----------------------------------------------------------------------

class TestNothingLeftBehind(unittest.TestCase):
    """Après `cleanup()`, ni fil ni processus enfant du serveur ne survit."""

    def setUp(self):
        self.threads_before = set(threading.enumerate())
        self.children_before = set(support.child_pids(os.getpid()))

    def assert_nothing_left(self) -> None:
        def leftovers():
            threads = [thread.name for thread in threading.enumerate()
                       if thread not in self.threads_before]
            children = set(support.child_pids(os.getpid())) - self.children_before
            return threads, children
        wait_until(lambda: leftovers() == ([], set()))
        self.assertEqual(leftovers(), ([], set()))

    def test_built_and_cleaned_up(self):
        enter_temp_cwd(self)
        _, cleanup = build_server(self)
        cleanup()
        self.assert_nothing_left()

    def test_after_a_session(self):
        with support.SMTPReceiver() as receiver:
            running = RunningServer(self, smtp_port=receiver.port)
            with support.RawClient(running.port) as client:
                self.assertEqual(client.register("Kohryu"), {"header": H.OK})
                self.assertEqual(client.send_email("Kohryu@glo2000.ca", "kohryu@glo2000.ca"),
                                 {"header": H.OK})
                self.assertEqual(client.send_email("Kohryu@glo2000.ca", "alice@example.com"),
                                 {"header": H.OK})
                self.assertEqual(client.request(H.STATS_REQUEST)["header"], H.OK)
                self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": 1})["header"],
                                 H.OK)
            running.stop()
        self.assert_nothing_left()


if __name__ == "__main__":
    unittest.main()
