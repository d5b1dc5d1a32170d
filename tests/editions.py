"""\
GLO-2000 Travail pratique 4 - Modules du cours, édition par édition
Le cours a redonné le travail en 2023, 2024 et 2025 avec le même protocole,
mais des modules de soutien changés : les étudiants et les correcteurs de
chaque édition posent nos TP4_server.py et TP4_client.py à côté du
`glosocket.py` et du `gloutils.py` de leur année. `write_edition` écrit ces
deux modules dans un dossier, avec les seuls noms de l'édition, et y copie
nos deux programmes.

Les modules de 2022 sont ceux que `tests/test_grader.py` écrit déjà ; les
éditions suivantes en sont tirées par des remplacements exacts, chacun
vérifié : si ces modules changent, l'écriture échoue au lieu de produire un
module faux.
"""

import shutil
from pathlib import Path
from typing import NamedTuple

from tests import support, test_grader


class Edition(NamedTuple):
    """Ce qui distingue les modules du cours d'une édition."""

    year: int
    send: str  # fonction d'envoi de glosocket
    recv: str  # fonction de réception de glosocket
    app_port: int  # gloutils.APP_PORT
    smtp_server: bool  # gloutils.SMTP_SERVER existe-t-il ?
    main_menu: str  # nom du menu principal dans gloutils (même texte partout)


EDITIONS = {
    2022: Edition(2022, "send_msg", "recv_msg", 5321, True, "CLIENT_USE_CHOICE"),
    2023: Edition(2023, "send_mesg", "recv_mesg", 5321, False, "CLIENT_USE_CHOICE"),
    2024: Edition(2024, "snd_mesg", "recv_mesg", 9672, False, "CLIENT_USE_CHOICE"),
    2025: Edition(2025, "send_mesg", "recv_mesg", 9673, False, "CLIENT_USE_CHOICES"),
}

# Noms de fonctions de découpage de toutes les éditions : un module n'a que
# les deux siens.
ALL_FRAMING_NAMES = frozenset(
    name for edition in EDITIONS.values() for name in (edition.send, edition.recv))

# À partir de 2023, un contenu qui n'est pas de l'UTF-8 devient lui aussi
# GLOSocketError ; le module de 2022 laisse passer UnicodeDecodeError.
_DECODE_2022 = '    return _recv_exactly(source_soc, length).decode("utf-8")\n'
_DECODE_LATER = (
    "    try:\n"
    '        return _recv_exactly(source_soc, length).decode("utf-8")\n'
    "    except UnicodeDecodeError as ex:\n"
    "        raise GLOSocketError(ex) from ex\n")


def replace_once(text: str, old: str, new: str) -> str:
    """Remplace `old`, qui doit figurer exactement une fois dans `text`."""
    count = text.count(old)
    if count != 1:
        raise ValueError(f"{old!r} figure {count} fois au lieu d'une.")
    return text.replace(old, new)


def _course_source(source: str, edition: Edition, replacements: list) -> str:
    """Le module de 2022 changé en celui de `edition` : son année, puis chaque remplacement."""
    if edition.year == 2022:
        return source
    source = replace_once(source, "l'énoncé de 2022", f"l'énoncé de {edition.year}")
    for old, new in replacements:
        source = replace_once(source, old, new)
    return source


def _glosocket_source(edition: Edition) -> str:
    return _course_source(test_grader.COURSE_GLOSOCKET, edition, [
        ("def send_msg(", f"def {edition.send}("), ("def recv_msg(", f"def {edition.recv}("),
        (_DECODE_2022, _DECODE_LATER)])


def _gloutils_source(edition: Edition) -> str:
    smtp = [] if edition.smtp_server else [('SMTP_SERVER = "smtp.ulaval.ca"\n', "")]
    return _course_source(test_grader.COURSE_GLOUTILS, edition, [
        ("APP_PORT = 5321\n", f"APP_PORT = {edition.app_port}\n"), *smtp,
        ('CLIENT_USE_CHOICE = """', f'{edition.main_menu} = """')])


def write_edition(folder: Path, year: int) -> Edition:
    """
    Écrit dans `folder` le `glosocket.py` et le `gloutils.py` du cours de
    l'édition `year` (2022 à 2025), y copie nos TP4_server.py et
    TP4_client.py, et renvoie la description de l'édition.
    """
    edition = EDITIONS[year]
    folder = Path(folder)
    (folder / "glosocket.py").write_text(_glosocket_source(edition), encoding="utf-8")
    (folder / "gloutils.py").write_text(_gloutils_source(edition), encoding="utf-8")
    for program in (support.SERVER_SCRIPT, support.CLIENT_SCRIPT):
        shutil.copy(program, folder)
    return edition
