"""Reports over transactions: balances by category, running balance, months."""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

from ledger.money import Money


@dataclass(frozen=True)
class Transaction:
    day: date
    description: str
    amount: Money
    category: str = "uncategorized"


def balance_by_category(transactions: list[Transaction]) -> dict[str, Money]:
    """Sum per category, categories sorted by name; all amounts must share a currency."""
    totals: dict[str, Money] = {}
    for t in transactions:
        if t.category in totals:
            totals[t.category] = totals[t.category] + t.amount
        else:
            totals[t.category] = t.amount
    return dict(sorted(totals.items()))


def running_balance(transactions: list[Transaction], opening: Money) -> list[tuple[Transaction, Money]]:
    """Each transaction in date order (stable for equal dates) with the balance after it."""
    balance = opening
    out = []
    for t in sorted(transactions, key=lambda t: t.day):
        balance = balance + t.amount
        out.append((t, balance))
    return out


def monthly_totals(transactions: list[Transaction]) -> "OrderedDict[str, tuple[Money, Money]]":
    """Per "YYYY-MM" in calendar order: (income, spending), spending as a positive amount."""
    months: dict[str, tuple[Money, Money]] = {}
    for t in transactions:
        key = f"{t.day.year:04d}-{t.day.month:02d}"
        zero = Money(0, t.amount.currency)
        income, spending = months.get(key, (zero, zero))
        if t.amount.minor >= 0:
            income = income + t.amount
        else:
            spending = spending - t.amount
        months[key] = (income, spending)
    return OrderedDict(sorted(months.items()))
