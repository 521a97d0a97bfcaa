from datetime import date

from ledger import Money, Transaction, balance_by_category, monthly_totals, running_balance


def tx(day, amount, category="misc", text="x"):
    return Transaction(date.fromisoformat(day), text, Money(amount), category)


def test_balance_by_category_sums_and_sorts():
    txs = [tx("2024-01-01", -500, "food"), tx("2024-01-02", 10000, "income"), tx("2024-01-03", -250, "food")]
    assert balance_by_category(txs) == {"food": Money(-750), "income": Money(10000)}
    assert list(balance_by_category(txs)) == ["food", "income"]


def test_balance_by_category_empty():
    assert balance_by_category([]) == {}


def test_running_balance_in_date_order():
    txs = [tx("2024-01-05", -100, text="b"), tx("2024-01-01", 500, text="a"), tx("2024-01-09", -50, text="c")]
    out = running_balance(txs, Money(1000))
    assert [t.description for t, _ in out] == ["a", "b", "c"]
    assert [b for _, b in out] == [Money(1500), Money(1400), Money(1350)]


def test_running_balance_keeps_order_of_same_day():
    txs = [tx("2024-01-01", 1, text="first"), tx("2024-01-01", 2, text="second")]
    assert [t.description for t, _ in running_balance(txs, Money(0))] == ["first", "second"]


def test_monthly_totals_split_income_and_spending():
    txs = [
        tx("2024-02-10", -300),
        tx("2024-01-31", 1000),
        tx("2024-01-15", -200),
        tx("2024-02-01", 50),
    ]
    months = monthly_totals(txs)
    assert list(months) == ["2024-01", "2024-02"]
    assert months["2024-01"] == (Money(1000), Money(200))
    assert months["2024-02"] == (Money(50), Money(300))


def test_monthly_totals_zero_amount_counts_as_income():
    months = monthly_totals([tx("2024-03-01", 0)])
    assert months["2024-03"] == (Money(0), Money(0))
