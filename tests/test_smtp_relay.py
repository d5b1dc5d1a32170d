"""\
GLO-2000 Travail pratique 4 - Relais SMTP chez un fournisseur
STARTTLS (--smtp-starttls) ou TLS dès la connexion (--smtp-ssl), identification
(--smtp-user, mot de passe dans GLO_SMTP_PASSWORD), certificats toujours
vérifiés (--smtp-cafile pour l'AC de test). Le serveur tourne comme un vrai
processus, ou comme un `Server` dans ce processus pour ses arguments nommés ;
le récepteur de `support` joue le fournisseur, sur 127.0.0.1 seulement.
"""

import base64
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import gloutils  # noqa: E402
import TP4_server  # noqa: E402

H = gloutils.Headers
OK = {"header": H.OK}
PASSWORD_VARIABLE = "GLO_SMTP_PASSWORD"
USER = "relais.glo"
# Espaces et ponctuation : le mot de passe doit arriver au caractère près.
SECRET = "Secret du relais 2022 !"
WRONG_SECRET = "Mauvais secret 2022 ?"
CAFILE = str(support.TEST_CA_FILE)
# Ce que le serveur répond à l'expéditeur ; `{relay}` vaut hôte:port.
AUTH_REFUSED = "Le serveur SMTP {relay} a refusé l'identification."
CERTIFICATE_UNVERIFIED = "Le certificat du serveur SMTP {relay} n'a pas pu être vérifié."
NO_STARTTLS = "Le serveur SMTP {relay} n'offre pas STARTTLS."
NO_AUTH = "Le serveur SMTP {relay} n'offre pas l'identification."
TLS_FAILED = "La connexion chiffrée au serveur SMTP {relay} a échoué."
TIMED_OUT = "Le serveur SMTP {relay} n'a pas répondu à temps."
ENGLISH = ("usage:", "error:", "not allowed", "invalid", "expected", "Traceback")
# Délai du relais dans ces tests : large pour un relais qui répond, il borne
# aussi l'attente de chaque échec.
RELAY_TIMEOUT = "5"


def secret_forms(password: str) -> tuple:
    """
    Le mot de passe tel quel et tel qu'AUTH le transmet (base64 seul pour
    LOGIN, avec le nom pour PLAIN) : aucune de ces formes ne doit fuir.
    """
    plain = f"\0{USER}\0{password}".encode()
    return (password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(plain).decode())


def external_email(sender: str) -> dict:
    """Un courriel vers une adresse externe, donc confié au relais."""
    return {"sender": sender, "destination": "ami@example.com", "subject": "Réunion ☕",
            "date": gloutils.get_current_utc_time(),
            "content": "Exemple de contenu\nSur plusieurs lignes"}


