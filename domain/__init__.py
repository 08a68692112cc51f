"""Domain logic: the business rules over the database, below activities and the client layer."""
