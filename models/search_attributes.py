"""Custom search attributes: how operators find orders in the Temporal UI and `list`."""

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
ORDER_CHANNEL = SearchAttributeKey.for_keyword("OrderChannel")
ORDER_TOTAL = SearchAttributeKey.for_float("OrderTotal")
DELIVERY_OVERDUE = SearchAttributeKey.for_bool("DeliveryOverdue")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")  # a compensation gave up: support must act

ALL = (ORDER_STATUS, CUSTOMER_ID, ORDER_CHANNEL, ORDER_TOTAL, DELIVERY_OVERDUE, NEEDS_ATTENTION)
