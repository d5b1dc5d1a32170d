"""\
GLO-2000 Travail pratique 4 - Tests unitaires du serveur
Chaque méthode du gabarit de `Server` est appelée directement, comme le ferait
un correcteur, avec de faux sockets (ou de vrais sockets sur 127.0.0.1 pour
les connexions), dans un dossier de travail temporaire.
"""

import email.utils
import errno
import gc
import hashlib
import hmac
import json
import logging
import os
import select
import socket
import stat
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
import TP4_server  # noqa: E402

try:
    import fcntl
except ImportError:  # Windows.
    fcntl = None

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

    def test_listing_follows_the_template_in_force(self):
        """
        Les lignes sont formées à chaque demande, avec `SUBJECT_DISPLAY` tel
        qu'il est à ce moment-là : un gabarit remplacé après le chargement de
        la boîte sert dès la demande suivante, même un gabarit qui a des
        `%`, des accolades doublées ou des formats, et le texte du client
        n'est jamais lu comme un gabarit.
        """
        subjects = ["accents éàç €", "{number} #1 %s %%", 'guillemets " et \\ barre', ""]
        emails = [self.deliver(subject, f"Tue, 12 Jul 2022 19:21:{number:02d} +0000")
                  for number, subject in enumerate(subjects)]
        self.assertEqual(self.listing(self.kohryu), self.expected_listing(*emails[::-1]))
        for template in ("#{number} → {sender} - {subject} {date}",
                         "%d {{#{number}}} {subject} 100%",
                         "#{number:>3} {sender!r} {subject:.3}",
                         "{date} {subject}"):
            with self.subTest(template=template), \
                    mock.patch.object(gloutils, "SUBJECT_DISPLAY", template):
                self.assertEqual(self.listing(self.kohryu),
                                 self.expected_listing(*emails[::-1]))

    def test_returned_listing_is_a_copy(self):
        """Modifier la liste reçue ne change pas la suivante."""
        email = self.deliver("Sujet", "Tue, 12 Jul 2022 19:21:00 +0000")
        first = self.server._get_email_list(self.kohryu)["payload"]["email_list"]
        first.clear()
        self.assertEqual(self.listing(self.kohryu), self.expected_listing(email))

    def test_each_user_sees_only_their_emails(self):
        self.send(support.HANDOUT_EMAIL)
        other = self.register("Autre")
        self.assertEqual(self.listing(other), [])
        self.assertEqual(self.stats(other), {"count": 0, "size": DIGEST_SIZE})


class TestMailboxIndex(ServerTestCase):
    """
    L'index d'une boîte ne pèse pas sur le ramasse-miettes : ses entrées ne
    sont pas des objets qu'il suit, et chaque collecte complète ne les
    parcourt pas, quelle que soit la taille des boîtes.
    """

    DATES = [f"Tue, 12 Jul 2022 19:21:{second:02d} +0000" for second in range(10)]

    def tracked_growth(self, username: str, count: int) -> int:
        """Objets suivis de plus une fois chargée une boîte de `count` courriels."""
        soc = self.register(username)
        folder = self.data_dir / username
        for number in range(count):
            payload = email_to(f"{username}@glo2000.ca", f"Sujet {number}",
                               self.DATES[number % len(self.DATES)], content=f"n° {number}")
            (folder / f"{number + 1:020d}.json").write_text(json.dumps(payload))
        gc.collect()
        before = len(gc.get_objects())
        self.assertEqual(self.stats(soc)["count"], count)  # Charge l'index.
        gc.collect()
        return len(gc.get_objects()) - before

    def test_entries_are_not_tracked(self):
        small = self.tracked_growth("petit", 10)
        large = self.tracked_growth("grand", 2000)
        self.assertLess(large - small, 200, (small, large))


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


