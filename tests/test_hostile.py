"""\
GLO-2000 Travail pratique 4 - Tests hostiles du serveur

Le serveur face à des clients qui trichent, traînent, inondent ou mentent,
et face aux pannes : chaque test lance `TP4_server.py` dans un dossier
temporaire neuf, sur un port libre de 127.0.0.1, et vérifie un comportement
précis :

- équité : une trame incomplète ne retarde personne, elle expire après
  `--frame-timeout` ; une longueur démesurée ferme la connexion aussitôt ;
  un relais SMTP muet ne bloque que son expéditeur ;
- limites : `--max-clients`, 1 100 connexions simultanées, 10 000 cycles de
  connexion sans fuite de descripteurs ni de mémoire ;
- confinement : noms, destinations et expéditeurs hostiles, charges utiles
  mal typées ;
- durabilité : SIGKILL au hasard, dossier remplacé par un fichier, disque
  plein ;
- fuzzing reproductible pendant qu'un client honnête travaille.

Les bornes de temps sont larges : elles distinguent « servi » de « bloqué »,
jamais une mesure fine (voir `tests/stress.py` pour les chiffres).
"""

import collections
import json
import os
import random
import re
import resource
import select
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import fuzzing, malformed, stress, support  # noqa: E402

import TP4_server  # noqa: E402

gloutils = support.gloutils
glossocket = support.glossocket
H = gloutils.Headers
DOMAIN = gloutils.SERVER_DOMAIN
PASSWORD = support.STRONG_PASSWORD
LOGIN_FAILED = support.LOGIN_FAILED
tree = support.tree
# Sujet du courriel complet déposé caché, comme par une panne, dans `puits`.
UNCONFIRMED = "(jamais confirmé)"


def email_payload(sender: str, destination: str, subject: str = "Sujet",
                  content: str = "Contenu") -> dict:
    return {"sender": sender, "destination": destination, "subject": subject,
            "date": gloutils.get_current_utc_time(), "content": content}


class HostileTestCase(unittest.TestCase):
    """Démarrage des serveurs et des clients, toujours nettoyés."""

    def enter(self, context):
        """`enterContext` de Python 3.11, écrit pour Python 3.10."""
        value = context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)
        return value

    def start_server(self, *args: str, **options) -> support.ServerProcess:
        """Lance le serveur (options de `support.ServerProcess`), arrêté à la fin du test."""
        return support.start_server(self, *args, **options)

    @staticmethod
    def accepted(port: int) -> bool:
        """Vrai si un nouveau client est accepté et servi (un `ERROR` « connecté »)."""
        with support.RawClient(port) as probe:
            try:
                reply = probe.request(H.STATS_REQUEST)
            except (glossocket.GLOSocketError, ConnectionError):
                return False
        return "connecté" in reply["payload"]["error_message"]

    def nested_workdir(self) -> tuple:
        """
        (dossier englobant, dossier de travail) : le serveur tourne trois
        niveaux plus bas, pour qu'un `../..` sorti du dossier des données
        reste sous le regard de l'instantané.
        """
        outer = tempfile.TemporaryDirectory(prefix="glo-hostile-")
        self.addCleanup(outer.cleanup)
        workdir = Path(outer.name) / "un" / "deux" / "travail"
        workdir.mkdir(parents=True)
        return Path(outer.name), workdir

    # Chargé par `site` au démarrage du Python du serveur : tant que le
    # fichier-drapeau existe, écrire ou rendre durable (fsync) un fichier
    # ordinaire échoue comme sur un disque plein (« write », « fsync »), le
    # serveur meurt juste après le fsync d'un fichier, avant de le publier
    # (« mort »), ou juste après l'avoir publié, avant de répondre
    # (« publié »), ou la lecture du dossier de bob traîne (« lent »).
    DISK_FAULTS_MODULE = textwrap.dedent("""\
        import errno, os, stat, time

        _FLAG = os.environ["GLO_TEST_DISK_FAULT_FLAG"]
        _VARIANT = os.environ["GLO_TEST_DISK_FAULT"]
        _real_write, _real_fsync, _real_scandir = os.write, os.fsync, os.scandir
        _real_rename = os.rename


        def _faulty(descriptor):
            return os.path.exists(_FLAG) and stat.S_ISREG(os.fstat(descriptor).st_mode)


        def _full_write(descriptor, data):
            if not _faulty(descriptor):
                return _real_write(descriptor, data)
            _real_write(descriptor, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


        def _full_fsync(descriptor):
            if _faulty(descriptor):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _real_fsync(descriptor)


        def _fsync_then_die(descriptor):
            _real_fsync(descriptor)
            if _faulty(descriptor):
                os._exit(9)


        def _rename_then_die(source, destination, **kwargs):
            _real_rename(source, destination, **kwargs)
            if os.path.exists(_FLAG):
                os._exit(9)


        def _slow_scandir(path="."):
            while os.path.exists(_FLAG) and os.path.basename(os.fspath(path)) == "bob":
                time.sleep(0.01)
            return _real_scandir(path)


        if _VARIANT == "write":
            os.write = _full_write
        elif _VARIANT == "fsync":
            os.fsync = _full_fsync
        elif _VARIANT == "mort":
            os.fsync = _fsync_then_die
        elif _VARIANT == "publié":
            os.rename = _rename_then_die
        else:
            os.scandir = _slow_scandir
        """)

    def start_with_disk_fault(self, variant: str) -> tuple:
        """
        Serveur dont le disque défaille à volonté (`DISK_FAULTS_MODULE`) :
        renvoie le serveur et le fichier-drapeau (présent = panne).
        """
        faults = tempfile.TemporaryDirectory(prefix="glo-panne-disque-")
        self.addCleanup(faults.cleanup)
        (Path(faults.name) / "sitecustomize.py").write_text(self.DISK_FAULTS_MODULE)
        flag = Path(faults.name) / "panne"
        environment = {
            "PYTHONPATH": os.pathsep.join(filter(None, (faults.name,
                                                        os.environ.get("PYTHONPATH")))),
            "GLO_TEST_DISK_FAULT_FLAG": str(flag),
            "GLO_TEST_DISK_FAULT": variant,
        }
        return self.start_server(environment=environment), flag

    def client(self, port: int, timeout: float = 10.0) -> support.RawClient:
        client = support.RawClient(port, timeout=timeout)
        self.addCleanup(client.close)
        return client

    def registered(self, port: int, username: str, timeout: float = 10.0) -> support.RawClient:
        client = self.client(port, timeout)
        self.assertOk(client.register(username))
        return client

    def subjects(self, client: support.RawClient) -> list:
        lines = self.assertOk(client.request(H.INBOX_READING_REQUEST))["payload"]["email_list"]
        return [line.split(" - ")[1].split()[0] for line in lines]

    def assertOk(self, reply: dict) -> dict:
        self.assertEqual(reply.get("header"), H.OK, reply)
        return reply

    def assertError(self, reply: dict, contains: str = "", msg: str = "") -> str:
        """Un `ERROR` au message clair : jamais l'erreur interne d'une exception."""
        message = support.assert_error(self, reply, msg=msg)
        self.assertNotEqual(message, TP4_server.INTERNAL_ERROR, msg)
        self.assertIn(contains, message, msg)
        return message

    def assertNoServerException(self, server: support.ServerProcess) -> None:
        self.assertTrue(server.alive(), "Le serveur est mort.")
        self.assertNotIn("Traceback", server.log())

    def assertServing(self, port: int) -> None:
        """Un client neuf est servi de bout en bout."""
        with support.RawClient(port) as client:
            name = f"temoin{random.randrange(1 << 30)}"
            self.assertOk(client.register(name))
            self.assertOk(client.send_email(f"{name}@{DOMAIN}", f"{name}@{DOMAIN}"))
            self.assertEqual(len(self.assertOk(
                client.request(H.INBOX_READING_REQUEST))["payload"]["email_list"]), 1)


