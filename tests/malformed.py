"""\
Table unique des entrées malformées ou hostiles, et de ce que le serveur
doit en faire.

Chaque cas (`Case`) donne les octets à envoyer tels quels, l'état de la
connexion qu'il demande (déconnectée, ou connectée sous `USERNAME` avec
`EMAIL` dans sa boîte) et l'issue attendue : un `ERROR` (avec les textes
admis), un `OK` (avec sa charge utile), la connexion fermée sans réponse, ou
aucune réponse tant que la trame reste incomplète.

`tests/test_end_to_end.py` et `tests/test_hostile.py` rejouent la table avec
`Runner`, chacun ses groupes ; `tests/fuzzing.py` y puise ses cas écrits à la
main (en-têtes absurdes, textes vides, imbrications profondes...).
"""

import json
import typing

from tests import support

gloutils = support.gloutils
H = gloutils.Headers
DOMAIN = gloutils.SERVER_DOMAIN
PASSWORD = support.STRONG_PASSWORD
MEBIBYTE = 1 << 20

LOGGED_OUT = "déconnecté"
LOGGED_IN = "connecté"

ERROR = "ERROR"
ACCEPTED = "OK"
CLOSED = "fermée sans réponse"
NO_REPLY = "sans réponse"
# Après ces issues-là, la connexion ne sert plus : chaque cas a la sienne.
TERMINAL = (CLOSED, NO_REPLY)

# Le compte de l'état « connecté » et l'unique courriel de sa boîte (date
# fixe : relu, il doit revenir à l'identique).
USERNAME = "alice"
ADDRESS = f"{USERNAME}@{DOMAIN}"
EMAIL = {"sender": ADDRESS, "destination": ADDRESS, "subject": "Sujet",
         "date": "Tue, 12 Jul 2022 19:21:57 +0000", "content": "Contenu"}

# En-têtes qui ne désignent aucune requête ; le fuzzing les tire aussi.
BAD_HEADERS = (
    0, 11, 99, -1, 2 ** 64, 2 ** 70, "4", "AUTH_REGISTER", "AUTH_LOGIN", True, False,
    None, 4.0, 10.0, 1e400, [4], [10], {"4": 4}, {"h": 4}, {"h": 10},
)

# Noms refusés à la création (message de l'énoncé) et à la connexion
# (`LOGIN_FAILED`) : chemins, noms réservés, caractères hors de l'alphabet
# permis, demi-paires de substitution, longueurs démesurées.
INVALID_USERNAMES = (
    "..", ".", "a/b", "../x", "../../x", "/tmp/x", "a\\b", "LOST", "lost", "Lost",
    "a" * 65, "b" * 10_000, "x" * 100_000, "a" * MEBIBYTE, "Éloïse", "名前", "", " ",
    "a b", "Qing Long", "a\x00b", "Nul\x00", "a\nb", "bob\n", "\nbob", "a\rb", "a\tb",
    "bob\ud800", "zoe\udfff", "\ud800", "~root", "a:b", "a*b",
    # Des noms de dossier que Windows efface (point final) ou réserve.
    "bob.", "x..", "CON", "con", "Aux", "nul.txt", "PRN.log", "com1", "LPT9",
)


class Case(typing.NamedTuple):
    """Un cas de la table."""

    name: str
    # Famille du cas ("json", "en-tête", "nom"...), pour qu'un test en choisisse.
    group: str
    # Octets envoyés tels quels : une trame entière, ou le début d'une trame.
    data: bytes
    # `LOGGED_OUT` ou `LOGGED_IN` : l'état de la connexion avant l'envoi.
    state: str
    # `ERROR`, `ACCEPTED`, `CLOSED` ou `NO_REPLY`.
    outcome: str
    # Textes admis pour l'`ERROR` ; vide : tout texte clair (non vide, et
    # jamais l'erreur interne d'une exception).
    messages: tuple = ()
    # Charge utile de la réponse `OK` attendue.
    payload: typing.Any = support.ABSENT


def _nested(opening: str, closing: str, depth: int, middle: str = "") -> str:
    return opening * depth + middle + closing * depth