class TestUnreadableMailbox(ServerTestCase):
    """Une boîte que le disque refuse de lire : un `ERROR` qui dit pourquoi, rien de chargé."""

    def test_each_reading_method_says_why(self):
        kohryu = self.register("Kohryu")
        real_scandir = os.scandir

        def refusing(path=".", *args):
            if os.path.basename(os.fspath(path)) == "Kohryu":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real_scandir(path, *args)

        with mock.patch.object(os, "scandir", refusing):
            for reply in (self.server._get_email_list(kohryu), self.server._get_stats(kohryu),
                          self.server._get_email(kohryu, {"choice": 1})):
                self.assert_error(reply, "Accès au disque impossible : permission refusée.")
        self.assertEqual(self.stats(kohryu), {"count": 0, "size": DIGEST_SIZE})


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

    def test_unreadable_date_becomes_the_current_time(self):
        for date in ("pas une date", "Tue, 99 Foo 2022 99:99:99 +0000", ""):
            with self.subTest(date=date):
                self.receiver.messages.clear()
                before = time.time()
                reply, messages = self.relay("accept", email_to("ami@example.com", date=date))
                self.assertEqual(reply, OK)
                header = support.relayed_message(messages[0])["Date"]
                relayed = email.utils.parsedate_to_datetime(header).timestamp()
                self.assertLessEqual(before - 1, relayed)
                self.assertLessEqual(relayed, time.time() + 1)

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
        Au démarrage, tout fichier caché est effacé, même complet : aucun n'a
        été confirmé (un envoi ne l'est qu'une fois son renommage durable).
        Chaque courriel confirmé est là, et lui seul.
        """
        kohryu = self.register("Kohryu")
        self.send(support.HANDOUT_EMAIL)
        self.assertEqual(self.stats(kohryu), {"count": 1, "size": 319})
        self.server.cleanup()
        for folder in (self.data_dir / "Kohryu", self.data_dir / gloutils.SERVER_LOST_DIR):
            self.plant(folder)
        restarted = self.new_server()
        self.assertEqual([name for name in self.all_files() if "/." in name], [])
        soc, _ = self.login("Kohryu", server=restarted)
        self.assertEqual(self.listing(soc, restarted),
                         self.expected_listing(support.HANDOUT_EMAIL))
        self.assertEqual(self.stats(soc, restarted), {"count": 1, "size": 319})
        self.assertEqual(restarted._get_email(soc, {"choice": 1}),
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


class TestSendingThroughTheLoop(RunLoopTestCase):
    """
    Chaque requête `EMAIL_SENDING` exécute `_send_email` une seule fois,
    qu'un correcteur l'observe (méthode remplacée sur la classe) ou non :
    vers un compte, vers `LOST` ou par le relais ; rien n'est enregistré ni
    relayé deux fois, et un courriel écrit est indexé même si son expéditeur
    est parti.
    """

    with_receiver = True
    CASES = (("interne", "bob@glo2000.ca", H.OK),
             ("perdu", "inconnu@glo2000.ca", H.ERROR),
             ("externe", "ami@example.com", H.OK))

    def setUp(self):
        # Les appels de la méthode d'origine sont comptés sans la remplacer :
        # un profileur posé avant la création du serveur suit chacun de ses fils.
        self.calls, self.threads = [], []
        code = TP4_server.Server._send_email.__code__

        def profile(frame, event, _argument):
            if event == "call" and frame.f_code is code:
                self.calls.append(frame.f_locals["payload"]["subject"])
                self.threads.append(threading.current_thread())

        self.addCleanup(threading.setprofile, threading.getprofile())
        threading.setprofile(profile)
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

    def send_each_case(self) -> None:
        for name, destination, expected in self.CASES:
            with self.subTest(case=name):
                reply = self.alice.send_email("alice@glo2000.ca", destination, name)
                self.assertEqual(reply["header"], expected, reply)

    def assert_stored_once(self) -> None:
        self.assertEqual(self.bob.request(H.STATS_REQUEST)["payload"]["count"], 1)
        self.assertEqual(len(self.files_in("bob")), 1)
        self.assertEqual(len(self.files_in(gloutils.SERVER_LOST_DIR)), 1)
        self.assertEqual(len(self.receiver.messages), 1)

    def test_each_request_runs_the_method_once(self):
        self.send_each_case()
        self.assertEqual(sorted(self.calls), sorted(name for name, _, _ in self.CASES))
        self.assert_stored_once()

    def test_observed_method_called_once(self):
        original = TP4_server.Server._send_email
        with mock.patch.object(TP4_server.Server, "_send_email", autospec=True,
                               side_effect=original) as spy:
            self.send_each_case()
        self.assertEqual(sorted(call.args[1]["subject"] for call in spy.call_args_list),
                         sorted(name for name, _, _ in self.CASES))
        self.assertEqual(len(self.calls), len(self.CASES))
        self.assert_stored_once()

    def test_large_email_runs_once_off_the_loop(self):
        """Un courriel de plus de 64 Kio est encodé hors de la boucle, une fois, intact."""
        content = "é" * 100_000
        self.assertEqual(self.alice.send_email("alice@glo2000.ca", "bob@glo2000.ca", "gros",
                                               content), OK)
        self.assertEqual(self.calls, ["gros"])
        self.assertIsNot(self.threads[0], self._loop)
        reply = self.bob.request(H.INBOX_READING_CHOICE, {"choice": 1})
        self.assertEqual(reply["payload"]["content"], content)

    def test_sender_gone_before_the_write_is_done(self):
        self.alice.send(H.EMAIL_SENDING, email_to("bob@glo2000.ca", sender="alice@glo2000.ca"))
        self.alice.abort()
        deadline = time.monotonic() + 5
        while self.bob.request(H.STATS_REQUEST)["payload"]["count"] != 1:
            self.assertLess(time.monotonic(), deadline, "Courriel écrit mais jamais indexé.")
            time.sleep(0.02)
        self.assertEqual(len(self.files_in("bob")), 1)


class DiskSpy:
    """
    Ce que le serveur fait au disque, noté dans l'ordre : chaque `fsync`
    réussi (identité du fichier, type, taille à ce moment), chaque renommage
    (identité du fichier renommé), et ce que le test y ajoute (les réponses
    reçues). Il peut aussi retenir les `fsync` (`hold`) jusqu'à `release`,
    et faire échouer ceux que `fail` désigne.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.events: list = []
        # Fonction (résultat de fstat) -> errno du fsync à faire échouer, ou None.
        self.fail = None
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        real_fsync, real_rename = os.fsync, os.rename

        def fsync(descriptor: int) -> None:
            self._open.wait(10)
            status = os.fstat(descriptor)
            failure = self.fail(status) if self.fail else None
            if failure:
                raise OSError(failure, os.strerror(failure))
            if stat.S_ISDIR(status.st_mode):
                time.sleep(0.05)  # Une réponse trop hâtive arriverait pendant ce temps.
            real_fsync(descriptor)
            self.note("fsync", (status.st_dev, status.st_ino), status.st_size)

        def rename(source, destination, *args, **kwargs) -> None:
            status = os.stat(source)
            real_rename(source, destination, *args, **kwargs)
            self.note("rename", (status.st_dev, status.st_ino), os.fspath(source),
                      os.fspath(destination))

        for name, replacement in (("fsync", fsync), ("rename", rename)):
            patcher = mock.patch.object(os, name, replacement)
            patcher.start()
            test.addCleanup(patcher.stop)
        test.addCleanup(self.release)

    def note(self, *event) -> None:
        with self._lock:
            self.events.append(event)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def position(self, *prefix, after: int = -1) -> int:
        """Rang du premier événement après `after` qui commence par `prefix`."""
        with self._lock:
            for index, event in enumerate(self.events):
                if index > after and event[:len(prefix)] == prefix:
                    return index
        raise AssertionError(f"Aucun événement {prefix} après le rang {after}.")


