"""Alembic environment: runs migrations against the URL set by db.migrate (or OMS_DATABASE_URL)."""

from alembic import context
from sqlalchemy import create_engine

from config import get_settings
from models.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_online() -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=url.startswith("sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
