"""Money as every door writes it: a decimal string with the currency's places ("89.90", "0.00").

One representation in the API, the command line's `--json`, the console and anything else that shows
an amount: a JSON number loses the trailing zero (89.9) and invites float arithmetic on the other
side, and an unquantized Decimal writes "0" for nothing and "89.9" for a price computed in Python.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

# Every amount is stored as Numeric(12, 2) (models/tables.py) and checked to two places on the way in
# (models.orders.Money), whatever its currency: two places is each currency's here.
MONEY_PLACES = 2
CENT = Decimal(1).scaleb(-MONEY_PLACES)


def money_text(amount: Decimal) -> str:
    """`amount` as the doors write it: "89.90", "0.00"."""
    return str(amount.quantize(CENT))


def money_from_float(amount: float) -> Decimal:
    """An amount Temporal keeps as a float (the OrderTotal search attribute), read through its shortest
    repr: 89.9 is 89.90, not 89.900000000000005684..."""
    return Decimal(repr(amount)).quantize(CENT)


# An amount in a model that goes out (views, lists): a Decimal in Python, that string in JSON.
Amount = Annotated[Decimal, PlainSerializer(money_text, return_type=str, when_used="json")]