class RelayTestCase(unittest.TestCase):
    """Un récepteur SMTP et un serveur `TP4_server.py` par test, arrêtés à la fin."""

    def setUp(self):
        self._names = itertools.count(1)

    def receiver(self, mode: str = "accept", **options) -> support.SMTPReceiver:
        """Un `SMTPReceiver` démarré (mêmes arguments), arrêté à la fin du test."""
        receiver = support.SMTPReceiver(mode, **options).__enter__()
        self.addCleanup(receiver.__exit__, None, None, None)
        return receiver

    @staticmethod
    def server_process(*options: str, port: "int | None" = None,
                       password: "str | None" = SECRET,
                       timeout: str = RELAY_TIMEOUT) -> support.ServerProcess:
        """
        Un `ServerProcess` (pas encore lancé) qui relaie vers 127.0.0.1:`port`
        avec `options`, et `password` dans GLO_SMTP_PASSWORD (absente si
        None). Sans `port`, le port du relais est celui par défaut de
        l'option de sécurité.
        """
        relay = ["--smtp-host", support.LOOPBACK]
        if port is not None:
            relay += ["--smtp-port", str(port)]
        server = support.ServerProcess(*relay, "--smtp-timeout", timeout, *options)
        # Le magasin de certificats par défaut ne doit pas dépendre du
        # lanceur des tests : ces variables le remplaceraient.
        for name in (PASSWORD_VARIABLE, "SSL_CERT_FILE", "SSL_CERT_DIR"):
            server.environment.pop(name, None)
        if password is not None:
            server.environment[PASSWORD_VARIABLE] = password
        return server

    def start(self, receiver: support.SMTPReceiver, *options: str,
              **settings) -> support.ServerProcess:
        """Lance un serveur qui relaie vers `receiver` (voir `server_process`)."""
        server = self.server_process(*options, port=receiver.port, **settings)
        self.addCleanup(server.__exit__, None, None, None)
        return server.start()

    def send_external(self, server: support.ServerProcess,
                      expected_log: "str | None" = None) -> tuple:
        """
        Un nouvel utilisateur envoie un courriel externe. Renvoie (réponse,
        courriel, lignes ajoutées au journal par cet envoi), une fois que le
        journal contient `expected_log` s'il est donné : le serveur peut
        l'écrire juste après sa réponse.
        """
        client = support.RawClient(server.port)
        self.addCleanup(client.close)
        username = f"Expediteur{next(self._names)}"
        self.assertEqual(client.register(username), OK)
        before = server.log()
        payload = external_email(f"{username}@glo2000.ca")
        reply = client.send_email(**payload)
        deadline = time.monotonic() + 5
        while expected_log and expected_log not in server.log()[len(before):] and time.monotonic() < deadline:
            time.sleep(0.02)
        return reply, payload, server.log()[len(before):].splitlines()

    def relay_text(self, template: str, receiver: support.SMTPReceiver) -> str:
        return template.format(relay=f"{support.LOOPBACK}:{receiver.port}")

    def assert_secret_absent(self, server: support.ServerProcess, *passwords: str) -> None:
        """Ni `passwords` (SECRET par défaut) ni leurs formes AUTH dans le journal."""
        log = server.log()
        for password in passwords or (SECRET,):
            for form in secret_forms(password):
                self.assertNotIn(form, log)

    def assert_delivered(self, receiver: support.SMTPReceiver, server: support.ServerProcess,
                         user: "str | None" = USER) -> None:
        """
        Un courriel envoyé par `server` reçoit `OK` et arrive chiffré chez
        `receiver`, identifié sous `user`, avec tous ses champs.
        """
        reply, payload, _ = self.send_external(server)
        self.assertEqual(reply, OK, server.log())
        [envelope] = receiver.messages
        support.assert_relayed(self, envelope, payload)
        self.assertTrue(envelope["tls"], "Le courriel est arrivé en clair.")
        self.assertEqual(envelope["user"], user)
        self.assert_secret_absent(server)
        self.assertNotIn("Traceback", server.log())

    def assert_relay_error(self, receiver: support.SMTPReceiver,
                           server: support.ServerProcess, template: str,
                           *passwords: str) -> None:
        """
        L'envoi d'un courriel externe reçoit le seul `ERROR` `template`, que
        le journal porte sur une ligne et une seule ; le mot de passe n'y est
        pas, rien n'a été relayé, et le serveur continue.
        """
        expected = self.relay_text(template, receiver)
        reply, _, lines = self.send_external(server, expected)
        support.assert_error(self, reply, expected, msg=server.log())
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(expected, lines[0])
        self.assertEqual(receiver.messages, [])
        self.assert_secret_absent(server, *passwords)
        self.assertTrue(server.alive())
        self.assertNotIn("Traceback", server.log())


class TestRelayed(RelayTestCase):
    """Le courriel passe, chiffré et identifié si on le demande."""

    def test_starttls_auth_plain_with_cafile(self):
        receiver = self.receiver(tls="starttls", credentials=(USER, SECRET),
                                 mechanisms=("PLAIN",))
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER,
                            "--smtp-cafile", CAFILE)
        self.assert_delivered(receiver, server)
        self.assertEqual(receiver.logins, [
            {"mechanism": "PLAIN", "user": USER, "accepted": True, "tls": True}])

    def test_ssl_auth_login_with_cafile(self):
        receiver = self.receiver(tls="ssl", credentials=(USER, SECRET), mechanisms=("LOGIN",))
        server = self.start(receiver, "--smtp-ssl", "--smtp-user", USER, "--smtp-cafile", CAFILE)
        self.assert_delivered(receiver, server)
        self.assertEqual(receiver.logins, [
            {"mechanism": "LOGIN", "user": USER, "accepted": True, "tls": True}])

    def test_starttls_without_user(self):
        # Sans --smtp-user, le serveur ne s'identifie pas : aucun AUTH tenté.
        receiver = self.receiver(tls="starttls")
        server = self.start(receiver, "--smtp-starttls", "--smtp-cafile", CAFILE, password=None)
        self.assert_delivered(receiver, server, user=None)
        self.assertEqual(receiver.logins, [])


