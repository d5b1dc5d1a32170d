"""\
GLO-2000 Travail pratique 4 - Tests unitaires du serveur
Chaque méthode du gabarit de `Server` est appelée directement, comme le ferait
un correcteur, avec de faux sockets (ou de vrais sockets sur 127.0.0.1 pour
les connexions), dans un dossier de travail temporaire.
"""

import errno
import hashlib
import hmac
import json
import logging
import os
import select
import socket
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import gloutils  # noqa: E402
import TP4_server  # noqa: E402

H = gloutils.Headers
PASSWORD = support.STRONG_PASSWORD
OK = {"header": H.OK}
LOGIN_FAILED = support.LOGIN_FAILED
CREATION_FAILED = "La création a échouée:"
BAD_USERNAME = "- Le nom d'utilisateur est invalide."
WEAK_PASSWORD = "- Le mot de passe n'est pas assez sûr."
DIGEST_SIZE = support.DIGEST_SIZE


def fake_socket() -> mock.Mock:
    """Un faux socket de client, utilisable comme clé de dictionnaire."""
    return mock.Mock(spec=socket.socket)


def email_to(destination: str, subject: str = "Sujet", date: str = None,
             sender: str = "Qing.Long@glo2000.ca", content: str = "Contenu") -> dict:
    """Un `EmailContentPayload` complet."""
    return gloutils.EmailContentPayload(
        sender=sender, destination=destination, subject=subject,
        date=gloutils.get_current_utc_time() if date is None else date, content=content)


class ServerTestCase(unittest.TestCase):
    """
    Un `Server` sur 127.0.0.1 (port choisi par le système), créé dans un
    dossier de travail temporaire ; `cleanup()` et le retour au dossier
    d'origine sont garantis. Le relais SMTP est sur 127.0.0.1 : un
    `SMTPReceiver` si `with_receiver`, sinon un port où rien n'écoute.
    """

    with_receiver = False

    def setUp(self):
        self.relay_port = support.free_port()
        if self.with_receiver:
            self.receiver = support.SMTPReceiver().__enter__()
            self.addCleanup(self.receiver.__exit__, None, None, None)
            self.relay_port = self.receiver.port
        handler = logging.NullHandler()
        TP4_server.logger.addHandler(handler)
        self.addCleanup(TP4_server.logger.removeHandler, handler)
        workdir = tempfile.TemporaryDirectory(prefix="glo-unit-")
        self.addCleanup(workdir.cleanup)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(workdir.name)
        self.data_dir = Path(workdir.name, gloutils.SERVER_DATA_DIR)
        self.server = self.new_server()

    def new_server(self) -> TP4_server.Server:
        """Un serveur de plus sur les mêmes données, nettoyé à la fin du test."""
        server = TP4_server.Server(
            support.LOOPBACK, 0, smtp_host=support.LOOPBACK,
            smtp_port=self.relay_port, smtp_timeout=5)
        self.addCleanup(server.cleanup)
        return server

    def create(self, username: str, password: str = PASSWORD, server=None) -> tuple:
        """`_create_account` sur un nouveau faux socket : (socket, réponse)."""
        soc = fake_socket()
        reply = (server or self.server)._create_account(
            soc, gloutils.AuthPayload(username=username, password=password))
        return soc, reply

    def login(self, username: str, password: str = PASSWORD, server=None) -> tuple:
        """`_login` sur un nouveau faux socket : (socket, réponse)."""
        soc = fake_socket()
        reply = (server or self.server)._login(
            soc, gloutils.AuthPayload(username=username, password=password))
        return soc, reply

    def register(self, username: str, password: str = PASSWORD, server=None):
        """Crée le compte sur un nouveau faux socket, qui reste connecté."""
        soc, reply = self.create(username, password, server)
        self.assertEqual(reply, OK)
        return soc

    def assert_error(self, reply, message=None):
        """`reply` est un `ERROR` portant un message (celui-là, s'il est donné)."""
        return support.assert_error(self, reply, message)

    def send(self, payload, server=None):
        return (server or self.server)._send_email(payload)

    def listing(self, soc, server=None):
        reply = (server or self.server)._get_email_list(soc)
        self.assertEqual(reply["header"], H.OK)
        return reply["payload"]["email_list"]

    @staticmethod
    def expected_listing(*emails) -> list:
        """Lignes `SUBJECT_DISPLAY` attendues pour `emails`, dans cet ordre."""
        return [gloutils.SUBJECT_DISPLAY.format(number=number, **email)
                for number, email in enumerate(emails, start=1)]

    def stats(self, soc, server=None):
        reply = (server or self.server)._get_stats(soc)
        self.assertEqual(reply["header"], H.OK)
        return reply["payload"]

    def files_in(self, folder: str) -> list:
        """Fichiers d'un dossier de données, sans le fichier `pass`."""
        return sorted(path.name for path in (self.data_dir / folder).iterdir()
                      if path.name != gloutils.PASSWORD_FILENAME)

    def all_files(self) -> list:
        return sorted(str(path.relative_to(self.data_dir))
                      for path in self.data_dir.rglob("*") if path.is_file())


