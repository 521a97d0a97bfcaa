"""Money amounts as integer minor units (cents), never floats."""

from dataclasses import dataclass

# Minor units per major unit, by ISO 4217 code.
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}


class CurrencyMismatch(ValueError):
    """Raised when amounts in different currencies are combined."""


@dataclass(frozen=True, order=True)
class Money:
    minor: int
    currency: str = "USD"

    def __post_init__(self):
        if self.currency not in EXPONENTS:
            raise ValueError(f"unknown currency {self.currency!r}")

    @classmethod
    def of(cls, major: str, currency: str = "USD") -> "Money":
        """Build from a decimal string such as "12.34" or "-0.5"."""
        exp = EXPONENTS[currency]
        text = major.strip()
        negative = text.startswith("-")
        if negative or text.startswith("+"):
            text = text[1:]
        whole, _, frac = text.partition(".")
        if len(frac) > exp:
            raise ValueError(f"{major!r} has more than {exp} decimals for {currency}")
        frac = frac.ljust(exp, "0")
        minor = int(whole or "0") * 10**exp + (int(frac) if frac else 0)
        return cls(-minor if negative else minor, currency)

    def _check(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._check(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._check(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.minor, self.currency)

    def __mul__(self, factor: int) -> "Money":
        if not isinstance(factor, int):
            raise TypeError("Money can only be multiplied by an integer")
        return Money(self.minor * factor, self.currency)

    def is_zero(self) -> bool:
        return self.minor == 0

    def allocate(self, ratios: list[int]) -> list["Money"]:
        """Split by integer ratios without losing a cent; leftovers go to the first shares."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise ValueError("ratios must be non-negative and not all zero")
        total = sum(ratios)
        shares = [self.minor * r // total for r in ratios]
        remainder = self.minor - sum(shares)
        for i in range(remainder):
            shares[i % len(shares)] += 1
        return [Money(s, self.currency) for s in shares]

    def format(self, symbol: bool = True) -> str:
        """"$1,234.50", "-€3.00", "¥120", or "1,234.50 USD" without a symbol."""
        exp = EXPONENTS[self.currency]
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exp)
        number = f"{whole:,}"
        if exp:
            number += "." + str(frac).rjust(exp, "0")
        if not symbol:
            return f"{sign}{number} {self.currency}"
        symbols = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
        prefix = symbols.get(self.currency)
        if prefix is None:
            return f"{sign}{number} {self.currency}"
        return f"{sign}{prefix}{number}"

    def __str__(self) -> str:
        return self.format()