# ---------------------------------------------------------------------------
# Équité
# ---------------------------------------------------------------------------

class FairnessTests(HostileTestCase):

    def test_stalled_clients_do_not_delay_others(self):
        """20 clients arrêtés au milieu d'une trame ; un autre est servi normalement."""
        server = self.start_server()
        stalled = stress.open_stalled(server.port, 20)
        for sock, _ in stalled:
            self.addCleanup(sock.close)
        good = self.registered(server.port, "bon", timeout=5)
        started = time.monotonic()
        for index in range(30):
            self.assertOk(good.send_email(f"bon@{DOMAIN}", f"bon@{DOMAIN}", f"s{index}"))
            listing = self.assertOk(good.request(H.INBOX_READING_REQUEST))
            self.assertEqual(len(listing["payload"]["email_list"]), index + 1)
            self.assertOk(good.request(H.STATS_REQUEST))
        self.assertLess(time.monotonic() - started, 20)
        # Les bloqués n'ont rien perdu : la fin de leur trame est traitée.
        for sock, rest in stalled:
            sock.settimeout(5)
            sock.sendall(rest)
            self.assertError(json.loads(glossocket.recv_msg(sock)), LOGIN_FAILED)
        self.assertNoServerException(server)

    def test_incomplete_frame_expires_after_frame_timeout(self):
        server = self.start_server("--frame-timeout", "0.5")
        idle = self.client(server.port)
        two_bytes = self.client(server.port)
        two_bytes.send_raw(b"\x00\x00")
        half = self.client(server.port)
        whole = support.message_frame(H.STATS_REQUEST)
        half.send_raw(whole[:support.LENGTH.size + (len(whole) - support.LENGTH.size) // 2])
        self.assertTrue(two_bytes.closed_by_server(wait=8))
        self.assertTrue(half.closed_by_server(wait=8))
        # Une connexion inactive, sans trame commencée, n'est pas coupée.
        self.assertError(idle.request(H.STATS_REQUEST), "connecté")
        # Des trames complètes mais lentes sont toutes servies : chacune arrive
        # en 5 morceaux sur 0,2 s, dans le délai de 0,5 s, et les 4 ensemble
        # prennent 0,8 s, au-delà.
        slow = self.registered(server.port, "lent")
        data = support.message_frame(H.INBOX_READING_REQUEST)
        step = -(-len(data) // 5)
        started = time.monotonic()
        for _ in range(4):
            for start in range(0, len(data), step):
                if start:
                    time.sleep(0.05)
                slow.send_raw(data[start:start + step])
            self.assertOk(slow.recv())
        self.assertGreater(time.monotonic() - started, 0.5)
        self.assertNoServerException(server)

    def test_oversized_length_closes_at_once(self):
        server = self.start_server("--max-message", "4096")
        pid = server.process.pid
        bystander = self.registered(server.port, "voisin")
        rss_before = support.process_rss_kib(pid)
        huge = self.client(server.port)
        huge.send_raw(support.LENGTH.pack(2 ** 31))
        # Fermée bien avant le délai de trame (10 s par défaut) : le serveur
        # n'attend pas le corps annoncé.
        self.assertTrue(huge.closed_by_server(wait=5))
        self.assertLess(support.process_rss_kib(pid) - rss_before, 20 * 1024)
        over = self.client(server.port)
        over.send_raw(support.LENGTH.pack(4097) + b"{")
        self.assertTrue(over.closed_by_server(wait=5))
        # Exactement à la limite : servie.
        at_limit = self.client(server.port)
        at_limit.send_raw(support.frame(support.message_text(H.STATS_REQUEST).ljust(4096)))
        self.assertError(at_limit.recv(), "connecté")
        self.assertOk(bystander.request(H.STATS_REQUEST))
        self.assertNoServerException(server)

    def test_silent_relay_blocks_only_its_sender(self):
        relay = self.enter(support.SMTPReceiver("silent"))
        server = self.start_server("--smtp-host", support.LOOPBACK, "--smtp-port",
                                   str(relay.port), "--smtp-timeout", "1")
        alice = self.registered(server.port, "alice")
        bob = self.registered(server.port, "bob")
        started = time.monotonic()
        alice.send(H.EMAIL_SENDING, email_payload(f"alice@{DOMAIN}", "x@example.com"))
        for _ in range(5):
            self.assertOk(bob.request(H.STATS_REQUEST))
        bob_done = time.monotonic()
        pending, _, _ = select.select([alice.sock], [], [], 0)
        self.assertEqual(pending, [], "Le relais a répondu avant que bob soit servi.")
        self.assertError(alice.recv(), "n'a pas répondu à temps")
        error_at = time.monotonic()
        self.assertGreater(error_at - started, 0.5)
        self.assertLess(bob_done - started, (error_at - started) / 2)
        self.assertOk(alice.request(H.INBOX_READING_REQUEST))
        self.assertNoServerException(server)


# ---------------------------------------------------------------------------
# Limites et épuisement
# ---------------------------------------------------------------------------

class LimitTests(HostileTestCase):

    def test_connection_past_max_clients_gets_error(self):
        server = self.start_server("--max-clients", "20")
        clients = []
        for _ in range(20):
            # Une requête par connexion avant d'ouvrir la suivante : la sonde
            # de démarrage de `ServerProcess` a alors quitté le compte.
            clients.append(self.client(server.port))
            self.assertError(clients[-1].request(H.STATS_REQUEST), "connecté")
        extra = self.client(server.port)
        messages = extra.messages_until_closed()
        self.assertIsNotNone(messages, "La connexion en trop est restée ouverte.")
        self.assertEqual(len(messages), 1, messages)
        self.assertError(messages[0], support.SERVER_FULL)
        for client in clients:
            self.assertError(client.request(H.STATS_REQUEST), "connecté")
        # Une place libérée est reprise.
        clients[0].close()
        self.assertTrue(stress.wait_until(lambda: self.accepted(server.port), 10))
        self.assertNoServerException(server)

    def test_flood_of_1100_connections(self):
        if support.raise_fd_limit(1100 + 512) < 1100 + 512:
            self.skipTest("Limite de descripteurs de ce processus trop basse.")
        server = self.start_server()
        # Un client déjà servi (la sonde de démarrage ne compte donc plus)
        # occupe une des 1 000 places ; la rafale prend les 999 autres.
        resident = self.client(server.port)
        self.assertError(resident.request(H.STATS_REQUEST), "connecté")
        counts = stress.run_flood(server.port, 1100)
        self.assertEqual(counts.get("connectees"), 1100, counts)
        self.assertEqual(counts.get("servies"), 999, counts)
        refused = counts.get("refusees_error", 0) + counts.get("refusees_fermeture", 0)
        self.assertEqual(refused, 101, counts)
        self.assertGreater(counts.get("refusees_error", 0), 0, counts)
        self.assertNotIn("reponse_inattendue", counts)
        self.assertError(resident.request(H.STATS_REQUEST), "connecté")
        self.assertServing(server.port)
        self.assertNoServerException(server)

    def test_descriptor_limit_below_max_clients(self):
        """
        Limite de descripteurs trop basse pour `--max-clients` : les
        connexions en trop reçoivent le même `ERROR`, au lieu d'un `accept()`
        en échec qui ferait tourner la boucle à vide (et gonfler le journal).
        """
        # Une limite dure : le serveur ne peut pas la relever.
        server = self.start_server(preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (64, 64)))
        served, refused = [], 0
        for _ in range(80):
            client = self.client(server.port, timeout=5)
            try:
                reply = client.request(H.STATS_REQUEST)
            except glossocket.GLOSocketError:
                self.fail("Connexion sans réponse ni refus.")
            except ConnectionError:
                refused += 1
                continue
            if "plein" in reply["payload"]["error_message"]:
                refused += 1
                self.assertTrue(client.closed_by_server())
            else:
                self.assertError(reply, "connecté")
                served.append(client)
        self.assertGreater(len(served), 10)
        self.assertGreater(refused, 0)
        time.sleep(0.5)
        self.assertTrue(server.alive())
        self.assertLess(len(server.log().splitlines()), 1000)
        for client in served:
            self.assertError(client.request(H.STATS_REQUEST), "connecté")
        for client in served:
            client.close()
        self.assertTrue(stress.wait_until(lambda: self.accepted(server.port), 10))

    def test_connect_disconnect_cycles_leak_nothing(self):
        server = self.start_server()
        pid = server.process.pid
        fd_before = stress.quiet_fd_count(pid)
        stress.run_cycles(server.port, 300, seed=1)  # Chauffe de l'allocateur.
        self.assertTrue(stress.server_settled(pid, fd_before))
        rss_before = support.process_rss_kib(pid)
        started = time.monotonic()
        counts = stress.run_cycles(server.port, 10_000, seed=2)
        self.assertEqual(set(counts), set(stress.CYCLE_KINDS))
        self.assertTrue(stress.server_settled(pid, fd_before, timeout=20),
                        f"{support.process_fd_count(pid)} descripteurs, {fd_before} au départ")
        self.assertLess(support.process_rss_kib(pid) - rss_before, 5 * 1024)
        self.assertLess(time.monotonic() - started, 60)
        self.assertServing(server.port)
        self.assertNoServerException(server)


# ---------------------------------------------------------------------------
# Rien ne s'échappe, personne n'usurpe
# ---------------------------------------------------------------------------

class ConfinementTests(HostileTestCase):

    def test_hostile_usernames_refused_and_nothing_created(self):
        """
        Les noms de `malformed.INVALID_USERNAMES`, à la création comme à la
        connexion, connecté ou non : refusés, et rien ne bouge, même trois
        niveaux au-dessus du dossier de travail.
        """
        outer, workdir = self.nested_workdir()
        server = self.start_server(workdir=workdir)
        runner = malformed.Runner(self, server, root=outer)
        runner.run(malformed.cases("nom"))
        # Témoin : un nom valide crée exactement son dossier et son `pass`.
        client = self.client(server.port)
        self.assertOk(client.register("Qing.Long"))
        created = set(tree(outer)) - set(runner.files)
        data = os.path.relpath(server.data_dir, outer)
        self.assertEqual(created, {os.path.join(data, "Qing.Long"),
                                   os.path.join(data, "Qing.Long", "pass")})
        self.assertError(self.client(server.port).register("QING.LONG"), "déjà utilisé")
        self.assertNoServerException(server)

    SHAPED_DESTINATIONS = (
        f"../../etc@{DOMAIN}", f"..@{DOMAIN}", f"LOST@{DOMAIN}", f"lost@{DOMAIN}",
        f"a/b@{DOMAIN}", f"../bob@{DOMAIN}", f"bob/..@{DOMAIN}", f"pass@{DOMAIN}",
    )
    MALFORMED_DESTINATIONS = (
        f"@{DOMAIN}", "no-at-sign", f"a@b@{DOMAIN}", "", "bob@",
        f"bob@{DOMAIN}\r\nBcc: eve@example.com", f"bob@{DOMAIN}\n", f"\r\nbob@{DOMAIN}",
        f"bob\r@{DOMAIN}", f"bob@{DOMAIN}\x00", f"bob @{DOMAIN}",
        "x@example.com\r\nBcc: y@example.com", "x@example.com\n",
        "bob@" + "x" * 300 + ".ca",
    )

    def test_hostile_destinations(self):
        relay = self.enter(support.SMTPReceiver("accept"))
        outer, workdir = self.nested_workdir()
        server = self.start_server("--smtp-host", support.LOOPBACK, "--smtp-port",
                                   str(relay.port), workdir=workdir)
        alice = self.registered(server.port, "alice")
        self.registered(server.port, "bob")
        before = tree(outer)
        for destination in self.SHAPED_DESTINATIONS + self.MALFORMED_DESTINATIONS:
            with self.subTest(destination=destination[:40]):
                self.assertError(alice.send_email(f"alice@{DOMAIN}", destination))
        # Témoin : un destinataire interne inconnu et bien formé va dans LOST.
        self.assertError(alice.send_email(f"alice@{DOMAIN}", f"inconnu@{DOMAIN}"),
                         "n'existe pas")
        lost = os.path.relpath(server.data_dir / gloutils.SERVER_LOST_DIR, outer)
        after = tree(outer)
        changed = {path for path in after if before.get(path) != after[path]}
        self.assertEqual({path for path in before if path not in after}, set())
        copies = collections.Counter()
        for path in changed:
            self.assertEqual(os.path.dirname(path), lost, f"Fichier hors de LOST : {path}")
            self.assertTrue(path.endswith(".json"), path)
            with open(outer / path, encoding="utf-8") as email_file:
                copies[json.load(email_file)["destination"]] += 1
        self.assertEqual(copies[f"inconnu@{DOMAIN}"], 1)
        for destination, count in copies.items():
            self.assertIn(destination, self.SHAPED_DESTINATIONS + (f"inconnu@{DOMAIN}",))
            self.assertEqual(count, 1, destination)
        self.assertEqual(relay.messages, [], "Une adresse hostile a atteint le relais.")
        self.assertNoServerException(server)

    def test_sender_must_be_the_logged_in_user(self):
        """
        L'expéditeur est l'adresse de l'utilisateur connecté, en toute casse,
        ou son nom seul (des clients d'autres éditions n'envoient que lui) :
        le courriel porte alors l'adresse complète. Tout le reste est refusé.
        """
        relay = self.enter(support.SMTPReceiver("accept"))
        outer, workdir = self.nested_workdir()
        server = self.start_server("--smtp-host", support.LOOPBACK, "--smtp-port",
                                   str(relay.port), workdir=workdir)
        alice = self.registered(server.port, "alice")
        bob = self.registered(server.port, "bob")
        before = tree(outer)
        forged = (f"bob@{DOMAIN}", "bob", "BOB", "alice@example.com", f"alice@{DOMAIN} ",
                  f" alice@{DOMAIN}", "alice ", " alice", "alice\n", "alice.", "alic",
                  "alice@", f"alice@{DOMAIN}\n", f"alice@{DOMAIN}.", "",
                  f"alice@{DOMAIN},bob@{DOMAIN}", f"alice@{DOMAIN}\x00", "alice\x00",
                  f"alice+x@{DOMAIN}", f"ALICE@{DOMAIN}\r\nBcc: x@example.com")
        for sender in forged:
            for destination in (f"bob@{DOMAIN}", "x@example.com", f"inconnu@{DOMAIN}"):
                with self.subTest(sender=sender, destination=destination):
                    self.assertError(alice.send_email(sender, destination), "expéditeur")
        anonymous = self.client(server.port)
        self.assertError(anonymous.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}"), "connecté")
        self.assertError(anonymous.send_email("alice", f"bob@{DOMAIN}"), "connecté")
        self.assertEqual(tree(outer), before)
        self.assertEqual(relay.messages, [])
        # La comparaison ignore la casse ; le nom seul devient l'adresse complète.
        accepted = (f"ALICE@{DOMAIN.upper()}", "Alice@Glo2000.Ca", "alice", "ALICE")
        for sender in accepted:
            self.assertOk(alice.send_email(sender, f"bob@{DOMAIN}", "interne"))
        for sender in ("alice", "Alice"):
            self.assertOk(alice.send_email(sender, "x@example.com", "externe"))
        self.assertEqual([support.relayed_message(envelope)["From"]
                          for envelope in relay.messages], [f"alice@{DOMAIN}"] * 2)
        listing = self.assertOk(bob.request(H.INBOX_READING_REQUEST))["payload"]["email_list"]
        self.assertEqual(len(listing), len(accepted))
        stored = [self.assertOk(bob.request(H.INBOX_READING_CHOICE, {"choice": number})
                                )["payload"]["sender"] for number in (1, 2)]
        self.assertEqual(stored, [f"alice@{DOMAIN}"] * 2)  # Les deux derniers : le nom seul.
        for line in listing[:2]:
            self.assertIn(f" alice@{DOMAIN} - ", line)
        alice.send(H.AUTH_LOGOUT)
        self.assertError(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}"), "connecté")
        self.assertError(alice.send_email("alice", f"bob@{DOMAIN}"), "connecté")
        self.assertNoServerException(server)

    def test_ill_typed_payloads_get_error(self):
        """
        Les charges utiles de `tests/malformed.py` (authentification, lecture,
        envoi), connecté ou non : l'`ERROR` prévu, et rien n'est écrit.
        """
        server = self.start_server()
        runner = malformed.Runner(self, server)
        runner.run(malformed.cases("authentification", "lecture", "envoi"))
        # Une demi-paire de substitution (JSON l'admet) dans un mot de passe
        # bien typé : accepté ou refusé, mais jamais une exception.
        anonymous = runner.clients[malformed.LOGGED_OUT]
        odd = {"username": "zoe", "password": PASSWORD + "\ud800"}
        registered = anonymous.request(H.AUTH_REGISTER, odd)
        self.assertNotEqual(registered["payload"]["error_message"]
                            if registered["header"] == H.ERROR else "", TP4_server.INTERNAL_ERROR)
        self.assertEqual(anonymous.request(H.AUTH_LOGIN, odd)["header"], registered["header"])
        self.assertServing(server.port)
        self.assertNoServerException(server)


# ---------------------------------------------------------------------------
# Rien ne se perd
# ---------------------------------------------------------------------------

class CrashSafetyTests(HostileTestCase):

    ROUNDS = 8
    WRITERS = 6
    SUBJECT = re.compile(r"\[(w\d+x\d+-\d+)\]")

    def test_acknowledged_emails_survive_sigkill(self):
        rng = random.Random(20221128)
        _, workdir = self.nested_workdir()
        acknowledged: dict[str, str] = {}
        accounts: set[str] = set()
        checked: set[str] = set()
        for round_ in range(self.ROUNDS):
            server = self.start_server(workdir=workdir)
            self.check_durable(server, acknowledged, accounts, checked)
            if round_ == 0:
                self.registered(server.port, "puits").close()
                accounts.add("puits")
            self.write_until_killed(server, round_, rng.uniform(0.05, 0.6),
                                    acknowledged, accounts)
            self.plant_interrupted_writes(server.data_dir / "puits", rng)
        server = self.start_server(workdir=workdir)
        self.check_durable(server, acknowledged, accounts, checked)
        self.assertGreater(len(acknowledged), self.ROUNDS * 10)
        self.assertNoServerException(server)

    @staticmethod
    def plant_interrupted_writes(folder: Path, rng: random.Random) -> None:
        """
        Ajoute ce qu'une panne peut laisser à coup sûr, quel que soit l'instant
        tiré : le fichier caché d'un courriel complet, jamais confirmé puisque
        jamais renommé, celui d'un courriel coupé au milieu de l'écriture, un
        vide, et les temporaires complet et coupé d'un remplacement de fichier
        `pass` interrompu. Le démarrage suivant les efface tous.
        """
        now = time.time_ns()
        complete = json.dumps(email_payload(
            f"puits@{DOMAIN}", f"puits@{DOMAIN}", f"{UNCONFIRMED} {now}", "corps")).encode()
        (folder / f".tmp-{now:020d}.json").write_bytes(complete)
        (folder / f".tmp-{now + 1:020d}.json").write_bytes(
            complete[: rng.randrange(1, len(complete))])
        (folder / f".tmp-{now + 2:020d}.json").write_bytes(b"")
        (folder / f".tmp-{now + 3}").write_bytes(b"0" * support.DIGEST_SIZE)
        (folder / f".tmp-{now + 4}").write_bytes(b"0" * rng.randrange(support.DIGEST_SIZE))

    def write_until_killed(self, server, round_: int, delay: float,
                           acknowledged: dict, accounts: set) -> None:
        """Des clients écrivent sans arrêt ; SIGKILL après `delay` secondes."""
        lock = threading.Lock()
        refusals = []

        def writer(index: int) -> None:
            name = f"w{round_}x{index}"
            try:
                with support.RawClient(server.port, timeout=10) as client:
                    if client.register(name)["header"] != H.OK:
                        return
                    with lock:
                        accounts.add(name)
                    for number in range(1_000_000):
                        destination = name if number % 2 else "puits"
                        token = f"{name}-{number}"
                        reply = client.send_email(f"{name}@{DOMAIN}", f"{destination}@{DOMAIN}",
                                                  f"[{token}]", content=f"[{token}]" * 20)
                        with lock:
                            if reply["header"] == H.OK:
                                acknowledged[token] = destination
                            else:
                                refusals.append(reply)
            except (OSError, glossocket.GLOSocketError, ValueError):
                return

        threads = [threading.Thread(target=writer, args=(index,), daemon=True)
                   for index in range(self.WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(delay)
        server.kill()
        for thread in threads:
            thread.join(timeout=15)
            self.assertFalse(thread.is_alive())
        self.assertEqual(refusals, [])

    def check_durable(self, server, acknowledged: dict, accounts: set, checked: set) -> None:
        """
        Après un redémarrage : aucun fichier illisible ni temporaire ne
        reste dans les dossiers, chaque compte confirmé se connecte, chaque
        courriel confirmé est listé une seule fois et se lit, aucun fichier
        caché n'a été publié, et la liste compte exactement les fichiers de
        courriel du dossier.
        """
        self.assertEqual(self.unreadable_files(server.data_dir), [])
        for name in sorted(accounts):
            with support.RawClient(server.port) as client:
                self.assertOk(client.login(name))
                lines = self.assertOk(client.request(H.INBOX_READING_REQUEST)
                                      )["payload"]["email_list"]
                found = collections.Counter(
                    subject for line in lines for subject in self.SUBJECT.findall(line))
                duplicated = [subject for subject, count in found.items() if count != 1]
                self.assertEqual(duplicated, [], f"{name} : en double")
                self.assertNotIn(UNCONFIRMED, " ".join(lines), f"{name} : fichier caché publié")
                expected = {subject for subject, owner in acknowledged.items() if owner == name}
                self.assertEqual(expected - set(found), set(), f"{name} : perdus")
                stats = self.assertOk(client.request(H.STATS_REQUEST))["payload"]
                self.assertEqual(stats["count"], len(lines))
                self.assertEqual(self.email_files(server.data_dir / name), len(lines))
                for number, line in enumerate(lines, start=1):
                    subjects = self.SUBJECT.findall(line)
                    if not subjects or subjects[0] not in expected or subjects[0] in checked:
                        continue
                    email_ = self.assertOk(client.request(
                        H.INBOX_READING_CHOICE, {"choice": number}))["payload"]
                    self.assertEqual(email_["subject"], f"[{subjects[0]}]")
                    self.assertEqual(email_["content"], email_["subject"] * 20)
                    checked.add(subjects[0])

    @staticmethod
    def email_files(folder: Path) -> int:
        return sum(1 for path in folder.iterdir() if path.name != gloutils.PASSWORD_FILENAME)

    @staticmethod
    def unreadable_files(data_dir: Path) -> list:
        """
        Ce que personne ne doit trouver dans le dossier des données : un
        temporaire, un `pass` qui n'est pas une empreinte, ou un fichier de
        courriel qui n'est pas le JSON complet d'un courriel.
        """
        unreadable = []
        for path in sorted(path for folder in data_dir.iterdir() if folder.is_dir()
                           for path in folder.iterdir()):
            if path.name == gloutils.PASSWORD_FILENAME:
                if len(path.read_bytes()) != support.DIGEST_SIZE:
                    unreadable.append(path)
                continue
            try:
                content = json.loads(path.read_bytes())
            except ValueError:
                content = None
            if not (path.name.endswith(".json") and not path.name.startswith(".")
                    and isinstance(content, dict)
                    and sorted(content) == sorted(gloutils.EmailContentPayload.__annotations__)
                    and all(isinstance(value, str) for value in content.values())):
                unreadable.append(path)
        return unreadable


class DiskFaultTests(HostileTestCase):

    def assertNoTemporary(self, data_dir: Path) -> None:
        leftovers = [path for path in tree(data_dir) if ".tmp-" in path]
        self.assertEqual(leftovers, [])

    def test_recipient_folder_replaced_by_a_file(self):
        """Root passe outre chmod : le dossier devient un fichier ordinaire."""
        server = self.start_server()
        alice = self.registered(server.port, "alice")
        bob = self.registered(server.port, "bob")
        carol = self.registered(server.port, "carol")
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "avant"))
        folder = server.data_dir / "bob"
        aside = server.workdir / "bob-de-cote"
        folder.rename(aside)
        folder.write_bytes(b"pas un dossier")
        kept = tree(aside)
        message = self.assertError(
            alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "pendant"))
        self.assertIn("n'a pas pu être enregistré", message)
        self.assertOk(carol.request(H.INBOX_READING_REQUEST))
        self.assertEqual(folder.read_bytes(), b"pas un dossier")
        self.assertEqual(tree(aside), kept)
        self.assertNoTemporary(server.data_dir)
        # LOST remplacé de même : le courriel perdu ne peut être gardé.
        lost = server.data_dir / gloutils.SERVER_LOST_DIR
        lost.rename(server.workdir / "lost-de-cote")
        lost.write_bytes(b"")
        self.assertIn("n'a pas pu être enregistré", self.assertError(
            alice.send_email(f"alice@{DOMAIN}", f"inconnu@{DOMAIN}")))
        lost.unlink()
        (server.workdir / "lost-de-cote").rename(lost)
        folder.unlink()
        aside.rename(folder)
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "apres"))
        self.assertEqual(self.subjects(bob), ["apres", "avant"])
        self.assertNoTemporary(server.data_dir)
        self.assertNoServerException(server)

    def test_folder_replaced_before_first_use(self):
        """
        Le dossier disparaît avant que le serveur n'en ait lu l'index : le
        destinataire comme son propriétaire reçoivent un `ERROR` clair.
        """
        server = self.start_server()
        alice = self.registered(server.port, "alice")
        bob = self.registered(server.port, "bob")
        folder = server.data_dir / "bob"
        aside = server.workdir / "bob-de-cote"
        folder.rename(aside)
        folder.write_bytes(b"pas un dossier")
        message = self.assertError(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}"))
        self.assertIn("dossier inaccessible", message)
        self.assertIn("dossier inaccessible", self.assertError(bob.request(H.STATS_REQUEST)))
        folder.unlink()
        aside.rename(folder)
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "apres"))
        self.assertEqual(self.assertOk(bob.request(H.STATS_REQUEST))["payload"]["count"], 1)
        self.assertNoServerException(server)

    def test_disk_full_during_write(self):
        """L'écriture s'arrête à mi-chemin sur ENOSPC."""
        self.check_disk_full("write")

    def test_disk_full_during_fsync(self):
        """`fsync` signale ENOSPC (allocation différée du système de fichiers)."""
        self.check_disk_full("fsync")

    def check_disk_full(self, variant: str) -> None:
        server, full = self.start_with_disk_fault(variant)
        port, data_dir = server.port, server.data_dir
        alice = self.registered(port, "alice")
        bob = self.registered(port, "bob")
        carol = self.registered(port, "carol")
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "avant"))
        before = tree(data_dir)
        full.touch()
        message = self.assertError(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "plein"))
        self.assertIn("plus d'espace disque", message)
        self.assertIn("plus d'espace disque", self.assertError(
            alice.send_email(f"alice@{DOMAIN}", f"inconnu@{DOMAIN}")))
        self.assertIn("Plus d'espace disque", self.assertError(
            self.client(port).register("dave")))
        # Les autres sont servis pendant la panne.
        self.assertOk(carol.request(H.INBOX_READING_REQUEST))
        self.assertOk(bob.request(H.STATS_REQUEST))
        self.assertEqual(tree(data_dir), before, "Écriture partielle laissée sur le disque.")
        full.unlink()
        self.assertError(self.client(port).login("dave"), LOGIN_FAILED)
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "apres"))
        self.assertOk(self.client(port).register("dave"))
        lines = self.assertOk(bob.request(H.INBOX_READING_REQUEST))["payload"]["email_list"]
        self.assertEqual(len(lines), 2)
        self.assertEqual(self.assertOk(bob.request(H.STATS_REQUEST))["payload"]["count"], 2)
        self.assertIn("No space left on device", server.log())
        self.assertNoServerException(server)