class TestCreateAccount(ServerTestCase):
    """`_create_account`."""

    def assert_refused(self, username, password, *problems):
        soc, reply = self.create(username, password)
        self.assert_error(reply, "\n".join([CREATION_FAILED, *problems]))
        self.assertNotIn(soc, self.server._logged_users)
        return reply

    def test_valid_account_logs_in(self):
        soc, reply = self.create("Qing.Long")
        self.assertEqual(reply, OK)
        self.assertEqual(self.server._logged_users[soc], "Qing.Long")

    def test_folder_and_password_digest(self):
        self.create("Qing.Long")
        password_file = self.data_dir / "Qing.Long" / gloutils.PASSWORD_FILENAME
        digest = password_file.read_bytes()
        self.assertEqual(digest, hashlib.sha3_512(PASSWORD.encode("utf-8"))
                         .hexdigest().encode("ascii"))
        self.assertEqual(len(digest), DIGEST_SIZE)
        self.assertEqual(os.listdir(self.data_dir / "Qing.Long"),
                         [gloutils.PASSWORD_FILENAME])

    def test_non_ascii_password_digest(self):
        self.create("Kohryu", "Mötdepasse123€")
        digest = (self.data_dir / "Kohryu" / gloutils.PASSWORD_FILENAME).read_text()
        self.assertEqual(digest, hashlib.sha3_512("Mötdepasse123€".encode()).hexdigest())

    def test_valid_usernames(self):
        for username in ("Qing.Long", "Kohryu", "a_b-c.d", "123", "x", "UPPER"):
            with self.subTest(username=username):
                self.assertEqual(self.create(username)[1], OK)
                self.assertTrue((self.data_dir / username).is_dir())

    def test_invalid_usernames(self):
        for username in ("Qing Long", "", "qing/long", "qing@long", "qing\\long",
                         "tab\tname", "a+b", "nom\n"):
            with self.subTest(username=username):
                self.assert_refused(username, PASSWORD, BAD_USERNAME)
        self.assertEqual(sorted(os.listdir(self.data_dir)), [gloutils.SERVER_LOST_DIR])

    def test_reserved_names(self):
        for username in ("LOST", "lost", "Lost", ".", ".."):
            with self.subTest(username=username):
                self.assert_refused(username, PASSWORD, BAD_USERNAME)
        self.assertEqual(os.listdir(self.data_dir / gloutils.SERVER_LOST_DIR), [])
        self.assertFalse((self.data_dir / gloutils.PASSWORD_FILENAME).exists())

    def test_weak_passwords(self):
        for password, rule in (("Abcdefg12", "trop court (9 caractères)"),
                               ("", "vide"),
                               ("Abcdefghij", "sans chiffre"),
                               ("ABCDEFGH12", "sans minuscule"),
                               ("abcdefgh12", "sans majuscule"),
                               ("1234567890", "que des chiffres"),
                               ("Abcdefgh12\ud800", "sans UTF-8 (moitié de paire)")):
            with self.subTest(rule=rule):
                self.assert_refused("Kohryu", password, WEAK_PASSWORD)
        self.assertFalse((self.data_dir / "Kohryu").exists())

    def test_ten_characters_is_enough(self):
        self.assertEqual(self.create("Kohryu", "Abcdefgh12")[1], OK)

    def test_both_problems_at_once(self):
        reply = self.assert_refused("Qing Long", "abc", BAD_USERNAME, WEAK_PASSWORD)
        self.assertEqual(
            reply["payload"]["error_message"],
            "La création a échouée:\n- Le nom d'utilisateur est invalide.\n"
            "- Le mot de passe n'est pas assez sûr.")

    def test_duplicate_in_another_case(self):
        self.create("Kohryu")
        for username in ("Kohryu", "KOHRYU", "kohryu"):
            with self.subTest(username=username):
                soc, reply = self.create(username, "Autremotdepasse1")
                error = self.assert_error(reply)
                self.assertTrue(error.startswith(CREATION_FAILED + "\n- "), error)
                self.assertNotIn(soc, self.server._logged_users)
        self.assertEqual(sorted(os.listdir(self.data_dir)),
                         ["Kohryu", gloutils.SERVER_LOST_DIR])
        self.assertEqual((self.data_dir / "Kohryu" / gloutils.PASSWORD_FILENAME).read_text(),
                         hashlib.sha3_512(PASSWORD.encode()).hexdigest())

    def test_duplicate_and_weak_password(self):
        self.create("Kohryu")
        _, reply = self.create("kohryu", "faible")
        error = self.assert_error(reply)
        self.assertTrue(error.startswith(CREATION_FAILED + "\n- "), error)
        self.assertTrue(error.endswith("\n" + WEAK_PASSWORD), error)
        self.assertEqual(error.count("\n- "), 2)


class TestLogin(ServerTestCase):
    """`_login` et `_logout`."""

    def setUp(self):
        super().setUp()
        self.server._logout(self.register("Kohryu"))

    def test_ok(self):
        soc, reply = self.login("Kohryu")
        self.assertEqual(reply, OK)
        self.assertEqual(self.server._logged_users[soc], "Kohryu")

    def test_case_insensitive(self):
        for username in ("kohryu", "KOHRYU", "kOhRyU"):
            with self.subTest(username=username):
                soc, reply = self.login(username)
                self.assertEqual(reply, OK)
                self.assertEqual(self.server._logged_users[soc].lower(), "kohryu")

    def test_wrong_password_and_unknown_user_look_the_same(self):
        wrong_soc, wrong = self.login("Kohryu", "Mauvais123456")
        unknown_soc, unknown = self.login("Inconnu")
        self.assert_error(wrong, LOGIN_FAILED)
        self.assertEqual(unknown, wrong)
        self.assertNotIn(wrong_soc, self.server._logged_users)
        self.assertNotIn(unknown_soc, self.server._logged_users)

    def test_password_without_utf8(self):
        for password in (PASSWORD + "\ud800", "\udfff"):
            with self.subTest(password=repr(password)):
                self.assert_error(self.login("Kohryu", password)[1], LOGIN_FAILED)

    def test_password_is_case_sensitive(self):
        self.assert_error(self.login("Kohryu", PASSWORD.lower())[1], LOGIN_FAILED)

    def test_reserved_and_invalid_names_never_log_in(self):
        for username in ("LOST", ".", "..", "", "Qing Long"):
            with self.subTest(username=username):
                self.assert_error(self.login(username)[1], LOGIN_FAILED)

    def test_uses_hmac_compare_digest(self):
        digest = hashlib.sha3_512(PASSWORD.encode()).hexdigest()
        with mock.patch("TP4_server.hmac.compare_digest",
                        wraps=hmac.compare_digest) as compare:
            self.assertEqual(self.login("Kohryu")[1], OK)
        compare.assert_called_once()
        self.assertEqual(sorted(map(str, compare.call_args.args)), [digest, digest])

    def test_compare_digest_decides(self):
        with mock.patch("TP4_server.hmac.compare_digest", return_value=False):
            self.assert_error(self.login("Kohryu")[1], LOGIN_FAILED)
        with mock.patch("TP4_server.hmac.compare_digest", return_value=True):
            self.assertEqual(self.login("Kohryu", "Mauvais123456")[1], OK)

    def test_logout(self):
        soc, _ = self.login("Kohryu")
        self.assertIsNone(self.server._logout(soc))
        self.assertNotIn(soc, self.server._logged_users)
        self.assert_error(self.server._get_stats(soc))
        self.assertEqual(self.server._login(soc, {"username": "Kohryu",
                                                  "password": PASSWORD}), OK)

    def test_logout_when_not_logged_in(self):
        self.assertIsNone(self.server._logout(fake_socket()))

    def test_two_sockets_same_user(self):
        first, _ = self.login("Kohryu")
        second, _ = self.login("kohryu")
        self.server._logout(first)
        self.assertIn(second, self.server._logged_users)
        self.assertEqual(self.stats(second)["count"], 0)


