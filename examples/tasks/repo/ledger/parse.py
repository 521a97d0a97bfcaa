"""Parsing amounts and transaction rows from text."""

import csv
import io

from ledger.money import EXPONENTS, Money

SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}


def parse_amount(text: str, default_currency: str = "USD") -> Money:
    """Parse "12.50", "-$1,234.56", "€3", "(42.00)" (accounting negative) or "7.5 EUR"."""
    s = text.strip()
    if not s:
        raise ValueError("empty amount")
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1].strip()
    if s.startswith("-"):
        negative, s = not negative, s[1:].strip()
    currency = default_currency
    if s[:1] in SYMBOLS:
        currency, s = SYMBOLS[s[0]], s[1:].strip()
    parts = s.split()
    if len(parts) == 2 and parts[1].upper() in EXPONENTS:
        s, currency = parts[0], parts[1].upper()
    elif len(parts) != 1:
        raise ValueError(f"cannot parse amount {text!r}")
    s = s.replace(",", "")
    if not s.replace(".", "", 1).isdigit():
        raise ValueError(f"cannot parse amount {text!r}")
    amount = Money.of(s, currency)
    return -amount if negative else amount


def parse_rows(text: str) -> list[dict]:
    """Read CSV with a header (date, description, amount[, category]); skips blank lines."""
    reader = csv.DictReader(io.StringIO(text.strip()))
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values()):
            continue
        try:
            amount = parse_amount(row["amount"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"line {line_no}: {e}") from None
        rows.append(
            {
                "date": row["date"].strip(),
                "description": (row.get("description") or "").strip(),
                "amount": amount,
                "category": (row.get("category") or "uncategorized").strip() or "uncategorized",
            }
        )
    return rows