class PublicationCrashTests(HostileTestCase):
    """
    Le serveur est un seul processus, dont un fil publie les courriels :
    mort au milieu d'une publication, il ne laisse au redémarrage ni moitié
    de courriel ni fichier caché, et jamais un courriel en double.
    """

    def test_one_process_stopped_by_ctrl_c(self):
        server = self.start_server()
        alice = self.registered(server.port, "alice")
        self.registered(server.port, "bob")
        for subject in ("premier", "second"):
            self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", subject))
        self.assertEqual(support.child_pids(server.process.pid), [])
        server.stop()
        self.assertEqual(server.process.returncode, 0)
        self.assertNotIn("Traceback", server.log())

    def crash_during_send(self, variant: str) -> tuple:
        """
        Alice écrit « avant » à Bob, puis « pendant », que le serveur meurt en
        publiant (`variant`) : aucune réponse. Renvoie le serveur redémarré
        sur les mêmes données et Bob, connecté.
        """
        server, dying = self.start_with_disk_fault(variant)
        alice = self.registered(server.port, "alice")
        self.registered(server.port, "bob")
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "avant"))
        dying.touch()
        alice.send(H.EMAIL_SENDING, email_payload(f"alice@{DOMAIN}", f"bob@{DOMAIN}",
                                                  "pendant"))
        self.assertEqual(alice.received_until_closed(wait=10), b"", "Le serveur a répondu.")
        server.process.wait(timeout=10)
        self.assertEqual(server.process.returncode, 9)
        restarted = self.start_server(workdir=server.workdir)
        bob = self.client(restarted.port)
        self.assertOk(bob.login("bob"))
        self.assertEqual([name for name in os.listdir(restarted.data_dir / "bob")
                          if name.startswith(".")], [])
        return restarted, bob

    def test_death_before_publishing_leaves_nothing(self):
        """Mort entre le fsync et le renommage : le courriel n'existe pas."""
        server, bob = self.crash_during_send("mort")
        self.assertEqual(self.subjects(bob), ["avant"])
        self.assertEqual(self.assertOk(bob.request(H.STATS_REQUEST))["payload"]["count"], 1)
        self.assertServing(server.port)
        self.assertNoServerException(server)

    def test_death_after_publishing_keeps_one_whole_email(self):
        """
        Mort juste après le renommage, avant de répondre : le courriel, jamais
        confirmé, est là une seule fois et complet.
        """
        server, bob = self.crash_during_send("publié")
        self.assertEqual(self.subjects(bob), ["pendant", "avant"])
        read = self.assertOk(bob.request(H.INBOX_READING_CHOICE, {"choice": 1}))["payload"]
        self.assertEqual((read["subject"], read["content"]), ("pendant", "Contenu"))
        self.assertEqual(self.assertOk(bob.request(H.STATS_REQUEST))["payload"]["count"], 2)
        self.assertServing(server.port)
        self.assertNoServerException(server)


