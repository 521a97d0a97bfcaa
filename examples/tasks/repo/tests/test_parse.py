import pytest

from ledger import Money, parse_amount, parse_rows


def test_plain_and_symbol_amounts():
    assert parse_amount("12.50") == Money(1250)
    assert parse_amount("$1,234.56") == Money(123456)
    assert parse_amount("€3") == Money(300, "EUR")
    assert parse_amount("¥1,200") == Money(1200, "JPY")


def test_negative_forms():
    assert parse_amount("-$5.00") == Money(-500)
    assert parse_amount("(42.00)") == Money(-4200)
    assert parse_amount("- 7") == Money(-700)


def test_currency_code_suffix():
    assert parse_amount("7.5 EUR") == Money(750, "EUR")
    assert parse_amount("7.5 eur") == Money(750, "EUR")


def test_default_currency():
    assert parse_amount("3", default_currency="GBP") == Money(300, "GBP")


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "12 34", "$"])
def test_garbage_is_rejected(bad):
    with pytest.raises(ValueError):
        parse_amount(bad)


def test_rows_with_categories_and_blank_lines():
    text = """date,description,amount,category
2024-01-03,Coffee,-3.50,food

2024-01-05,Salary,"2,000.00",income
2024-01-06,Refund,1.25,
"""
    rows = parse_rows(text)
    assert [r["amount"] for r in rows] == [Money(-350), Money(200000), Money(125)]
    assert [r["category"] for r in rows] == ["food", "income", "uncategorized"]
    assert rows[0]["description"] == "Coffee"


def test_rows_report_the_line_of_a_bad_amount():
    text = "date,description,amount\n2024-01-01,ok,1.00\n2024-01-02,bad,one\n"
    with pytest.raises(ValueError, match="line 3"):
        parse_rows(text)