class _Table:
    """Construit la table ; un nom ou des octets en double sont une erreur."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self._seen: set = set()

    def add(self, name: str, group: str, data: typing.Union[str, bytes], state: str,
            outcome: str, messages: tuple = (), payload: typing.Any = support.ABSENT) -> None:
        framed = support.frame(data) if isinstance(data, str) else data
        for key in ((state, "nom", name), (state, "octets", framed)):
            if key in self._seen:
                raise ValueError(f"Cas en double : {name}")
            self._seen.add(key)
        self.cases.append(Case(name, group, framed, state, outcome, messages, payload))

    def refused(self, name: str, group: str, data: typing.Union[str, bytes],
                *messages: str) -> None:
        """Un `ERROR` portant l'un de `messages`, connecté ou non."""
        for state in (LOGGED_OUT, LOGGED_IN):
            self.add(name, group, data, state, ERROR, messages)

    def refused_when_logged_in(self, name: str, group: str, data: typing.Union[str, bytes],
                               *messages: str) -> None:
        """
        Requête réservée aux connectés : `messages` une fois connecté ;
        déconnecté, un `ERROR` pour l'une ou l'autre raison, l'ordre des
        vérifications étant libre.
        """
        self.add(name, group, data, LOGGED_IN, ERROR, messages)
        self.add(name, group, data, LOGGED_OUT, ERROR,
                 (support.NOT_LOGGED_IN, support.INVALID_REQUEST))