class MailboxLoadingTests(HostileTestCase):
    """
    Ce que la boucle fait lire du disque par des fils : le premier chargement
    d'une boîte, la relecture d'un courriel trop gros pour l'index.
    """

    def test_large_email_read_back_whole(self):
        server = self.start_server()
        alice = self.registered(server.port, "alice")
        content = "".join(f"ligne {number} é€😀\n" for number in range(20000))
        self.assertGreater(len(content.encode("utf-8")), 256 * 1024)
        sent = email_payload(f"alice@{DOMAIN}", f"alice@{DOMAIN}", "gros", content)
        self.assertOk(alice.request(H.EMAIL_SENDING, sent))
        self.assertOk(alice.send_email(f"alice@{DOMAIN}", f"alice@{DOMAIN}", "petit"))
        self.assertEqual(self.subjects(alice), ["petit", "gros"])
        read = self.assertOk(alice.request(H.INBOX_READING_CHOICE, {"choice": 2}))
        self.assertEqual(read["payload"], sent)
        self.assertError(alice.request(H.INBOX_READING_CHOICE, {"choice": 3}), "n'existe pas")
        self.assertNoServerException(server)

    def test_other_clients_served_while_a_mailbox_loads(self):
        """
        La boîte de Bob met du temps à se charger : Bob et qui lui écrit
        attendent, les autres sont servis, puis tout reprend dans l'ordre.
        """
        server, slow = self.start_with_disk_fault("lent")
        alice = self.registered(server.port, "alice")
        bob = self.registered(server.port, "bob")
        carol = self.registered(server.port, "carol")
        dave = self.registered(server.port, "dave")
        self.assertEqual(self.subjects(carol), [])
        slow.touch()
        bob.send(H.STATS_REQUEST)
        alice.send(H.EMAIL_SENDING, email_payload(f"alice@{DOMAIN}", f"bob@{DOMAIN}",
                                                  "pendant"))
        self.assertEqual(self.subjects(carol), [])
        # Un premier usage ne fait pas la queue derrière la boîte de Bob.
        self.assertEqual(self.assertOk(dave.request(H.STATS_REQUEST))["payload"]["count"], 0)
        for waiting in (bob, alice):
            self.assertEqual(select.select([waiting.sock], [], [], 0.3)[0], [])
        slow.unlink()
        self.assertEqual(self.assertOk(bob.recv())["payload"]["count"], 0)
        self.assertOk(alice.recv())
        self.assertEqual(self.subjects(bob), ["pendant"])
        self.assertNoServerException(server)

    def test_many_requests_wait_for_one_load(self):
        """Plusieurs requêtes sur une boîte qui se charge : un seul chargement."""
        server, slow = self.start_with_disk_fault("lent")
        senders = [self.registered(server.port, f"exp{index}") for index in range(5)]
        bob = self.registered(server.port, "bob")
        carol = self.registered(server.port, "carol")
        slow.touch()
        for index, sender in enumerate(senders):
            sender.send(H.EMAIL_SENDING, email_payload(
                f"exp{index}@{DOMAIN}", f"bob@{DOMAIN}", f"n{index}"))
        bob.send(H.INBOX_READING_REQUEST)
        # Carol, servie après eux, garantit que toutes ces requêtes attendent.
        self.assertEqual(self.subjects(carol), [])
        slow.unlink()
        self.assertOk(bob.recv())
        for sender in senders:
            self.assertOk(sender.recv())
        self.assertEqual(sorted(self.subjects(bob)), [f"n{index}" for index in range(5)])
        self.assertEqual(server.log().count("Boîte de bob chargée"), 1)
        self.assertNoServerException(server)