class TestNotLoggedIn(ServerTestCase):
    """Les requêtes d'un socket non connecté reçoivent `ERROR`."""

    def test_requests(self):
        self.register("Kohryu")
        soc = fake_socket()
        for name, call in (("liste", lambda: self.server._get_email_list(soc)),
                           ("lecture", lambda: self.server._get_email(soc, {"choice": 1})),
                           ("statistiques", lambda: self.server._get_stats(soc))):
            with self.subTest(request=name):
                self.assert_error(call())


class TestEmailList(ServerTestCase):
    """`_get_email_list` et `_get_email` : ordre et numérotation."""

    def setUp(self):
        super().setUp()
        self.kohryu = self.register("Kohryu")
        self.register("Qing.Long")

    def deliver(self, subject, date):
        payload = email_to("kohryu@glo2000.ca", subject, date)
        self.assertEqual(self.send(payload), OK)
        return payload

    def test_empty(self):
        self.assertEqual(self.listing(self.kohryu), [])
        self.assert_error(self.server._get_email(self.kohryu, {"choice": 1}))

    def test_lines_use_subject_display(self):
        self.send(support.HANDOUT_EMAIL)
        self.assertEqual(self.server._get_email_list(self.kohryu), {
            "header": H.OK,
            "payload": {"email_list": [
                "#1 Qing.Long@glo2000.ca - Bonjour! Tue, 12 Jul 2022 19:21:57 +0000"]}})

    def test_most_recent_first_by_date(self):
        middle = self.deliver("milieu", "Tue, 12 Jul 2022 19:21:57 +0000")
        old = self.deliver("ancien", "Mon, 11 Jul 2022 23:59:59 +0000")
        recent = self.deliver("récent", "Wed, 13 Jul 2022 08:00:00 +0000")
        offset = self.deliver("fuseau", "Wed, 13 Jul 2022 09:00:00 +0200")
        self.assertEqual(self.listing(self.kohryu),
                         self.expected_listing(recent, offset, middle, old))

    def test_equal_dates_in_arrival_order(self):
        date = "Tue, 12 Jul 2022 19:21:57 +0000"
        emails = [self.deliver(subject, date) for subject in ("1er", "2e", "3e")]
        self.assertEqual(self.listing(self.kohryu), self.expected_listing(*emails[::-1]))
        self.assertEqual(self.server._get_email(self.kohryu, {"choice": 1})["payload"],
                         emails[2])

    def test_unparseable_date_placed_by_arrival(self):
        past = self.deliver("passé", "Tue, 12 Jul 2022 19:21:57 +0000")
        unreadable = self.deliver("illisible", "pas une date")
        future = self.deliver("futur", "Sat, 01 Jan 2100 00:00:00 +0000")
        empty = self.deliver("vide", "")
        self.assertEqual(self.listing(self.kohryu),
                         self.expected_listing(future, empty, unreadable, past))

    def test_read_by_number(self):
        first = email_to("kohryu@glo2000.ca", "premier", "Mon, 11 Jul 2022 10:00:00 +0000")
        second = email_to("kohryu@glo2000.ca", "second", "Tue, 12 Jul 2022 10:00:00 +0000",
                          content="Ligne 1\nLigne 2 é€")
        self.send(first)
        self.send(second)
        self.assertEqual(self.server._get_email(self.kohryu, {"choice": 1}),
                         {"header": H.OK, "payload": second})
        self.assertEqual(self.server._get_email(self.kohryu, {"choice": 2}),
                         {"header": H.OK, "payload": first})

    def test_out_of_range(self):
        self.send(support.HANDOUT_EMAIL)
        for choice in (0, 2, -1, 10**9):
            with self.subTest(choice=choice):
                self.assert_error(self.server._get_email(self.kohryu, {"choice": choice}))

    def test_network_reply_is_the_encoded_listing(self):
        """
        La réponse envoyée sur le réseau, assemblée d'une liste encodée
        d'avance, est exactement `json.dumps` de celle de `_get_email_list`,
        même quand le texte du client ressemble à la marque du numéro.
        """
        subjects = ['guillemets " et \\ barre', "ligne\nsuivante\ttab", "accents éàç €",
                    "emoji 😀 \ud7ff", "marque \x00#\x00 brute", "marque \\u0000#\\u0000",
                    "{number} #1", ""]
        for number, subject in enumerate(subjects):
            self.deliver(subject, f"Tue, 12 Jul 2022 19:21:{number:02d} +0000")
        for _ in range(2):  # La seconde fois, depuis le cache.
            reply = self.server._get_email_list(self.kohryu)
            self.assertIsInstance(reply["payload"]["email_list"], TP4_server._Listing)
            self.assertEqual(TP4_server._encode(reply), json.dumps(reply))
        self.deliver("après", "Wed, 13 Jul 2022 08:00:00 +0000")
        reply = self.server._get_email_list(self.kohryu)
        self.assertEqual(TP4_server._encode(reply), json.dumps(reply))
        self.assertEqual(len(reply["payload"]["email_list"]), len(subjects) + 1)

    def test_encoded_listing_with_nothing_to_escape(self):
        """
        Des lignes sans rien à échapper s'encodent entre guillemets, sans
        `json.dumps` ; la première ligne à échapper (un accent, ici) ou un
        gabarit qui en a changent de méthode, sans changer le résultat.
        """
        def assert_encoded() -> None:
            reply = self.server._get_email_list(self.kohryu)
            self.assertEqual(TP4_server._encode(reply), json.dumps(reply))

        assert_encoded()
        for number in range(3):
            self.deliver(f"Sujet simple {number}", f"Tue, 12 Jul 2022 19:21:{number:02d} +0000")
        assert_encoded()
        self.deliver("Sujet accentué", "Tue, 12 Jul 2022 19:22:00 +0000")
        assert_encoded()
        template = "#{number} → {sender} - {subject} {date}"
        with mock.patch.object(gloutils, "SUBJECT_DISPLAY", template):
            self.server._mailboxes.clear()
            assert_encoded()

    def test_returned_listing_is_a_copy(self):
        """Modifier la liste reçue ne change pas la suivante."""
        self.deliver("Sujet", "Tue, 12 Jul 2022 19:21:00 +0000")
        first = self.server._get_email_list(self.kohryu)["payload"]["email_list"]
        first.clear()
        again = self.server._get_email_list(self.kohryu)
        self.assertEqual(len(again["payload"]["email_list"]), 1)
        self.assertEqual(TP4_server._encode(again), json.dumps(again))

    def test_each_user_sees_only_their_emails(self):
        self.send(support.HANDOUT_EMAIL)
        other = self.register("Autre")
        self.assertEqual(self.listing(other), [])
        self.assertEqual(self.stats(other), {"count": 0, "size": DIGEST_SIZE})