def identity(path: Path) -> tuple:
    status = os.stat(path)
    return status.st_dev, status.st_ino


@unittest.skipIf(hasattr(fcntl, "F_FULLFSYNC"),
                 "F_FULLFSYNC y tient lieu de fsync (voir test_platforms)")
class TestDurablePublication(RunLoopTestCase):
    """
    Le fil d'écriture publie ensemble tout ce qui attend : chaque courriel
    est écrit sous un nom caché, rendu durable, renommé, puis son dossier
    est synchronisé, et l'envoi n'est confirmé qu'ensuite. Une erreur
    n'échoue que le courriel qu'elle touche et ne laisse rien de visible.
    """

    SENDERS = ("alice", "carol", "dave", "erin", "frank", "grace")

    def setUp(self):
        super().setUp()
        self.start()
        port = self.server._server_socket.getsockname()[1]
        self.clients = {}
        for name in ("bob", *self.SENDERS):
            self.clients[name] = support.RawClient(port)
            self.addCleanup(self.clients[name].close)
            self.assertEqual(self.clients[name].register(name), OK)
        for name in ("bob", "carol"):  # Index chargés.
            self.assertEqual(self.clients[name].request(H.STATS_REQUEST)["header"], H.OK)
        self.disk = DiskSpy(self)

    def email(self, sender: str, destination: str = "bob", content: str = "Contenu") -> dict:
        return email_to(f"{destination}@glo2000.ca", f"de {sender}",
                        sender=f"{sender}@glo2000.ca", content=content)

    def exchange(self, *emails: dict) -> dict:
        """
        Envoie les courriels en même temps, chacun par son expéditeur ; chaque
        réponse est notée dès sa réception. Renvoie les réponses par sujet.
        """
        replies = {}

        def receive(payload: dict) -> None:
            client = self.clients[payload["sender"].partition("@")[0]]
            reply = client.recv()
            self.disk.note("reply", payload["subject"])
            replies[payload["subject"]] = reply

        threads = [threading.Thread(target=receive, args=(payload,)) for payload in emails]
        for thread in threads:
            thread.start()
        for payload in emails:
            self.clients[payload["sender"].partition("@")[0]].send(H.EMAIL_SENDING, payload)
        for thread in threads:
            thread.join(10)
        return replies

    def published(self, folder: str) -> dict:
        """Les courriels publiés du dossier, par sujet : {sujet: chemin}."""
        paths = [self.data_dir / folder / name for name in self.files_in(folder)]
        return {json.loads(path.read_text())["subject"]: path for path in paths}

    def assert_nothing_hidden(self) -> None:
        self.assertEqual([name for name in self.all_files() if "/." in name], [])

    def restarted_view(self, username: str) -> tuple:
        """Arrête le serveur, en démarre un autre sur les mêmes données : (liste, stats)."""
        self.stop()
        self.server.cleanup()
        restarted = self.new_server()
        soc, reply = self.login(username, server=restarted)
        self.assertEqual(reply, OK)
        return self.listing(soc, restarted), self.stats(soc, restarted)

    def test_concurrent_emails_each_durable_before_its_reply(self):
        emails = [self.email(sender) for sender in self.SENDERS]
        replies = self.exchange(*emails)
        self.assertEqual(replies, {payload["subject"]: OK for payload in emails})
        published = self.published("bob")
        self.assertEqual(sorted(published), sorted(replies))
        folder = identity(self.data_dir / "bob")
        for payload in emails:
            with self.subTest(email=payload["subject"]):
                path = published[payload["subject"]]
                self.assertEqual(path.read_text(), json.dumps(payload))
                written = self.disk.position("fsync", identity(path), len(json.dumps(payload)))
                renamed = self.disk.position("rename", identity(path), after=written)
                source, destination = self.disk.events[renamed][2:]
                self.assertTrue(os.path.samefile(destination, path))
                self.assertTrue(os.path.samefile(Path(source).parent, path.parent))
                self.assertTrue(Path(source).name.startswith("."), source)
                synced = self.disk.position("fsync", folder, after=renamed)
                self.assertGreater(self.disk.position("reply", payload["subject"]), synced)
        self.assert_nothing_hidden()
        lines = self.clients["bob"].request(H.INBOX_READING_REQUEST)["payload"]["email_list"]
        self.assertEqual(len(lines), len(emails))

    def test_held_reply_while_the_loop_serves_others(self):
        """
        Pendant que le courriel attend le disque, la réponse de son envoi est
        retenue, la boucle sert les autres, et la boîte ne le montre pas ;
        une fois le courriel durable, la réponse part et la liste le montre.
        """
        self.disk.hold()
        self.clients["alice"].send(H.EMAIL_SENDING, self.email("alice"))
        bob = self.clients["bob"]
        for _ in range(3):
            self.assertEqual(bob.request(H.STATS_REQUEST)["payload"]["count"], 0)
            self.assertEqual(bob.request(H.INBOX_READING_REQUEST)["payload"]["email_list"], [])
        pending, _, _ = select.select([self.clients["alice"].sock], [], [], 0.2)
        self.assertEqual(pending, [], "Envoi confirmé avant que le courriel soit durable.")
        self.disk.release()
        self.assertEqual(self.clients["alice"].recv(), OK)
        self.assertEqual(len(bob.request(H.INBOX_READING_REQUEST)["payload"]["email_list"]), 1)

    def test_taken_name_gets_another_and_the_file_in_place_is_kept(self):
        """
        L'horloge a reculé depuis un redémarrage : les noms qu'elle redonne
        sont déjà pris. Le courriel en prend un autre, rien n'est écrasé.
        """
        first = self.email("alice")
        self.assertEqual(self.exchange(first), {first["subject"]: OK})
        [path] = self.published("bob").values()
        arrival = int(path.stem)
        taken = [path.with_name(f"{arrival + step:020d}.json") for step in (1, 2, 3)]
        for planted in taken:
            planted.write_bytes(b"ancien")
        second = self.email("carol")
        with mock.patch.object(time, "time_ns", return_value=arrival - 10**9):
            self.assertEqual(self.exchange(second), {second["subject"]: OK})
        for planted in taken:
            self.assertEqual(planted.read_bytes(), b"ancien")
        new = set(self.files_in("bob")) - {path.name, *(planted.name for planted in taken)}
        self.assertEqual(len(new), 1)
        self.assertEqual((path.parent / new.pop()).read_text(), json.dumps(second))
        self.assertEqual(self.clients["bob"].request(H.STATS_REQUEST)["payload"]["count"], 2)
        self.assert_nothing_hidden()

    def test_missing_folder_fails_only_its_email(self):
        """
        Le dossier de Bob disparaît ; les courriels qui attendent avec le sien
        (retenus ensemble derrière un premier) sont publiés normalement.
        """
        self.disk.hold()
        blocker = self.email("dave", "carol")
        self.clients["dave"].send(H.EMAIL_SENDING, blocker)
        (self.data_dir / "bob").rename(self.data_dir.parent / "bob-de-cote")
        emails = [self.email("alice"), self.email("erin", "carol")]
        threading.Timer(0.3, self.disk.release).start()
        replies = self.exchange(*emails)
        self.assertEqual(self.clients["dave"].recv(), OK)
        self.assertIn("dossier introuvable", self.assert_error(replies["de alice"]))
        self.assertEqual(replies["de erin"], OK)
        self.assertEqual(sorted(self.published("carol")), ["de dave", "de erin"])
        self.assertEqual(sorted(os.listdir(self.data_dir.parent / "bob-de-cote")),
                         [gloutils.PASSWORD_FILENAME])
        self.assertFalse((self.data_dir / "bob").exists())
        self.assert_nothing_hidden()

    def test_failed_fsync_fails_only_its_email_and_leaves_nothing(self):
        doomed = self.email("alice", content="x" * 3000)
        size = len(json.dumps(doomed))
        self.disk.fail = lambda status: (errno.EIO if stat.S_ISREG(status.st_mode)
                                         and status.st_size == size else None)
        emails = [doomed, *(self.email(sender) for sender in self.SENDERS[1:])]
        replies = self.exchange(*emails)
        self.assertIn("n'a pas pu être enregistré", self.assert_error(replies.pop("de alice")))
        self.assertEqual(replies, {payload["subject"]: OK for payload in emails[1:]})
        self.assertEqual(sorted(self.published("bob")), sorted(replies))
        self.assert_nothing_hidden()
        bob = self.clients["bob"]
        self.assertEqual(len(bob.request(H.INBOX_READING_REQUEST)["payload"]["email_list"]),
                         len(replies))
        folder_size = sum(path.stat().st_size for path in (self.data_dir / "bob").iterdir())
        self.assertEqual(bob.request(H.STATS_REQUEST)["payload"],
                         {"count": len(replies), "size": folder_size})
        self.disk.fail = None
        lines, stats = self.restarted_view("bob")
        self.assertEqual((len(lines), stats["count"]), (len(replies), len(replies)))

    def test_failed_folder_sync_leaves_nothing(self):
        """
        La synchronisation du dossier échoue après le renommage : l'envoi est
        refusé, et le courriel refusé n'apparaît nulle part, ni maintenant ni
        après un redémarrage (il serait livré malgré le refus).
        """
        folder = identity(self.data_dir / "bob")
        self.disk.fail = lambda status: (
            errno.EIO if (status.st_dev, status.st_ino) == folder else None)
        refused = self.email("alice")
        self.assertIn("n'a pas pu être enregistré",
                      self.assert_error(self.exchange(refused)["de alice"]))
        self.disk.fail = None
        self.assertEqual(self.published("bob"), {})
        self.assertEqual(self.clients["bob"].request(H.STATS_REQUEST)["payload"]["count"], 0)
        self.assert_nothing_hidden()
        self.assertEqual(self.restarted_view("bob"), ([], {"count": 0, "size": DIGEST_SIZE}))

    def test_unexpected_failure_in_the_writer(self):
        """
        Un défaut imprévu (ni une `OSError`) au milieu d'un groupe, au
        deuxième renommage : chaque envoi reçoit vite sa réponse, un `ERROR`
        ne laisse rien de publié, aucun descripteur ne reste ouvert, l'envoi
        suivant est servi, et le redémarrage retrouve exactement les
        courriels confirmés.
        """
        descriptors = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        self.disk.hold()
        blocker = self.email("dave", "carol")
        self.clients["dave"].send(H.EMAIL_SENDING, blocker)
        renames = []
        spied_rename = os.rename

        def failing_rename(*args, **kwargs):
            renames.append(args)
            if len(renames) == 3:
                raise RuntimeError("défaut imprévu")
            return spied_rename(*args, **kwargs)

        emails = [self.email(sender) for sender in ("alice", "erin", "frank")]
        threading.Timer(0.3, self.disk.release).start()
        with mock.patch.object(os, "rename", failing_rename):
            started = time.monotonic()
            replies = self.exchange(*emails)
            self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(self.clients["dave"].recv(), OK)
        confirmed = sorted(subject for subject, reply in replies.items() if reply == OK)
        for subject, reply in replies.items():
            if reply != OK:
                self.assertIn("n'a pas pu être enregistré", self.assert_error(reply))
        self.assertLess(len(confirmed), len(emails))
        self.assertEqual(sorted(self.published("bob")), confirmed)
        self.assert_nothing_hidden()
        if descriptors is not None:
            self.assertEqual(len(os.listdir("/proc/self/fd")), descriptors)
        self.assertEqual(self.exchange(self.email("carol")), {"de carol": OK})
        lines, stats = self.restarted_view("bob")
        self.assertEqual((len(lines), stats["count"]), (len(confirmed) + 1,) * 2)
        self.assert_nothing_hidden()


if __name__ == "__main__":
    unittest.main()
