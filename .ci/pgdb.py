"""Create or drop a PostgreSQL database for one CI run: pgdb.py ADMIN_URL NAME create|drop."""

import sys

import psycopg

admin, name, action = sys.argv[1:]
with psycopg.connect(admin, autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if action == "create":
        conn.execute(f'CREATE DATABASE "{name}"')