class TestStats(ServerTestCase):
    """`_get_stats`."""

    def test_empty_folder_counts_the_password_file(self):
        self.assertEqual(self.stats(self.register("Kohryu")),
                         {"count": 0, "size": DIGEST_SIZE})

    def test_handout_email_is_319_bytes(self):
        kohryu = self.register("Kohryu")
        self.register("Qing.Long")
        self.assertEqual(self.send(support.HANDOUT_EMAIL), OK)
        self.assertEqual(self.server._get_stats(kohryu),
                         {"header": H.OK, "payload": {"count": 1, "size": 319}})

    def test_size_is_the_folder_size(self):
        kohryu = self.register("Kohryu")
        for subject in ("un", "deux é", "trois"):
            self.send(email_to("kohryu@glo2000.ca", subject))
        folder = self.data_dir / "Kohryu"
        size = sum(path.stat().st_size for path in folder.iterdir())
        self.assertEqual(self.stats(kohryu), {"count": 3, "size": size})


class TestSendInternal(ServerTestCase):
    """`_send_email` vers une adresse @glo2000.ca."""

    def setUp(self):
        super().setUp()
        self.kohryu = self.register("Kohryu")

    def test_file_is_json_dumps_of_payload(self):
        self.assertEqual(self.send(support.HANDOUT_EMAIL), OK)
        [name] = self.files_in("Kohryu")
        text = (self.data_dir / "Kohryu" / name).read_text(encoding="utf-8")
        self.assertEqual(text, json.dumps(support.HANDOUT_EMAIL))

    def test_non_ascii_email(self):
        payload = email_to("kohryu@glo2000.ca", "Réunion ☕", content="Café à 10 h\n— Q.")
        self.assertEqual(self.send(payload), OK)
        [name] = self.files_in("Kohryu")
        self.assertEqual((self.data_dir / "Kohryu" / name).read_text(), json.dumps(payload))
        self.assertEqual(self.server._get_email(self.kohryu, {"choice": 1})["payload"],
                         payload)

    def test_recipient_is_case_insensitive(self):
        for destination in ("KOHRYU@glo2000.ca", "Kohryu@GLO2000.CA", "kOhRyU@Glo2000.Ca"):
            with self.subTest(destination=destination):
                self.assertEqual(self.send(email_to(destination)), OK)
        self.assertEqual(len(self.files_in("Kohryu")), 3)
        self.assertEqual(self.stats(self.kohryu)["count"], 3)
        self.assertEqual(sorted(os.listdir(self.data_dir)),
                         ["Kohryu", gloutils.SERVER_LOST_DIR])

    def test_unknown_recipient_goes_to_lost(self):
        payload = email_to("personne@glo2000.ca", "Perdu")
        error = self.assert_error(self.send(payload))
        self.assertIn("personne@glo2000.ca", error)
        [name] = self.files_in(gloutils.SERVER_LOST_DIR)
        lost = (self.data_dir / gloutils.SERVER_LOST_DIR / name).read_text()
        self.assertEqual(json.loads(lost), payload)
        self.assertEqual(self.files_in("Kohryu"), [])

    def test_lost_is_not_an_account(self):
        error = self.assert_error(self.send(email_to("lost@glo2000.ca")))
        self.assertIn("lost@glo2000.ca", error)
        self.assertEqual(len(self.files_in(gloutils.SERVER_LOST_DIR)), 1)

    def test_sender_folder_untouched(self):
        qing = self.register("Qing.Long")
        self.send(support.HANDOUT_EMAIL)
        self.assertEqual(self.stats(qing), {"count": 0, "size": DIGEST_SIZE})


