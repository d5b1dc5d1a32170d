"""\
GLO-2000 Travail pratique 4 - D'un système à l'autre
Le même TP4_server.py tourne sous Linux, macOS et Windows. Vérifié d'ici :
les noms de compte que Windows confondrait ou réserve, un dossier fait à la
main jamais repris, la durabilité par `F_FULLFSYNC` là où elle existe
(macOS), et l'import sans les modules propres à Unix, avec ce qui en découle
(`SO_EXCLUSIVEADDRUSE`, verrou par `msvcrt`, select() toujours borné).
"""

import errno
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402
from tests.test_server_unit import (  # noqa: E402
    BAD_USERNAME, CREATION_FAILED, OK, PASSWORD, ServerTestCase, email_to)

import gloutils  # noqa: E402
import TP4_server  # noqa: E402

try:
    import fcntl
except ImportError:  # Windows : les tests qui en ont besoin sont sautés.
    fcntl = None

H = gloutils.Headers
INTRUDER_PASSWORD = "Intrus98765X"
TAKEN = "- Le nom d'utilisateur est déjà utilisé."
DIGEST = hashlib.sha3_512(PASSWORD.encode("utf-8")).hexdigest()
_REAL_FSYNC = os.fsync


def identity(descriptor: int) -> tuple:
    """Le fichier derrière un descripteur : (périphérique, inode)."""
    status = os.fstat(descriptor)
    return status.st_dev, status.st_ino


def path_identity(path: Path) -> tuple:
    status = os.stat(path)
    return status.st_dev, status.st_ino


class TestWindowsFolderNames(ServerTestCase):
    """
    Un nom de compte est un nom de dossier : Windows efface le point final
    (`bob.` y est le dossier de `bob`) et réserve ses noms de périphériques,
    même suivis d'une extension. Ces noms sont invalides partout, pour qu'un
    même dossier de données serve sur chaque système.
    """

    def assert_invalid(self, username: str) -> None:
        soc, reply = self.create(username, INTRUDER_PASSWORD)
        self.assert_error(reply, "\n".join([CREATION_FAILED, BAD_USERNAME]))
        self.assertNotIn(soc, self.server._logged_users)

    def test_trailing_dot_never_reaches_another_account(self):
        self.register("bob")
        for username in ("bob.", "BOB.", "bob..", "a."):
            with self.subTest(username=username):
                self.assert_invalid(username)
        self.assertEqual(sorted(os.listdir(self.data_dir)), ["LOST", "bob"])
        self.assertEqual(self.login("bob")[1], OK)
        for username in ("bob", "bob."):
            with self.subTest(intruder=username):
                self.assert_error(self.login(username, INTRUDER_PASSWORD)[1],
                                  support.LOGIN_FAILED)

    def test_device_names_are_invalid(self):
        """Le nom avant le premier point, en toute casse ; ce qui leur ressemble reste permis."""
        for username in ("con", "CON", "AUX", "prn", "nul", "nul.txt", "Nul.tar.gz",
                         "com1", "COM9", "lpt1", "LPT9", "lpt5.log"):
            with self.subTest(username=username):
                self.assert_invalid(username)
        self.assertEqual(os.listdir(self.data_dir), [gloutils.SERVER_LOST_DIR])
        for username in ("console", "con_", "com0", "com10", "lpt", "nullite", "xaux",
                         "a.con", "prn-1"):
            with self.subTest(username=username):
                self.assertEqual(self.create(username)[1], OK)

    def test_folder_with_a_pass_file_is_never_taken_over(self):
        """
        Un dossier qui a déjà son `pass`, fait à la main après le démarrage
        du serveur (donc inconnu de lui) : une création de ce nom est
        refusée et l'empreinte en place reste intacte.
        """
        folder = self.data_dir / "mallory"
        folder.mkdir()
        password_file = folder / gloutils.PASSWORD_FILENAME
        password_file.write_text(DIGEST)
        soc, reply = self.create("mallory", INTRUDER_PASSWORD)
        self.assert_error(reply, "\n".join([CREATION_FAILED, TAKEN]))
        self.assertNotIn(soc, self.server._logged_users)
        self.assertEqual(password_file.read_text(), DIGEST)
        self.assertEqual(os.listdir(folder), [gloutils.PASSWORD_FILENAME])
        self.assert_error(self.login("mallory", INTRUDER_PASSWORD)[1], support.LOGIN_FAILED)


