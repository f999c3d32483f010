"""Which new passwords are too weak: too short or long, the username, or easy to guess.

"Easy to guess" is zxcvbn's judgement (the Python port of Dropbox's estimator): it
matches the password against its frequency lists (the common-password lists of real
leaks, English words, names, surnames), keyboard walks (``qwertyuiop``), repeats
(``aaaaaaaaaa``), sequences (``1234567890``), dates and l33t substitutions, plus the words
we pass in (the username, the product's name). A hand-made list would know a few hundred
of these and none of the patterns. A password must score at least :data:`MIN_SCORE` of 4
("safely unguessable", about 10^10 guesses). zxcvbn's cost grows with the length, so only
the first :data:`SCORED_CHARACTERS` characters are scored; a longer password is not weaker
for its tail.

Messages are bilingual and never quote the password.
"""

from __future__ import annotations

from zxcvbn import zxcvbn  # type: ignore[import-untyped]

MIN_SCORE = 3
SCORED_CHARACTERS = 72  # zxcvbn's own maximum (it raises beyond it)
#: Words of this product a password must not lean on, besides the username.
HOUSE_WORDS = ("hub", "grid", "gateway", "community", "worker", "admin", "password")


class WeakPassword(ValueError):
    """Why a new password is refused (bilingual text)."""


def password_problem(
    password: str, username: str, *, min_length: int, max_length: int
) -> WeakPassword | None:
    """None if ``password`` may be set for ``username``, else the reason."""
    if not min_length <= len(password) <= max_length:
        return WeakPassword(
            f"password must have {min_length} to {max_length} characters / "
            f"密码长度须为 {min_length} 至 {max_length} 个字符"
        )
    if password.strip().lower() == username.lower():
        return WeakPassword("password must not be the username / 密码不能与用户名相同")
    result = zxcvbn(password[:SCORED_CHARACTERS], user_inputs=[username, *HOUSE_WORDS])
    if int(result["score"]) < MIN_SCORE:
        return WeakPassword(
            "password is too easy to guess (a common password, a word, a name, a keyboard "
            "pattern, a repeat or a sequence); use a longer phrase of unrelated words / "
            "密码太容易被猜中（常见密码、单词、姓名、键盘序列、重复或连续字符），"
            "请使用由几个不相关词语组成的较长短语"
        )
    return None