class TestSendExternal(ServerTestCase):
    """`_send_email` vers une autre adresse : relais SMTP sur 127.0.0.1."""

    with_receiver = True

    def relay(self, mode, payload):
        self.receiver.mode = mode
        return self.send(payload), self.receiver.messages

    def test_relayed(self):
        payload = email_to("ami@example.com", "Bonjour!",
                           content="Exemple de contenu\nSur plusieurs lignes")
        reply, messages = self.relay("accept", payload)
        self.assertEqual(reply, OK)
        [envelope] = messages
        support.assert_relayed(self, envelope, payload)

    def test_relayed_non_ascii(self):
        payload = email_to("ami@example.com", "Réunion ☕", content="Café à 10 h\n— Q.")
        reply, messages = self.relay("accept", payload)
        self.assertEqual(reply, OK)
        support.assert_relayed(self, messages[0], payload)

    def test_relayed_dots_and_long_lines(self):
        payload = email_to("ami@example.com", content=".\n..début\n" + "x" * 2000)
        reply, messages = self.relay("accept", payload)
        self.assertEqual(reply, OK)
        support.assert_relayed(self, messages[0], payload)

    def test_nothing_written_locally(self):
        self.register("Qing.Long")
        self.relay("accept", email_to("kohryu@example.com"))
        self.assertEqual(self.all_files(), [f"Qing.Long/{gloutils.PASSWORD_FILENAME}"])

    def test_refused(self):
        reply, messages = self.relay("refuse", email_to("refus@example.com"))
        self.assert_error(reply)
        self.assertEqual(messages, [])

    def test_invalid_addresses(self):
        self.register("Kohryu")
        for destination in ("kohryu", "kohryu@", "@glo2000.ca", "", "a b@glo2000.ca",
                            "kohryu@@glo2000.ca", "kohryu@glo2000..ca", "ami@exa mple.com",
                            "kohryu@glo2000.ca\nBcc: x@example.com", "ami@example.com "):
            with self.subTest(destination=destination):
                self.assert_error(self.send(email_to(destination)))
        self.assertEqual(self.receiver.messages, [])
        self.assertEqual(self.all_files(), [f"Kohryu/{gloutils.PASSWORD_FILENAME}"])


class TestRelayUnreachable(ServerTestCase):
    """Rien n'écoute sur le port du relais SMTP."""

    def test_error_in_french(self):
        error = self.assert_error(self.send(email_to("ami@example.com")))
        for english in ("Connection refused", "Errno", "Traceback"):
            self.assertNotIn(english, error)


class TestRestart(ServerTestCase):
    """Un nouveau serveur sur les mêmes données retrouve tout."""

    def test_same_listing_stats_and_emails(self):
        kohryu = self.register("Kohryu")
        self.register("Qing.Long")
        for date in ("Tue, 12 Jul 2022 19:21:57 +0000", "pas une date",
                     "Mon, 11 Jul 2022 19:21:57 +0000", "Tue, 12 Jul 2022 19:21:57 +0000"):
            self.send(email_to("kohryu@glo2000.ca", f"daté {date}", date))
        self.send(email_to("inconnu@glo2000.ca"))
        before = (self.listing(kohryu), self.stats(kohryu),
                  [self.server._get_email(kohryu, {"choice": n}) for n in (1, 2, 3, 4)])
        self.server.cleanup()

        restarted = self.new_server()
        soc, reply = self.login("KOHRYU", server=restarted)
        self.assertEqual(reply, OK)
        after = (self.listing(soc, restarted), self.stats(soc, restarted),
                 [restarted._get_email(soc, {"choice": n}) for n in (1, 2, 3, 4)])
        self.assertEqual(after, before)
        self.assertEqual(len(self.files_in(gloutils.SERVER_LOST_DIR)), 1)
        self.assertEqual(restarted._create_account(
            fake_socket(), {"username": "kohryu", "password": PASSWORD})["header"], H.ERROR)

    def test_delivery_after_restart(self):
        self.register("Kohryu")
        before = email_to("kohryu@glo2000.ca", "avant", "Tue, 12 Jul 2022 19:21:57 +0000")
        after = email_to("kohryu@glo2000.ca", "après", "Tue, 12 Jul 2022 19:21:57 +0000")
        self.send(before)
        self.server.cleanup()
        restarted = self.new_server()
        soc, _ = self.login("Kohryu", server=restarted)
        self.assertEqual(restarted._send_email(after), OK)
        self.assertEqual(self.stats(soc, restarted)["count"], 2)
        self.assertEqual(self.listing(soc, restarted), self.expected_listing(after, before))


class TestTemporaryFiles(ServerTestCase):
    """Les fichiers dont le nom commence par « .tmp- » ne sont ni listés ni comptés."""

    def plant(self, folder):
        """Dépose des temporaires, dont un qui ressemble à un vrai courriel."""
        (folder / ".tmp-1.json").write_text(json.dumps(support.HANDOUT_EMAIL))
        (folder / ".tmp-interrompu").write_bytes(b'{"sender": "Qing')

    def test_before_first_use(self):
        kohryu = self.register("Kohryu")
        self.plant(self.data_dir / "Kohryu")
        self.assertEqual(self.listing(kohryu), [])
        self.assertEqual(self.stats(kohryu), {"count": 0, "size": DIGEST_SIZE})

    def test_after_restart(self):
        """
        Au démarrage, un temporaire complet (lien perdu dans une panne) est
        publié sous son nom ; un temporaire incomplet est effacé.
        """
        kohryu = self.register("Kohryu")
        self.send(support.HANDOUT_EMAIL)
        self.assertEqual(self.stats(kohryu), {"count": 1, "size": 319})
        self.server.cleanup()
        folder = self.data_dir / "Kohryu"
        self.plant(folder)
        restarted = self.new_server()
        self.assertEqual([name for name in os.listdir(folder) if name.startswith(".")], [])
        self.assertEqual(json.loads((folder / "1.json").read_text()), support.HANDOUT_EMAIL)
        soc, _ = self.login("Kohryu", server=restarted)
        self.assertEqual(len(self.listing(soc, restarted)), 2)
        self.assertEqual(self.stats(soc, restarted), {"count": 2, "size": 319 + 191})
        self.assertEqual(restarted._get_email(soc, {"choice": 2}),
                         {"header": H.OK, "payload": support.HANDOUT_EMAIL})

    def test_none_left_after_sending(self):
        self.register("Kohryu")
        for _ in range(3):
            self.send(email_to("kohryu@glo2000.ca"))
        self.send(email_to("inconnu@glo2000.ca"))
        leftovers = [name for name in self.all_files() if "/.tmp-" in name]
        self.assertEqual(leftovers, [])


