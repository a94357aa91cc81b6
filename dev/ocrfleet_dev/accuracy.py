"""How close read text is to the truth: the one measure the tests and benchmarks share."""

from __future__ import annotations

_PUNCTUATION = str.maketrans("：，（）；", ":,();")


def normalise(text: str) -> str:
    """Full-width punctuation folded to ASCII and whitespace removed: what accuracy should not count."""
    return "".join(text.translate(_PUNCTUATION).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), two rows of memory."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            above = row[j]
            row[j] = min(above + 1, row[j - 1] + 1, diagonal + (ca != cb))
            diagonal = above
    return row[-1]


def cer(truth: str, read: str) -> float:
    """Character error rate of the normalised texts: edit distance over the truth's length."""
    truth, read = normalise(truth), normalise(read)
    if not truth:
        return float(bool(read))
    return edit_distance(truth, read) / len(truth)
