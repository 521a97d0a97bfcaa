"""The bugs injected into the ledger project, one task instance each.

Each bug is a small source edit (old -> new, exactly once) that a real
developer could have made, and a problem statement written the way a user
would report it: symptoms, not the fix.
"""

BUGS = [
    {
        "name": "allocate_remainder_last",
        "file": "ledger/money.py",
        "old": "            shares[i % len(shares)] += 1",
        "new": "            shares[len(shares) - 1 - i % len(shares)] += 1",
        "problem_statement": """Money.allocate gives the leftover cents to the wrong shares

Splitting $1.00 three ways gives `[$0.33, $0.33, $0.34]`. The docs of
`allocate` say leftovers go to the first shares, and our invoices rely on the
first party getting the extra cent: we expect `[$0.34, $0.33, $0.33]`.

```python
from ledger import Money
print(Money(100).allocate([1, 1, 1]))
```
""",
    },
    {
        "name": "of_negative_fraction",
        "file": "ledger/money.py",
        "old": """        negative = text.startswith("-")
        if negative or text.startswith("+"):
            text = text[1:]""",
        "new": """        negative = False
        if text.startswith("+"):
            text = text[1:]""",
        "problem_statement": """Money.of returns wrong values for negative amounts with decimals

`Money.of("-0.5")` returns 50 cents instead of -50, and `Money.of("-1.25")`
returns -75 cents instead of -125. Whole negative numbers look fine.
""",
    },
    {
        "name": "format_fraction_padding",
        "file": "ledger/money.py",
        "old": """            number += "." + str(frac).rjust(exp, "0")""",
        "new": """            number += "." + str(frac)""",
        "problem_statement": """Formatting drops zeros after the decimal point

`str(Money(5))` prints `$0.5` for five cents, and `Money(-300, "EUR")` prints
`-€3.0`. Amounts should always show the currency's number of decimals, like
`$0.05` and `-€3.00`.
""",
    },
    {
        "name": "sub_skips_currency_check",
        "file": "ledger/money.py",
        "old": """    def __sub__(self, other: "Money") -> "Money":
        self._check(other)
        return Money(self.minor - other.minor, self.currency)""",
        "new": """    def __sub__(self, other: "Money") -> "Money":
        return Money(self.minor - other.minor, self.currency)""",
        "problem_statement": """Subtracting euros from dollars silently succeeds

`Money(1, "USD") + Money(1, "EUR")` raises `CurrencyMismatch` as it should,
but `Money(1, "USD") - Money(1, "EUR")` returns `$0.00` instead of raising.
""",
    },
    {
        "name": "accounting_negative_paren",
        "file": "ledger/parse.py",
        "old": """        negative, s = True, s[1:-1].strip()""",
        "new": """        negative, s = True, s[1:].strip()""",
        "problem_statement": """Amounts in parentheses cannot be parsed

Bank exports write negative amounts the accounting way, `(42.00)`.
`parse_amount("(42.00)")` raises `ValueError: cannot parse amount '(42.00)'`
instead of returning -$42.00.
""",
    },
    {
        "name": "currency_code_case",
        "file": "ledger/parse.py",
        "old": """        s, currency = parts[0], parts[1].upper()""",
        "new": """        s, currency = parts[0], parts[1]""",
        "problem_statement": """Lowercase currency codes are rejected

`parse_amount("7.5 EUR")` works, but `parse_amount("7.5 eur")` fails with
`ValueError: unknown currency 'eur'`. Several of our CSV sources write codes in
lowercase.
""",
    },
    {
        "name": "rows_line_number",
        "file": "ledger/parse.py",
        "old": """    for line_no, row in enumerate(reader, start=2):""",
        "new": """    for line_no, row in enumerate(reader, start=1):""",
        "problem_statement": """parse_rows reports the wrong line for a bad amount

For this input the bad amount is on line 3 of the file (the header is line 1),
but the error says `line 2: cannot parse amount 'one'`:

```
date,description,amount
2024-01-01,ok,1.00
2024-01-02,bad,one
```
""",
    },
    {
        "name": "category_overwrites",
        "file": "ledger/report.py",
        "old": """        if t.category in totals:
            totals[t.category] = totals[t.category] + t.amount
        else:
            totals[t.category] = t.amount""",
        "new": """        totals[t.category] = t.amount""",
        "problem_statement": """balance_by_category only keeps the last transaction of each category

With two food transactions of -$5.00 and -$2.50, `balance_by_category` reports
food as -$2.50 instead of -$7.50.
""",
    },
    {
        "name": "running_balance_reversed",
        "file": "ledger/report.py",
        "old": """    for t in sorted(transactions, key=lambda t: t.day):""",
        "new": """    for t in sorted(transactions, key=lambda t: t.day, reverse=True):""",
        "problem_statement": """running_balance walks the transactions newest first

The running balance should follow the transactions in date order, oldest
first, but the first row returned is the latest transaction, so every
intermediate balance is wrong.
""",
    },
    {
        "name": "month_key_padding",
        "file": "ledger/report.py",
        "old": """        key = f"{t.day.year:04d}-{t.day.month:02d}\"""",
        "new": """        key = f"{t.day.year:04d}-{t.day.month}\"""",
        "problem_statement": """monthly_totals keys are not YYYY-MM and sort wrongly

`monthly_totals` returns keys like `2024-1` and `2024-3`; the documented form is
`2024-01`. Besides breaking lookups, October to December now sort before
February.
""",
    },
]