# ---------------------------------------------------------------------------
# Fuzzing
# ---------------------------------------------------------------------------

class FuzzTests(HostileTestCase):

    SEED = 20221128
    CASES = 5000

    def test_generator_is_reproducible(self):
        """La même graine redonne exactement les mêmes cas ; une autre, non."""
        first = list(fuzzing.FuzzCaseGenerator(self.SEED).cases(500))
        again = list(fuzzing.FuzzCaseGenerator(self.SEED).cases(500))
        other = list(fuzzing.FuzzCaseGenerator(self.SEED + 1).cases(500))
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        self.assertGreaterEqual({case.kind for case in first},
                                {kind for kind, _ in fuzzing.FuzzCaseGenerator.KINDS} - {"gros"})

    def test_fuzzed_frames_while_a_good_client_works(self):
        relay = self.enter(support.SMTPReceiver("accept"))
        server = self.start_server("--smtp-host", support.LOOPBACK, "--smtp-port",
                                   str(relay.port), "--smtp-timeout", "2")
        good = fuzzing.GoodClient(server.port, "honnete", seed=self.SEED)
        good.start()
        self.addCleanup(good.stop)
        self.assertTrue(stress.wait_until(lambda: good.cycles or good.failure, 10))
        generator = fuzzing.FuzzCaseGenerator(self.SEED, peers=("honnete",))
        fuzzing.register_account(server.port, generator)
        driver = fuzzing.FuzzDriver(server.port, generator, connections=4)
        counts = driver.run(self.CASES)
        cycles_during_fuzz = good.cycles
        good.stop()
        self.assertFalse(good.is_alive())
        self.assertIsNone(good.failure)
        self.assertGreater(cycles_during_fuzz, 1)
        self.assertEqual(counts["cas"], self.CASES)
        self.assertEqual(driver.problems, [])
        # Des trames bien découpées, même absurdes, ne coûtent jamais la
        # connexion : seuls les cas terminaux (et `BYE`) la finissent.
        self.assertEqual(counts["fermetures_serveur"], 0, counts)
        self.assertGreater(counts["reponses_ok"], 0)
        self.assertGreater(counts["reponses_error"], self.CASES // 4)
        self.assertNoServerException(server)
        self.assertServing(server.port)


if __name__ == "__main__":
    unittest.main()