class LoopbackTestCase(ServerTestCase):
    """Des clients réels connectés au socket d'écoute du serveur."""

    def connect(self) -> socket.socket:
        port = self.server._server_socket.getsockname()[1]
        client = socket.create_connection((support.LOOPBACK, port), timeout=5)
        self.addCleanup(client.close)
        return client

    def accept(self, *clients):
        """Appelle `_accept_client()` jusqu'à ce que `clients` soient acceptés."""
        deadline = time.monotonic() + 5
        while len(self.server._client_socs) < len(clients) < 64:
            self.assertLess(time.monotonic(), deadline)
            select.select([self.server._server_socket], [], [], 0.5)
            self.server._accept_client()
        self.assertEqual(len(self.server._client_socs), len(clients))
        by_peer = {soc.getpeername(): soc for soc in self.server._client_socs}
        return [by_peer[client.getsockname()] for client in clients]

    def assert_closed_by_server(self, client):
        client.settimeout(5)
        self.assertEqual(client.recv(1), b"")


class TestConnections(LoopbackTestCase):
    """`_accept_client`, `_remove_client` et `cleanup`."""

    def test_server_socket_is_ipv4_tcp(self):
        listening = self.server._server_socket
        self.assertEqual(listening.family, socket.AF_INET)
        self.assertEqual(listening.type, socket.SOCK_STREAM)
        self.assertEqual(self.server._client_socs, [])
        self.assertEqual(self.server._logged_users, {})

    def test_template_defaults(self):
        """`Server()` sans argument : toutes les interfaces, `APP_PORT`, `SMTP_SERVER`:25."""
        real_bind = TP4_server.Server._bind
        requested = []

        def bind(host, port):
            requested.append((host, port))
            return real_bind(support.LOOPBACK, 0)

        with mock.patch.object(TP4_server.Server, "_bind", staticmethod(bind)):
            server = TP4_server.Server()
        self.addCleanup(server.cleanup)
        self.assertEqual(requested, [("", gloutils.APP_PORT)])
        self.assertEqual((server._smtp_host, server._smtp_port), (gloutils.SMTP_SERVER, 25))

    def test_accept(self):
        first, second = self.connect(), self.connect()
        accepted = self.accept(first, second)
        for soc in accepted:
            self.assertIsInstance(soc, socket.socket)
        self.assertEqual(self.server._logged_users, {})

    def test_remove(self):
        client = self.connect()
        [soc] = self.accept(client)
        self.server._create_account(soc, {"username": "Kohryu", "password": PASSWORD})
        self.server._remove_client(soc)
        self.assertEqual(self.server._client_socs, [])
        self.assertEqual(self.server._logged_users, {})
        self.assertEqual(soc.fileno(), -1)
        self.assert_closed_by_server(client)

    def test_remove_keeps_the_others(self):
        first, second = self.connect(), self.connect()
        gone, kept = self.accept(first, second)
        self.server._remove_client(gone)
        self.assertEqual(self.server._client_socs, [kept])
        second.sendall(b"ping")
        self.assertTrue(select.select([kept], [], [], 5)[0])
        self.assertEqual(kept.recv(4), b"ping")

    def test_cleanup_closes_everything(self):
        clients = [self.connect() for _ in range(3)]
        accepted = self.accept(*clients)
        self.server._create_account(accepted[0], {"username": "Kohryu", "password": PASSWORD})
        port = self.server._server_socket.getsockname()[1]
        self.server.cleanup()
        self.assertEqual(self.server._server_socket.fileno(), -1)
        self.assertEqual(self.server._client_socs, [])
        self.assertEqual(self.server._logged_users, {})
        for client in clients:
            self.assert_closed_by_server(client)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((support.LOOPBACK, port), timeout=5).close()


    def test_accept_failure_pauses_accepting(self):
        """
        Un accept() en échec (plus de descripteurs, par exemple) suspend les
        acceptations un instant au lieu de faire tourner la boucle à vide.
        """
        client = self.connect()
        listening = self.server._server_socket
        self.server._server_socket = mock.Mock(wraps=listening)
        self.server._server_socket.accept.side_effect = OSError(24, "Too many open files")
        self.server._accept_client()
        self.assertFalse(self.server._is_accepting())
        waits = []

        def recording_select(readers, writers, errors, timeout=None):
            waits.append((list(readers), timeout))
            return [], [], []

        with mock.patch.object(TP4_server.select, "select", recording_select):
            self.server._serve_once()
        (readers, timeout), = waits
        self.assertNotIn(self.server._server_socket, readers)
        self.assertGreater(timeout, 0)
        self.assertLessEqual(timeout, TP4_server._ACCEPT_BACKOFF)
        self.server._server_socket = listening
        time.sleep(TP4_server._ACCEPT_BACKOFF)
        self.assertTrue(self.server._is_accepting())
        self.assertEqual(len(self.accept(client)), 1)


class _Stop(BaseException):
    """Arrête `run()`, qui sinon sert indéfiniment."""


class RunLoopTestCase(LoopbackTestCase):
    """`run()` dans un fil ; `stop()` l'arrête comme un correcteur, par select()."""

    def start(self):
        self._stop = threading.Event()
        real_select = select.select

        def stoppable_select(readers, writers, errors, timeout=None):
            if self._stop.is_set():
                raise _Stop
            timeout = 0.05 if timeout is None else min(timeout, 0.05)
            return real_select(readers, writers, errors, timeout)

        def serve():
            try:
                self.server.run()
            except _Stop:
                pass

        patcher = mock.patch.object(TP4_server.select, "select", stoppable_select)
        patcher.start()
        self._loop = threading.Thread(target=serve, daemon=True)
        self._loop.start()
        self.addCleanup(patcher.stop)
        self.addCleanup(self.stop)

    def stop(self):
        self._stop.set()
        self._loop.join(5)
        self.assertFalse(self._loop.is_alive())


