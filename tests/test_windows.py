"""\
GLO-2000 Travail pratique 4 - Sous Windows
Le serveur et le client exécutés par un vrai CPython pour Windows (sous wine,
installé par `bash .ci/windows-python setup`), pilotés depuis Linux : une
session complète du protocole, les noms de compte que Windows confond ou
réserve, le dossier des données laissé sur le disque, l'aide du client.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import gloutils  # noqa: E402

H = gloutils.Headers
OK = {"header": H.OK}
PASSWORD = support.STRONG_PASSWORD
INTRUDER_PASSWORD = "Intrus98765X"

WINDOWS_PYTHON = support.ROOT / ".ci" / "windows-python"
# Mêmes emplacements que ceux où `.ci/windows-python` installe tout.
WINPY_HOME = Path(os.environ.get("WINPY_HOME", "/tmp/windows-python"))
WINE_PREFIX = WINPY_HOME / "prefix"
PYTHON_EXE = WINPY_HOME / "python" / "python.exe"
WINE = Path("/usr/lib/wine/wine64")
WINESERVER = Path("/usr/lib/wine/wineserver")
PROGRAM_FILES = ("TP4_server.py", "TP4_client.py", "glossocket.py", "gloutils.py")

# Wine démarre lentement (plusieurs secondes, davantage sur une machine chargée) :
# des délais généreux évitent un échec qui ne dirait rien du serveur.
STARTUP_TIMEOUT = 90.0
REPLY_TIMEOUT = 30.0

# Un sujet et un contenu hors de cp1252, le codage par défaut des fichiers et
# des sorties redirigées sous Windows : un texte écrit sans `encoding=` échoue.
EMAIL = {
    "sender": "alice@glo2000.ca",
    "destination": "alice@glo2000.ca",
    "subject": "Œuvre ✓ 日本",
    "date": "Tue, 12 Jul 2022 19:21:57 +0000",
    "content": "Première ligne\nDeuxième ligne ✓",
}


def wine_processes() -> list:
    """
    Processus vivants (zombies exclus) du préfixe wine des tests, reconnus à
    leur variable WINEPREFIX : python.exe, wineserver et les services de wine.
    """
    marker = f"WINEPREFIX={WINE_PREFIX}".encode()
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environment and support.process_running(int(entry)):
            found.append(int(entry))
    return found


def windows_python_ready() -> bool:
    """Vrai si `.ci/windows-python setup` a installé wine et Python pour Windows."""
    return WINE.is_file() and PYTHON_EXE.is_file()


def setUpModule():
    # Hors CI, une machine sans wine saute ces tests, en une seule ligne ; en CI,
    # l'installation est due et chaque test échoue sans elle (voir setUp).
    if not windows_python_ready() and os.environ.get("CI") != "true":
        raise unittest.SkipTest("Python Windows absent : lancez « bash .ci/windows-python "
                                "setup » pour ces tests.")


def windows_python(*args: str) -> list:
    """La ligne de commande qui exécute `args` avec Python pour Windows."""
    return ["bash", str(WINDOWS_PYTHON), *args]


def windows_text(output: bytes) -> str:
    """
    Texte d'une sortie de Python pour Windows : redirigée, elle est écrite dans
    le codage ANSI du système (cp1252 ici), à moins que le programme n'ait
    choisi UTF-8.
    """
    try:
        return output.decode("utf-8")
    except UnicodeDecodeError:
        return output.decode("cp1252", "replace")


def stop_wine(process: "subprocess.Popen | None" = None) -> None:
    """
    Tue `process` et tout son groupe, où restent les python.exe qu'il a
    lancés, puis le reste du préfixe avec `wineserver -k` : sans lui, les
    services de wine survivraient au test.
    """
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
    subprocess.run([str(WINESERVER), "-k"], env={**os.environ, "WINEPREFIX": str(WINE_PREFIX)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
    deadline = time.monotonic() + 10
    while wine_processes() and time.monotonic() < deadline:
        time.sleep(0.1)


class WindowsTestCase(unittest.TestCase):
    """Un dossier de travail neuf, où sont copiés les programmes, par test."""

    def setUp(self):
        if not windows_python_ready():
            self.fail("Python Windows absent en CI : « bash .ci/windows-python setup » "
                      "a échoué (voir sa sortie plus haut).")
        workdir = tempfile.TemporaryDirectory(prefix="glo-windows-")
        self.addCleanup(workdir.cleanup)
        self.workdir = Path(workdir.name)
        for name in PROGRAM_FILES:
            shutil.copy2(support.ROOT / name, self.workdir / name)
        # Inscrit après le dossier, donc exécuté avant son effacement.
        self.addCleanup(stop_wine)

    def assert_no_wine_left(self) -> None:
        left = wine_processes()
        self.assertEqual(left, [], f"processus wine restants : {left}")


class TestServerOnWindows(WindowsTestCase):
    """Le serveur sous Windows, mené par un client brut depuis Linux."""

    def start_server(self) -> int:
        """Lance le serveur, attend qu'il accepte les connexions et renvoie son port."""
        port = support.free_port()
        self.log_path = self.workdir / "server.log"
        with open(self.log_path, "wb") as log:
            self.server = subprocess.Popen(
                windows_python("TP4_server.py", "--host", support.LOOPBACK, "--port", str(port)),
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(stop_wine, self.server)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.server.poll() is not None:
                self.fail(f"Le serveur s'est arrêté (code {self.server.returncode}) :\n"
                          f"{self.server_log()}")
            try:
                with socket.create_connection((support.LOOPBACK, port), timeout=1):
                    return port
            except OSError:
                if time.monotonic() > deadline:
                    self.fail(f"Rien n'écoute sur le port {port} après {STARTUP_TIMEOUT:g} s :\n"
                              f"{self.server_log()}")
                time.sleep(0.1)

    def server_log(self) -> str:
        return windows_text(self.log_path.read_bytes())[-4000:]

    def connect(self, port: int) -> support.RawClient:
        client = support.RawClient(port, timeout=REPLY_TIMEOUT)
        self.addCleanup(client.close)
        return client

    def test_session_accounts_and_data_folder(self):
        port = self.start_server()
        try:
            stats = self.play_session(port)
        # Sous wine, le journal du serveur est souvent le seul indice : il
        # accompagne tout échec de la session, quelle qu'en soit la forme.
        except Exception as ex:
            self.fail(f"{type(ex).__name__} : {ex}\nJournal du serveur :\n{self.server_log()}")
        stop_wine(self.server)
        self.assert_no_wine_left()
        self.check_data_folder(stats["payload"]["size"])

    def play_session(self, port: int) -> dict:
        """
        Mène la session depuis Linux : compte, courriel, liste, lecture,
        statistiques, déconnexion, puis les noms que Windows confond ou
        réserve. Renvoie la réponse des statistiques d'alice.
        """
        client = self.connect(port)

        self.assertEqual(client.register("alice"), OK)
        self.assertEqual(client.request(H.EMAIL_SENDING, EMAIL), OK)
        listing = client.request(H.INBOX_READING_REQUEST)
        line = gloutils.SUBJECT_DISPLAY.format(number=1, sender=EMAIL["sender"],
                                               subject=EMAIL["subject"], date=EMAIL["date"])
        self.assertEqual(listing, {"header": H.OK, "payload": {"email_list": [line]}})
        self.assertEqual(client.request(H.INBOX_READING_CHOICE, {"choice": 1}),
                         {"header": H.OK, "payload": EMAIL})
        stats = client.request(H.STATS_REQUEST)
        self.assertEqual(stats["header"], H.OK, stats)
        self.assertEqual(stats["payload"]["count"], 1, stats)
        self.assertGreater(stats["payload"]["size"], 0, stats)
        client.send(H.AUTH_LOGOUT)
        self.assertTrue(client.nothing_received(wait=1.0), "AUTH_LOGOUT ne doit rien recevoir")
        support.assert_error(self, client.request(H.STATS_REQUEST), support.NOT_LOGGED_IN)

        # Windows retire les points finaux d'un nom de fichier : « bob. » serait
        # le dossier de « bob », et son mot de passe remplacerait celui de bob.
        self.assertEqual(client.register("bob"), OK)
        client.send(H.AUTH_LOGOUT)
        support.assert_error(self, client.register("bob.", INTRUDER_PASSWORD), msg="bob.")
        self.assertEqual(client.login("bob"), OK)
        client.send(H.AUTH_LOGOUT)
        support.assert_error(self, client.login("bob", INTRUDER_PASSWORD),
                             support.LOGIN_FAILED)
        # CON est un périphérique sous Windows, pas un dossier possible.
        support.assert_error(self, client.register("con"), msg="con")

        other = self.connect(port)
        self.assertEqual(other.login("alice"), OK)
        self.assertEqual(other.request(H.INBOX_READING_REQUEST)["payload"],
                         {"email_list": [line]})
        other.send(H.BYE)
        self.assertTrue(other.closed_by_server(wait=REPLY_TIMEOUT))
        return stats

    def check_data_folder(self, announced_size: int) -> None:
        """Le dossier des données laissé par le serveur, lu depuis Linux."""
        data_dir = self.workdir / gloutils.SERVER_DATA_DIR
        names = {entry.name.lower() for entry in data_dir.iterdir()}
        self.assertTrue({"alice", "bob"} <= names, names)
        self.assertFalse({"bob.", "con"} & names, names)
        digest = hashlib.sha3_512(PASSWORD.encode("utf-8")).hexdigest()
        for user in ("alice", "bob"):
            pass_file = data_dir / user / gloutils.PASSWORD_FILENAME
            self.assertEqual(pass_file.read_text(encoding="ascii"), digest, user)
        mailbox = sorted(path.name for path in (data_dir / "alice").iterdir())
        emails = [name for name in mailbox if name.endswith(".json")]
        self.assertEqual(len(emails), 1, mailbox)
        self.assertEqual(mailbox, sorted([gloutils.PASSWORD_FILENAME, *emails]))
        stored = data_dir / "alice" / emails[0]
        self.assertEqual(json.loads(stored.read_text(encoding="utf-8")), EMAIL)
        self.assertEqual(announced_size, len(digest) + stored.stat().st_size,
                         "la taille annoncée doit être celle des fichiers sur le disque")


class TestClientOnWindows(WindowsTestCase):
    """Le client sous Windows."""

    def test_help_in_french(self):
        result = subprocess.run(windows_python("TP4_client.py", "--help"),
                                cwd=self.workdir, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=STARTUP_TIMEOUT)
        output = windows_text(result.stdout)
        self.assertEqual(result.returncode, 0, output)
        for fragment in ("utilisation :", "-d, --destination", "Adresse IP/URL du serveur.",
                         "afficher ce message d'aide", "Port du serveur, de 1 à 65535"):
            self.assertIn(fragment, output)
        stop_wine()
        self.assert_no_wine_left()


if __name__ == "__main__":
    unittest.main()
