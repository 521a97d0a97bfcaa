"""ledger: money amounts, parsing and reports for small bookkeeping jobs."""

from ledger.money import Money, CurrencyMismatch
from ledger.parse import parse_amount, parse_rows
from ledger.report import Transaction, balance_by_category, running_balance, monthly_totals

__all__ = [
    "Money",
    "CurrencyMismatch",
    "parse_amount",
    "parse_rows",
    "Transaction",
    "balance_by_category",
    "running_balance",
    "monthly_totals",
]