class TestRelayFailures(RelayTestCase):
    """Chaque échec du relais chiffré ou identifié : un `ERROR` précis, sans attente."""

    def test_wrong_password(self):
        receiver = self.receiver(tls="starttls", credentials=(USER, SECRET))
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER,
                            "--smtp-cafile", CAFILE, password=WRONG_SECRET)
        self.assert_relay_error(receiver, server, AUTH_REFUSED, WRONG_SECRET, SECRET)
        self.assertTrue(receiver.logins)
        for login in receiver.logins:
            self.assertEqual((login["user"], login["accepted"], login["tls"]),
                             (USER, False, True))

    def test_test_ca_untrusted_without_cafile(self):
        # Sans --smtp-cafile, seul le magasin du système compte : l'AC de
        # test n'y est pas, et le mot de passe ne part pas.
        receiver = self.receiver(tls="starttls", credentials=(USER, SECRET))
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER)
        self.assert_relay_error(receiver, server, CERTIFICATE_UNVERIFIED)
        self.assertEqual(receiver.logins, [])

    def test_certificate_from_another_authority(self):
        receiver = self.receiver(tls="ssl", credentials=(USER, SECRET),
                                 certificate=support.UNKNOWN_CERTIFICATE)
        server = self.start(receiver, "--smtp-ssl", "--smtp-user", USER, "--smtp-cafile", CAFILE)
        self.assert_relay_error(receiver, server, CERTIFICATE_UNVERIFIED)
        self.assertEqual(receiver.logins, [])

    def test_certificate_for_another_name(self):
        # Signé par l'AC de confiance, mais pour autre.invalid : le nom aussi
        # est vérifié.
        receiver = self.receiver(tls="starttls", credentials=(USER, SECRET),
                                 certificate=support.WRONG_NAME_CERTIFICATE)
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER,
                            "--smtp-cafile", CAFILE)
        self.assert_relay_error(receiver, server, CERTIFICATE_UNVERIFIED)
        self.assertEqual(receiver.logins, [])

    def test_starttls_not_offered(self):
        # Le récepteur offre AUTH en clair : le serveur ne doit ni s'y
        # identifier ni y envoyer le courriel.
        receiver = self.receiver(credentials=(USER, SECRET))
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER,
                            "--smtp-cafile", CAFILE)
        self.assert_relay_error(receiver, server, NO_STARTTLS)
        self.assertEqual(receiver.logins, [])

    def test_auth_not_offered(self):
        # --smtp-user demande l'identification : sans elle, pas de courriel.
        receiver = self.receiver(tls="starttls")
        server = self.start(receiver, "--smtp-starttls", "--smtp-user", USER,
                            "--smtp-cafile", CAFILE)
        self.assert_relay_error(receiver, server, NO_AUTH)

    def test_ssl_to_plain_relay(self):
        # Le relais répond en clair à la poignée de main TLS.
        receiver = self.receiver()
        server = self.start(receiver, "--smtp-ssl", "--smtp-cafile", CAFILE)
        self.assert_relay_error(receiver, server, TLS_FAILED)

    def test_silent_during_tls_handshake(self):
        # Le délai du relais borne aussi la poignée de main TLS.
        receiver = self.receiver("silent", tls="ssl")
        server = self.start(receiver, "--smtp-ssl", "--smtp-cafile", CAFILE, timeout="1")
        started = time.monotonic()
        self.assert_relay_error(receiver, server, TIMED_OUT)
        self.assertLess(time.monotonic() - started, 5)