def _build() -> list:
    """La table, groupe par groupe."""
    table = _Table()
    invalid = support.INVALID_REQUEST
    request = support.message_frame

    # ---- trames : incomplètes ou de longueur démesurée ----------------------
    for name, data, state in (
            ("deux octets de longueur", b"\x00\x00", LOGGED_OUT),
            ("texte coupé", support.LENGTH.pack(100) + b'{"header": 4, "pay', LOGGED_OUT),
            ("texte plus court qu'annoncé", support.LENGTH.pack(5) + b"{}", LOGGED_OUT),
            ("liste coupée", support.LENGTH.pack(100) + b'{"header": 7', LOGGED_IN)):
        table.add(name, "trame", data, state, NO_REPLY)
    for length in (2 ** 31, 2 ** 32 - 1):
        for state in (LOGGED_OUT, LOGGED_IN):
            table.add(f"longueur {length}", "trame", support.LENGTH.pack(length), state,
                      CLOSED)

    # ---- textes qui ne sont pas un objet JSON ---------------------------------
    for text in ("{pas du json", "", " ", "\n\t ", "{", "[]", "[1, 2]", "0", "42", "null",
                 '"texte"', '"bonjour"', "true", '{"header": 5', '{"header": 10} x',
                 '{"header": NaN}', '{"header": 1e999}'):
        table.refused(f"texte {text!r}", "json", text, invalid)
    for data in (b"\xff\xfe", b"\xff\xfe\xfd", b"\xc3", b'{"header": "\xe9"}', b"\x00" * 16):
        table.refused(f"octets {data!r}", "json", support.frame(data), invalid)
    empty_nested = _nested("[", "]", 100_000)
    table.refused("100000 listes vides imbriquées", "json", empty_nested, invalid)
    table.refused("100000 listes vides imbriquées, charge utile de AUTH_REGISTER", "json",
                  f'{{"header": 4, "payload": {empty_nested}}}', invalid)
    for depth in (1000, 5000, 100_000):
        for kind, opening, closing in (("listes", "[", "]"), ("objets", '{"a":', "}")):
            nested = _nested(opening, closing, depth, "1")
            table.refused(f"{depth} {kind} imbriqués", "json", nested, invalid)
            # Selon la version de Python, le décodeur JSON accepte ou non une
            # telle profondeur : déconnecté, l'envoi peut donc aussi être
            # refusé faute de connexion.
            table.refused(f"{depth} {kind} imbriqués, charge utile de AUTH_REGISTER", "json",
                          f'{{"header": {int(H.AUTH_REGISTER)}, "payload": {nested}}}', invalid)
            table.refused_when_logged_in(
                f"{depth} {kind} imbriqués, charge utile de EMAIL_SENDING", "json",
                f'{{"header": {int(H.EMAIL_SENDING)}, "payload": {nested}}}', invalid)

    # ---- en-têtes absents ou absurdes -----------------------------------------
    credentials = {"username": "zoe", "password": PASSWORD}
    for header in BAD_HEADERS:
        table.refused(f"en-tête {header!r}", "en-tête", request(header), invalid)
        table.refused(f"en-tête {header!r} avec identifiants", "en-tête",
                      request(header, credentials), invalid)
    for text in ("{}", '{"payload": {}}', '{"HEADER": 4}'):
        table.refused(f"objet {text}", "en-tête", text, invalid)

    # ---- réponses envoyées comme des requêtes -------------------------------
    for header in (H.OK, H.ERROR):
        table.refused(f"{header.name}", "réponse", request(header), invalid)
        table.refused(f"{header.name} avec message", "réponse",
                      request(header, {"error_message": "x"}), invalid)

    # ---- requêtes bien formées, mais réservées aux connectés ----------------
    for header, payload in ((H.INBOX_READING_REQUEST, support.ABSENT),
                            (H.INBOX_READING_CHOICE, {"choice": 1}),
                            (H.EMAIL_SENDING, EMAIL), (H.STATS_REQUEST, support.ABSENT)):
        table.add(f"{header.name} sans connexion", "connexion requise",
                  request(header, payload), LOGGED_OUT, ERROR, (support.NOT_LOGGED_IN,))

    # ---- charges utiles d'authentification mal typées ------------------------
    for header in (H.AUTH_REGISTER, H.AUTH_LOGIN):
        for payload in (support.ABSENT, None, "texte", [], 4, {}, {"username": "zoe"},
                        {"password": PASSWORD}, {"username": 12, "password": PASSWORD},
                        {"username": 1, "password": 2}, {"username": None, "password": PASSWORD},
                        {"username": ["zoe"], "password": PASSWORD},
                        {"username": "zoe", "password": 1234567890},
                        {"username": "zoe", "password": True},
                        json.loads(_nested("[", "]", 50))):
            table.refused(f"{header.name} {payload!r:.40}", "authentification",
                          request(header, payload), invalid)
    table.refused("AUTH_REGISTER mot de passe d'un Mio", "authentification",
                  request(H.AUTH_REGISTER, {"username": "zoe", "password": "a" * MEBIBYTE}),
                  support.creation_failed(support.WEAK_PASSWORD))
    table.refused("AUTH_LOGIN mot de passe d'un Mio", "authentification",
                  request(H.AUTH_LOGIN, {"username": "zoe", "password": "a" * MEBIBYTE}),
                  support.LOGIN_FAILED)

    # ---- noms d'utilisateur invalides ------------------------------------------
    for username in INVALID_USERNAMES:
        label = f"{username[:20]!r} ({len(username)} caractères)"
        table.refused(f"AUTH_REGISTER {label}", "nom",
                      request(H.AUTH_REGISTER, {"username": username, "password": PASSWORD}),
                      support.creation_failed(support.INVALID_USERNAME))
        table.refused(f"AUTH_LOGIN {label}", "nom",
                      request(H.AUTH_LOGIN, {"username": username, "password": PASSWORD}),
                      support.LOGIN_FAILED)

    # ---- choix de courriel ------------------------------------------------------
    choice = H.INBOX_READING_CHOICE
    for payload in (support.ABSENT, None, {}, [1], 1):
        table.refused_when_logged_in(f"choix : charge utile {payload!r}", "lecture",
                                     request(choice, payload), invalid)
    for value in (1.0, True, False, None, [1], {}, 1e308, "1.0", " 1", "-1", "١"):
        table.refused_when_logged_in(f"choix {value!r}", "lecture",
                                     request(choice, {"choice": value}), invalid)
    # Hors de la boîte, mais bien typés : un `ERROR` au texte libre.
    for value in (0, -1, 2 ** 70):
        table.refused_when_logged_in(f"choix {value}", "lecture",
                                     request(choice, {"choice": value}))
    # Des chiffres ASCII valent le nombre qu'ils écrivent : "1" lit le #1.
    table.add("choix '1'", "lecture", request(choice, {"choice": "1"}), LOGGED_IN, ACCEPTED,
              payload=EMAIL)
    table.add("choix '1'", "lecture", request(choice, {"choice": "1"}), LOGGED_OUT, ERROR,
              (support.NOT_LOGGED_IN,))

    # ---- envoi de courriel ---------------------------------------------------------
    sending = H.EMAIL_SENDING
    for payload in (support.ABSENT, None, "courriel", {}, [EMAIL]):
        table.refused_when_logged_in(f"envoi : charge utile {payload!r:.40}", "envoi",
                                     request(sending, payload), invalid)
    for key in EMAIL:
        for value in (1, None, [EMAIL[key]], True, {"a": 1}):
            table.refused_when_logged_in(f"envoi {key}={value!r}", "envoi",
                                         request(sending, {**EMAIL, key: value}), invalid)
        table.refused_when_logged_in(f"envoi sans {key}", "envoi", request(sending, {
            field: text for field, text in EMAIL.items() if field != key}), invalid)
    # Bien typés, mais démesurés : un `ERROR` au texte libre.
    big = "a" * MEBIBYTE
    for name, key, value in (("destination d'un Mio", "destination", big),
                             ("expéditeur d'un Mio", "sender", big),
                             ("destinataire interne d'un Mio", "destination", f"{big}@{DOMAIN}")):
        table.refused_when_logged_in(f"envoi : {name}", "envoi",
                                     request(sending, {**EMAIL, key: value}))
    return table.cases


