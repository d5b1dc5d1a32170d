"""\
GLO-2000 Travail pratique 4 - Tests des modules fournis
`gloutils` (constantes, gabarits, en-têtes, charges utiles, date) et
`glossocket` (découpage des messages sur le fil), comparés au caractère près
avec PROTOCOL.md.
"""

import datetime
import enum
import json
import socket
import struct
import sys
import threading
import typing
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import support  # noqa: E402

import glossocket  # noqa: E402
import gloutils  # noqa: E402

DATE_FORMAT = "%a, %d %b %Y %H:%M:%S %z"


class TestConstants(unittest.TestCase):
    """Constantes de gloutils."""

    def test_values(self):
        self.assertEqual(gloutils.APP_PORT, 5321)
        self.assertEqual(gloutils.SERVER_DATA_DIR, "glo_server_data")
        self.assertEqual(gloutils.SERVER_LOST_DIR, "LOST")
        self.assertEqual(gloutils.SERVER_DOMAIN, "glo2000.ca")
        self.assertEqual(gloutils.SMTP_SERVER, "smtp.ulaval.ca")
        self.assertEqual(gloutils.PASSWORD_FILENAME, "pass")

    def test_auth_menu(self):
        self.assertEqual(
            gloutils.CLIENT_AUTH_CHOICE,
            "Menu de connexion\n1. Créer un compte\n2. Se connecter\n3. Quitter",
        )

    def test_main_menu(self):
        self.assertEqual(
            gloutils.CLIENT_USE_CHOICE,
            "Menu principal\n1. Consultation de courriels\n2. Envoi de courriels\n"
            "3. Statistiques\n4. Se déconnecter",
        )

    def test_subject_display(self):
        self.assertEqual(gloutils.SUBJECT_DISPLAY, "#{number} {sender} - {subject} {date}")
        self.assertEqual(
            gloutils.SUBJECT_DISPLAY.format(
                number=1, sender="Qing.Long@glo2000.ca", subject="Bonjour!",
                date="Tue, 12 Jul 2022 19:21:57 +0000"),
            "#1 Qing.Long@glo2000.ca - Bonjour! Tue, 12 Jul 2022 19:21:57 +0000",
        )

    def test_stats_display(self):
        self.assertEqual(gloutils.STATS_DISPLAY,
                         "Nombre de messages : {count}\nTaille du dossier : {size} octets")
        self.assertEqual(gloutils.STATS_DISPLAY.format(count=1, size=319),
                         "Nombre de messages : 1\nTaille du dossier : 319 octets")


class TestEmailDisplay(unittest.TestCase):
    """Le gabarit `EMAIL_DISPLAY` et ses trois graphies."""

    def test_text(self):
        self.assertEqual(
            gloutils.EMAIL_DISPLAY,
            "De : {sender}\nÀ : {to}\nSujet : {subject}\nDate : {date}\n"
            "----------------------------------------\n{body}\n",
        )
        separator = gloutils.EMAIL_DISPLAY.splitlines()[4]
        self.assertEqual(separator, "-" * 40)

    def test_template_names(self):
        email = support.HANDOUT_EMAIL
        text = gloutils.EMAIL_DISPLAY.format(
            sender=email["sender"], to=email["destination"],
            subject=email["subject"], date=email["date"], body=email["content"])
        self.assertEqual(text, support.HANDOUT_EMAIL_TEXT)

    def test_handout_names(self):
        email = support.HANDOUT_EMAIL
        text = gloutils.EMAIL_DISPLAY.format(
            source=email["sender"], destination=email["destination"],
            subject=email["subject"], date=email["date"], content=email["content"])
        self.assertEqual(text, support.HANDOUT_EMAIL_TEXT)

    def test_payload_keys(self):
        payload = gloutils.EmailContentPayload(**support.HANDOUT_EMAIL)
        self.assertEqual(gloutils.EMAIL_DISPLAY.format(**payload),
                         support.HANDOUT_EMAIL_TEXT)

    def test_format_map(self):
        self.assertEqual(gloutils.EMAIL_DISPLAY.format_map(support.HANDOUT_EMAIL),
                         support.HANDOUT_EMAIL_TEXT)

    def test_is_a_str(self):
        self.assertIsInstance(gloutils.EMAIL_DISPLAY, str)


