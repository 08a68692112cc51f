"""Operations behind the command line: orders over Temporal, catalog and stock over the database."""