CASES = _build()


def cases(*groups: str, outcomes: tuple = (ERROR, ACCEPTED)) -> list:
    """Les cas de `groups` (tous si aucun) dont l'issue est dans `outcomes`."""
    return [case for case in CASES
            if (not groups or case.group in groups) and case.outcome in outcomes]


class Runner:
    """
    Rejoue des cas de la table contre `server` (neuf) : un client par état,
    celui qui est connecté l'étant sous `USERNAME` avec `EMAIL` dans sa
    boîte. `root` est le dossier qui ne doit pas bouger (le dossier de
    travail du serveur par défaut). Arrêt au premier écart : une connexion
    désynchronisée ferait échouer tous les cas suivants.
    """

    def __init__(self, test, server: support.ServerProcess, root=None,
                 timeout: float = 5.0) -> None:
        self.test = test
        self.server = server
        self.root = root or server.workdir
        self.timeout = timeout
        logged_in = self._client()
        test.assertEqual(logged_in.register(USERNAME), {"header": H.OK})
        test.assertEqual(logged_in.request(H.EMAIL_SENDING, EMAIL), {"header": H.OK})
        self.clients = {LOGGED_OUT: self._client(), LOGGED_IN: logged_in}
        self.stats = {"header": H.OK, "payload": {
            "count": 1, "size": support.DIGEST_SIZE + len(json.dumps(EMAIL))}}
        self.files = support.tree(self.root)

    def _client(self) -> support.RawClient:
        client = support.RawClient(self.server.port, timeout=self.timeout)
        self.test.addCleanup(client.close)
        return client

    def fresh(self, state: str) -> support.RawClient:
        """Une nouvelle connexion dans l'état `state`."""
        client = self._client()
        if state == LOGGED_IN:
            self.test.assertEqual(client.login(USERNAME), {"header": H.OK})
        return client

    def run(self, selected: list) -> None:
        """Vérifie chaque cas de `selected`, puis que rien n'a bougé sous `root`."""
        self.test.assertTrue(selected, "Aucun cas choisi.")
        for case in selected:
            client = self.check(case)
            if case.outcome in TERMINAL:
                client.close()
        self.assert_nothing_written()

    def assert_nothing_written(self) -> None:
        """Aucun cas de la table n'écrit quoi que ce soit, nulle part."""
        self.test.assertEqual(support.tree(self.root), self.files,
                              "Un cas malformé a écrit sur le disque.")

    def check(self, case: Case) -> support.RawClient:
        """
        Envoie le cas et vérifie son issue ; renvoie le client employé (une
        connexion neuve pour un cas terminal, laissée ouverte).
        """
        terminal = case.outcome in TERMINAL
        client = self.fresh(case.state) if terminal else self.clients[case.state]
        context = f"{case.group} / {case.name} ({case.state})"
        client.send_raw(case.data)
        if case.outcome == CLOSED:
            self.test.assertEqual(client.received_until_closed(), b"", context)
        elif case.outcome == NO_REPLY:
            self.test.assertTrue(client.nothing_received(), context)
        else:
            try:
                reply = client.recv()
            except support.glossocket.GLOSocketError as ex:
                self.test.fail(f"{context} : aucune réponse ({ex})")
            self._check_reply(case, reply, context)
            self._check_in_step(client, case.state, context)
        return client

    def _check_reply(self, case: Case, reply: dict, context: str) -> None:
        if case.outcome == ACCEPTED:
            expected = {"header": H.OK}
            if case.payload is not support.ABSENT:
                expected["payload"] = case.payload
            self.test.assertEqual(reply, expected, context)
            return
        error = support.assert_error(self.test, reply, msg=context)
        self.test.assertNotEqual(error, support.INTERNAL_ERROR, context)
        if case.messages:
            self.test.assertIn(error, case.messages, context)

    def _check_in_step(self, client: support.RawClient, state: str, context: str) -> None:
        """
        La requête suivante reçoit sa propre réponse ; connecté, on l'est
        toujours, avec le seul `EMAIL` dans sa boîte.
        """
        if state == LOGGED_OUT:
            support.assert_error(self.test, client.login("Personne"), support.LOGIN_FAILED,
                                 msg=f"après {context}")
        else:
            self.test.assertEqual(client.request(H.STATS_REQUEST), self.stats,
                                  f"après {context}")