class TestHeaders(unittest.TestCase):
    """L'énumération `Headers`."""

    def test_is_int_enum(self):
        self.assertTrue(issubclass(gloutils.Headers, enum.IntEnum))

    def test_names_values_and_order(self):
        self.assertEqual(
            [(header.name, header.value) for header in gloutils.Headers],
            [("OK", 1), ("ERROR", 2), ("BYE", 3), ("AUTH_REGISTER", 4),
             ("AUTH_LOGIN", 5), ("AUTH_LOGOUT", 6), ("INBOX_READING_REQUEST", 7),
             ("INBOX_READING_CHOICE", 8), ("EMAIL_SENDING", 9), ("STATS_REQUEST", 10)],
        )

    def test_json_is_plain_integer(self):
        message = gloutils.GloMessage(header=gloutils.Headers.STATS_REQUEST)
        self.assertEqual(json.dumps(message), '{"header": 10}')
        self.assertEqual(json.loads('{"header": 2}')["header"], gloutils.Headers.ERROR)


class TestPayloads(unittest.TestCase):
    """Les `TypedDict` des charges utiles."""

    def assert_keys(self, payload_class, expected, total=True):
        self.assertEqual(typing.get_type_hints(payload_class), expected)
        self.assertEqual(list(typing.get_type_hints(payload_class)), list(expected))
        required = set(expected) if total else set()
        self.assertEqual(payload_class.__required_keys__, required)
        self.assertEqual(payload_class.__total__, total)

    def test_error(self):
        self.assert_keys(gloutils.ErrorPayload, {"error_message": str})

    def test_auth(self):
        self.assert_keys(gloutils.AuthPayload, {"username": str, "password": str})

    def test_email_content(self):
        self.assert_keys(gloutils.EmailContentPayload, {
            "sender": str, "destination": str, "subject": str, "date": str,
            "content": str})

    def test_email_list(self):
        self.assert_keys(gloutils.EmailListPayload, {"email_list": list[str]})

    def test_email_choice(self):
        self.assert_keys(gloutils.EmailChoicePayload, {"choice": int})

    def test_stats(self):
        self.assert_keys(gloutils.StatsPayload, {"count": int, "size": int})

    def test_glo_message(self):
        hints = typing.get_type_hints(gloutils.GloMessage)
        self.assertEqual(list(hints), ["header", "payload"])
        self.assertIs(hints["header"], gloutils.Headers)
        self.assertEqual(set(typing.get_args(hints["payload"])), {
            gloutils.ErrorPayload, gloutils.AuthPayload, gloutils.EmailContentPayload,
            gloutils.EmailListPayload, gloutils.EmailChoicePayload,
            gloutils.StatsPayload})
        self.assertFalse(gloutils.GloMessage.__total__)
        self.assertEqual(gloutils.GloMessage.__required_keys__, frozenset())

    def test_payloads_are_plain_dicts(self):
        payload = gloutils.StatsPayload(count=1, size=319)
        self.assertEqual(payload, {"count": 1, "size": 319})
        self.assertIs(type(payload), dict)


class TestCurrentUtcTime(unittest.TestCase):
    """`get_current_utc_time()`."""

    def test_format(self):
        self.assertRegex(gloutils.get_current_utc_time(),
                         f"^{support.DATE_PATTERN}$")

    def test_parseable_and_current(self):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        text = gloutils.get_current_utc_time()
        after = datetime.datetime.now(datetime.timezone.utc)
        moment = datetime.datetime.strptime(text, DATE_FORMAT)
        self.assertEqual(moment.utcoffset(), datetime.timedelta(0))
        self.assertTrue(before <= moment <= after, (before, moment, after))
        self.assertEqual(text, moment.strftime(DATE_FORMAT))

    def test_frozen_clock(self):
        frozen = datetime.datetime(2022, 7, 12, 19, 21, 57, tzinfo=datetime.timezone.utc)
        fake = mock.Mock(wraps=datetime.datetime)
        fake.now.return_value = frozen
        with mock.patch.object(gloutils.datetime, "datetime", fake):
            self.assertEqual(gloutils.get_current_utc_time(),
                             "Tue, 12 Jul 2022 19:21:57 +0000")
        fake.now.assert_called_once_with(datetime.timezone.utc)


def receive_exactly(soc: socket.socket, count: int) -> bytes:
    """Lit `count` octets bruts de `soc`."""
    data = bytearray()
    while len(data) < count:
        chunk = soc.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


class SocketPairTestCase(unittest.TestCase):
    """Une paire de sockets connectés, fermés à la fin du test."""

    def setUp(self):
        self.left, self.right = socket.socketpair()
        for soc in (self.left, self.right):
            soc.settimeout(10)
            self.addCleanup(soc.close)

    def assert_wire(self, text: str, expected: bytes):
        """`send_msg(text)` met exactement `expected` sur le fil."""
        glossocket.send_msg(self.left, text)
        self.assertEqual(receive_exactly(self.right, len(expected)), expected)
        self.right.settimeout(0.05)
        with self.assertRaises(socket.timeout):
            self.right.recv(1)