class FakeMacFcntl:
    """
    Le module `fcntl` de macOS vu par le serveur : `F_FULLFSYNC` existe, et
    chaque descripteur qu'on lui fait rendre durable est noté ; le reste
    passe au vrai module. `refuse` : le système de fichiers ne le permet pas.
    """

    F_FULLFSYNC = 51

    def __init__(self, refuse: bool = False) -> None:
        self.full_synced: list = []
        self.refused: list = []
        self._refuse = refuse

    def fcntl(self, descriptor: int, command: int, argument: int = 0):
        if command != self.F_FULLFSYNC:
            return fcntl.fcntl(descriptor, command, argument)
        if self._refuse:
            self.refused.append(identity(descriptor))
            raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))
        self.full_synced.append(identity(descriptor))
        _REAL_FSYNC(descriptor)
        return 0

    def __getattr__(self, name: str):
        return getattr(fcntl, name)


@unittest.skipIf(fcntl is None, "fcntl est propre à Unix")
class TestFullFsync(ServerTestCase):
    """Là où `F_FULLFSYNC` existe, chaque courriel publié est rendu durable par lui."""

    def send_with(self, fake: FakeMacFcntl) -> tuple:
        """Crée un compte et lui envoie trois courriels ; (fichiers, dossier, fsync notés)."""
        fsynced = []

        def recording_fsync(descriptor: int) -> None:
            fsynced.append(identity(descriptor))
            _REAL_FSYNC(descriptor)

        with mock.patch.object(TP4_server, "fcntl", fake), \
                mock.patch.object(os, "fsync", recording_fsync):
            self.register("Kohryu")
            for subject in ("un", "deux", "trois"):
                self.assertEqual(self.send(email_to("kohryu@glo2000.ca", subject)), OK)
        folder = self.data_dir / "Kohryu"
        return [folder / name for name in os.listdir(folder)], folder, fsynced

    def test_each_email_made_durable_by_f_fullfsync(self):
        fake = FakeMacFcntl()
        files, folder, fsynced = self.send_with(fake)
        self.assertEqual(len(files), 4)  # Trois courriels et le `pass`.
        for path in [*files, folder]:
            with self.subTest(path=path.name):
                self.assertIn(path_identity(path), fake.full_synced)
                self.assertNotIn(path_identity(path), fsynced)

    def test_refused_f_fullfsync_falls_back_to_fsync(self):
        fake = FakeMacFcntl(refuse=True)
        files, folder, fsynced = self.send_with(fake)
        self.assertEqual(fake.full_synced, [])
        for path in [*files, folder]:
            with self.subTest(path=path.name):
                self.assertIn(path_identity(path), fake.refused)
                self.assertIn(path_identity(path), fsynced)