class TestRun(RunLoopTestCase):
    """`run()` dans un fil, avec un vrai client du protocole."""

    def test_session(self):
        self.start()
        port = self.server._server_socket.getsockname()[1]
        with support.RawClient(port) as client:
            self.assertEqual(client.register("Kohryu"), {"header": H.OK})
            payload = dict(support.HANDOUT_EMAIL, sender="Kohryu@glo2000.ca")
            self.assertEqual(client.send_email(**payload), {"header": H.OK})
            size = DIGEST_SIZE + len(json.dumps(payload))
            self.assertEqual(client.request(H.STATS_REQUEST),
                             {"header": H.OK, "payload": {"count": 1, "size": size}})
            client.send(H.BYE)
            self.assertEqual(client.received_until_closed(), b"")



class TestSendingInTheLoop(RunLoopTestCase):
    """
    Un envoi interne rejoué dans la boucle (`_Replay`) : la réponse est celle
    de `_send_email`, appelée une seule fois quand un correcteur l'observe,
    et un courriel écrit est indexé même si son expéditeur est parti.
    """

    def setUp(self):
        super().setUp()
        self.start()
        port = self.server._server_socket.getsockname()[1]
        self.alice = support.RawClient(port)
        self.bob = support.RawClient(port)
        for client in (self.alice, self.bob):
            self.addCleanup(client.close)
        self.assertEqual(self.alice.register("alice"), OK)
        self.assertEqual(self.bob.register("bob"), OK)
        self.assertEqual(self.bob.request(H.STATS_REQUEST)["header"], H.OK)  # Index chargé.

    def test_observed_method_called_once(self):
        original = TP4_server.Server._send_email
        with mock.patch.object(TP4_server.Server, "_send_email", autospec=True,
                               side_effect=original) as spy:
            self.assertEqual(self.alice.send_email("alice@glo2000.ca", "bob@glo2000.ca"), OK)
        spy.assert_called_once()
        self.assertEqual(self.bob.request(H.STATS_REQUEST)["payload"]["count"], 1)

    def test_sender_gone_before_the_write_is_done(self):
        self.alice.send(H.EMAIL_SENDING, email_to("bob@glo2000.ca", sender="alice@glo2000.ca"))
        self.alice.abort()
        deadline = time.monotonic() + 5
        while self.bob.request(H.STATS_REQUEST)["payload"]["count"] != 1:
            self.assertLess(time.monotonic(), deadline, "Courriel écrit mais jamais indexé.")
            time.sleep(0.02)
        files = [name for name in os.listdir(self.data_dir / "bob") if name.endswith(".json")]
        self.assertEqual(len(files), 1)


class TestWriterProcessFaults(RunLoopTestCase):
    """
    Un processus d'écriture qui répond de travers ou se tait : chaque envoi
    en cours finit, vite, par un `ERROR` ; rien n'est publié, aucun
    processus ne reste, et le suivant sert normalement.
    """

    # Remplace `_WRITER_PROGRAM` : lit les demandes, répond `REPLY` (rien
    # si elle est vide), puis se tait.
    FAKE_WRITER = textwrap.dedent("""\
        import socket, sys, time
        channel = socket.socket(fileno=int(sys.argv[2]))
        channel.recv(1 << 20)
        channel.sendall(%r)
        time.sleep(60)
        """)

    def send_with_writer(self, reply: bytes, senders: int = 3) -> list:
        """Les `senders` clients envoient en même temps avec le faux processus."""
        self.start()
        port = self.server._server_socket.getsockname()[1]
        clients = [support.RawClient(port) for _ in range(senders)]
        for client in clients:
            self.addCleanup(client.close)
        for index, client in enumerate(clients):
            self.assertEqual(client.register(f"Client{index}"), {"header": H.OK})
        with mock.patch.object(TP4_server, "_WRITER_PROGRAM", self.FAKE_WRITER % reply), \
                mock.patch.object(TP4_server, "_WRITE_TIMEOUT", 1.0):
            started = time.monotonic()
            for index, client in enumerate(clients):
                client.send(H.EMAIL_SENDING, email_to(
                    "client0@glo2000.ca", sender=f"Client{index}@glo2000.ca"))
            replies = [client.recv() for client in clients]
            self.assertLess(time.monotonic() - started, 5)
        return clients, replies

    def assert_recovered(self, clients, replies):
        for reply in replies:
            self.assertIn("n'a pas pu être enregistré", self.assert_error(reply))
        self.assertEqual(os.listdir(self.data_dir / "Client0"), [gloutils.PASSWORD_FILENAME])
        self.assertEqual(clients[0].request(H.STATS_REQUEST)["payload"]["count"], 0)
        self.assertEqual(clients[1].send_email("Client1@glo2000.ca", "client0@glo2000.ca"),
                         {"header": H.OK})
        self.assertEqual(clients[0].request(H.STATS_REQUEST)["payload"]["count"], 1)
        self.stop()
        self.server.cleanup()
        self.assertEqual(support.child_pids(os.getpid()), [])

    def test_garbage_reply(self):
        self.assert_recovered(*self.send_with_writer(b"n'importe quoi\n"))

    def test_reply_for_an_unknown_request(self):
        self.assert_recovered(*self.send_with_writer(b'{"id": 987654}\n'))

    def test_reply_without_end_of_line(self):
        self.assert_recovered(*self.send_with_writer(b'{"id": 1'))

    def test_no_reply(self):
        self.assert_recovered(*self.send_with_writer(b""))