class TestSendMsg(SocketPairTestCase):
    """Ce que `send_msg` écrit sur le fil."""

    def test_ascii(self):
        self.assert_wire("abc", b"\x00\x00\x00\x03abc")

    def test_json_message(self):
        text = json.dumps({"header": gloutils.Headers.OK})
        self.assert_wire(text, struct.pack("!I", 13) + b'{"header": 1}')

    def test_non_ascii_length_counts_bytes(self):
        text = "À é€😀"
        encoded = text.encode("utf-8")
        self.assertEqual(len(encoded), 12)
        self.assert_wire(text, b"\x00\x00\x00\x0c" + encoded)

    def test_empty(self):
        self.assert_wire("", b"\x00\x00\x00\x00")

    def test_big_endian_length(self):
        text = "x" * 0x01_02
        self.assert_wire(text, b"\x00\x00\x01\x02" + text.encode())

    def test_single_sendall(self):
        fake = mock.Mock(spec=socket.socket)
        glossocket.send_msg(fake, "été")
        fake.sendall.assert_called_once_with(b"\x00\x00\x00\x05" + "été".encode())

    def test_os_error(self):
        fake = mock.Mock(spec=socket.socket)
        fake.sendall.side_effect = ConnectionResetError("reset")
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.send_msg(fake, "abc")

    def test_closed_peer(self):
        self.right.close()
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.send_msg(self.left, "abc")

    def test_closed_socket(self):
        self.left.close()
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.send_msg(self.left, "abc")


class TestRecvMsg(SocketPairTestCase):
    """Ce que `recv_msg` accepte et refuse."""

    def test_round_trip(self):
        for text in ("abc", "", "À é€😀\n\"guillemets\"", json.dumps(support.HANDOUT_EMAIL)):
            with self.subTest(text=text):
                glossocket.send_msg(self.left, text)
                self.assertEqual(glossocket.recv_msg(self.right), text)

    def test_raw_frame(self):
        self.left.sendall(b"\x00\x00\x00\x05\xc3\xa9t\xc3")
        self.left.sendall(b"\xa9")
        self.assertEqual(glossocket.recv_msg(self.right), "été")

    def test_frames_back_to_back(self):
        self.left.sendall(b"\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x02bc")
        self.assertEqual([glossocket.recv_msg(self.right) for _ in range(3)],
                         ["a", "", "bc"])

    def test_one_mebibyte(self):
        text = ("0123456789abcdé" * 70_000)[: 1 << 20]
        sender = threading.Thread(target=glossocket.send_msg, args=(self.left, text))
        sender.start()
        self.addCleanup(sender.join, 10)
        self.assertEqual(glossocket.recv_msg(self.right), text)

    def test_closed_peer(self):
        self.left.close()
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(self.right)

    def test_short_header(self):
        self.left.sendall(b"\x00\x00")
        self.left.close()
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(self.right)

    def test_short_body(self):
        self.left.sendall(b"\x00\x00\x00\x0aabc")
        self.left.close()
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(self.right)

    def test_os_error(self):
        fake = mock.Mock(spec=socket.socket)
        fake.recv.side_effect = ConnectionResetError("reset")
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(fake)

    def test_timeout_is_an_os_error(self):
        self.right.settimeout(0.05)
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(self.right)

    def test_invalid_utf8(self):
        self.left.sendall(b"\x00\x00\x00\x02\xff\xfe")
        with self.assertRaises(glossocket.GLOSocketError):
            glossocket.recv_msg(self.right)


class TestGLOSocketModule(SocketPairTestCase):
    """L'exception et les noms des éditions suivantes du cours."""

    def test_error_is_an_exception(self):
        self.assertTrue(issubclass(glossocket.GLOSocketError, Exception))

    def test_aliases(self):
        self.assertIs(glossocket.send_mesg, glossocket.send_msg)
        self.assertIs(glossocket.snd_mesg, glossocket.send_msg)
        self.assertIs(glossocket.recv_mesg, glossocket.recv_msg)

    def test_aliases_on_the_wire(self):
        for send in (glossocket.send_mesg, glossocket.snd_mesg):
            with self.subTest(send=send.__name__):
                send(self.left, "salut")
                self.assertEqual(receive_exactly(self.right, 9), b"\x00\x00\x00\x05salut")
        glossocket.send_msg(self.left, "allô")
        self.assertEqual(glossocket.recv_mesg(self.right), "allô")


if __name__ == "__main__":
    unittest.main()