class TestSecurityOptions(RelayTestCase):
    """Options de sécurité du relais et mot de passe hors de la ligne de commande."""

    def assert_refused(self, server: support.ServerProcess, code: "int | None" = None) -> str:
        """Le serveur refuse de démarrer, en une ligne d'erreur ; renvoie cette ligne."""
        self.addCleanup(server.__exit__, None, None, None)
        result = server.run_until_exit(timeout=30)
        if code is None:
            self.assertNotEqual(result.returncode, 0, result.stderr)
        else:
            self.assertEqual(result.returncode, code, result.stderr)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        for word in ENGLISH:
            self.assertNotIn(word, result.stderr)
        self.assertEqual(list(server.workdir.iterdir()), [])
        return lines[0]

    def test_user_without_password_variable(self):
        line = self.assert_refused(self.server_process(
            "--smtp-starttls", "--smtp-user", USER, port=support.free_port(), password=None))
        self.assertIn(PASSWORD_VARIABLE, line)

    def test_non_ascii_credentials(self):
        # smtplib n'encode l'identification qu'en ASCII : refusé dès le départ, pas à
        # chaque envoi par un « champ invalide ».
        for user, password in ((USER, "Mot de passe d’application"), ("relais.é", SECRET)):
            with self.subTest(user=user, password=password):
                line = self.assert_refused(self.server_process(
                    "--smtp-starttls", "--smtp-user", user, port=support.free_port(),
                    password=password))
                self.assertIn("ASCII", line)
                self.assertNotIn(password, line)

    def test_unreadable_cafile(self):
        not_pem = Path(tempfile.mkdtemp(prefix="glo-ac-")) / "pas-un-certificat.pem"
        self.addCleanup(shutil.rmtree, not_pem.parent)
        not_pem.write_text("pas un certificat\n")
        for path, reason in ((not_pem.parent / "absent.pem", "fichier introuvable"),
                             (not_pem, "aucun certificat lisible au format PEM"),
                             (not_pem.parent, "c'est un dossier")):
            with self.subTest(reason=reason):
                line = self.assert_refused(self.server_process(
                    "--smtp-starttls", "--smtp-cafile", str(path), port=support.free_port()))
                self.assertEqual(line, "Impossible de lire les autorités de certification "
                                       f"{path} : {reason}.")

    def test_ssl_and_starttls_are_exclusive(self):
        line = self.assert_refused(self.server_process(
            "--smtp-ssl", "--smtp-starttls", port=support.free_port()), code=2)
        self.assertRegex(line, r"^TP4_server\.py : erreur : ")
        self.assertIn("--smtp-ssl", line)
        self.assertIn("--smtp-starttls", line)

    def test_password_is_not_an_option(self):
        line = self.assert_refused(self.server_process(
            "--smtp-user", USER, "--smtp-password", SECRET, port=support.free_port()), code=2)
        self.assertIn("--smtp-password", line)

    def test_password_not_in_command_lines(self):
        # Tout utilisateur de la machine lit /proc/<pid>/cmdline : ni le
        # serveur ni un processus qu'il lance n'y porte le mot de passe.
        receiver = self.receiver(tls="ssl", credentials=(USER, SECRET))
        server = self.start(receiver, "--smtp-ssl", "--smtp-user", USER, "--smtp-cafile", CAFILE)
        self.assert_delivered(receiver, server)
        pids = [server.process.pid, *support.child_pids(server.process.pid)]
        for pid in pids:
            try:
                arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
            except FileNotFoundError:
                continue  # Fini entre-temps : plus de ligne de commande à lire.
            for form in secret_forms(SECRET):
                self.assertNotIn(form, arguments, f"processus {pid}")

    def test_default_ports(self):
        # Sans --smtp-port, chaque mode prend le port de son usage. Rien de
        # nôtre n'y écoute : l'échec nomme le relais visé. Le courriel ne peut
        # partir nulle part, faute d'un certificat vérifiable pour 127.0.0.1.
        for option, port in (("--smtp-starttls", 587), ("--smtp-ssl", 465)):
            with self.subTest(option=option):
                server = self.server_process(option, password=None, timeout="2")
                self.addCleanup(server.__exit__, None, None, None)
                server.start()
                relay = f"{support.LOOPBACK}:{port}"
                reply, _, _ = self.send_external(server, relay)
                self.assertIn(relay, support.assert_error(self, reply, msg=server.log()))