class TestWriterBatches(unittest.TestCase):
    """
    Le processus d'écriture publie ses demandes par lots : écrites sous leur
    nom caché, rendues durables d'un coup, puis renommées. Chaque demande a
    sa réponse, et une erreur ne touche que les courriels qu'elle concerne.
    """

    def setUp(self) -> None:
        folder = tempfile.TemporaryDirectory(prefix="glo-lots-")
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)

    @staticmethod
    def frame(request_id: int, folder: Path, filename: str, data: bytes) -> bytes:
        header = json.dumps({"id": request_id, "folder": str(folder), "filename": filename})
        return support.frame(header.encode() + b"\n" + data)

    def request(self, request_id: int, filename: str, data: bytes = b"{}",
                folder: Path = None) -> tuple:
        return ({"id": request_id, "folder": str(folder or self.folder),
                 "filename": filename}, data)

    @staticmethod
    def replies(raw: bytes) -> list:
        return [json.loads(line) for line in raw.splitlines()]

    def test_complete_requests_are_taken_and_a_partial_one_is_kept(self):
        first = self.frame(1, self.folder, "a.json", b'{"un": 1}')
        second = self.frame(2, self.folder, "b.json", b"deux\nlignes")
        received = bytearray(first + second[:7])
        requests, stopping = TP4_server._take_requests(received)
        self.assertFalse(stopping)
        self.assertEqual([(header["id"], data) for header, data in requests],
                         [(1, b'{"un": 1}')])
        self.assertEqual(bytes(received), second[:7])
        received += second[7:] + TP4_server._STOP_FRAME
        requests, stopping = TP4_server._take_requests(received)
        self.assertTrue(stopping)
        self.assertEqual([(header["id"], data) for header, data in requests],
                         [(2, b"deux\nlignes")])

    def check_batch_is_published(self, make_durable) -> None:
        requests = [self.request(number, f"{number:020d}.json", b'{"n": %d}' % number)
                    for number in range(1, 21)]
        replies = self.replies(TP4_server._publish_batch(requests, make_durable))
        self.assertEqual(replies, [{"id": number} for number in range(1, 21)])
        self.assertEqual(sorted(os.listdir(self.folder)),
                         [f"{number:020d}.json" for number in range(1, 21)])
        self.assertEqual((self.folder / f"{7:020d}.json").read_bytes(), b'{"n": 7}')

    def test_batch_published_with_one_fsync_per_file(self):
        self.check_batch_is_published(TP4_server._fsync_each)

    def test_batch_published_with_the_method_of_this_system(self):
        self.check_batch_is_published(TP4_server._durability_method())

    @unittest.skipUnless(sys.platform.startswith("linux"), "syncfs est propre à Linux")
    def test_syncfs_is_used_on_a_recent_linux(self):
        release = tuple(map(int, os.uname().release.split(".")[:2]))
        if release < (5, 8):
            self.skipTest("noyau sans rapport d'erreurs par syncfs")
        syncfs = TP4_server._load_syncfs()
        self.assertIsNotNone(syncfs)
        descriptor = os.open(self.folder, os.O_RDONLY)
        self.addCleanup(os.close, descriptor)
        syncfs(descriptor)
        with self.assertRaises(OSError) as caught:
            syncfs(987654)
        self.assertEqual(caught.exception.errno, errno.EBADF)

    def test_fsync_on_an_old_kernel_or_another_system(self):
        for system, release in (("linux", "5.4.0-150-generic"), ("darwin", "23.1.0")):
            with self.subTest(system=system), \
                    mock.patch.object(sys, "platform", system), \
                    mock.patch.object(os, "uname", return_value=mock.Mock(release=release)):
                self.assertIsNone(TP4_server._load_syncfs())
                self.assertIs(TP4_server._durability_method(), TP4_server._fsync_each)

    def test_failed_syncfs_fails_the_whole_batch_and_leaves_nothing(self):
        def failing_syncfs(descriptor: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        with mock.patch.object(TP4_server, "_load_syncfs", return_value=failing_syncfs):
            make_durable = TP4_server._durability_method()
        requests = [self.request(1, "a.json"), self.request(2, "b.json")]
        replies = self.replies(TP4_server._publish_batch(requests, make_durable))
        self.assertEqual([(reply["id"], reply["errno"]) for reply in replies],
                         [(1, errno.EIO), (2, errno.EIO)])
        self.assertEqual(os.listdir(self.folder), [])

    def test_refused_syncfs_falls_back_to_fsync(self):
        """Un syncfs interdit (filtre seccomp d'un conteneur) : un fsync par fichier."""
        def refused_syncfs(descriptor: int) -> None:
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

        with mock.patch.object(TP4_server, "_load_syncfs", return_value=refused_syncfs):
            make_durable = TP4_server._durability_method()
        with mock.patch.object(os, "fsync", wraps=os.fsync) as fsync:
            self.check_batch_is_published(make_durable)
        self.assertEqual(fsync.call_count, 20)

    def test_an_error_only_fails_its_own_email(self):
        (self.folder / "pris.json").write_bytes(b"ancien")
        requests = [self.request(1, "a.json"), self.request(2, "pris.json"),
                    self.request(3, "c.json", folder=self.folder / "absent"),
                    self.request(4, "d.json")]
        replies = self.replies(TP4_server._publish_batch(
            requests, TP4_server._durability_method()))
        self.assertEqual([reply.get("errno") for reply in replies],
                         [None, errno.EEXIST, errno.ENOENT, None])
        self.assertEqual(sorted(os.listdir(self.folder)), ["a.json", "d.json", "pris.json"])
        self.assertEqual((self.folder / "pris.json").read_bytes(), b"ancien")

    def test_a_failed_fsync_discards_only_its_email(self):
        real_fsync = os.fsync
        refused = []

        def fsync(descriptor: int) -> None:
            if not refused:
                refused.append(descriptor)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(descriptor)

        requests = [self.request(1, "a.json"), self.request(2, "b.json")]
        with mock.patch.object(os, "fsync", fsync):
            replies = self.replies(TP4_server._publish_batch(requests, TP4_server._fsync_each))
        self.assertEqual([reply.get("errno") for reply in replies], [errno.ENOSPC, None])
        self.assertEqual(os.listdir(self.folder), ["b.json"])


if __name__ == "__main__":
    unittest.main()
