"""\
Essais de mot de passe ralentis : un attaquant sur sa propre adresse de
boucle locale (127.0.0.2) devine le mot de passe d'un compte pendant que son
propriétaire se connecte depuis 127.0.0.1.

Les vérifications portent sur l'ordre des réponses et sur une borne basse de
durée (le ralentissement ne peut que s'allonger sur une machine chargée),
jamais sur une borne haute.
"""

import select
import socket
import time
import unittest

from tests import support
import gloutils

H = gloutils.Headers
ATTACKER = "127.0.0.2"
WRONG = "Mauvais0passe"
# Les premiers échecs sont répondus aussitôt, puis 5 essais par seconde au plus.
FREE_FAILURES = 5
GUESSES_PER_SECOND = 5


class SourcedClient(support.RawClient):
    """Un client brut dont les connexions partent d'une adresse choisie."""

    def __init__(self, port: int, source: str = support.LOOPBACK, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((support.LOOPBACK, port), timeout=timeout,
                                             source_address=(source, 0))

    def answered(self) -> bool:
        """Vrai si une réponse attend déjà d'être lue (sans attendre)."""
        return bool(select.select([self.sock], [], [], 0)[0])


def loopback_alias_available() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((ATTACKER, 0))
        return True
    except OSError:
        return False


@unittest.skipUnless(loopback_alias_available(), f"L'adresse {ATTACKER} n'est pas locale ici.")
class TestPasswordGuessing(unittest.TestCase):

    def setUp(self):
        self.server = support.start_server(self)
        with SourcedClient(self.server.port) as owner:
            self.assertEqual(owner.register("victime"), {"header": H.OK})
        with SourcedClient(self.server.port) as other:
            self.assertEqual(other.register("autre"), {"header": H.OK})

    def client(self, source: str = support.LOOPBACK) -> SourcedClient:
        client = SourcedClient(self.server.port, source)
        self.addCleanup(client.close)
        return client

    def fail_freely(self, attacker: SourcedClient) -> None:
        """Les premiers échecs, répondus sans délai."""
        for _ in range(FREE_FAILURES):
            support.assert_error(self, attacker.login("victime", WRONG), support.LOGIN_FAILED)

    def test_wrong_then_right_password_is_not_slowed(self):
        """Un correcteur essaie un mauvais mot de passe puis le bon : rien n'est retenu."""
        client = self.client()
        support.assert_error(self, client.login("victime", WRONG), support.LOGIN_FAILED)
        self.assertEqual(client.login("victime"), {"header": H.OK})
        self.assertNotIn("essais ralentis", self.server.log())

    def test_guesses_from_many_connections_are_paced(self):
        """Au-delà des premiers échecs, 5 essais par seconde au plus, toutes connexions comprises."""
        self.fail_freely(self.client(ATTACKER))
        attackers = [self.client(ATTACKER) for _ in range(10)]
        started = time.monotonic()
        for attacker in attackers:
            attacker.send(H.AUTH_LOGIN, {"username": "VICTIME", "password": WRONG})
        for attacker in attackers:
            support.assert_error(self, attacker.recv(), support.LOGIN_FAILED)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, (len(attackers) - 1) / GUESSES_PER_SECOND * 0.9)
        log = self.server.log()
        self.assertEqual(log.count("essais ralentis"), 1, log)
        self.assertIn(f"Trop d'échecs pour le compte victime depuis {ATTACKER}", log)

    def test_owner_and_other_accounts_are_not_slowed(self):
        """
        Pendant qu'une file d'essais attend son tour, le propriétaire (autre
        adresse) et un autre compte (même adresse) sont servis avant elle.
        """
        self.fail_freely(self.client(ATTACKER))
        attackers = [self.client(ATTACKER) for _ in range(15)]
        for attacker in attackers:
            attacker.send(H.AUTH_LOGIN, {"username": "victime", "password": WRONG})
        self.assertEqual(self.client().login("victime"), {"header": H.OK})
        self.assertEqual(self.client(ATTACKER).login("autre"), {"header": H.OK})
        self.assertFalse(attackers[-1].answered(),
                         "La file de l'attaquant a été servie avant le propriétaire.")
        for attacker in attackers:
            support.assert_error(self, attacker.recv(), support.LOGIN_FAILED)

    def test_right_password_is_paced_too_then_resets(self):
        """Le bon mot de passe depuis l'adresse ralentie attend son tour, puis efface les échecs."""
        attacker = self.client(ATTACKER)
        self.fail_freely(attacker)
        self.assertEqual(attacker.login("victime"), {"header": H.OK})
        again = self.client(ATTACKER)
        started = time.monotonic()
        for _ in range(FREE_FAILURES - 1):
            support.assert_error(self, again.login("victime", WRONG), support.LOGIN_FAILED)
        self.assertEqual(again.login("victime"), {"header": H.OK})
        self.assertEqual(self.server.log().count("essais ralentis"), 1)
        self.assertLess(time.monotonic() - started, 30)

    def test_connection_closed_while_held(self):
        """Un essai retenu dont la connexion se ferme est oublié, le serveur continue."""
        self.fail_freely(self.client(ATTACKER))
        held = [self.client(ATTACKER) for _ in range(5)]
        for attacker in held:
            attacker.send(H.AUTH_LOGIN, {"username": "victime", "password": WRONG})
        for attacker in held[1:]:
            support.reset_close(attacker.sock)
        support.assert_error(self, held[0].recv(), support.LOGIN_FAILED)
        time.sleep(1.2)  # Le tour des essais abandonnés passe.
        self.assertEqual(self.client().login("victime"), {"header": H.OK})
        self.assertTrue(self.server.alive())
        self.assertNotIn("Traceback", self.server.log())


if __name__ == "__main__":
    unittest.main()