class _Journal(logging.Handler):
    """
    Garde chaque ligne du journal du serveur. `assertLogs` ne convient pas :
    il échoue si rien n'est journalisé, ce qu'un envoi réussi peut faire.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class TestServerKeywords(unittest.TestCase):
    """
    Les mêmes réglages en arguments nommés de `Server`, dans ce processus :
    `_send_email` relaie aussitôt et rend sa réponse.
    """

    def setUp(self):
        workdir = tempfile.TemporaryDirectory(prefix="glo-relais-")
        self.addCleanup(workdir.cleanup)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(workdir.name)

    def relay(self, receiver_options: dict, **settings) -> tuple:
        """
        Un courriel externe confié à un `Server(**settings)` qui relaie vers
        un récepteur (`receiver_options`) ; renvoie (réponse, courriel,
        récepteur, lignes du journal).
        """
        receiver = support.SMTPReceiver(**receiver_options).__enter__()
        self.addCleanup(receiver.__exit__, None, None, None)
        server = TP4_server.Server(support.LOOPBACK, 0, smtp_host=support.LOOPBACK,
                                   smtp_port=receiver.port, smtp_timeout=5, **settings)
        self.addCleanup(server.cleanup)
        payload = external_email("Qing.Long@glo2000.ca")
        journal = _Journal()
        TP4_server.logger.addHandler(journal)
        previous_level = TP4_server.logger.level
        TP4_server.logger.setLevel(logging.INFO)
        try:
            reply = server._send_email(payload)
        finally:
            TP4_server.logger.setLevel(previous_level)
            TP4_server.logger.removeHandler(journal)
        return reply, payload, receiver, journal.lines

    def test_starttls_and_auth(self):
        reply, payload, receiver, output = self.relay(
            {"tls": "starttls", "credentials": (USER, SECRET)}, smtp_security="starttls",
            smtp_user=USER, smtp_password=SECRET, smtp_cafile=CAFILE)
        self.assertEqual(reply, OK)
        [envelope] = receiver.messages
        support.assert_relayed(self, envelope, payload)
        self.assertEqual((envelope["tls"], envelope["user"]), (True, USER))
        for form in secret_forms(SECRET):
            self.assertNotIn(form, "\n".join(output))

    def test_ssl_wrong_password(self):
        reply, _, receiver, output = self.relay(
            {"tls": "ssl", "credentials": (USER, SECRET)}, smtp_security="ssl",
            smtp_user=USER, smtp_password=WRONG_SECRET, smtp_cafile=CAFILE)
        expected = AUTH_REFUSED.format(relay=f"{support.LOOPBACK}:{receiver.port}")
        support.assert_error(self, reply, expected)
        self.assertEqual(len(output), 1, output)
        self.assertIn(expected, output[0])
        for form in secret_forms(WRONG_SECRET):
            self.assertNotIn(form, output[0])

    def test_non_ascii_password_refused_at_construction(self):
        with self.assertRaises(SystemExit) as raised:
            TP4_server.Server(support.LOOPBACK, 0, smtp_user=USER, smtp_password="Sécurité 2022")
        self.assertIn("ASCII", str(raised.exception.code))
        self.assertEqual(os.listdir(), [])

    def test_plain_with_auth(self):
        # Sans sécurité demandée, l'identification se fait quand même si le
        # relais l'offre, comme smtplib le permet.
        reply, payload, receiver, _ = self.relay(
            {"credentials": (USER, SECRET)}, smtp_security=None,
            smtp_user=USER, smtp_password=SECRET)
        self.assertEqual(reply, OK)
        [envelope] = receiver.messages
        support.assert_relayed(self, envelope, payload)
        self.assertEqual((envelope["tls"], envelope["user"]), (False, USER))


if __name__ == "__main__":
    unittest.main()
