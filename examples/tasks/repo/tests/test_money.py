import pytest

from ledger import CurrencyMismatch, Money


def test_of_parses_decimal_strings():
    assert Money.of("12.34") == Money(1234)
    assert Money.of("-0.5") == Money(-50)
    assert Money.of("7") == Money(700)
    assert Money.of("120", "JPY") == Money(120, "JPY")
    assert Money.of("1.234", "KWD") == Money(1234, "KWD")


def test_of_rejects_too_many_decimals():
    with pytest.raises(ValueError):
        Money.of("1.005")


def test_unknown_currency():
    with pytest.raises(ValueError):
        Money(1, "XYZ")


def test_add_and_subtract():
    assert Money(150) + Money(250) == Money(400)
    assert Money(150) - Money(250) == Money(-100)
    assert -Money(5) == Money(-5)


def test_mixing_currencies_is_an_error():
    with pytest.raises(CurrencyMismatch):
        Money(1, "USD") + Money(1, "EUR")
    with pytest.raises(CurrencyMismatch):
        Money(1, "USD") - Money(1, "EUR")


def test_multiply_by_integer_only():
    assert Money(125) * 3 == Money(375)
    with pytest.raises(TypeError):
        Money(125) * 1.5


def test_allocate_keeps_every_cent():
    shares = Money(100).allocate([1, 1, 1])
    assert shares == [Money(34), Money(33), Money(33)]
    assert sum(s.minor for s in shares) == 100


def test_allocate_by_ratio():
    assert Money(1000).allocate([3, 7]) == [Money(300), Money(700)]
    assert Money(5).allocate([1, 0, 1]) == [Money(3), Money(0), Money(2)]


def test_allocate_negative_amount():
    shares = Money(-100).allocate([1, 1, 1])
    assert sum(s.minor for s in shares) == -100


def test_allocate_rejects_bad_ratios():
    with pytest.raises(ValueError):
        Money(10).allocate([])
    with pytest.raises(ValueError):
        Money(10).allocate([0, 0])


def test_format_with_symbols():
    assert Money(123450).format() == "$1,234.50"
    assert Money(-300, "EUR").format() == "-€3.00"
    assert Money(120, "JPY").format() == "¥120"
    assert Money(5).format() == "$0.05"


def test_format_without_symbol_and_unknown_symbol():
    assert Money(123450).format(symbol=False) == "1,234.50 USD"
    assert Money(1500, "KWD").format() == "1.500 KWD"


def test_zero_and_ordering():
    assert Money(0).is_zero()
    assert not Money(1).is_zero()
    assert Money(1) < Money(2)