# Lancé dans un Python où les modules propres à Unix manquent, comme sous
# Windows : importe les deux programmes, construit un `Server` (un faux
# `msvcrt` note le verrou, un faux `SO_EXCLUSIVEADDRUSE` et un socket qui
# note ses options), puis fait tourner run() quelques tours, un client
# connecté mais muet, avec un select.select de correcteur qui note chaque
# délai. Le compte rendu est la dernière ligne de la sortie.
WINDOWS_LIKE_SCRIPT = textwrap.dedent("""\
    import json, os, select, socket, sys, traceback, types

    for name in ("fcntl", "resource", "termios", "pwd", "grp"):
        sys.modules[name] = None
    report = {"locks": [], "options": [], "timeouts": []}
    sys.modules["msvcrt"] = types.SimpleNamespace(
        LK_NBLCK=2, LK_UNLCK=0,
        locking=lambda descriptor, mode, count: report["locks"].append(
            [os.fstat(descriptor).st_ino, mode, count]))
    socket.SO_EXCLUSIVEADDRUSE = -5


    class RecordingSocket(socket.socket):
        def setsockopt(self, level, option, value, *rest):
            report["options"].append([self.fileno(), level, option, value])
            if option != socket.SO_EXCLUSIVEADDRUSE:
                super().setsockopt(level, option, value, *rest)


    socket.socket = RecordingSocket


    class Stop(BaseException):
        pass


    real_select = select.select


    def grader_select(readers, writers, errors, timeout=None):
        report["timeouts"].append(timeout)
        if len(report["timeouts"]) >= 8:
            raise Stop
        return real_select(readers, writers, errors, 0.05 if timeout is None
                           else min(timeout, 0.05))


    try:
        sys.path.insert(0, sys.argv[1])
        import TP4_client
        import TP4_server
        report["unix_modules"] = [name for name in ("fcntl", "resource")
                             if getattr(TP4_server, name, None) is not None]
        report["client"] = callable(getattr(TP4_client, "Client", None))
        server = TP4_server.Server("127.0.0.1", 0, smtp_host="127.0.0.1", smtp_port=9)
        listening = server._server_socket
        report["listening"] = listening.fileno()
        report["lock_file"] = os.stat(os.path.join("glo_server_data", ".verrou")).st_ino
        idle = socket.create_connection(listening.getsockname())
        select.select = grader_select
        try:
            server.run()
        except Stop:
            pass
        finally:
            select.select = real_select
        server.cleanup()
        idle.close()
    except BaseException:
        report["error"] = traceback.format_exc()
    print(json.dumps(report))
    """)


class TestWindowsLikeImport(unittest.TestCase):
    """Les programmes sans fcntl, resource, termios, pwd ni grp."""

    @classmethod
    def setUpClass(cls):
        workdir = tempfile.TemporaryDirectory(prefix="glo-comme-windows-")
        cls.addClassCleanup(workdir.cleanup)
        script = Path(workdir.name) / "comme_windows.py"
        script.write_text(WINDOWS_LIKE_SCRIPT, encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, "-I", str(script), str(support.ROOT)], cwd=workdir.name,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        cls.stderr = completed.stderr
        lines = completed.stdout.strip().splitlines()
        cls.report = json.loads(lines[-1]) if lines else {"error": completed.stderr}

    def setUp(self):
        self.assertNotIn("error", self.report, self.report.get("error"))

    def test_both_programs_import(self):
        self.assertEqual(self.report["unix_modules"], [])
        self.assertTrue(self.report["client"])

    def test_listening_socket_uses_exclusive_address_use(self):
        listening = [option[1:] for option in self.report["options"]
                     if option[0] == self.report["listening"]]
        self.assertIn([socket.SOL_SOCKET, -5, 1], listening)
        self.assertNotIn(socket.SO_REUSEADDR, [option[1] for option in listening])

    def test_data_folder_locked_with_msvcrt(self):
        [(inode, mode, count)] = self.report["locks"]
        self.assertEqual((inode, mode, count), (self.report["lock_file"], 2, 1))

    def test_select_always_has_a_short_timeout(self):
        """Même sans rien à faire, select() rend la main : Ctrl-C arrive sous Windows."""
        timeouts = self.report["timeouts"]
        self.assertEqual(len(timeouts), 8)
        for timeout in timeouts:
            self.assertIsNotNone(timeout)
            self.assertGreaterEqual(timeout, 0)
            self.assertLessEqual(timeout, 0.5)


if __name__ == "__main__":
    unittest.main()
